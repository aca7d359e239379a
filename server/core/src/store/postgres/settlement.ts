/**
 * {@link SettlementStore} on PostgreSQL, next to the channel store (same pool, same schema; tables from migration
 * 100, applied when the store opens).
 *
 * The one-settler rule: the lease is a SESSION-level advisory lock (`pg_try_advisory_lock`) held on a dedicated
 * connection, keyed by the store's schema. Exactly one session in the whole cluster can hold it, so with several
 * replicas running the settlement job exactly one of them settles in a cycle. It needs no expiry: when the holder
 * dies (SIGKILL, crash, lost network), its connection closes and PostgreSQL releases the lock at once (TCP
 * keepalives bound the time for a silent network loss), and the next replica to try takes over. The holder checks
 * its connection on every renewal, so a holder whose session was lost stops settling. (`ttlMs` is ignored.)
 *
 * Claims are serialised by a transaction-level advisory lock in `insertTx`, so even two settlers that bypassed the
 * lease could not put one channel in two open transactions. Status changes are compare-and-set under the
 * transaction row's lock.
 */
import type pg from "pg";
import type { Address, Hex } from "viem";
import {
  FINAL_TX_STATUSES,
  OPEN_TX_STATUSES,
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
import { PRUNE_FINALIZED_SQL } from "./prune";
import { pgRowToChannel, type PgChannelRow } from "./rows";

interface TxRow {
  id: string;
  kind: string;
  status: string;
  sender: string;
  payee: string;
  token: string;
  nonce: string;
  hash: string;
  raw_tx: string;
  gas_limit: string;
  max_fee_per_gas: string;
  max_priority_fee_per_gas: string;
  replaces: string | null;
  broadcasts: number;
  reorgs: number;
  block_number: string | null;
  block_hash: string | null;
  gas_used: string | null;
  effective_gas_price: string | null;
  amount_settled: string | null;
  error: string | null;
  created_at: string;
  sent_at: string | null;
  mined_at: string | null;
  finished_at: string | null;
}

interface ItemRow {
  tx_id: string;
  channel_id: string;
  cumulative_amount: string;
  amount: string;
  previous_settled: string;
  status: string;
  skip_reason: string | null;
  settled_amount: string | null;
}

const big = (s: string | null): bigint | null => (s === null ? null : BigInt(s));
const num = (s: string | null): number | null => (s === null ? null : Number(s));

function toItem(r: ItemRow): SettlementItem {
  return {
    txId: Number(r.tx_id),
    channelId: r.channel_id as Hex,
    cumulativeAmount: BigInt(r.cumulative_amount),
    amount: BigInt(r.amount),
    previousSettled: BigInt(r.previous_settled),
    status: r.status as SettlementItemStatus,
    skipReason: (r.skip_reason as SkipReason | null) ?? null,
    settledAmount: big(r.settled_amount),
  };
}

function toTx(r: TxRow, items: SettlementItem[]): SettlementTx {
  return {
    id: Number(r.id),
    kind: r.kind as SettlementTxKind,
    status: r.status as SettlementTxStatus,
    sender: r.sender as Address,
    payee: r.payee as Address,
    token: r.token as Address,
    nonce: Number(r.nonce),
    hash: r.hash as Hex,
    rawTx: r.raw_tx as Hex,
    gasLimit: BigInt(r.gas_limit),
    maxFeePerGas: BigInt(r.max_fee_per_gas),
    maxPriorityFeePerGas: BigInt(r.max_priority_fee_per_gas),
    replaces: num(r.replaces),
    broadcasts: r.broadcasts,
    reorgs: r.reorgs,
    blockNumber: big(r.block_number),
    blockHash: (r.block_hash as Hex | null) ?? null,
    gasUsed: big(r.gas_used),
    effectiveGasPrice: big(r.effective_gas_price),
    amountSettled: big(r.amount_settled),
    error: r.error,
    createdAt: Number(r.created_at),
    sentAt: num(r.sent_at),
    minedAt: num(r.mined_at),
    finishedAt: num(r.finished_at),
    items,
  };
}

const OPEN = [...OPEN_TX_STATUSES];
const SETTLER_LOCK_KEY = "hashtextextended('channel-settler:' || current_schema(), 0)";
const CLAIMS_LOCK_KEY = "hashtextextended('channel-settlement-claims:' || current_schema(), 0)";

const SQL = {
  candidates: `
    SELECT c.*,
      (SELECT max(t.finished_at) FROM settlement_items i JOIN settlement_txs t ON t.id = i.tx_id
        WHERE i.channel_id = c.channel_id AND i.status IN ('settled', 'closed')) AS last_settled_at
    FROM channels c
    WHERE c.channel_id > $1 AND NOT c.finalized AND (c.spent > c.settled OR c.payer_close_requested_at > 0)
      AND NOT EXISTS (SELECT 1 FROM settlement_items i WHERE i.channel_id = c.channel_id AND i.status = 'pending')
      AND NOT EXISTS (SELECT 1 FROM settlement_items i WHERE i.channel_id = c.channel_id AND i.status = 'skipped'
                        AND i.skip_reason = ANY($3::text[]) AND i.cumulative_amount = c.accepted AND i.amount = c.spent)
    ORDER BY c.channel_id LIMIT $2`,
  byHash: "SELECT id FROM settlement_txs WHERE hash = $1",
  sameNonce: `SELECT id FROM settlement_txs WHERE lower(sender) = lower($1) AND nonce = $2 AND status = ANY($3::text[])
              AND ($4::bigint IS NULL OR id <> $4) LIMIT 1`,
  pendingFor: `SELECT channel_id, tx_id FROM settlement_items WHERE channel_id = ANY($1::text[]) AND status = 'pending'
               AND ($2::bigint IS NULL OR tx_id <> $2) ORDER BY channel_id LIMIT 1`,
  insertTx: `
    INSERT INTO settlement_txs (kind, status, sender, payee, token, nonce, hash, raw_tx, gas_limit, max_fee_per_gas,
      max_priority_fee_per_gas, replaces, created_at, updated_at)
    VALUES ($1, 'built', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
    RETURNING id`,
  insertItems: `
    INSERT INTO settlement_items (tx_id, channel_id, position, cumulative_amount, amount, previous_settled, status)
    SELECT $1, u.channel_id, u.position, u.cumulative_amount, u.amount, u.previous_settled, 'pending'
    FROM unnest($2::text[], $3::int[], $4::numeric[], $5::numeric[], $6::numeric[])
      AS u(channel_id, position, cumulative_amount, amount, previous_settled)`,
  lockTx: "SELECT * FROM settlement_txs WHERE id = $1 FOR UPDATE",
  getTx: "SELECT * FROM settlement_txs WHERE id = $1",
  itemsOf: "SELECT * FROM settlement_items WHERE tx_id = ANY($1::bigint[]) ORDER BY tx_id, position",
  openTxs: "SELECT * FROM settlement_txs WHERE status = ANY($1::text[]) ORDER BY nonce, id",
  recent: "SELECT * FROM settlement_txs ORDER BY id DESC LIMIT $1",
  updateTx: `
    UPDATE settlement_txs SET status = $2,
      sent_at = COALESCE($3, sent_at),
      mined_at = CASE WHEN $4::boolean THEN $5 ELSE mined_at END,
      block_number = CASE WHEN $6::boolean THEN $7 ELSE block_number END,
      block_hash = CASE WHEN $6::boolean THEN $8 ELSE block_hash END,
      gas_used = CASE WHEN $9::boolean THEN $10 ELSE gas_used END,
      effective_gas_price = CASE WHEN $9::boolean THEN $11 ELSE effective_gas_price END,
      error = CASE WHEN $12::boolean THEN $13 ELSE error END,
      broadcasts = broadcasts + $14,
      reorgs = reorgs + $15,
      finished_at = CASE WHEN $16::boolean THEN $17 ELSE finished_at END,
      updated_at = $17
    WHERE id = $1`,
  finishItems: "UPDATE settlement_items SET status = $1 WHERE tx_id = $2 AND status = 'pending'",
  confirmTx: `
    UPDATE settlement_txs SET status = 'confirmed', block_number = $2, block_hash = $3, gas_used = $4,
      effective_gas_price = $5, amount_settled = $6, mined_at = COALESCE(mined_at, $7), finished_at = $7, updated_at = $7
    WHERE id = $1`,
  itemOutcomes: `
    UPDATE settlement_items i SET status = u.status, skip_reason = u.skip_reason, settled_amount = u.settled_amount
    FROM unnest($2::text[], $3::text[], $4::text[], $5::numeric[]) AS u(channel_id, status, skip_reason, settled_amount)
    WHERE i.tx_id = $1 AND i.channel_id = u.channel_id`,
  lockChannels: "SELECT channel_id FROM channels WHERE channel_id = ANY($1::text[]) ORDER BY channel_id FOR UPDATE",
  raiseSettled: `
    UPDATE channels c SET settled = u.settled, updated_at = $3
    FROM unnest($1::text[], $2::numeric[]) AS u(channel_id, settled)
    WHERE c.channel_id = u.channel_id AND c.settled < u.settled`,
  finalize: "UPDATE channels SET finalized = true, updated_at = $2 WHERE channel_id = ANY($1::text[]) AND NOT finalized",
  deadline: "SELECT channel_id, closes_at FROM channels WHERE NOT finalized AND closes_at > 0 ORDER BY closes_at, channel_id LIMIT 1",
} as const;

/** The settler lock's dedicated session. */
interface SettlerLock {
  client: pg.Client;
  holder: string;
  lost: boolean;
}

/** What the settlement store needs of the PostgreSQL channel store it lives beside (`PostgresStore` implements it). */
export interface PgSettlementHost {
  readonly pool: pg.Pool;
  /** Throws when the store is closed. */
  check(): void;
  /** Runs `hook` when the store closes (before the pool ends). */
  onClose(hook: () => Promise<void>): void;
  /** A new connection outside the pool, with the store's session settings; the caller ends it. */
  dedicatedClient(extraOptions?: string[]): pg.Client;
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  /**
   * Tells the channel store these rows are being changed here (its accepts then lock them rather than guess); said
   * before the write and again after its transaction.
   */
  forgetChannels?(ids: Iterable<string>): void;
}

/** {@link SettlementStore} on a PostgreSQL channel store; get it with `store.settlementStore()`. */
export class PgSettlementStore implements SettlementStore {
  readonly kind = "postgres";
  private lock: SettlerLock | null = null;
  /** Lease calls run one at a time (they share the dedicated session). */
  private leaseQueue: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: PgSettlementHost) {
    store.onClose(() => this.dropLock());
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.leaseQueue.then(fn, fn);
    this.leaseQueue = run.catch(() => undefined);
    return run;
  }

  private async dropLock(): Promise<void> {
    const l = this.lock;
    this.lock = null;
    // Ending the session releases a session-level advisory lock.
    if (l) await l.client.end().catch(() => undefined);
  }

  /** Whether this process holds the settler lock right now (as far as it knows). */
  holdsSettlerLease(holder?: string): boolean {
    return !!this.lock && !this.lock.lost && (holder === undefined || this.lock.holder === holder);
  }

  async tryAcquireSettlerLease(holder: string, _ttlMs: number): Promise<boolean> {
    this.store.check();
    return this.serial(async () => {
      if (this.lock && !this.lock.lost) {
        if (this.lock.holder !== holder) return false;
        try {
          // Renewal: prove the session (and so the lock) is still alive.
          await this.lock.client.query("SELECT 1");
          return true;
        } catch {
          this.lock.lost = true;
        }
      }
      if (this.lock) await this.dropLock();
      // Server-side keepalives: if this host vanishes silently, PostgreSQL ends the session (and frees the lock)
      // within about a minute instead of the OS default of hours.
      const client = this.store.dedicatedClient(["-c tcp_keepalives_idle=15", "-c tcp_keepalives_interval=5", "-c tcp_keepalives_count=4"]);
      const lock: SettlerLock = { client, holder, lost: false };
      client.on("error", () => {
        lock.lost = true;
      });
      client.on("end", () => {
        lock.lost = true;
      });
      try {
        await client.connect();
        const got = (await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${SETTLER_LOCK_KEY}) AS ok`)).rows[0].ok;
        if (!got) {
          await client.end().catch(() => undefined);
          return false;
        }
      } catch (e) {
        await client.end().catch(() => undefined);
        throw e;
      }
      this.lock = lock;
      return true;
    });
  }

  async releaseSettlerLease(holder: string): Promise<void> {
    await this.serial(async () => {
      if (this.lock && this.lock.holder === holder) await this.dropLock();
    });
  }

  private async load(c: pg.ClientBase | pg.Pool, rows: TxRow[]): Promise<SettlementTx[]> {
    if (rows.length === 0) return [];
    const items = (await c.query<ItemRow>(SQL.itemsOf, [rows.map((r) => r.id)])).rows;
    const byTx = new Map<string, SettlementItem[]>();
    for (const it of items) {
      const list = byTx.get(it.tx_id) ?? [];
      list.push(toItem(it));
      byTx.set(it.tx_id, list);
    }
    return rows.map((r) => toTx(r, byTx.get(r.id) ?? []));
  }

  private async loadOne(c: pg.ClientBase | pg.Pool, id: number): Promise<SettlementTx | null> {
    const rows = (await c.query<TxRow>(SQL.getTx, [id])).rows;
    return (await this.load(c, rows))[0] ?? null;
  }

  async listCandidates(opts: { limit: number; after?: Hex }): Promise<SettlementCandidate[]> {
    this.store.check();
    const rows = (
      await this.store.pool.query<PgChannelRow & { last_settled_at: string | null }>(SQL.candidates, [
        (opts.after ?? "0x").toLowerCase(),
        opts.limit,
        [...PERMANENT_SKIP_REASONS],
      ])
    ).rows;
    return rows.map((r) => ({ ...pgRowToChannel(r), lastSettledAt: r.last_settled_at === null ? 0 : Number(r.last_settled_at) }));
  }

  async insertTx(tx: NewSettlementTx): Promise<SettlementTx> {
    if (tx.items.length === 0) throw new RangeError("a settlement transaction needs at least one item");
    const ids = tx.items.map((it) => it.channelId.toLowerCase());
    const seen = new Set<string>();
    for (const id of ids) {
      if (seen.has(id)) throw new SettlementConflictError(`channel ${id} appears twice`);
      seen.add(id);
    }
    return this.store.transaction(async (c) => {
      // One claimer at a time (whatever the lease says): the checks below and the inserts are then atomic.
      await c.query(`SELECT pg_advisory_xact_lock(${CLAIMS_LOCK_KEY})`);
      const replaces = tx.replaces ?? null;
      const hash = tx.hash.toLowerCase();
      if ((await c.query(SQL.byHash, [hash])).rowCount) throw new SettlementConflictError(`transaction ${tx.hash} is already recorded`);
      if ((await c.query(SQL.sameNonce, [tx.sender, tx.nonce, OPEN, replaces])).rowCount) {
        throw new SettlementConflictError(`nonce ${tx.nonce} of ${tx.sender} is used by another open settlement transaction`);
      }
      const p = (await c.query<{ channel_id: string; tx_id: string }>(SQL.pendingFor, [ids, replaces])).rows[0];
      if (p) throw new SettlementConflictError(`channel ${p.channel_id} is already being settled by transaction #${p.tx_id}`);
      const id = (
        await c.query<{ id: string }>(SQL.insertTx, [
          tx.kind,
          tx.sender,
          tx.payee,
          tx.token,
          tx.nonce,
          hash,
          tx.rawTx,
          tx.gasLimit.toString(),
          tx.maxFeePerGas.toString(),
          tx.maxPriorityFeePerGas.toString(),
          replaces,
          Date.now(),
        ])
      ).rows[0].id;
      await c.query(SQL.insertItems, [
        id,
        ids,
        tx.items.map((_, i) => i),
        tx.items.map((it) => it.cumulativeAmount.toString()),
        tx.items.map((it) => it.amount.toString()),
        tx.items.map((it) => it.previousSettled.toString()),
      ]);
      return (await this.loadOne(c, Number(id)))!;
    });
  }

  async updateTx(id: number, expect: readonly SettlementTxStatus[], patch: SettlementTxPatch): Promise<SettlementTx | null> {
    return this.store.transaction(async (c) => {
      const row = (await c.query<TxRow>(SQL.lockTx, [id])).rows[0];
      if (!row || !expect.includes(row.status as SettlementTxStatus)) return null;
      const final = FINAL_TX_STATUSES.includes(patch.status as SettlementTxStatus);
      const reorgBack = row.status === "mined" && (patch.status === "sent" || patch.status === "built");
      const setBlock = patch.blockNumber !== undefined || patch.blockHash !== undefined || reorgBack;
      const setGas = patch.gasUsed !== undefined || patch.effectiveGasPrice !== undefined || reorgBack;
      const now = Date.now();
      await c.query(SQL.updateTx, [
        id,
        patch.status,
        patch.sentAt ?? null,
        patch.minedAt !== undefined || reorgBack,
        reorgBack ? null : (patch.minedAt ?? null),
        setBlock,
        reorgBack ? null : patch.blockNumber === undefined ? row.block_number : patch.blockNumber === null ? null : patch.blockNumber.toString(),
        reorgBack ? null : patch.blockHash === undefined ? row.block_hash : patch.blockHash,
        setGas,
        reorgBack ? null : patch.gasUsed === undefined ? row.gas_used : (patch.gasUsed?.toString() ?? null),
        reorgBack ? null : patch.effectiveGasPrice === undefined ? row.effective_gas_price : (patch.effectiveGasPrice?.toString() ?? null),
        patch.error !== undefined,
        patch.error ?? null,
        patch.broadcast ? 1 : 0,
        patch.reorged ? 1 : 0,
        final,
        now,
      ]);
      if (final) await c.query(SQL.finishItems, [patch.status, id]);
      return this.loadOne(c, id);
    });
  }

  async confirmTx(id: number, conf: SettlementConfirmation): Promise<SettlementTx | null> {
    let touched: string[] = [];
    return this.store.transaction(async (c) => {
      const row = (await c.query<TxRow>(SQL.lockTx, [id])).rows[0];
      if (!row || !OPEN.includes(row.status as SettlementTxStatus)) return null;
      const now = Date.now();
      await c.query(SQL.confirmTx, [
        id,
        conf.blockNumber.toString(),
        conf.blockHash,
        conf.gasUsed.toString(),
        conf.effectiveGasPrice.toString(),
        conf.amountSettled.toString(),
        now,
      ]);
      const items = conf.items.map((it) => ({ ...it, channelId: it.channelId.toLowerCase() }));
      if (items.length) {
        await c.query(SQL.itemOutcomes, [
          id,
          items.map((it) => it.channelId),
          items.map((it) => it.status),
          items.map((it) => it.skipReason ?? null),
          items.map((it) => (it.settledAmount ?? null) === null ? null : it.settledAmount!.toString()),
        ]);
      }
      // Chain facts the receipt proved: settled only rises; a close finalizes. Channel rows are locked in id order
      // (like every multi-channel write of the stores) so this never deadlocks with a follower or a voucher.
      const raise = new Map<string, bigint>();
      const closed = new Set<string>();
      for (const it of items) {
        const s = it.settledAmount ?? null;
        if (s !== null && it.status !== "skipped" && s > (raise.get(it.channelId) ?? -1n)) raise.set(it.channelId, s);
        if (it.status === "closed") closed.add(it.channelId);
      }
      touched = [...new Set([...raise.keys(), ...closed])].sort();
      if (touched.length) {
        this.store.forgetChannels?.(touched);
        await c.query(SQL.lockChannels, [touched]);
        if (raise.size) await c.query(SQL.raiseSettled, [[...raise.keys()], [...raise.values()].map(String), now]);
        if (closed.size) {
          await c.query(SQL.finalize, [[...closed], now]);
          await c.query(PRUNE_FINALIZED_SQL, [[...closed]]);
        }
      }
      // An item the receipt said nothing about cannot have landed: it is free again.
      await c.query(SQL.finishItems, ["dropped", id]);
      return this.loadOne(c, id);
    }).finally(() => touched.length && this.store.forgetChannels?.(touched));
  }

  async openTxs(): Promise<SettlementTx[]> {
    this.store.check();
    return this.load(this.store.pool, (await this.store.pool.query<TxRow>(SQL.openTxs, [OPEN])).rows);
  }

  async getTx(id: number): Promise<SettlementTx | null> {
    this.store.check();
    return this.loadOne(this.store.pool, id);
  }

  async recentTxs(limit: number): Promise<SettlementTx[]> {
    this.store.check();
    return this.load(this.store.pool, (await this.store.pool.query<TxRow>(SQL.recent, [limit])).rows);
  }

  async earliestCloseDeadline(): Promise<CloseDeadline | null> {
    this.store.check();
    const r = (await this.store.pool.query<{ channel_id: string; closes_at: string }>(SQL.deadline)).rows[0];
    return r ? { channelId: r.channel_id as Hex, closesAt: Number(r.closes_at) } : null;
  }
}
