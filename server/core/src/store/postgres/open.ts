/**
 * {@link GaslessOpenStore} on PostgreSQL, next to the channel store (same pool; table from migration 210). The sender
 * nonce is allocated under the row lock of the sender's `exact_sender_nonces` row (the allocator `exact` transfers
 * use), in the transaction that inserts the open: replicas and schemes sharing one sender key never take one nonce.
 */
import type pg from "pg";
import type { Address, Hex } from "viem";
import type { GaslessOpen, GaslessOpenOutcome, GaslessOpenStatus, GaslessOpenStore, NewGaslessOpen, RecordOpenResult } from "../open-types";
import { toGaslessOpen, type GaslessOpenRow } from "../open-row";
import type { PgExactHost } from "./exact";

const lower = (s: string) => s.toLowerCase();

/** Gasless opens in the PostgreSQL store's database; get it with `store.gaslessOpenStore()`. */
export class PgGaslessOpenStore implements GaslessOpenStore {
  readonly kind = "postgres";

  constructor(private readonly store: PgExactHost) {}

  private async query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    this.store.check();
    return this.store.pool.query<R>(sql, params);
  }

  async recordOpen(o: NewGaslessOpen): Promise<RecordOpenResult> {
    const id = lower(o.channelId);
    const sender = lower(o.sender);
    return this.store.transaction(async (c) => {
      const seen = await c.query<GaslessOpenRow>("SELECT * FROM gasless_opens WHERE channel_id = $1", [id]);
      if (seen.rows[0]) return { ok: false, existing: toGaslessOpen(seen.rows[0]) } as RecordOpenResult;
      // The sender's row lock serialises nonce allocation across replicas and with `exact` transfers.
      await c.query("INSERT INTO exact_sender_nonces (sender, next_nonce) VALUES ($1, 0) ON CONFLICT (sender) DO NOTHING", [sender]);
      const stored = Number((await c.query<{ next_nonce: string }>("SELECT next_nonce FROM exact_sender_nonces WHERE sender = $1 FOR UPDATE", [sender])).rows[0].next_nonce);
      const senderNonce = Math.max(stored, o.chainNonce);
      const now = Date.now();
      const ins = await c.query<GaslessOpenRow>(
        `INSERT INTO gasless_opens (channel_id, payer, payee, token, signer, amount, close_delay, salt, valid_after, valid_before, signature, fee,
           sender, sender_nonce, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pending', $15, $15)
         ON CONFLICT (channel_id) DO NOTHING RETURNING *`,
        [
          id,
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
        ],
      );
      if (!ins.rows[0]) {
        // A concurrent insert of the same channel's open committed first.
        const again = await c.query<GaslessOpenRow>("SELECT * FROM gasless_opens WHERE channel_id = $1", [id]);
        return { ok: false, existing: toGaslessOpen(again.rows[0]) } as RecordOpenResult;
      }
      await c.query("UPDATE exact_sender_nonces SET next_nonce = $2 WHERE sender = $1", [sender, senderNonce + 1]);
      return { ok: true, open: toGaslessOpen(ins.rows[0]) } as RecordOpenResult;
    });
  }

  async setOpenTransaction(id: number, txHash: Hex, rawTx: Hex): Promise<{ txHash: Hex; rawTx: Hex }> {
    await this.query("UPDATE gasless_opens SET tx_hash = $2, raw_tx = $3, updated_at = $4 WHERE id = $1 AND tx_hash IS NULL", [id, lower(txHash), rawTx, Date.now()]);
    const r = (await this.query<{ tx_hash: string; raw_tx: string }>("SELECT tx_hash, raw_tx FROM gasless_opens WHERE id = $1", [id])).rows[0];
    return { txHash: r.tx_hash as Hex, rawTx: r.raw_tx as Hex };
  }

  async markOpenSubmitted(id: number): Promise<void> {
    await this.query("UPDATE gasless_opens SET status = 'submitted', updated_at = $2 WHERE id = $1 AND status = 'pending'", [id, Date.now()]);
  }

  async finishOpen(id: number, o: GaslessOpenOutcome): Promise<GaslessOpen | null> {
    await this.query(
      "UPDATE gasless_opens SET status = $2, block_number = $3, gas_used = $4, error = $5, updated_at = $6 WHERE id = $1 AND status IN ('pending', 'submitted')",
      [id, o.status, o.blockNumber?.toString() ?? null, o.gasUsed?.toString() ?? null, o.error ?? null, Date.now()],
    );
    const r = await this.query<GaslessOpenRow>("SELECT * FROM gasless_opens WHERE id = $1", [id]);
    return r.rows[0] ? toGaslessOpen(r.rows[0]) : null;
  }

  async getOpen(channelId: Hex): Promise<GaslessOpen | null> {
    const r = await this.query<GaslessOpenRow>("SELECT * FROM gasless_opens WHERE channel_id = $1", [lower(channelId)]);
    return r.rows[0] ? toGaslessOpen(r.rows[0]) : null;
  }

  async countPayerOpens(payer: Address, since: number, exceptChannelId: Hex): Promise<number> {
    const r = await this.query<{ n: string }>(
      "SELECT count(*) AS n FROM gasless_opens WHERE payer = $1 AND channel_id <> $2 AND (status IN ('pending', 'submitted') OR created_at >= $3)",
      [lower(payer), lower(exceptChannelId), since],
    );
    return Number(r.rows[0].n);
  }

  async openOpens(before: number, limit: number): Promise<GaslessOpen[]> {
    const r = await this.query<GaslessOpenRow>("SELECT * FROM gasless_opens WHERE status IN ('pending', 'submitted') AND updated_at < $1 ORDER BY id LIMIT $2", [before, limit]);
    return r.rows.map(toGaslessOpen);
  }

  async openCounts(): Promise<Record<GaslessOpenStatus, number>> {
    const out: Record<GaslessOpenStatus, number> = { pending: 0, submitted: 0, confirmed: 0, failed: 0 };
    const r = await this.query<{ status: string; n: string }>("SELECT status, count(*) AS n FROM gasless_opens GROUP BY status", []);
    for (const row of r.rows) out[row.status as GaslessOpenStatus] = Number(row.n);
    return out;
  }
}
