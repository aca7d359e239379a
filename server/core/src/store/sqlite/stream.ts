/**
 * {@link StreamStore} on a {@link SqliteStore}'s connection (docs/protocol.md § 5.10). Each method is one
 * `BEGIN IMMEDIATE` transaction on the file: processes sharing it serialise, and a top-up is decided on the channel's
 * row as it is inside the transaction, by the same `decideVoucher` as every accept.
 *
 * Checkpoints (one UPDATE of the stream's own row, every 1,000 units or second of every live stream) go through a
 * second connection with `synchronous = NORMAL`: in WAL mode such a commit survives a crash of the process (what the
 * lease and sweeper rely on) without an fsync of its own; the store's next FULL commit syncs it with everything before.
 * Losing the last checkpoints to a power cut can only lower a dead stream's charge, never raise it.
 */
import type Database from "better-sqlite3";
import type { Hex } from "viem";
import { decideVoucher } from "../../payments/accounting";
import { loadSqliteDriver } from "./driver";
import { decodeAmount, encodeAmount } from "../amounts";
import type { StoredChannel } from "../types";
import type { StreamCheckpoint, StreamReservation, StreamStore, StreamTopUpInput, StreamTopUpResult } from "../stream-types";

const lower = (s: string) => s.toLowerCase();

interface ResRow {
  channel_id: string;
  voucher: string;
  amount: string;
  charged: string | null;
  checkpoint_at: number | null;
  lease_ms: number | null;
}

function toReservation(r: ResRow): StreamReservation {
  return {
    channelId: r.channel_id as Hex,
    voucher: decodeAmount(r.voucher),
    amount: decodeAmount(r.amount),
    charged: decodeAmount(r.charged ?? "0"),
    checkpointAt: r.checkpoint_at ?? 0,
    leaseMs: r.lease_ms ?? 0,
  };
}

/** The SQLite store's stream reservations; the migration (220) is applied with the store's own. */
export class SqliteStreamStore implements StreamStore {
  readonly kind = "sqlite";
  private readonly db: Database.Database;
  /** The checkpoints' connection (NORMAL), or the store's own for an in-memory database. */
  private readonly fast: Database.Database;
  private readonly st;

  constructor(private readonly channels: { readonly db: Database.Database; readonly filename?: string; getChannel(id: Hex): Promise<StoredChannel | null> }) {
    this.db = channels.db;
    const db = this.db;
    const file = channels.filename;
    if (file && file !== ":memory:" && !db.memory) {
      this.fast = new (loadSqliteDriver())(file);
      this.fast.pragma("busy_timeout = 5000");
      this.fast.pragma("synchronous = NORMAL");
    } else this.fast = db;
    this.st = {
      channel: db.prepare<[string], Record<string, unknown>>(
        "SELECT accepted, accepted_signature, spent, reserved, floor, deposit, finalized, payer_close_requested_at, chain_block FROM channels WHERE channel_id = ?",
      ),
      reservation: db.prepare<[string, string], ResRow>("SELECT * FROM reservations WHERE channel_id = ? AND voucher = ?"),
      checkpoint: this.fast.prepare(
        `UPDATE reservations SET charged = CASE WHEN charged IS NULL OR charged < @charged THEN @charged ELSE charged END,
           checkpoint_at = @at, lease_ms = @lease WHERE channel_id = @id AND voucher = @voucher AND amount >= @charged`,
      ),
      isUsed: db.prepare<[string, string], { x: number }>("SELECT 1 AS x FROM used_vouchers WHERE channel_id = ? AND amount = ?"),
      insertUsed: db.prepare("INSERT INTO used_vouchers (channel_id, amount) VALUES (?, ?)"),
      pruneUsed: db.prepare("DELETE FROM used_vouchers WHERE channel_id = ? AND amount <= ?"),
      accounting: db.prepare(
        "UPDATE channels SET accepted = @accepted, accepted_signature = @sig, reserved = @reserved, floor = @floor, updated_at = @now WHERE channel_id = @id",
      ),
      // The snapshot the voucher was decided on, when newer than the stored one (the rule of the store's updateChain).
      chain: db.prepare(
        `UPDATE channels SET deposit = @deposit, settled = max(settled, @settled), close_requested_at = @cra, closes_at = @ca,
           finalized = max(finalized, @fin), chain_block = @block WHERE channel_id = @id AND chain_block < @block`,
      ),
      grow: db.prepare(
        `UPDATE reservations SET amount = @amount, charged = CASE WHEN charged IS NULL OR charged < @charged THEN @charged ELSE charged END,
           checkpoint_at = @at, lease_ms = @lease WHERE channel_id = @id AND voucher = @voucher`,
      ),
      expired: db.prepare<[number], ResRow>("SELECT * FROM reservations WHERE checkpoint_at IS NOT NULL AND checkpoint_at + lease_ms < ? ORDER BY channel_id"),
      deleteRes: db.prepare("DELETE FROM reservations WHERE channel_id = ? AND voucher = ?"),
      finish: db.prepare("UPDATE channels SET reserved = ?, spent = ?, updated_at = ? WHERE channel_id = ?"),
      channelSums: db.prepare<[string], { reserved: string; spent: string }>("SELECT reserved, spent FROM channels WHERE channel_id = ?"),
      list: db.prepare<[], ResRow>("SELECT * FROM reservations WHERE checkpoint_at IS NOT NULL ORDER BY channel_id, voucher"),
    };
  }

