/**
 * The embedded store on SQLite (better-sqlite3): WAL journal, `synchronous=FULL` by default (every commit is
 * fsynced before the handler runs), `NORMAL` on request (WAL commits survive a process crash; the last ones
 * may be lost on power loss). Writes use `BEGIN IMMEDIATE`, so several processes on one file serialise too.
 */
import fs from "node:fs";
import path from "node:path";
import type Database from "better-sqlite3";
import type { Address, Hex } from "viem";
import type { ChannelRef } from "@paychan/protocol";
import { decideVoucher } from "../../payments/accounting";
import { decodeAmount, encodeAmount } from "../amounts";
import {
  StoreBindingError,
  type AcceptVoucherInput,
  type AcceptVoucherResult,
  type ChainChannel,
  type ChannelStore,
  type EventCursor,
  type StoreBinding,
  type StoredChannel,
  type StoreTotals,
} from "../types";
import { GroupCommit } from "./group-commit";
import { finalizedPruneStatements, pruneFinalized } from "./prune";
import { sqliteFilename } from "./filename";

export { sqliteFilename } from "./filename";
import { SQLITE_MIGRATIONS, type SqliteMigration } from "./migrations";
import { loadSqliteDriver } from "./driver";
import { migrateSqlite } from "./migrate";
import { SqliteExactStore } from "./exact";
import type { ExactStore, ExactStoreProvider } from "../exact-types";
import { SqliteGaslessOpenStore } from "./open";
import type { GaslessOpenStore, GaslessOpenStoreProvider } from "../open-types";
import { SqliteSettlementStore } from "./settlement";
import type { SettlementStore, SettlementStoreProvider } from "../settlement-types";

export { migrateSqlite } from "./migrate";

export interface SqliteStoreOptions {
  /** A file path, `:memory:`, or a `sqlite:` / `file:` URL. */
  url: string;
  synchronous?: "FULL" | "NORMAL";
  /** Extra migrations (tests, extensions); merged with {@link SQLITE_MIGRATIONS}. */
  migrations?: readonly SqliteMigration[];
  /** ms to wait for another process's write lock. */
  busyTimeout?: number;
}

interface ChannelRow {
  channel_id: string;
  payer: string;
  payee: string;
  token: string;
  signer: string;
  deposit: string;
  settled: string;
  close_delay: number;
  close_requested_at: number;
  closes_at: number;
  finalized: number;
  chain_block: number;
  accepted: string;
  accepted_signature: string | null;
  spent: string;
  reserved: string;
  floor: string;
  payer_close_requested_at: number;
  close_request_signature: string | null;
  created_at: number;
  updated_at: number;
}

