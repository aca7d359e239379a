/**
 * The settlement job's durable records (issue 5), next to the channel store and on the same database.
 *
 * A settlement transaction goes through these states (every transition is a compare-and-set on the status, so two
 * settlers, or one settler resuming after a crash, can never apply a step twice):
 *
 * ```
 *   built ──broadcast──▶ sent ──receipt──▶ mined ──N confirmations──▶ confirmed   (final: outcome of each item applied)
 *     │                   │  ▲               │ └──reverted + N conf.──▶ failed      (final)
 *     │                   │  └───reorg───────┘
 *     └───────────────────┴──nonce used by another tx──▶ dropped                    (final)
 * ```
 *
 * - `built`: signed locally and recorded BEFORE it is broadcast, with its hash, nonce and raw bytes. A crash between
 *   recording and broadcasting (or between broadcasting and recording `sent`) is harmless: on restart the settler
 *   looks the hash up and re-broadcasts the identical bytes when the chain has not seen them.
 * - Items of a transaction that is not final (`built`, `sent`, `mined`) are `pending`: their channels are "in flight"
 *   and no other transaction may claim them (except a same-nonce replacement, see `replaces`).
 * - `confirmed` is applied in ONE store transaction together with the chain facts it proves: each channel's
 *   `settled` rises to the cumulative amount of its `Settled` log (never lowers), and a `Closed` channel becomes
 *   `finalized`. Amounts claimed are cumulative (`amount` = the channel's `spent`), so re-sending a claim can never
 *   pay twice: the contract skips an amount that is not above `settled`.
 *
 * Amounts are bigint (uint128), addresses and ids 0x-hex (ids lowercase), times unix milliseconds unless named
 * otherwise. Implementations: SQLite (`sqlite/settlement.ts`), PostgreSQL (issue 6). The conformance checks are in
 * `test/helpers/settlement-store-conformance.ts`.
 */
import type { Address, Hex } from "viem";
import type { StoredChannel } from "./types";

/** `ChannelEscrow.settle` (many channels) or `ChannelEscrow.close` (one channel, cooperative). */
export type SettlementTxKind = "settle" | "close";

/** See the file comment. */
export type SettlementTxStatus = "built" | "sent" | "mined" | "confirmed" | "failed" | "dropped";

/** Statuses of a transaction that may still land: its items are `pending` and their channels in flight. */
export const OPEN_TX_STATUSES: readonly SettlementTxStatus[] = ["built", "sent", "mined"];

/** Final statuses: nothing changes a transaction in these. */
export const FINAL_TX_STATUSES: readonly SettlementTxStatus[] = ["confirmed", "failed", "dropped"];

/**
 * `pending`: its transaction is open. After `confirmed`: `settled` (a `Settled` log), `skipped` (a `SettleSkipped`
 * log), `closed` (a `Closed` log, with or without a payout). After `failed` / `dropped`: the same word; the channel
 * is a candidate again.
 */
export type SettlementItemStatus = "pending" | "settled" | "skipped" | "closed" | "failed" | "dropped";