  async checkpoint(c: StreamCheckpoint): Promise<boolean> {
    const r = this.st.checkpoint.run({ id: lower(c.channelId), voucher: encodeAmount(c.voucher), charged: encodeAmount(c.charged), at: c.at, lease: c.leaseMs });
    return r.changes > 0;
  }

  async topUp(i: StreamTopUpInput): Promise<StreamTopUpResult> {
    const id = lower(i.chain.channelId);
    const key = encodeAmount(i.voucher);
    const out = this.db
      .transaction((): StreamTopUpResult | { ok: true; reserved: bigint } => {
        const row = this.st.channel.get(id);
        if (!row) return { ok: false, code: "stream_not_found", channel: null };
        if (row.finalized) return { ok: false, code: "channel_finalized", channel: null };
        if (row.payer_close_requested_at) return { ok: false, code: "channel_closing", channel: null };
        const res = this.st.reservation.get(id, key);
        if (!res || res.checkpoint_at === null) return { ok: false, code: "stream_not_found", channel: null };
        const vText = encodeAmount(i.amount);
        const used = this.st.isUsed.get(id, vText) !== undefined;
        const stored = { accepted: decodeAmount(row.accepted as string), spent: decodeAmount(row.spent as string), reserved: decodeAmount(row.reserved as string), floor: decodeAmount(row.floor as string) };
        const storedDeposit = decodeAmount(row.deposit as string);
        const deposit = storedDeposit > i.chain.deposit ? storedDeposit : i.chain.deposit;
        const d = decideVoucher({ ...stored, deposit }, i.amount, used, i.topUp, i.window, true);
        if (!d.ok) return { ok: false, code: d.code, channel: null };
        const now = Date.now();
        this.st.accounting.run({
          id,
          accepted: encodeAmount(d.accepted),
          sig: i.amount > stored.accepted ? i.signature : (row.accepted_signature as string | null),
          reserved: encodeAmount(d.reserved),
          floor: encodeAmount(d.floor),
          now,
        });
        const c = i.chain;
        this.st.chain.run({ id, deposit: encodeAmount(c.deposit), settled: encodeAmount(c.settled), cra: c.closeRequestedAt, ca: c.closesAt, fin: c.finalized ? 1 : 0, block: Number(c.block) });
        this.st.insertUsed.run(id, vText);
        if (d.prune) this.st.pruneUsed.run(id, encodeAmount(d.floor));
        const amount = decodeAmount(res.amount) + i.topUp;
        const charged = i.charged > amount ? amount : i.charged;
        this.st.grow.run({ id, voucher: key, amount: encodeAmount(amount), charged: encodeAmount(charged), at: i.at, lease: i.leaseMs });
        return { ok: true, reserved: amount };
      })
      .immediate();
    const channel = await this.channels.getChannel(id as Hex);
    if (!out.ok) return { ...out, channel };
    return { ok: true, channel: channel!, reserved: out.reserved };
  }

  async sweep(now: number): Promise<StreamReservation[]> {
    return this.db
      .transaction(() => {
        const rows = this.st.expired.all(now);
        const t = Date.now();
        for (const r of rows) {
          this.st.deleteRes.run(r.channel_id, r.voucher);
          const c = this.st.channelSums.get(r.channel_id);
          if (!c) continue;
          const amount = decodeAmount(r.amount);
          const charged = decodeAmount(r.charged ?? "0");
          const reserved = decodeAmount(c.reserved);
          this.st.finish.run(encodeAmount(reserved > amount ? reserved - amount : 0n), encodeAmount(decodeAmount(c.spent) + (charged < amount ? charged : amount)), t, r.channel_id);
        }
        return rows.map(toReservation);
      })
      .immediate();
  }

  async list(): Promise<StreamReservation[]> {
    return this.st.list.all().map(toReservation);
  }

  async close(): Promise<void> {
    if (this.fast !== this.db && this.fast.open) this.fast.close();
  }
}
