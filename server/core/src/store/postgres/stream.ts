/**
 * {@link StreamStore} on PostgreSQL, next to the channel store (same pool; columns from migration 220). A top-up takes
 * the channel's row lock first, then the reservation's (the order of accept, finish and expiry), and is decided by the
 * same `decideVoucher` as every accept; a refusal rolls back (nothing written). The sweeper locks channels in id order.
 */
import type pg from "pg";
import type { Hex } from "viem";
import { decideVoucher } from "../../payments/accounting";
import { pgRowToChannel, type PgChannelRow } from "./rows";
import type { StreamCheckpoint, StreamReservation, StreamStore, StreamTopUpInput, StreamTopUpResult } from "../stream-types";

const lower = (s: string) => s.toLowerCase();

/** What the stream store needs of the PostgreSQL channel store. */
export interface PgStreamHost {
  readonly pool: pg.Pool;
  check(): void;
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  /**
   * Tells the channel store these rows are being changed here (its accepts then lock them rather than guess); said
   * before the transaction and again after it.
   */
  forgetChannels?(ids: Iterable<string>): void;
}

interface ResRow {
  channel_id: string;
  voucher: string;
  amount: string;
  charged: string | null;
  checkpoint_at: string | null;
  lease_ms: string | null;
}

function toReservation(r: ResRow): StreamReservation {
  return {
    channelId: r.channel_id as Hex,
    voucher: BigInt(r.voucher),
    amount: BigInt(r.amount),
    charged: BigInt(r.charged ?? "0"),
    checkpointAt: Number(r.checkpoint_at ?? 0),
    leaseMs: Number(r.lease_ms ?? 0),
  };
}

/** A refusal inside the transaction: thrown to roll it back, caught outside. */
class Refused extends Error {
  constructor(readonly result: StreamTopUpResult) {
    super("refused");
  }
}

/** Stream reservations in the PostgreSQL store's database. */
export class PgStreamStore implements StreamStore {
  readonly kind = "postgres";

  constructor(private readonly store: PgStreamHost) {}

