/**
 * {@link SettlementStore} on SQLite, on the channel store's connection (same file, same WAL, same busy timeout).
 * Every write is one short `BEGIN IMMEDIATE` transaction, so a running server and a `npm run settle` process on the
 * same file serialise without holding the write lock for long.
 */
import type { Address, Hex } from "viem";
import { decodeAmount, encodeAmount } from "../amounts";
import {
  PERMANENT_SKIP_REASONS,
  SettlementConflictError,
  type CloseDeadline,
  type NewSettlementTx,
  type SettlementCandidate,
  type SettlementConfirmation,
  type SettlementItem,
  type SettlementItemStatus,
  type SettlementStore,
  type SettlementTx,
  type SettlementTxKind,
  type SettlementTxPatch,
  type SettlementTxStatus,
  type SkipReason,
} from "../settlement-types";
import type { StoredChannel } from "../types";
import { SETTLEMENT_MIGRATIONS } from "./migrations/settlement";
import type Database from "better-sqlite3";
import { migrateSqlite } from "./migrate";
import { finalizedPruneStatements, pruneFinalized } from "./prune";

interface TxRow {
  id: number;
  kind: string;
  status: string;
  sender: string;
  payee: string;
  token: string;
  nonce: number;
  hash: string;
  raw_tx: string;
  gas_limit: string;
  max_fee_per_gas: string;
  max_priority_fee_per_gas: string;
  replaces: number | null;
  broadcasts: number;
  reorgs: number;
  block_number: number | null;
  block_hash: string | null;
  gas_used: string | null;
  effective_gas_price: string | null;
  amount_settled: string | null;
  error: string | null;
  created_at: number;
  sent_at: number | null;
  mined_at: number | null;
  finished_at: number | null;
}

interface ItemRow {
  tx_id: number;
  channel_id: string;
  cumulative_amount: string;
  amount: string;
  previous_settled: string;
  status: string;
  skip_reason: string | null;
  settled_amount: string | null;
}

const big = (s: string | null): bigint | null => (s === null ? null : BigInt(s));
const OPEN_SQL = "('built', 'sent', 'mined')";
const PERMANENT_SQL = `(${PERMANENT_SKIP_REASONS.map((r) => `'${r}'`).join(", ")})`;
const LEASE = "settler";

function toItem(r: ItemRow): SettlementItem {
  return {
    txId: r.tx_id,
    channelId: r.channel_id as Hex,
    cumulativeAmount: decodeAmount(r.cumulative_amount),
    amount: decodeAmount(r.amount),
    previousSettled: decodeAmount(r.previous_settled),
    status: r.status as SettlementItemStatus,
    skipReason: (r.skip_reason as SkipReason | null) ?? null,
    settledAmount: r.settled_amount === null ? null : decodeAmount(r.settled_amount),
  };
}

function toTx(r: TxRow, items: SettlementItem[]): SettlementTx {
  return {
    id: r.id,
    kind: r.kind as SettlementTxKind,
    status: r.status as SettlementTxStatus,
    sender: r.sender as Address,
    payee: r.payee as Address,
    token: r.token as Address,
    nonce: r.nonce,
    hash: r.hash as Hex,
    rawTx: r.raw_tx as Hex,
    gasLimit: BigInt(r.gas_limit),
    maxFeePerGas: BigInt(r.max_fee_per_gas),
    maxPriorityFeePerGas: BigInt(r.max_priority_fee_per_gas),
    replaces: r.replaces,
    broadcasts: r.broadcasts,
    reorgs: r.reorgs,
    blockNumber: r.block_number === null ? null : BigInt(r.block_number),
    blockHash: (r.block_hash as Hex | null) ?? null,
    gasUsed: big(r.gas_used),
    effectiveGasPrice: big(r.effective_gas_price),
    amountSettled: r.amount_settled === null ? null : decodeAmount(r.amount_settled),
    error: r.error,
    createdAt: r.created_at,
    sentAt: r.sent_at,
    minedAt: r.mined_at,
    finishedAt: r.finished_at,
    items,
  };
}

