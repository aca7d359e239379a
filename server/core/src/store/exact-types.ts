/**
 * The durable record of `exact` payments (docs/protocol.md § 5.8): one row per EIP-3009 authorization, unique by
 * (payer, authorization nonce), so a replayed authorization is refused on every replica sharing the database, and
 * the transaction that carries it (sender, sender nonce, hash, signed bytes) is recorded before it is broadcast.
 *
 * Sender nonces are allocated by the store ({@link ExactStore.recordExactPayment}): in the transaction that inserts
 * the payment, `max(stored next nonce of the sender, the chain's pending count)` is taken and the stored next nonce
 * moves past it. Replicas sharing the database therefore never hand one nonce to two transactions of the same key.
 */
import type { Address, Hex } from "viem";

/** `pending`: recorded (nonce allocated), maybe signed, not known to be broadcast; `submitted`: handed to a node. */
export type ExactPaymentStatus = "pending" | "submitted" | "confirmed" | "failed";

/** Statuses not final yet: the reconciler finishes them. */
export const OPEN_EXACT_STATUSES: readonly ExactPaymentStatus[] = ["pending", "submitted"];

/** What a paid request hands the store before anything is sent. */
export interface NewExactPayment {
  /** The authorization's `from` (the payer). */
  payer: Address;
  /** The authorization's nonce (bytes32). */
  authNonce: Hex;
  payTo: Address;
  amount: bigint;
  validAfter: bigint;
  validBefore: bigint;
  /** The payer's signature over the authorization. */
  signature: Hex;
  /** The paid resource (`resource.url`). */
  resource: string;
  /** The account that submits the transfer. */
  sender: Address;
  /** The sender's pending transaction count as the chain reported it just before (the nonce is at least this). */
  chainNonce: number;
}

/** One recorded `exact` payment. */
export interface ExactPayment extends Omit<NewExactPayment, "chainNonce"> {
  id: number;
  senderNonce: number;
  /** The transfer's transaction; null until it is signed (right after the record, before any broadcast). */
  txHash: Hex | null;
  rawTx: Hex | null;
  status: ExactPaymentStatus;
  /** Whether the paid request was answered (at most once per payment). */
  served: boolean;
  blockNumber: bigint | null;
  gasUsed: bigint | null;
  error: string | null;
  /** Unix ms. */
  createdAt: number;
  updatedAt: number;
}

export type RecordExactResult = { ok: true; payment: ExactPayment } | { ok: false; existing: ExactPayment };

/** The outcome of a mined transfer. */
export interface ExactConfirmation {
  status: "confirmed" | "failed";
  blockNumber?: bigint;
  gasUsed?: bigint;
  error?: string;
}

export interface ExactStore {
  readonly kind: string;
  /**
   * Inserts the payment and allocates its sender nonce in ONE transaction. `{ ok: false, existing }` when a payment
   * with the same (payer, authorization nonce) exists (nothing written).
   */
  recordExactPayment(p: NewExactPayment): Promise<RecordExactResult>;
  /**
   * Stores the signed transaction of a payment that has none yet (before it is broadcast) and returns the one stored:
   * the first writer wins, so two processes signing the same recorded nonce both go on with one transaction.
   */
  setExactTransaction(id: number, txHash: Hex, rawTx: Hex): Promise<{ txHash: Hex; rawTx: Hex }>;
  /** `pending` → `submitted` (idempotent; a final status is kept). */
  markExactSubmitted(id: number): Promise<void>;
  /**
   * Records the mined outcome of an open payment (a final status is kept). With `serve`, also claims the right to
   * answer the paid request: true when this call set `served` (a confirmed payment is served at most once).
   */
  finishExactPayment(id: number, outcome: ExactConfirmation, serve?: boolean): Promise<{ payment: ExactPayment | null; served: boolean }>;
  /** Claims the answer of a confirmed, not yet served payment (a retry of its request); false when not possible. */
  claimExactServe(id: number): Promise<boolean>;
  getExactPayment(payer: Address, authNonce: Hex): Promise<ExactPayment | null>;
  /** Open payments (`pending`, `submitted`) last updated before `before` (unix ms), oldest first. */
  openExactPayments(before: number, limit: number): Promise<ExactPayment[]>;
  /** Counts by status (metrics). */
  exactCounts(): Promise<Record<ExactPaymentStatus, number>>;
}

/** A channel store that keeps `exact` payments in the same database. */
export interface ExactStoreProvider {
  exactStore(): ExactStore;
}
