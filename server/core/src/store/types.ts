/**
 * The provider's durable store: per-channel chain state and accounting, used vouchers, the event cursor.
 *
 * Every method is async so that a networked implementation (PostgreSQL, issue 6) fits the same interface;
 * the SQLite implementation answers synchronously inside. Implementations must keep these guarantees
 * (the conformance suite checks them):
 *
 * - {@link ChannelStore.acceptVoucher} is ONE atomic, durable transaction: the accounting rules
 *   (`server/payments/accounting.ts` `decideVoucher`) are evaluated on the row as it is inside the
 *   transaction, so concurrent requests (threads, processes or replicas) serialise on the channel.
 *   A refused voucher writes nothing.
 * - Nothing is written for a channel the server never accepted a voucher or close request for
 *   (402 challenges and bad input write nothing); chain snapshots only update channels already stored.
 * - Chain fields only move forward: a snapshot read at an older block never overwrites a newer one.
 * - Metered reservations are kept apart from `spent` (`reserved`, one `reservations` row each): settlement claims
 *   `spent` only, so an open reservation is never settled nor closed on.
 * - A channel stored as finalized (a snapshot, or a confirmed close) keeps no used vouchers: its `floor` rises to
 *   `accepted` (every used amount is at or below it) and the used set is pruned, in the same transaction.
 *
 * Extension point for settlement (issue 5): add tables with new migrations (see `sqlite/migrations.ts`,
 * versions 100-199 are reserved for settlement) and a separate interface (e.g. `SettlementStore`) implemented
 * next to this one on the same connection (`SqliteStore.db` / `SqliteStore.transaction`). Channel state the
 * settlement job needs is already here: `spent` (what to claim), `accepted` + `acceptedSignature` (the voucher to
 * claim it with), `settled` (confirmed on chain, from the chain view), `closesAt`, `payerCloseRequestedAt` and
 * `closeRequestSignature` (the payer's consent to an operator's close).
 */
import type { Address, Hex } from "viem";
import type { AcceptRefusalCode, ChannelRef, OnchainChannel } from "@paychan/protocol";

/** A snapshot of a channel: the escrow's answer (`OnchainChannel`, the protocol's one shape) at block `block`. */
export interface ChainChannel extends OnchainChannel {
  /** Block the state was read at (newer wins). */
  block: bigint;
}

/** The server's accounting for a channel (docs/protocol.md "Server accounting per channel"). */
export interface ChannelAccounting {
  /** Highest valid voucher amount received. */
  accepted: bigint;
  /** The signature of the voucher for `accepted` (null before the first). */
  acceptedSignature: Hex | null;
  /** Sum of charges (after releases): what settlement and closes claim, never more. */
  spent: bigint;
  /**
   * Sum of the open metered reservations (the maximum of each metered request whose handler has not reported yet).
   * Counted when deciding a new voucher (`spent + reserved + charge <= max(accepted, v)`), never claimed.
   */
  reserved: bigint;
  /** Vouchers at or below `floor` are refused; never decreases. */
  floor: bigint;
}

/** A stored channel: chain state + accounting + the payer's cooperative close request. */
export interface StoredChannel extends ChainChannel, ChannelAccounting {
  /** When (unix s, server clock) the signer asked for a cooperative close via `POST /channel/close`; 0 when not. */
  payerCloseRequestedAt: number;
  /**
   * The `CloseRequest(channelId)` signature (by the channel's signer or payer) of that request, kept so the settlement
   * job can show the escrow the payer's consent when an operator closes (`ChannelEscrow.close`'s last argument);
   * null when none was received (a close the job marked for an on-chain `requestClose`, or a row older than it).
   */
  closeRequestSignature: Hex | null;
  /** Unix ms. */
  createdAt: number;
  updatedAt: number;
}

/** Codes `acceptVoucher` can refuse with (decided inside the transaction). */
export type AcceptRefusal = AcceptRefusalCode;

export interface AcceptVoucherInput {
  /** The chain view's snapshot: inserted when the channel is new, merged (newer block wins) otherwise. */
  chain: ChainChannel;
  /** Voucher amount `v` (its signature already verified). */
  amount: bigint;
  signature: Hex;
  /** What this request costs now: the price, or a metered route's maximum (reserved). */
  charge: bigint;
  /**
   * A metered request: `charge` is reserved (`reserved += charge`, a reservation row keyed by the voucher amount)
   * instead of charged; {@link ChannelStore.finishReservation} charges what the handler reports. Default false.
   */
  reserve?: boolean;
  /** The server's fixed used-voucher window. */
  window: bigint;
}