/** Same column mapping as the channel store's `toChannel` (kept local: that one is private). */
function toCandidate(r: Record<string, unknown>): SettlementCandidate {
  const c: StoredChannel = {
    channelId: r.channel_id as Hex,
    payer: r.payer as Address,
    payee: r.payee as Address,
    token: r.token as Address,
    signer: r.signer as Address,
    deposit: decodeAmount(r.deposit as string),
    settled: decodeAmount(r.settled as string),
    closeDelay: r.close_delay as number,
    closeRequestedAt: r.close_requested_at as number,
    closesAt: r.closes_at as number,
    finalized: (r.finalized as number) !== 0,
    block: BigInt(r.chain_block as number),
    accepted: decodeAmount(r.accepted as string),
    acceptedSignature: (r.accepted_signature as Hex | null) ?? null,
    spent: decodeAmount(r.spent as string),
    reserved: decodeAmount(r.reserved as string),
    floor: decodeAmount(r.floor as string),
    payerCloseRequestedAt: r.payer_close_requested_at as number,
    closeRequestSignature: (r.close_request_signature as Hex | null) ?? null,
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  };
  return { ...c, lastSettledAt: (r.last_settled_at as number | null) ?? 0 };
}

/** {@link SettlementStore} on a {@link SqliteStore}'s connection. Applies its migrations (idempotent) when created. */
export class SqliteSettlementStore implements SettlementStore {
  readonly kind = "sqlite";
  private readonly db: Database.Database;
  private readonly st;

  /** `store`: the SQLite channel store whose database also holds the settlement tables. */
  constructor(store: { readonly db: Database.Database }) {
    this.db = store.db;
    migrateSqlite(this.db, SETTLEMENT_MIGRATIONS);
    const db = this.db;
    this.st = {
      getLease: db.prepare<[string], { holder: string; expires_at: number }>("SELECT holder, expires_at FROM settler_lease WHERE name = ?"),
      setLease: db.prepare(
        "INSERT INTO settler_lease (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
      ),
      dropLease: db.prepare("DELETE FROM settler_lease WHERE name = ? AND holder = ?"),
      candidates: db.prepare<[string, number], Record<string, unknown>>(
        `SELECT c.*,
           (SELECT max(t.finished_at) FROM settlement_items i JOIN settlement_txs t ON t.id = i.tx_id
             WHERE i.channel_id = c.channel_id AND i.status IN ('settled', 'closed')) AS last_settled_at
         FROM channels c
         WHERE c.channel_id > ? AND c.finalized = 0 AND (c.spent > c.settled OR c.payer_close_requested_at > 0)
           AND NOT EXISTS (SELECT 1 FROM settlement_items i WHERE i.channel_id = c.channel_id AND i.status = 'pending')
           AND NOT EXISTS (SELECT 1 FROM settlement_items i WHERE i.channel_id = c.channel_id AND i.status = 'skipped'
                             AND i.skip_reason IN ${PERMANENT_SQL} AND i.cumulative_amount = c.accepted AND i.amount = c.spent)
         ORDER BY c.channel_id LIMIT ?`,
      ),
      pendingFor: db.prepare<[string, number], { tx_id: number }>(
        "SELECT tx_id FROM settlement_items WHERE channel_id = ? AND status = 'pending' AND tx_id IS NOT ? LIMIT 1",
      ),
      sameNonce: db.prepare<[string, number, number], { id: number }>(
        `SELECT id FROM settlement_txs WHERE lower(sender) = lower(?) AND nonce = ? AND status IN ${OPEN_SQL} AND id IS NOT ? LIMIT 1`,
      ),
      byHash: db.prepare<[string], { id: number }>("SELECT id FROM settlement_txs WHERE hash = ?"),
      insertTx: db.prepare(
        `INSERT INTO settlement_txs (kind, status, sender, payee, token, nonce, hash, raw_tx, gas_limit, max_fee_per_gas,
           max_priority_fee_per_gas, replaces, created_at, updated_at)
         VALUES (@kind, 'built', @sender, @payee, @token, @nonce, @hash, @raw_tx, @gas_limit, @max_fee_per_gas,
           @max_priority_fee_per_gas, @replaces, @now, @now)`,
      ),
      insertItem: db.prepare(
        `INSERT INTO settlement_items (tx_id, channel_id, position, cumulative_amount, amount, previous_settled, status)
         VALUES (?, ?, ?, ?, ?, ?, 'pending')`,
      ),
      getTx: db.prepare<[number], TxRow>("SELECT * FROM settlement_txs WHERE id = ?"),
      itemsOf: db.prepare<[number], ItemRow>("SELECT * FROM settlement_items WHERE tx_id = ? ORDER BY position"),
      openTxs: db.prepare<[], TxRow>(`SELECT * FROM settlement_txs WHERE status IN ${OPEN_SQL} ORDER BY nonce, id`),
      recent: db.prepare<[number], TxRow>("SELECT * FROM settlement_txs ORDER BY id DESC LIMIT ?"),
      updateTx: db.prepare(
        `UPDATE settlement_txs SET status = @status,
           sent_at = COALESCE(@sent_at, sent_at),
           mined_at = CASE WHEN @set_mined THEN @mined_at ELSE mined_at END,
           block_number = CASE WHEN @set_block THEN @block_number ELSE block_number END,
           block_hash = CASE WHEN @set_block THEN @block_hash ELSE block_hash END,
           gas_used = CASE WHEN @set_gas THEN @gas_used ELSE gas_used END,
           effective_gas_price = CASE WHEN @set_gas THEN @effective_gas_price ELSE effective_gas_price END,
           error = CASE WHEN @set_error THEN @error ELSE error END,
           broadcasts = broadcasts + @broadcast,
           reorgs = reorgs + @reorged,
           finished_at = CASE WHEN @final THEN @now ELSE finished_at END,
           updated_at = @now
         WHERE id = @id`,
      ),
      finishItems: db.prepare("UPDATE settlement_items SET status = ? WHERE tx_id = ? AND status = 'pending'"),
      confirmTx: db.prepare(
        `UPDATE settlement_txs SET status = 'confirmed', block_number = @block_number, block_hash = @block_hash, gas_used = @gas_used,
           effective_gas_price = @effective_gas_price, amount_settled = @amount_settled, mined_at = COALESCE(mined_at, @now),
           finished_at = @now, updated_at = @now
         WHERE id = @id`,
      ),
      itemOutcome: db.prepare(
        "UPDATE settlement_items SET status = ?, skip_reason = ?, settled_amount = ? WHERE tx_id = ? AND channel_id = ?",
      ),
      raiseSettled: db.prepare("UPDATE channels SET settled = ?, updated_at = ? WHERE channel_id = ? AND settled < ?"),
      finalize: db.prepare("UPDATE channels SET finalized = 1, updated_at = ? WHERE channel_id = ? AND finalized = 0"),
      ...finalizedPruneStatements(db),
      deadline: db.prepare<[], { channel_id: string; closes_at: number }>(
        "SELECT channel_id, closes_at FROM channels WHERE finalized = 0 AND closes_at > 0 ORDER BY closes_at LIMIT 1",
      ),
    };
  }