/** `IChannelEscrow.SkipReason`, by name (index = the enum value in the `SettleSkipped` log). */
export const SKIP_REASONS = [
  "UnknownChannel",
  "PayeeMismatch",
  "TokenMismatch",
  "InvalidSignature",
  "Finalized",
  "AmountNotAboveSettled",
  "AmountAboveVoucher",
  "AmountAboveDeposit",
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

/**
 * Skip reasons that depend only on the voucher and on channel facts that never change (signer, payee, token,
 * existence): re-sending the same claim would be skipped again. A channel whose latest claim was skipped for one of
 * these is not a candidate until its `accepted` or `spent` changes. Other reasons (`Finalized`,
 * `AmountNotAboveSettled`, `AmountAboveDeposit`) mean the store's chain view was stale; a refresh settles them.
 */
export const PERMANENT_SKIP_REASONS: readonly SkipReason[] = ["UnknownChannel", "PayeeMismatch", "TokenMismatch", "InvalidSignature", "AmountAboveVoucher"];

/** One channel's claim inside a settlement transaction. */
export interface SettlementItem {
  txId: number;
  channelId: Hex;
  /** The voucher's amount: the channel's `accepted` when the item was built. */
  cumulativeAmount: bigint;
  /** The cumulative settled amount claimed: the channel's `spent` when built (≤ cumulativeAmount, ≤ deposit). */
  amount: bigint;
  /** The channel's `settled` as the settler knew it when building (informational). */
  previousSettled: bigint;
  status: SettlementItemStatus;
  /** Set when `skipped`. */
  skipReason: SkipReason | null;
  /** The channel's cumulative settled amount after this transaction, from its `Settled` / `Closed` log. */
  settledAmount: bigint | null;
}

/** A settlement transaction and its items. */
export interface SettlementTx {
  id: number;
  kind: SettlementTxKind;
  status: SettlementTxStatus;
  /** The settler's address (the payee, or an operator the payee approved). */
  sender: Address;
  payee: Address;
  token: Address;
  nonce: number;
  hash: Hex;
  /** The signed transaction, re-broadcast as is after a drop or a reorg (same hash). */
  rawTx: Hex;
  gasLimit: bigint;
  /** EIP-1559 fee cap (or the legacy gas price). */
  maxFeePerGas: bigint;
  /** EIP-1559 tip cap (equal to the gas price for legacy transactions). */
  maxPriorityFeePerGas: bigint;
  /** The transaction this one replaces (same nonce, higher fees), when it is a fee bump. */
  replaces: number | null;
  /** Times it was handed to the node. */
  broadcasts: number;
  /** Times a receipt we had seen disappeared (reorg). */
  reorgs: number;
  blockNumber: bigint | null;
  blockHash: Hex | null;
  gasUsed: bigint | null;
  effectiveGasPrice: bigint | null;
  /** Paid to the payee by this transaction (its token transfer), when confirmed. */
  amountSettled: bigint | null;
  /** Why it failed or was dropped. */
  error: string | null;
  createdAt: number;
  sentAt: number | null;
  minedAt: number | null;
  /** When it reached a final status. */
  finishedAt: number | null;
  items: SettlementItem[];
}

/** One channel of a new settlement transaction: its claim without the signature (the raw transaction carries it). */
export interface NewSettlementItem {
  channelId: Hex;
  /** The voucher's amount. */
  cumulativeAmount: bigint;
  /** The cumulative settled amount claimed. */
  amount: bigint;
  /** The channel's `settled` on chain when the claim was built (informational). */
  previousSettled: bigint;
}

/** What {@link SettlementStore.insertTx} records (status `built`, items `pending`). */
export type NewSettlementTx = Pick<
  SettlementTx,
  "kind" | "sender" | "payee" | "token" | "nonce" | "hash" | "rawTx" | "gasLimit" | "maxFeePerGas" | "maxPriorityFeePerGas"
> & {
  replaces?: number | null;
  items: ReadonlyArray<NewSettlementItem>;
};

/**
 * A status change with the facts learnt. Fields left undefined are kept. Moving to `failed` or `dropped` moves the
 * pending items to the same word; moving back from `mined` to `sent` (reorg) clears the block fields.
 */
export interface SettlementTxPatch {
  status: Exclude<SettlementTxStatus, "confirmed">;
  sentAt?: number;
  minedAt?: number | null;
  blockNumber?: bigint | null;
  blockHash?: Hex | null;
  gasUsed?: bigint | null;
  effectiveGasPrice?: bigint | null;
  error?: string | null;
  /** Adds one to `broadcasts`. */
  broadcast?: boolean;
  /** Adds one to `reorgs`. */
  reorged?: boolean;
}

/** What a confirmed receipt proved (see {@link SettlementStore.confirmTx}). */
export interface SettlementConfirmation {
  blockNumber: bigint;
  blockHash: Hex;
  gasUsed: bigint;
  effectiveGasPrice: bigint;
  /** Paid to the payee by this transaction. */
  amountSettled: bigint;
  /** Outcome per item (every item of the transaction, by channel id). */
  items: ReadonlyArray<{ channelId: Hex; status: "settled" | "skipped" | "closed"; skipReason?: SkipReason | null; settledAmount?: bigint | null }>;
}

/** A channel the settlement policy may pick: the stored channel plus when it was last settled by this settler. */
export interface SettlementCandidate extends StoredChannel {
  /** `finishedAt` of the latest confirmed item that settled or closed the channel; 0 when never. */
  lastSettledAt: number;
}

/** The earliest pending on-chain close deadline among channels not finalized (for the urgency metric). */
export interface CloseDeadline {
  channelId: Hex;
  /** Chain time (s). */
  closesAt: number;
}

/** Thrown by {@link SettlementStore.insertTx} when a channel or the nonce is already claimed by an open transaction. */
export class SettlementConflictError extends Error {
  override name = "SettlementConflictError";
}

export interface SettlementStore {
  readonly kind: string;

  /**
   * The one-settler rule across processes and replicas: returns true when `holder` holds (or now takes, or renews)
   * the settler lease, false when another holder does. A lease lapses `ttlMs` after its last renewal, so a crashed
   * holder is replaced. SQLite: a lease row written under `BEGIN IMMEDIATE`. PostgreSQL may use an advisory lock
   * (then `ttlMs` is not needed: the lock dies with the session).
   */
  tryAcquireSettlerLease(holder: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up (no-op when `holder` does not hold it). */
  releaseSettlerLease(holder: string): Promise<void>;

  /**
   * Channels the policy may consider, ordered by `channelId`, at most `limit`, with ids above `after` (paging).
   * Exactly the stored channels that are not finalized, and either owe something (`spent > settled`) or were asked to
   * close by the payer (`payerCloseRequestedAt > 0`), and have no `pending` item, and have no item skipped for a
   * {@link PERMANENT_SKIP_REASONS permanent reason} with the current amounts (`cumulativeAmount == accepted` and
   * `amount == spent`).
   */
  listCandidates(opts: { limit: number; after?: Hex }): Promise<SettlementCandidate[]>;

  /**
   * Records a built (signed, not yet broadcast) transaction and its pending items, atomically. Throws
   * {@link SettlementConflictError} when one of its channels has a pending item, or another open transaction of the
   * same sender has the same nonce, other than the transaction it `replaces`.
   */
  insertTx(tx: NewSettlementTx): Promise<SettlementTx>;

  /**
   * Compare-and-set: applies `patch` when the transaction's status is one of `expect`; returns the updated
   * transaction, or null when its status was not expected (someone else moved it).
   */
  updateTx(id: number, expect: readonly SettlementTxStatus[], patch: SettlementTxPatch): Promise<SettlementTx | null>;

  /**
   * Compare-and-set from an open status to `confirmed`, in ONE transaction with its consequences: item outcomes;
   * each `settled` / `closed` item's channel gets `settled = max(settled, settledAmount)`; each `closed` item's
   * channel gets `finalized`. Returns null (and changes nothing) when the transaction was not open.
   */
  confirmTx(id: number, confirmation: SettlementConfirmation): Promise<SettlementTx | null>;

  /** Transactions in an open status, by nonce then id. */
  openTxs(): Promise<SettlementTx[]>;
  getTx(id: number): Promise<SettlementTx | null>;
  /** The latest transactions (any status), newest first. */
  recentTxs(limit: number): Promise<SettlementTx[]>;
  /** See {@link CloseDeadline}; null when no close is pending. */
  earliestCloseDeadline(): Promise<CloseDeadline | null>;
}

/** A channel store that carries its settlement store (the PostgreSQL store implements this). */
export interface SettlementStoreProvider {
  settlementStore(): SettlementStore;
}
