/**
 * {@link ExactStore} on PostgreSQL, next to the channel store (same pool; tables from migration 200). The sender
 * nonce is allocated under a row lock on the sender's `exact_sender_nonces` row, in the transaction that inserts the
 * payment: two replicas recording payments for one sender key serialise there and never take the same nonce.
 */
import type pg from "pg";
import { getAddress, type Address, type Hex } from "viem";
import type { ExactConfirmation, ExactPayment, ExactPaymentStatus, ExactStore, NewExactPayment, RecordExactResult } from "../exact-types";

interface Row {
  id: string;
  payer: string;
  auth_nonce: string;
  pay_to: string;
  amount: string;
  valid_after: string;
  valid_before: string;
  signature: string;
  resource: string;
  sender: string;
  sender_nonce: string;
  tx_hash: string | null;
  raw_tx: string | null;
  status: string;
  served: boolean;
  block_number: string | null;
  gas_used: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}

function toPayment(r: Row): ExactPayment {
  return {
    id: Number(r.id),
    payer: getAddress(r.payer),
    authNonce: r.auth_nonce as Hex,
    payTo: getAddress(r.pay_to),
    amount: BigInt(r.amount),
    validAfter: BigInt(r.valid_after),
    validBefore: BigInt(r.valid_before),
    signature: r.signature as Hex,
    resource: r.resource,
    sender: getAddress(r.sender),
    senderNonce: Number(r.sender_nonce),
    txHash: (r.tx_hash as Hex | null) ?? null,
    rawTx: (r.raw_tx as Hex | null) ?? null,
    status: r.status as ExactPaymentStatus,
    served: r.served,
    blockNumber: r.block_number === null ? null : BigInt(r.block_number),
    gasUsed: r.gas_used === null ? null : BigInt(r.gas_used),
    error: r.error,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

const lower = (s: string) => s.toLowerCase();

/** What the exact store needs of the PostgreSQL channel store. */
export interface PgExactHost {
  readonly pool: pg.Pool;
  check(): void;
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
}

/** `exact` payments in the PostgreSQL store's database; get it with `store.exactStore()`. */
export class PgExactStore implements ExactStore {
  readonly kind = "postgres";

  constructor(private readonly store: PgExactHost) {}

  private async query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    this.store.check();
    return this.store.pool.query<R>(sql, params);
  }

  async recordExactPayment(p: NewExactPayment): Promise<RecordExactResult> {
    const payer = lower(p.payer);
    const nonce = lower(p.authNonce);
    const sender = lower(p.sender);
    return this.store.transaction(async (c) => {
      const seen = await c.query<Row>("SELECT * FROM exact_payments WHERE payer = $1 AND auth_nonce = $2", [payer, nonce]);
      if (seen.rows[0]) return { ok: false, existing: toPayment(seen.rows[0]) } as RecordExactResult;
      // The sender's row lock serialises nonce allocation across replicas.
      await c.query("INSERT INTO exact_sender_nonces (sender, next_nonce) VALUES ($1, 0) ON CONFLICT (sender) DO NOTHING", [sender]);
      const stored = Number((await c.query<{ next_nonce: string }>("SELECT next_nonce FROM exact_sender_nonces WHERE sender = $1 FOR UPDATE", [sender])).rows[0].next_nonce);
      const senderNonce = Math.max(stored, p.chainNonce);
      const now = Date.now();
      const ins = await c.query<Row>(
        `INSERT INTO exact_payments (payer, auth_nonce, pay_to, amount, valid_after, valid_before, signature, resource, sender, sender_nonce,
           status, served, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', false, $11, $11)
         ON CONFLICT (payer, auth_nonce) DO NOTHING RETURNING *`,
        [payer, nonce, lower(p.payTo), p.amount.toString(), p.validAfter.toString(), p.validBefore.toString(), lower(p.signature), p.resource, sender, senderNonce, now],
      );
      if (!ins.rows[0]) {
        // A concurrent insert of the same authorization committed first.
        const again = await c.query<Row>("SELECT * FROM exact_payments WHERE payer = $1 AND auth_nonce = $2", [payer, nonce]);
        return { ok: false, existing: toPayment(again.rows[0]) } as RecordExactResult;
      }
      await c.query("UPDATE exact_sender_nonces SET next_nonce = $2 WHERE sender = $1", [sender, senderNonce + 1]);
      return { ok: true, payment: toPayment(ins.rows[0]) } as RecordExactResult;
    });
  }

  async setExactTransaction(id: number, txHash: Hex, rawTx: Hex): Promise<{ txHash: Hex; rawTx: Hex }> {
    await this.query("UPDATE exact_payments SET tx_hash = $2, raw_tx = $3, updated_at = $4 WHERE id = $1 AND tx_hash IS NULL", [id, lower(txHash), rawTx, Date.now()]);
    const r = (await this.query<Row>("SELECT tx_hash, raw_tx FROM exact_payments WHERE id = $1", [id])).rows[0];
    return { txHash: r.tx_hash as Hex, rawTx: r.raw_tx as Hex };
  }

  async markExactSubmitted(id: number): Promise<void> {
    await this.query("UPDATE exact_payments SET status = 'submitted', updated_at = $2 WHERE id = $1 AND status = 'pending'", [id, Date.now()]);
  }

  async finishExactPayment(id: number, o: ExactConfirmation, serve = false): Promise<{ payment: ExactPayment | null; served: boolean }> {
    return this.store.transaction(async (c) => {
      const now = Date.now();
      await c.query(
        "UPDATE exact_payments SET status = $2, block_number = $3, gas_used = $4, error = $5, updated_at = $6 WHERE id = $1 AND status IN ('pending', 'submitted')",
        [id, o.status, o.blockNumber?.toString() ?? null, o.gasUsed?.toString() ?? null, o.error ?? null, now],
      );
      let served = false;
      if (serve) {
        served = ((await c.query("UPDATE exact_payments SET served = true, updated_at = $2 WHERE id = $1 AND status = 'confirmed' AND NOT served", [id, now])).rowCount ?? 0) === 1;
      }
      const row = (await c.query<Row>("SELECT * FROM exact_payments WHERE id = $1", [id])).rows[0];
      return { payment: row ? toPayment(row) : null, served };
    });
  }

  async claimExactServe(id: number): Promise<boolean> {
    const r = await this.query("UPDATE exact_payments SET served = true, updated_at = $2 WHERE id = $1 AND status = 'confirmed' AND NOT served", [id, Date.now()]);
    return (r.rowCount ?? 0) === 1;
  }

  async getExactPayment(payer: Address, authNonce: Hex): Promise<ExactPayment | null> {
    const r = await this.query<Row>("SELECT * FROM exact_payments WHERE payer = $1 AND auth_nonce = $2", [lower(payer), lower(authNonce)]);
    return r.rows[0] ? toPayment(r.rows[0]) : null;
  }

  async openExactPayments(before: number, limit: number): Promise<ExactPayment[]> {
    const r = await this.query<Row>("SELECT * FROM exact_payments WHERE status IN ('pending', 'submitted') AND updated_at < $1 ORDER BY id LIMIT $2", [before, limit]);
    return r.rows.map(toPayment);
  }

  async exactCounts(): Promise<Record<ExactPaymentStatus, number>> {
    const out: Record<ExactPaymentStatus, number> = { pending: 0, submitted: 0, confirmed: 0, failed: 0 };
    const r = await this.query<{ status: string; n: string }>("SELECT status, count(*) AS n FROM exact_payments GROUP BY status", []);
    for (const row of r.rows) out[row.status as ExactPaymentStatus] = Number(row.n);
    return out;
  }
}