  private load(row: TxRow | undefined): SettlementTx | null {
    return row ? toTx(row, this.st.itemsOf.all(row.id).map(toItem)) : null;
  }

  async tryAcquireSettlerLease(holder: string, ttlMs: number): Promise<boolean> {
    return this.db
      .transaction(() => {
        const now = Date.now();
        const cur = this.st.getLease.get(LEASE);
        if (cur && cur.holder !== holder && cur.expires_at > now) return false;
        this.st.setLease.run(LEASE, holder, now + ttlMs);
        return true;
      })
      .immediate();
  }

  async releaseSettlerLease(holder: string): Promise<void> {
    this.st.dropLease.run(LEASE, holder);
  }

  async listCandidates(opts: { limit: number; after?: Hex }): Promise<SettlementCandidate[]> {
    return this.st.candidates.all((opts.after ?? "0x").toLowerCase(), opts.limit).map(toCandidate);
  }

  async insertTx(tx: NewSettlementTx): Promise<SettlementTx> {
    if (tx.items.length === 0) throw new RangeError("a settlement transaction needs at least one item");
    return this.db
      .transaction(() => {
        const replaces = tx.replaces ?? null;
        if (this.st.byHash.get(tx.hash.toLowerCase())) throw new SettlementConflictError(`transaction ${tx.hash} is already recorded`);
        if (this.st.sameNonce.get(tx.sender, tx.nonce, replaces ?? -1)) {
          throw new SettlementConflictError(`nonce ${tx.nonce} of ${tx.sender} is used by another open settlement transaction`);
        }
        const seen = new Set<string>();
        for (const it of tx.items) {
          const id = it.channelId.toLowerCase();
          if (seen.has(id)) throw new SettlementConflictError(`channel ${id} appears twice`);
          seen.add(id);
          const p = this.st.pendingFor.get(id, replaces ?? -1);
          if (p) throw new SettlementConflictError(`channel ${id} is already being settled by transaction #${p.tx_id}`);
        }
        const now = Date.now();
        const { lastInsertRowid } = this.st.insertTx.run({
          kind: tx.kind,
          sender: tx.sender,
          payee: tx.payee,
          token: tx.token,
          nonce: tx.nonce,
          hash: tx.hash.toLowerCase(),
          raw_tx: tx.rawTx,
          gas_limit: tx.gasLimit.toString(),
          max_fee_per_gas: tx.maxFeePerGas.toString(),
          max_priority_fee_per_gas: tx.maxPriorityFeePerGas.toString(),
          replaces,
          now,
        });
        const id = Number(lastInsertRowid);
        for (const [position, it] of tx.items.entries()) {
          this.st.insertItem.run(id, it.channelId.toLowerCase(), position, encodeAmount(it.cumulativeAmount), encodeAmount(it.amount), encodeAmount(it.previousSettled));
        }
        return this.load(this.st.getTx.get(id))!;
      })
      .immediate();
  }

