/**
 * The durable record of gasless opens (docs/protocol.md § 5.9): one row per channel the provider opens from a payer's
 * EIP-3009 authorization, unique by channel id, so the same open arriving many times at once (one replica or several
 * sharing the database) is submitted once. The transaction carrying it (sender, sender nonce, hash, signed bytes) is
 * recorded before it is broadcast; the sender nonce comes from the allocator of `exact` transfers
 * (`exact_sender_nonces`, in the transaction that inserts the open), so transfers and opens of one key never collide.
 */
import type { Address, Hex } from "viem";

/** `pending`: recorded (nonce allocated), maybe signed; `submitted`: handed to a node; then `confirmed` or `failed`. */
export type GaslessOpenStatus = "pending" | "submitted" | "confirmed" | "failed";

/** What a paid request hands the store before anything is signed. */
export interface NewGaslessOpen {
  channelId: Hex;
  payer: Address;
  payee: Address;
  token: Address;
  signer: Address;
  amount: bigint;
  closeDelay: number;
  salt: Hex;
  validAfter: bigint;
  validBefore: bigint;
  /** The payer's EIP-3009 signature. */
  signature: Hex;
  /** The open fee advertised when it was accepted (atomic units). */
  fee: bigint;
  /** The account that submits the open (the exact sender). */
  sender: Address;
  /** The sender's pending transaction count as the chain reported it just before (the nonce is at least this). */
  chainNonce: number;
}

/** One recorded open. */
export interface GaslessOpen extends Omit<NewGaslessOpen, "chainNonce"> {
  id: number;
  senderNonce: number;
  txHash: Hex | null;
  rawTx: Hex | null;
  status: GaslessOpenStatus;
  blockNumber: bigint | null;
  gasUsed: bigint | null;
  error: string | null;
  /** Unix ms. */
  createdAt: number;
  updatedAt: number;
}

export type RecordOpenResult = { ok: true; open: GaslessOpen } | { ok: false; existing: GaslessOpen };

export interface GaslessOpenOutcome {
  status: "confirmed" | "failed";
  blockNumber?: bigint;
  gasUsed?: bigint;
  error?: string;
}

export interface GaslessOpenStore {
  readonly kind: string;
  /**
   * Inserts the open and allocates its sender nonce (from `exact_sender_nonces`, shared with `exact` transfers) in ONE
   * transaction. `{ ok: false, existing }` when an open of the same channel exists (nothing written).
   */
  recordOpen(o: NewGaslessOpen): Promise<RecordOpenResult>;
  /** Stores the signed transaction of an open that has none yet and returns the one stored (the first writer wins). */
  setOpenTransaction(id: number, txHash: Hex, rawTx: Hex): Promise<{ txHash: Hex; rawTx: Hex }>;
  /** `pending` → `submitted` (idempotent; a final status is kept). */
  markOpenSubmitted(id: number): Promise<void>;
  /** Records the outcome of an open (a final status is kept); returns the row. */
  finishOpen(id: number, outcome: GaslessOpenOutcome): Promise<GaslessOpen | null>;
  getOpen(channelId: Hex): Promise<GaslessOpen | null>;
  /** Opens of `payer` other than `exceptChannelId` that are open (pending, submitted) or were created at or after `since` (unix ms). */
  countPayerOpens(payer: Address, since: number, exceptChannelId: Hex): Promise<number>;
  /** Open rows (`pending`, `submitted`) last updated before `before` (unix ms), oldest first. */
  openOpens(before: number, limit: number): Promise<GaslessOpen[]>;
  /** Counts by status (metrics). */
  openCounts(): Promise<Record<GaslessOpenStatus, number>>;
}

/** A channel store that keeps gasless opens in the same database. */
export interface GaslessOpenStoreProvider {
  gaslessOpenStore(): GaslessOpenStore;
}