export type AcceptVoucherResult =
  | { ok: true; channel: StoredChannel }
  | { ok: false; code: AcceptRefusal; channel: StoredChannel | null };

/** Where the event follower is. */
export interface EventCursor {
  /** Last block fully processed. */
  block: bigint;
  /** Hash of that block, to notice a reorg below the cursor. */
  hash?: Hex;
}

/** What a store was created for; a store refuses to be reused for another deployment. */
export interface StoreBinding {
  chainId: number;
  escrow: Address;
  token: Address;
  payee: Address;
  /** Hash of the chain's genesis block: tells a restarted local chain apart from the one the data belongs to. */
  genesisHash: Hex;
}

/** Sums over all channels, for metrics (atomic units). */
export interface StoreTotals {
  channels: number;
  accepted: bigint;
  spent: bigint;
  settled: bigint;
  /** Σ max(spent - settled, 0) over channels not finalized: what is owed but not yet on chain. */
  unsettled: bigint;
}

export interface ChannelStore {
  readonly kind: string;
  /** Creates or checks the binding (throws {@link StoreBindingError} on mismatch). Call once after opening. */
  bind(binding: StoreBinding): Promise<void>;
  getChannel(channelId: Hex): Promise<StoredChannel | null>;
  /** The accounting transaction (see the file comment). */
  acceptVoucher(input: AcceptVoucherInput): Promise<AcceptVoucherResult>;
  /**
   * Gives back `amount` of a charge (handler failed, or a metered route charged less than it reserved):
   * `spent -= amount`, never below 0. The voucher stays used.
   */
  releaseCharge(channelId: Hex, amount: bigint): Promise<StoredChannel | null>;
  /**
   * Ends the metered reservation made by voucher `voucher` (see {@link AcceptVoucherInput.reserve}) in one
   * transaction: its row is deleted, `reserved -= its amount`, `spent += charged` (`charged` at most the amount;
   * 0 when the handler failed). When no such reservation is open (it expired, or was finished already) nothing
   * changes and `finished` is false: a reservation is charged at most once, and never after it expired.
   */
  finishReservation(channelId: Hex, voucher: bigint, charged: bigint): Promise<{ finished: boolean; channel: StoredChannel | null }>;
  /**
   * Drops reservations made before `before` (unix ms): handlers that crashed with their process, or never finished.
   * They are not charged (`reserved -= amount`, `spent` unchanged). Returns how many were dropped.
   */
  expireReservations(before: number): Promise<number>;
  /**
   * Applies chain snapshots to channels already stored (others are ignored) and, in the same transaction,
   * moves the event cursor when given. A snapshot from an older block than the stored one is ignored, unless
   * `force` (after a reorg the chain's new state can carry a lower block number: it then replaces the old one).
   */
  applyChainSnapshots(snapshots: readonly ChainChannel[], cursor?: EventCursor, options?: { force?: boolean }): Promise<void>;
  /**
   * Records the payer's cooperative close request (stores the channel if new) at `at` (unix s) with its
   * `CloseRequest` `signature` when given. Idempotent: the first request time stays, and so does the first signature
   * stored; a later request with a signature fills it when none is stored yet (e.g. after the job marked the channel
   * closing for an on-chain request, which has none).
   */
  requestCooperativeClose(chain: ChainChannel, at: number, signature?: Hex): Promise<StoredChannel>;
  getCursor(): Promise<EventCursor | null>;
  /** Stored channels that are not finalized, with their signers (the chain view refreshes them at start). */
  activeChannels(): Promise<ChannelRef[]>;
  /** Channels with `spent > settled` and not finalized, most urgent first (pending close, then largest unsettled). */
  listUnsettled(limit: number): Promise<StoredChannel[]>;
  totals(): Promise<StoreTotals>;
  /** A write probe (health check): resolves when the store accepted a durable write. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The store belongs to another deployment or chain. */
export class StoreBindingError extends Error {
  override name = "StoreBindingError";
}

/** The database driver of the selected store is not installed (it is an optional peer dependency). */
export class StoreDriverMissingError extends Error {
  override name = "StoreDriverMissingError";
  constructor(
    readonly store: "sqlite" | "postgres",
    readonly driver: string,
    cause?: unknown,
  ) {
    super(`the ${store} store needs the ${driver} package: npm install ${driver}`, { cause });
  }
}