  async updateTx(id: number, expect: readonly SettlementTxStatus[], patch: SettlementTxPatch): Promise<SettlementTx | null> {
    return this.db
      .transaction(() => {
        const row = this.st.getTx.get(id);
        if (!row || !expect.includes(row.status as SettlementTxStatus)) return null;
        const final = patch.status === "failed" || patch.status === "dropped";
        const reorgBack = row.status === "mined" && (patch.status === "sent" || patch.status === "built");
        const setBlock = patch.blockNumber !== undefined || patch.blockHash !== undefined || reorgBack;
        const setGas = patch.gasUsed !== undefined || patch.effectiveGasPrice !== undefined || reorgBack;
        this.st.updateTx.run({
          id,
          status: patch.status,
          sent_at: patch.sentAt ?? null,
          set_mined: patch.minedAt !== undefined || reorgBack ? 1 : 0,
          mined_at: reorgBack ? null : (patch.minedAt ?? null),
          set_block: setBlock ? 1 : 0,
          block_number: reorgBack ? null : patch.blockNumber === undefined ? row.block_number : patch.blockNumber === null ? null : Number(patch.blockNumber),
          block_hash: reorgBack ? null : patch.blockHash === undefined ? row.block_hash : patch.blockHash,
          set_gas: setGas ? 1 : 0,
          gas_used: reorgBack ? null : patch.gasUsed === undefined ? row.gas_used : (patch.gasUsed?.toString() ?? null),
          effective_gas_price: reorgBack ? null : patch.effectiveGasPrice === undefined ? row.effective_gas_price : (patch.effectiveGasPrice?.toString() ?? null),
          set_error: patch.error !== undefined ? 1 : 0,
          error: patch.error ?? null,
          broadcast: patch.broadcast ? 1 : 0,
          reorged: patch.reorged ? 1 : 0,
          final: final ? 1 : 0,
          now: Date.now(),
        });
        if (final) this.st.finishItems.run(patch.status, id);
        return this.load(this.st.getTx.get(id));
      })
      .immediate();
  }

  async confirmTx(id: number, c: SettlementConfirmation): Promise<SettlementTx | null> {
    return this.db
      .transaction(() => {
        const row = this.st.getTx.get(id);
        if (!row || !["built", "sent", "mined"].includes(row.status)) return null;
        const now = Date.now();
        this.st.confirmTx.run({
          id,
          block_number: Number(c.blockNumber),
          block_hash: c.blockHash,
          gas_used: c.gasUsed.toString(),
          effective_gas_price: c.effectiveGasPrice.toString(),
          amount_settled: encodeAmount(c.amountSettled),
          now,
        });
        for (const it of c.items) {
          const channelId = it.channelId.toLowerCase();
          const settled = it.settledAmount ?? null;
          this.st.itemOutcome.run(it.status, it.skipReason ?? null, settled === null ? null : encodeAmount(settled), id, channelId);
          if (settled !== null && it.status !== "skipped") {
            const enc = encodeAmount(settled);
            this.st.raiseSettled.run(enc, now, channelId, enc);
          }
          if (it.status === "closed") {
            this.st.finalize.run(now, channelId);
            pruneFinalized(this.st, channelId, now);
          }
        }
        // An item the receipt said nothing about cannot have landed: it is free again.
        this.st.finishItems.run("dropped", id);
        return this.load(this.st.getTx.get(id));
      })
      .immediate();
  }

  async openTxs(): Promise<SettlementTx[]> {
    return this.st.openTxs.all().map((r) => this.load(r)!);
  }

  async getTx(id: number): Promise<SettlementTx | null> {
    return this.load(this.st.getTx.get(id));
  }

  async recentTxs(limit: number): Promise<SettlementTx[]> {
    return this.st.recent.all(limit).map((r) => this.load(r)!);
  }

  async earliestCloseDeadline(): Promise<CloseDeadline | null> {
    const r = this.st.deadline.get();
    return r ? { channelId: r.channel_id as Hex, closesAt: r.closes_at } : null;
  }
}
