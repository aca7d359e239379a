/**
 * {@link GaslessOpenStore} on a {@link SqliteStore}'s connection. The record and its sender nonce (from
 * `exact_sender_nonces`, the allocator of `exact` transfers) are written in one `BEGIN IMMEDIATE` transaction:
 * processes sharing the file serialise on it, and transfers and opens of one sender never take one nonce.
 */
import type Database from "better-sqlite3";
import type { Address, Hex } from "viem";
import type { GaslessOpen, GaslessOpenOutcome, GaslessOpenStatus, GaslessOpenStore, NewGaslessOpen, RecordOpenResult } from "../open-types";
import { toGaslessOpen, type GaslessOpenRow as Row } from "../open-row";
import { EXACT_MIGRATIONS } from "./migrations/exact";
import { OPEN_MIGRATIONS } from "./migrations/open";
import { migrateSqlite } from "./migrate";

const lower = (s: string) => s.toLowerCase();

/** Gasless opens in the SQLite store's database; applies its migrations (and the `exact` ones it needs) when created. */
export class SqliteGaslessOpenStore implements GaslessOpenStore {
  readonly kind = "sqlite";
  private readonly db: Database.Database;
  private readonly st;
  private readonly recordTx: (o: NewGaslessOpen) => RecordOpenResult;

  constructor(store: { readonly db: Database.Database }) {
    this.db = store.db;
    migrateSqlite(this.db, EXACT_MIGRATIONS);
    migrateSqlite(this.db, OPEN_MIGRATIONS);
    const db = this.db;
    this.st = {
      byChannel: db.prepare<[string], Row>("SELECT * FROM gasless_opens WHERE channel_id = ?"),
      byId: db.prepare<[number], Row>("SELECT * FROM gasless_opens WHERE id = ?"),
      nextNonce: db.prepare<[string], { next_nonce: number }>("SELECT next_nonce FROM exact_sender_nonces WHERE sender = ?"),
      setNonce: db.prepare("INSERT INTO exact_sender_nonces (sender, next_nonce) VALUES (?, ?) ON CONFLICT(sender) DO UPDATE SET next_nonce = excluded.next_nonce"),
      insert: db.prepare(
        `INSERT INTO gasless_opens (channel_id, payer, payee, token, signer, amount, close_delay, salt, valid_after, valid_before, signature, fee,
           sender, sender_nonce, status, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)`,
      ),
      setTx: db.prepare("UPDATE gasless_opens SET tx_hash = ?, raw_tx = ?, updated_at = ? WHERE id = ? AND tx_hash IS NULL"),
      submitted: db.prepare("UPDATE gasless_opens SET status = 'submitted', updated_at = ? WHERE id = ? AND status = 'pending'"),
      finish: db.prepare(
        "UPDATE gasless_opens SET status = ?, block_number = ?, gas_used = ?, error = ?, updated_at = ? WHERE id = ? AND status IN ('pending', 'submitted')",
      ),
      countPayer: db.prepare<[string, string, number], { n: number }>(
        "SELECT count(*) AS n FROM gasless_opens WHERE payer = ? AND channel_id <> ? AND (status IN ('pending', 'submitted') OR created_at >= ?)",
      ),
      open: db.prepare<[number, number], Row>("SELECT * FROM gasless_opens WHERE status IN ('pending', 'submitted') AND updated_at < ? ORDER BY id LIMIT ?"),
      counts: db.prepare<[], { status: string; n: number }>("SELECT status, count(*) AS n FROM gasless_opens GROUP BY status"),
    };
    this.recordTx = this.db.transaction((o: NewGaslessOpen): RecordOpenResult => {
      const existing = this.st.byChannel.get(lower(o.channelId));
      if (existing) return { ok: false, existing: toGaslessOpen(existing) };
      const sender = lower(o.sender);
      const stored = this.st.nextNonce.get(sender)?.next_nonce ?? 0;
      const senderNonce = Math.max(stored, o.chainNonce);
      this.st.setNonce.run(sender, senderNonce + 1);
      const now = Date.now();
      const info = this.st.insert.run(
        lower(o.channelId),
        lower(o.payer),
        lower(o.payee),
        lower(o.token),
        lower(o.signer),
        o.amount.toString(),
        o.closeDelay,
        lower(o.salt),
        o.validAfter.toString(),
        o.validBefore.toString(),
        lower(o.signature),
        o.fee.toString(),
        sender,
        senderNonce,
        now,
        now,
      );
      return { ok: true, open: toGaslessOpen(this.st.byId.get(Number(info.lastInsertRowid))!) };
    }).immediate as never;
  }

  async recordOpen(o: NewGaslessOpen): Promise<RecordOpenResult> {
    return this.recordTx(o);
  }

  async setOpenTransaction(id: number, txHash: Hex, rawTx: Hex): Promise<{ txHash: Hex; rawTx: Hex }> {
    this.st.setTx.run(lower(txHash), rawTx, Date.now(), id);
    const r = this.st.byId.get(id)!;
    return { txHash: r.tx_hash as Hex, rawTx: r.raw_tx as Hex };
  }

  async markOpenSubmitted(id: number): Promise<void> {
    this.st.submitted.run(Date.now(), id);
  }

  async finishOpen(id: number, o: GaslessOpenOutcome): Promise<GaslessOpen | null> {
    this.st.finish.run(o.status, o.blockNumber === undefined ? null : Number(o.blockNumber), o.gasUsed?.toString() ?? null, o.error ?? null, Date.now(), id);
    const row = this.st.byId.get(id);
    return row ? toGaslessOpen(row) : null;
  }

  async getOpen(channelId: Hex): Promise<GaslessOpen | null> {
    const r = this.st.byChannel.get(lower(channelId));
    return r ? toGaslessOpen(r) : null;
  }

  async countPayerOpens(payer: Address, since: number, exceptChannelId: Hex): Promise<number> {
    return this.st.countPayer.get(lower(payer), lower(exceptChannelId), since)!.n;
  }

  async openOpens(before: number, limit: number): Promise<GaslessOpen[]> {
    return this.st.open.all(before, limit).map(toGaslessOpen);
  }

  async openCounts(): Promise<Record<GaslessOpenStatus, number>> {
    const out: Record<GaslessOpenStatus, number> = { pending: 0, submitted: 0, confirmed: 0, failed: 0 };
    for (const r of this.st.counts.all()) out[r.status as GaslessOpenStatus] = r.n;
    return out;
  }
}
