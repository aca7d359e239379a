/**
 * {@link ExactStore} on a {@link SqliteStore}'s connection (same file, same WAL). The record and its sender nonce are
 * written in one `BEGIN IMMEDIATE` transaction: processes sharing the file serialise on it.
 */
import type Database from "better-sqlite3";
import { getAddress, type Address, type Hex } from "viem";
import type { ExactConfirmation, ExactPayment, ExactPaymentStatus, ExactStore, NewExactPayment, RecordExactResult } from "../exact-types";
import { EXACT_MIGRATIONS } from "./migrations/exact";
import { migrateSqlite } from "./migrate";

interface Row {
  id: number;
  payer: string;
  auth_nonce: string;
  pay_to: string;
  amount: string;
  valid_after: string;
  valid_before: string;
  signature: string;
  resource: string;
  sender: string;
  sender_nonce: number;
  tx_hash: string | null;
  raw_tx: string | null;
  status: string;
  served: number;
  block_number: number | null;
  gas_used: string | null;
  error: string | null;
  created_at: number;
  updated_at: number;
}

function toPayment(r: Row): ExactPayment {
  return {
    id: r.id,
    payer: getAddress(r.payer),
    authNonce: r.auth_nonce as Hex,
    payTo: getAddress(r.pay_to),
    amount: BigInt(r.amount),
    validAfter: BigInt(r.valid_after),
    validBefore: BigInt(r.valid_before),
    signature: r.signature as Hex,
    resource: r.resource,
    sender: getAddress(r.sender),
    senderNonce: r.sender_nonce,
    txHash: (r.tx_hash as Hex | null) ?? null,
    rawTx: (r.raw_tx as Hex | null) ?? null,
    status: r.status as ExactPaymentStatus,
    served: r.served !== 0,
    blockNumber: r.block_number === null ? null : BigInt(r.block_number),
    gasUsed: r.gas_used === null ? null : BigInt(r.gas_used),
    error: r.error,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

const lower = (s: string) => s.toLowerCase();

/** `exact` payments in the SQLite store's database; applies its migrations (idempotent) when created. */
export class SqliteExactStore implements ExactStore {
  readonly kind = "sqlite";
  private readonly db: Database.Database;
  private readonly st;
  private readonly recordTx: (p: NewExactPayment) => RecordExactResult;

  constructor(store: { readonly db: Database.Database }) {
    this.db = store.db;
    migrateSqlite(this.db, EXACT_MIGRATIONS);
    const db = this.db;
    this.st = {
      byKey: db.prepare<[string, string], Row>("SELECT * FROM exact_payments WHERE payer = ? AND auth_nonce = ?"),
      byId: db.prepare<[number], Row>("SELECT * FROM exact_payments WHERE id = ?"),
      nextNonce: db.prepare<[string], { next_nonce: number }>("SELECT next_nonce FROM exact_sender_nonces WHERE sender = ?"),
      setNonce: db.prepare("INSERT INTO exact_sender_nonces (sender, next_nonce) VALUES (?, ?) ON CONFLICT(sender) DO UPDATE SET next_nonce = excluded.next_nonce"),
      insert: db.prepare(
        `INSERT INTO exact_payments (payer, auth_nonce, pay_to, amount, valid_after, valid_before, signature, resource, sender, sender_nonce,
           status, served, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)`,
      ),
      setTx: db.prepare("UPDATE exact_payments SET tx_hash = ?, raw_tx = ?, updated_at = ? WHERE id = ? AND tx_hash IS NULL"),
      submitted: db.prepare("UPDATE exact_payments SET status = 'submitted', updated_at = ? WHERE id = ? AND status = 'pending'"),
      finish: db.prepare(
        "UPDATE exact_payments SET status = ?, block_number = ?, gas_used = ?, error = ?, updated_at = ? WHERE id = ? AND status IN ('pending', 'submitted')",
      ),
      serve: db.prepare("UPDATE exact_payments SET served = 1, updated_at = ? WHERE id = ? AND status = 'confirmed' AND served = 0"),
      open: db.prepare<[number, number], Row>("SELECT * FROM exact_payments WHERE status IN ('pending', 'submitted') AND updated_at < ? ORDER BY id LIMIT ?"),
      counts: db.prepare<[], { status: string; n: number }>("SELECT status, count(*) AS n FROM exact_payments GROUP BY status"),
    };
    this.recordTx = this.db.transaction((p: NewExactPayment): RecordExactResult => {
      const payer = lower(p.payer);
      const nonce = lower(p.authNonce);
      const existing = this.st.byKey.get(payer, nonce);
      if (existing) return { ok: false, existing: toPayment(existing) };
      const sender = lower(p.sender);
      const stored = this.st.nextNonce.get(sender)?.next_nonce ?? 0;
      const senderNonce = Math.max(stored, p.chainNonce);
      this.st.setNonce.run(sender, senderNonce + 1);
      const now = Date.now();
      const info = this.st.insert.run(
        payer,
        nonce,
        lower(p.payTo),
        p.amount.toString(),
        p.validAfter.toString(),
        p.validBefore.toString(),
        lower(p.signature),
        p.resource,
        sender,
        senderNonce,
        now,
        now,
      );
      return { ok: true, payment: toPayment(this.st.byId.get(Number(info.lastInsertRowid))!) };
    }).immediate as never;
  }

  async recordExactPayment(p: NewExactPayment): Promise<RecordExactResult> {
    return this.recordTx(p);
  }

  async setExactTransaction(id: number, txHash: Hex, rawTx: Hex): Promise<{ txHash: Hex; rawTx: Hex }> {
    this.st.setTx.run(lower(txHash), rawTx, Date.now(), id);
    const r = this.st.byId.get(id)!;
    return { txHash: r.tx_hash as Hex, rawTx: r.raw_tx as Hex };
  }

  async markExactSubmitted(id: number): Promise<void> {
    this.st.submitted.run(Date.now(), id);
  }

  async finishExactPayment(id: number, o: ExactConfirmation, serve = false): Promise<{ payment: ExactPayment | null; served: boolean }> {
    const run = this.db.transaction(() => {
      const now = Date.now();
      this.st.finish.run(o.status, o.blockNumber === undefined ? null : Number(o.blockNumber), o.gasUsed?.toString() ?? null, o.error ?? null, now, id);
      const served = serve ? this.st.serve.run(now, id).changes === 1 : false;
      const row = this.st.byId.get(id);
      return { payment: row ? toPayment(row) : null, served };
    });
    return run.immediate();
  }

  async claimExactServe(id: number): Promise<boolean> {
    return this.st.serve.run(Date.now(), id).changes === 1;
  }

  async getExactPayment(payer: Address, authNonce: Hex): Promise<ExactPayment | null> {
    const r = this.st.byKey.get(lower(payer), lower(authNonce));
    return r ? toPayment(r) : null;
  }

  async openExactPayments(before: number, limit: number): Promise<ExactPayment[]> {
    return this.st.open.all(before, limit).map(toPayment);
  }

  async exactCounts(): Promise<Record<ExactPaymentStatus, number>> {
    const out: Record<ExactPaymentStatus, number> = { pending: 0, submitted: 0, confirmed: 0, failed: 0 };
    for (const r of this.st.counts.all()) out[r.status as ExactPaymentStatus] = r.n;
    return out;
  }
}