  async checkpoint(c: StreamCheckpoint): Promise<boolean> {
    this.store.check();
    const r = await this.store.pool.query(
      `UPDATE reservations SET charged = GREATEST(COALESCE(charged, 0), $3), checkpoint_at = $4, lease_ms = $5
       WHERE channel_id = $1 AND voucher = $2 AND amount >= $3`,
      [lower(c.channelId), c.voucher.toString(), c.charged.toString(), c.at, c.leaseMs],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async topUp(i: StreamTopUpInput): Promise<StreamTopUpResult> {
    const id = lower(i.chain.channelId);
    this.store.forgetChannels?.([id]);
    try {
      return await this.store.transaction(async (c) => {
        const row = (await c.query<PgChannelRow>("SELECT * FROM channels WHERE channel_id = $1 FOR UPDATE", [id])).rows[0];
        if (!row) throw new Refused({ ok: false, code: "stream_not_found", channel: null });
        const current = pgRowToChannel(row);
        if (current.finalized) throw new Refused({ ok: false, code: "channel_finalized", channel: current });
        if (current.payerCloseRequestedAt !== 0) throw new Refused({ ok: false, code: "channel_closing", channel: current });
        const res = (await c.query<ResRow>("SELECT * FROM reservations WHERE channel_id = $1 AND voucher = $2 FOR UPDATE", [id, i.voucher.toString()])).rows[0];
        if (!res || res.checkpoint_at === null) throw new Refused({ ok: false, code: "stream_not_found", channel: current });
        const used = ((await c.query("SELECT 1 FROM used_vouchers WHERE channel_id = $1 AND amount = $2", [id, i.amount.toString()])).rowCount ?? 0) > 0;
        const deposit = current.deposit > i.chain.deposit ? current.deposit : i.chain.deposit;
        const d = decideVoucher({ accepted: current.accepted, spent: current.spent, reserved: current.reserved, floor: current.floor, deposit }, i.amount, used, i.topUp, i.window, true);
        if (!d.ok) throw new Refused({ ok: false, code: d.code, channel: current });
        const now = Date.now();
        const sig = i.amount > current.accepted ? i.signature : current.acceptedSignature;
        const ch = i.chain;
        const upd = await c.query<PgChannelRow>(
          `UPDATE channels SET accepted = $2, accepted_signature = $3, reserved = $4, floor = $5, updated_at = $6,
             deposit = CASE WHEN $11::bigint > chain_block THEN $7::numeric ELSE deposit END,
             settled = CASE WHEN $11::bigint > chain_block THEN GREATEST(settled, $8::numeric) ELSE settled END,
             close_requested_at = CASE WHEN $11::bigint > chain_block THEN $9::bigint ELSE close_requested_at END,
             closes_at = CASE WHEN $11::bigint > chain_block THEN $10::bigint ELSE closes_at END,
             finalized = CASE WHEN $11::bigint > chain_block THEN (finalized OR $12::boolean) ELSE finalized END,
             chain_block = GREATEST(chain_block, $11::bigint)
           WHERE channel_id = $1 RETURNING *`,
          [id, d.accepted.toString(), sig, d.reserved.toString(), d.floor.toString(), now, ch.deposit.toString(), ch.settled.toString(), ch.closeRequestedAt, ch.closesAt, ch.block.toString(), ch.finalized],
        );
        await c.query("INSERT INTO used_vouchers (channel_id, amount) VALUES ($1, $2)", [id, i.amount.toString()]);
        if (d.prune) await c.query("DELETE FROM used_vouchers WHERE channel_id = $1 AND amount <= $2", [id, d.floor.toString()]);
        const amount = BigInt(res.amount) + i.topUp;
        const charged = i.charged > amount ? amount : i.charged;
        await c.query(
          `UPDATE reservations SET amount = $3, charged = GREATEST(COALESCE(charged, 0), $4), checkpoint_at = $5, lease_ms = $6
           WHERE channel_id = $1 AND voucher = $2`,
          [id, i.voucher.toString(), amount.toString(), charged.toString(), i.at, i.leaseMs],
        );
        return { ok: true, channel: pgRowToChannel(upd.rows[0]), reserved: amount } as StreamTopUpResult;
      });
    } catch (e) {
      if (e instanceof Refused) return e.result;
      throw e;
    } finally {
      this.store.forgetChannels?.([id]);
    }
  }

  async sweep(now: number): Promise<StreamReservation[]> {
    this.store.check();
    const due = await this.store.pool.query<{ channel_id: string }>(
      "SELECT DISTINCT channel_id FROM reservations WHERE checkpoint_at IS NOT NULL AND checkpoint_at + lease_ms < $1 ORDER BY channel_id",
      [now],
    );
    if (due.rows.length === 0) return [];
    const ids = due.rows.map((r) => r.channel_id);
    this.store.forgetChannels?.(ids);
    try {
      return await this.sweepLocked(ids, now);
    } finally {
      this.store.forgetChannels?.(ids);
    }
  }

  /** The sweep's transaction on channels `ids` (see {@link sweep}). */
  private sweepLocked(ids: string[], now: number): Promise<StreamReservation[]> {
    return this.store.transaction(async (c) => {
      await c.query("SELECT channel_id FROM channels WHERE channel_id = ANY($1::text[]) ORDER BY channel_id FOR UPDATE", [ids]);
      const gone = await c.query<ResRow>(
        "DELETE FROM reservations WHERE channel_id = ANY($1::text[]) AND checkpoint_at IS NOT NULL AND checkpoint_at + lease_ms < $2 RETURNING *",
        [ids, now],
      );
      const t = Date.now();
      for (const r of gone.rows) {
        const charged = BigInt(r.charged ?? "0") < BigInt(r.amount) ? BigInt(r.charged ?? "0") : BigInt(r.amount);
        await c.query("UPDATE channels SET reserved = GREATEST(reserved - $2::numeric, 0), spent = spent + $3::numeric, updated_at = $4 WHERE channel_id = $1", [
          r.channel_id,
          r.amount,
          charged.toString(),
          t,
        ]);
      }
      return gone.rows.map(toReservation);
    });
  }

  async close(): Promise<void> {
    // nothing of its own: the channel store's pool
  }

  async list(): Promise<StreamReservation[]> {
    this.store.check();
    const r = await this.store.pool.query<ResRow>("SELECT * FROM reservations WHERE checkpoint_at IS NOT NULL ORDER BY channel_id, voucher");
    return r.rows.map(toReservation);
  }
}
