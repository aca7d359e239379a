/**
 * The store of streamed responses paid per unit (docs/protocol.md § 5.10). A stream's reservation is an ordinary
 * `reservations` row (made by `acceptVoucher` with `reserve`, keyed by the voucher amount) that a checkpoint marks as a
 * stream's: `charged` (the delivered charge at the last checkpoint), `checkpoint_at` (unix ms) and `lease_ms` (how long
 * after its checkpoint the row belongs to a dead process). Stream rows are never dropped by the metered reservations'
 * expiry; they end by `ChannelStore.finishReservation` (the stream's own end) or {@link StreamStore.sweep} (a dead one,
 * charged its checkpoint). SQLite: `sqlite/stream.ts`; PostgreSQL: `postgres/stream.ts`; migration 220.
 */
import type { Hex } from "viem";
import type { AcceptRefusal, ChainChannel, StoredChannel } from "./types";

/** A checkpoint of a live stream. */
export interface StreamCheckpoint {
  channelId: Hex;
  /** The voucher amount that made the stream's reservation (its key). */
  voucher: bigint;
  /** The stream's delivered charge now (the stored value only rises; at most the reservation). */
  charged: bigint;
  /** Unix ms. */
  at: number;
  /** ms after `at` when a sweeper may finish the row (the stream's process is taken for dead). */
  leaseMs: number;
}

/** A top-up of a live stream: the § 6 rule with charge = `topUp`, reserved on the stream's row (one transaction). */
export interface StreamTopUpInput extends StreamCheckpoint {
  /** The chain view's snapshot of the channel (its deposit decides `exceeds_deposit` with the stored one). */
  chain: ChainChannel;
  /** The top-up voucher's amount `v` (its signature verified already) and signature. */
  amount: bigint;
  signature: Hex;
  /** What the stream's reservation grows by. */
  topUp: bigint;
  /** The server's fixed used-voucher window. */
  window: bigint;
}

export type StreamTopUpResult =
  | { ok: true; channel: StoredChannel; /** the stream's reservation after the top-up */ reserved: bigint }
  | { ok: false; code: AcceptRefusal | "stream_not_found"; channel: StoredChannel | null };

/** A stream reservation as stored. */
export interface StreamReservation {
  channelId: Hex;
  voucher: bigint;
  /** The reservation (initial + top-ups). */
  amount: bigint;
  charged: bigint;
  checkpointAt: number;
  leaseMs: number;
}

export interface StreamStore {
  readonly kind: string;
  /**
   * Writes a checkpoint: marks the reservation as a stream's (first call), raises `charged` (never lowers it; at most the
   * amount) and renews the lease. False when the reservation is gone (swept, or finished): the stream must stop.
   */
  checkpoint(c: StreamCheckpoint): Promise<boolean>;
  /**
   * One transaction: the channel's row lock; the stream's reservation must exist (else `stream_not_found`); the voucher
   * decided by `decideVoucher` with charge = `topUp`, reserved; then accepted / used set / floor, `reserved += topUp`,
   * the row's `amount += topUp` and its checkpoint. A refusal writes nothing.
   */
  topUp(input: StreamTopUpInput): Promise<StreamTopUpResult>;
  /**
   * Finishes the stream reservations whose lease ran out before `now` (`checkpoint_at + lease_ms < now`): each row
   * deleted, `reserved −= amount`, `spent += charged`, at most once whoever sweeps (several replicas may). Answers them.
   */
  sweep(now: number): Promise<StreamReservation[]>;
  /** The open stream reservations (metrics, tests). */
  list(): Promise<StreamReservation[]>;
  /** Releases what this stream store holds of its own (not the channel store). */
  close(): Promise<void>;
}