function toChannel(r: ChannelRow): StoredChannel {
  return {
    channelId: r.channel_id as Hex,
    payer: r.payer as Hex,
    payee: r.payee as Hex,
    token: r.token as Hex,
    signer: r.signer as Hex,
    deposit: decodeAmount(r.deposit),
    settled: decodeAmount(r.settled),
    closeDelay: r.close_delay,
    closeRequestedAt: r.close_requested_at,
    closesAt: r.closes_at,
    finalized: r.finalized !== 0,
    block: BigInt(r.chain_block),
    accepted: decodeAmount(r.accepted),
    acceptedSignature: (r.accepted_signature as Hex | null) ?? null,
    spent: decodeAmount(r.spent),
    reserved: decodeAmount(r.reserved),
    floor: decodeAmount(r.floor),
    payerCloseRequestedAt: r.payer_close_requested_at,
    closeRequestSignature: (r.close_request_signature as Hex | null) ?? null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

const lower = (s: string) => s.toLowerCase();

/** A channel row as a group commit holds it between its accepts (see `acceptInTx`). */
interface HeldRow {
  /** The row as the transaction would read it now. */
  channel: StoredChannel;
  /** The newest chain snapshot that changes the stored chain fields, to write at the end (null: none). */
  chain: ChainChannel | null;
  /** `floor` when the batch first read the row: used vouchers up to the final floor are pruned once. */
  floorAtRead: bigint;
  /** Whether the accounting columns must be written (false for a row this batch inserted and did not change). */
  dirty: boolean;
}

/** Whether `updateChain` with snapshot `c` would change the stored row (same rule as its SQL). */
function chainSnapshotChanges(stored: StoredChannel, c: ChainChannel): boolean {
  if (c.block < stored.block) return false;
  if (c.block > stored.block) return true;
  return (
    c.deposit !== stored.deposit ||
    c.settled > stored.settled ||
    c.closeRequestedAt !== stored.closeRequestedAt ||
    c.closesAt !== stored.closesAt ||
    (c.finalized && !stored.finalized)
  );
}

/** {@link ChannelStore} on SQLite. */
export class SqliteStore implements ChannelStore, SettlementStoreProvider, ExactStoreProvider, GaslessOpenStoreProvider {
  readonly kind = "sqlite";
  /** The connection, for store extensions (settlement) that add their own tables and queries. */
  readonly db: Database.Database;
  readonly filename: string;
  private readonly st: ReturnType<SqliteStore["prepare"]>;
  private readonly acceptTx: (input: AcceptVoucherInput) => AcceptVoucherResult;
  /** Concurrent accepts share one transaction and one commit (see group-commit.ts). */
  private readonly accepts: GroupCommit<AcceptVoucherInput, AcceptVoucherResult>;
  private readonly snapshotsTx: (snapshots: readonly ChainChannel[], cursor?: EventCursor, force?: boolean) => void;
  private closed = false;

  constructor(opts: SqliteStoreOptions) {
    this.filename = sqliteFilename(opts.url);
    if (this.filename !== ":memory:") fs.mkdirSync(path.dirname(path.resolve(this.filename)), { recursive: true });
    this.db = new (loadSqliteDriver())(this.filename);
    this.db.pragma(`busy_timeout = ${opts.busyTimeout ?? 5000}`);
    if (this.filename !== ":memory:") this.db.pragma("journal_mode = WAL");
    this.db.pragma(`synchronous = ${opts.synchronous ?? "FULL"}`);
    this.db.pragma("foreign_keys = ON");
    migrateSqlite(this.db, [...SQLITE_MIGRATIONS, ...(opts.migrations ?? [])]);
    this.st = this.prepare();
    this.acceptTx = this.db.transaction((input: AcceptVoucherInput) => this.acceptInTx(input)).immediate as never;
    const acceptBatch = this.db.transaction((inputs: readonly AcceptVoucherInput[]) => this.acceptBatchInTx(inputs)).immediate as never;
    this.accepts = new GroupCommit(this.acceptTx, acceptBatch);
    this.snapshotsTx = this.db.transaction((s: readonly ChainChannel[], c?: EventCursor, f?: boolean) => this.snapshotsInTx(s, c, f)).immediate as never;
  }

  private prepare() {
    const db = this.db;
    return {
      getMeta: db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?"),
      setMeta: db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
      getChannel: db.prepare<[string], ChannelRow>("SELECT * FROM channels WHERE channel_id = ?"),
      insertChannel: db.prepare(
        `INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, settled, close_delay, close_requested_at, closes_at,
           finalized, chain_block, accepted, accepted_signature, spent, reserved, floor, payer_close_requested_at, close_request_signature,
           created_at, updated_at)
         VALUES (@channel_id, @payer, @payee, @token, @signer, @deposit, @settled, @close_delay, @close_requested_at, @closes_at,
           @finalized, @chain_block, @accepted, @accepted_signature, @spent, @reserved, @floor, @payer_close_requested_at, @close_request_signature,
           @created_at, @updated_at)`,
      ),
      updateChain: db.prepare(
        // settled never goes down and finalized never back (settlement raises them from receipts; a reorg uses forceChain)
        `UPDATE channels SET deposit = @deposit, settled = max(settled, @settled), close_requested_at = @close_requested_at, closes_at = @closes_at,
           finalized = max(finalized, @finalized), chain_block = @chain_block, updated_at = @updated_at
         WHERE channel_id = @channel_id AND chain_block <= @chain_block`,
      ),
      forceChain: db.prepare(
        `UPDATE channels SET deposit = @deposit, settled = @settled, close_requested_at = @close_requested_at, closes_at = @closes_at,
           finalized = @finalized, chain_block = @chain_block, updated_at = @updated_at
         WHERE channel_id = @channel_id`,
      ),
      updateAccounting: db.prepare(
        `UPDATE channels SET accepted = @accepted, accepted_signature = @accepted_signature, spent = @spent, reserved = @reserved, floor = @floor,
           updated_at = @updated_at
         WHERE channel_id = @channel_id`,
      ),
      isUsed: db.prepare<[string, string], { x: number }>("SELECT 1 AS x FROM used_vouchers WHERE channel_id = ? AND amount = ?"),
      insertUsed: db.prepare("INSERT INTO used_vouchers (channel_id, amount) VALUES (?, ?)"),
      pruneUsed: db.prepare("DELETE FROM used_vouchers WHERE channel_id = ? AND amount <= ?"),
      release: db.prepare(`UPDATE channels SET spent = ?, updated_at = ? WHERE channel_id = ?`),
      insertReservation: db.prepare("INSERT INTO reservations (channel_id, voucher, amount, created_at) VALUES (?, ?, ?, ?)"),
      getReservation: db.prepare<[string, string], { amount: string }>("SELECT amount FROM reservations WHERE channel_id = ? AND voucher = ?"),
      deleteReservation: db.prepare("DELETE FROM reservations WHERE channel_id = ? AND voucher = ?"),
      expiredReservations: db.prepare<[number], { channel_id: string; voucher: string; amount: string }>(
        // Metered reservations only: a stream's (checkpoint_at set) ends by its stream or the stream sweeper, charged.
        "SELECT channel_id, voucher, amount FROM reservations WHERE created_at < ? AND checkpoint_at IS NULL ORDER BY channel_id",
      ),
      setReservedSpent: db.prepare("UPDATE channels SET reserved = ?, spent = ?, updated_at = ? WHERE channel_id = ?"),
      ...finalizedPruneStatements(db),
      // The first request time and the first signature stay; a signature fills an empty one.
      coopClose: db.prepare(
        `UPDATE channels SET
           payer_close_requested_at = CASE WHEN payer_close_requested_at = 0 THEN @at ELSE payer_close_requested_at END,
           close_request_signature = coalesce(close_request_signature, @signature), updated_at = @updated_at
         WHERE channel_id = @channel_id AND (payer_close_requested_at = 0 OR (close_request_signature IS NULL AND @signature IS NOT NULL))`,
      ),
      getCursor: db.prepare<[string], { block: number; block_hash: string | null }>("SELECT block, block_hash FROM cursors WHERE name = ?"),
      setCursor: db.prepare(
        `INSERT INTO cursors (name, block, block_hash, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET block = excluded.block, block_hash = excluded.block_hash, updated_at = excluded.updated_at`,
      ),
      active: db.prepare<[], { channel_id: string; signer: string }>("SELECT channel_id, signer FROM channels WHERE finalized = 0"),
      unsettled: db.prepare<[number], ChannelRow>(
        `SELECT * FROM channels WHERE finalized = 0 AND spent > settled
         ORDER BY (closes_at = 0 AND payer_close_requested_at = 0), closes_at, spent DESC LIMIT ?`,
      ),
      totals: db
        .prepare<[], { n: bigint; accepted: bigint | null; spent: bigint | null; settled: bigint | null }>(
          "SELECT count(*) AS n, sum(CAST(accepted AS INTEGER)) AS accepted, sum(CAST(spent AS INTEGER)) AS spent, sum(CAST(settled AS INTEGER)) AS settled FROM channels",
        )
        .safeIntegers(true),
      maxAmounts: db.prepare<[], { a: string | null; s: string | null; t: string | null }>(
        "SELECT max(accepted) AS a, max(spent) AS s, max(settled) AS t FROM channels",
      ),
      allAmounts: db.prepare<[], { accepted: string; spent: string; settled: string; finalized: number }>(
        "SELECT accepted, spent, settled, finalized FROM channels",
      ),
      unsettledOpen: db.prepare<[], { spent: string; settled: string }>("SELECT spent, settled FROM channels WHERE finalized = 0 AND spent > settled"),
    };
  }

  private chainParams(c: ChainChannel, now: number) {
    return {
      channel_id: lower(c.channelId),
      deposit: encodeAmount(c.deposit),
      settled: encodeAmount(c.settled),
      close_requested_at: c.closeRequestedAt,
      closes_at: c.closesAt,
      finalized: c.finalized ? 1 : 0,
      chain_block: Number(c.block),
      updated_at: now,
    };
  }

  private insertNew(
    c: ChainChannel,
    acc: { accepted: bigint; signature: Hex | null; spent: bigint; reserved?: bigint; floor: bigint },
    payerClose: { at: number; signature: Hex | null },
    now: number,
  ) {
    this.st.insertChannel.run({
      ...this.chainParams(c, now),
      // addresses as the chain view gives them (checksummed); compare case-insensitively
      payer: c.payer,
      payee: c.payee,
      token: c.token,
      signer: c.signer,
      close_delay: c.closeDelay,
      accepted: encodeAmount(acc.accepted),
      accepted_signature: acc.signature,
      spent: encodeAmount(acc.spent),
      reserved: encodeAmount(acc.reserved ?? 0n),
      floor: encodeAmount(acc.floor),
      payer_close_requested_at: payerClose.at,
      close_request_signature: payerClose.signature,
      created_at: now,
    });
  }

  /**
   * One accept inside a transaction. With `batch` (group commit), a channel's row is read once per batch and its
   * accounting UPDATE and used-set prune are written once, by {@link writeHeld} at the end of the batch: later
   * accepts of the same channel in the batch work on the row as held in memory, which is exactly what the
   * transaction would read back (the used set is still written per accept, so the duplicate check sees it).
   */
  private acceptInTx(input: AcceptVoucherInput, batch?: Map<string, HeldRow>): AcceptVoucherResult {
    const id = lower(input.chain.channelId);
    const held = batch?.get(id);
    let current: StoredChannel | null;
    if (held) current = held.channel;
    else {
      const row = this.st.getChannel.get(id);
      current = row ? toChannel(row) : null;
    }
    if (current) {
      if (current.finalized) return { ok: false, code: "channel_finalized", channel: current };
      if (current.payerCloseRequestedAt !== 0) return { ok: false, code: "channel_closing", channel: current };
    }
    const v = input.amount;
    const vText = encodeAmount(v);
    const used = current ? this.st.isUsed.get(id, vText) !== undefined : false;
    const deposit = current && current.deposit > input.chain.deposit ? current.deposit : input.chain.deposit;
    const d = decideVoucher(
      { accepted: current?.accepted ?? 0n, spent: current?.spent ?? 0n, reserved: current?.reserved ?? 0n, floor: current?.floor ?? 0n, deposit },
      v,
      used,
      input.charge,
      input.window,
      input.reserve === true,
    );
    if (!d.ok) return { ok: false, code: d.code, channel: current };
    const now = Date.now();
    // The stored signature is always the one of the voucher for `accepted`.
    const signature = !current || v > current.accepted ? input.signature : current.acceptedSignature;
    if (!current) {
      this.insertNew(input.chain, { accepted: d.accepted, signature, spent: d.spent, reserved: d.reserved, floor: d.floor }, { at: 0, signature: null }, now);
    } else if (batch) {
      // written once for the batch by writeHeld
    } else {
      // Hot path: most requests carry the snapshot already stored; skip the statement when it would change nothing.
      if (chainSnapshotChanges(current, input.chain)) this.st.updateChain.run(this.chainParams(input.chain, now));
      this.st.updateAccounting.run({
        channel_id: id,
        accepted: encodeAmount(d.accepted),
        accepted_signature: signature,
        spent: encodeAmount(d.spent),
        reserved: encodeAmount(d.reserved),
        floor: encodeAmount(d.floor),
        updated_at: now,
      });
    }
    this.st.insertUsed.run(id, vText);
    if (input.reserve) this.st.insertReservation.run(id, vText, encodeAmount(input.charge), now);
    if (d.prune && !batch) this.st.pruneUsed.run(id, encodeAmount(d.floor));
    // The committed row, built here rather than read back (hot path).
    const c = input.chain;
    const chainPart =
      !current || c.block >= current.block
        ? { deposit: c.deposit, settled: c.settled, closeRequestedAt: c.closeRequestedAt, closesAt: c.closesAt, finalized: c.finalized, block: c.block }
        : {};
    const channel: StoredChannel = current
      ? { ...current, ...chainPart, accepted: d.accepted, acceptedSignature: signature, spent: d.spent, reserved: d.reserved, floor: d.floor, updatedAt: now }
      : {
          ...c,
          channelId: id as Hex,
          accepted: d.accepted,
          acceptedSignature: signature,
          spent: d.spent,
          reserved: d.reserved,
          floor: d.floor,
          payerCloseRequestedAt: 0,
          closeRequestSignature: null,
          createdAt: now,
          updatedAt: now,
        };
    if (batch) {
      const h: HeldRow = held ?? { channel, chain: null, floorAtRead: current ? current.floor : d.floor, dirty: false };
      if (current) {
        h.dirty = true;
        if (chainSnapshotChanges(current, input.chain)) h.chain = input.chain;
      }
      h.channel = channel;
      batch.set(id, h);
    }
    return { ok: true, channel };
  }

  /** Accepts of one group commit, in order, in the caller's transaction; then each touched row written once. */
  private acceptBatchInTx(inputs: readonly AcceptVoucherInput[]): AcceptVoucherResult[] {
    const batch = new Map<string, HeldRow>();
    const results = inputs.map((input) => this.acceptInTx(input, batch));
    for (const [id, h] of batch) this.writeHeld(id, h);
    return results;
  }

  private writeHeld(id: string, h: HeldRow): void {
    if (!h.dirty) return;
    const c = h.channel;
    if (h.chain) this.st.updateChain.run(this.chainParams(h.chain, c.updatedAt));
    this.st.updateAccounting.run({
      channel_id: id,
      accepted: encodeAmount(c.accepted),
      accepted_signature: c.acceptedSignature,
      spent: encodeAmount(c.spent),
      reserved: encodeAmount(c.reserved),
      floor: encodeAmount(c.floor),
      updated_at: c.updatedAt,
    });
    if (c.floor > h.floorAtRead) this.st.pruneUsed.run(id, encodeAmount(c.floor));
  }

  private snapshotsInTx(snapshots: readonly ChainChannel[], cursor?: EventCursor, force = false) {
    const now = Date.now();
    const stmt = force ? this.st.forceChain : this.st.updateChain;
    for (const s of snapshots) {
      stmt.run(this.chainParams(s, now));
      if (s.finalized) pruneFinalized(this.st, lower(s.channelId), now);
    }
    if (cursor) this.st.setCursor.run("escrow", Number(cursor.block), cursor.hash ?? null, now);
  }

  private check() {
    if (this.closed) throw new Error("store is closed");
  }

  async bind(b: StoreBinding): Promise<void> {
    this.check();
    const want: Record<string, string> = {
      chain_id: String(b.chainId),
      escrow: lower(b.escrow),
      token: lower(b.token),
      payee: lower(b.payee),
      genesis_hash: lower(b.genesisHash),
    };
    this.db
      .transaction(() => {
        const mismatches: string[] = [];
        for (const [k, v] of Object.entries(want)) {
          const have = this.st.getMeta.get(k)?.value;
          if (have === undefined) this.st.setMeta.run(k, v);
          else if (have !== v) mismatches.push(`${k}: store has ${have}, server has ${v}`);
        }
        if (mismatches.length) {
          throw new StoreBindingError(
            `the database ${this.filename} belongs to another deployment (${mismatches.join("; ")}); use another DATABASE_URL`,
          );
        }
      })
      .immediate();
  }

  async getChannel(channelId: Hex): Promise<StoredChannel | null> {
    this.check();
    const row = this.st.getChannel.get(lower(channelId));
    return row ? toChannel(row) : null;
  }

  /** Accounting transactions committed (or attempted) so far; with group commit, fewer than accepts under load. */
  get acceptTransactions(): number {
    return this.accepts.transactions;
  }

  async acceptVoucher(input: AcceptVoucherInput): Promise<AcceptVoucherResult> {
    this.check();
    return this.accepts.submit(input);
  }

  async releaseCharge(channelId: Hex, amount: bigint): Promise<StoredChannel | null> {
    this.check();
    if (amount < 0n) throw new RangeError("release amount must be >= 0");
    const id = lower(channelId);
    return this.db
      .transaction(() => {
        const row = this.st.getChannel.get(id);
        if (!row) return null;
        const spent = decodeAmount(row.spent);
        const next = spent > amount ? spent - amount : 0n;
        this.st.release.run(encodeAmount(next), Date.now(), id);
        return toChannel(this.st.getChannel.get(id)!);
      })
      .immediate();
  }

  async finishReservation(channelId: Hex, voucher: bigint, charged: bigint): Promise<{ finished: boolean; channel: StoredChannel | null }> {
    this.check();
    if (charged < 0n) throw new RangeError("a charge is >= 0");
    const id = lower(channelId);
    const v = encodeAmount(voucher);
    return this.db
      .transaction(() => {
        const row = this.st.getChannel.get(id);
        const r = row ? this.st.getReservation.get(id, v) : undefined;
        if (!row || !r) return { finished: false, channel: row ? toChannel(row) : null };
        const amount = decodeAmount(r.amount);
        if (charged > amount) throw new RangeError(`charge ${charged} is above the reservation ${amount}`);
        const reserved = decodeAmount(row.reserved);
        const spent = decodeAmount(row.spent) + charged;
        this.st.deleteReservation.run(id, v);
        this.st.setReservedSpent.run(encodeAmount(reserved > amount ? reserved - amount : 0n), encodeAmount(spent), Date.now(), id);
        return { finished: true, channel: toChannel(this.st.getChannel.get(id)!) };
      })
      .immediate();
  }

  async expireReservations(before: number): Promise<number> {
    this.check();
    return this.db
      .transaction(() => {
        const now = Date.now();
        const rows = this.st.expiredReservations.all(before);
        for (const r of rows) {
          const row = this.st.getChannel.get(r.channel_id);
          this.st.deleteReservation.run(r.channel_id, r.voucher);
          if (!row) continue;
          const reserved = decodeAmount(row.reserved);
          const amount = decodeAmount(r.amount);
          this.st.setReservedSpent.run(encodeAmount(reserved > amount ? reserved - amount : 0n), row.spent, now, r.channel_id);
        }
        return rows.length;
      })
      .immediate();
  }

  async applyChainSnapshots(snapshots: readonly ChainChannel[], cursor?: EventCursor, options?: { force?: boolean }): Promise<void> {
    this.check();
    this.snapshotsTx(snapshots, cursor, options?.force === true);
  }

  async requestCooperativeClose(chain: ChainChannel, at: number, signature?: Hex): Promise<StoredChannel> {
    this.check();
    const id = lower(chain.channelId);
    const sig = signature ? (lower(signature) as Hex) : null;
    return this.db
      .transaction(() => {
        const now = Date.now();
        if (!this.st.getChannel.get(id)) {
          this.insertNew(chain, { accepted: 0n, signature: null, spent: 0n, floor: 0n }, { at, signature: sig }, now);
        } else {
          this.st.updateChain.run(this.chainParams(chain, now));
          this.st.coopClose.run({ at, signature: sig, updated_at: now, channel_id: id });
        }
        return toChannel(this.st.getChannel.get(id)!);
      })
      .immediate();
  }

  async getCursor(): Promise<EventCursor | null> {
    this.check();
    const r = this.st.getCursor.get("escrow");
    return r ? { block: BigInt(r.block), hash: (r.block_hash ?? undefined) as Hex | undefined } : null;
  }

  async activeChannels(): Promise<ChannelRef[]> {
    this.check();
    return this.st.active.all().map((r) => ({ channelId: r.channel_id as Hex, signer: r.signer as Address }));
  }

  async listUnsettled(limit: number): Promise<StoredChannel[]> {
    this.check();
    return this.st.unsettled.all(limit).map(toChannel);
  }

  async totals(): Promise<StoreTotals> {
    this.check();
    let unsettled = 0n;
    for (const r of this.st.unsettledOpen.iterate()) unsettled += decodeAmount(r.spent) - decodeAmount(r.settled);
    // SQLite sums exactly in 64-bit integers, but CAST saturates above 2^63: sum in SQL only when every amount is
    // small enough for the total not to overflow (the usual case), otherwise here with bigints.
    const big = this.st.maxAmounts.get()!;
    const limit = 1n << 52n;
    if (decodeAmount(big.a ?? "0") < limit && decodeAmount(big.s ?? "0") < limit && decodeAmount(big.t ?? "0") < limit) {
      const t = this.st.totals.get()!;
      return { channels: Number(t.n), accepted: t.accepted ?? 0n, spent: t.spent ?? 0n, settled: t.settled ?? 0n, unsettled };
    }
    let accepted = 0n;
    let spent = 0n;
    let settled = 0n;
    let n = 0;
    for (const r of this.st.allAmounts.iterate()) {
      n++;
      accepted += decodeAmount(r.accepted);
      spent += decodeAmount(r.spent);
      settled += decodeAmount(r.settled);
    }
    return { channels: n, accepted, spent, settled, unsettled };
  }

  async ping(): Promise<void> {
    this.check();
    this.st.setMeta.run("health_probe", String(Date.now()));
  }

  private settlement: SettlementStore | null = null;
  /** The settlement records and the settler lease, in this database (`../settlement-types.ts`). */
  settlementStore(): SettlementStore {
    this.check();
    return (this.settlement ??= new SqliteSettlementStore(this));
  }

  private exact: ExactStore | null = null;
  /** The `exact` payments and sender nonces, in this database (`../exact-types.ts`). */
  exactStore(): ExactStore {
    this.check();
    return (this.exact ??= new SqliteExactStore(this));
  }

  private opens: GaslessOpenStore | null = null;
  /** Gasless opens (docs/protocol.md § 5.9), in this database, sharing the `exact` sender nonces (`../open-types.ts`). */
  gaslessOpenStore(): GaslessOpenStore {
    this.check();
    return (this.opens ??= new SqliteGaslessOpenStore(this));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.accepts.flush(); // callers already queued get their answer before the connection goes
    this.closed = true;
    this.db.close();
  }
}
