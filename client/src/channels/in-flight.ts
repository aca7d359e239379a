/**
 * What a channel's next voucher must cover (docs/protocol.md § 7.1, the client's voucher rule): every new voucher is
 * strictly above every voucher signed before on the channel, and at least
 *
 *     known + (the reservations of this process's requests in flight on the channel, the new one included)
 *
 * where `known = floor + charged` is the client's own record of what the channel may already cost: `floor` covers
 * every request signed up to the moment it was set (this process's start: `ChannelRecord.restartBase`, else `signed`;
 * a request ending with an unknown outcome — no receipt and no 402 — or vouchers of ours learned from a hint or the
 * chain: the highest voucher then), and `charged` sums the charges, read from their receipts, of the requests signed
 * after it. A reservation is what a request may cost: a fixed price, a metered route's maximum, a stream's reservation
 * plus its top-ups, and the open fee of a call carrying a gasless open.
 */
import { max, min } from "../bigint";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";

/** What a channel's vouchers count (kept per channel and process in `ChannelFlags`, channels/book.ts). */
export interface ChannelCosts {
  /** Sum of the reservations of this process's requests in flight on the channel. */
  reserved: bigint;
  /** Their number. */
  reservations: number;
  /** Covers every request signed on the channel up to when it was set. */
  floor: bigint;
  /** The charges (from receipts) of the requests signed since the floor was set. */
  charged: bigint;
  /** Counts the floor's settings: a request signed before the last one is already covered by it. */
  epoch: number;
}

/** The costs of one channel (ChannelBook.flagsOf). */
type CostsOf = { flagsOf(ch: ChannelRecord): ChannelCosts };

/** How a request holding a reservation ended, as far as the client can tell. */
export type RequestOutcome =
  /** A receipt of the provider for this request was applied: `charge` is what it cost. */
  | { receipt: bigint }
  /** A 402 refused it: nothing was committed. */
  | "refused"
  /** Anything else: the provider may have charged up to the reservation (the floor is raised). */
  | "unknown";

/** `floor + charged`: what the channel may already cost, apart from the requests in flight. */
export function knownCost(book: CostsOf, ch: ChannelRecord): bigint {
  const f = book.flagsOf(ch);
  return f.floor + f.charged;
}

/** The amount of the next voucher on `ch` for a new request reserving `amount` (nothing is recorded). */
export function nextVoucher(book: CostsOf, ch: ChannelRecord, amount: bigint): bigint {
  return max(ch.signed + 1n, knownCost(book, ch) + book.flagsOf(ch).reserved + amount);
}

/**
 * Sets the floor to at least `amount`, which must cover every request signed so far on `ch` whose outcome is not
 * otherwise counted: the charges counted since the last floor are folded into it.
 */
export function raiseFloor(book: CostsOf, ch: ChannelRecord, amount: bigint): void {
  const f = book.flagsOf(ch);
  f.floor = max(f.floor + f.charged, amount);
  f.charged = 0n;
  f.epoch++;
}

/** One request's reservation on a channel, counted in its next vouchers until {@link Reservation.end}. */
export class Reservation {
  private ended = false;

  private constructor(
    private readonly s: ClientSession,
    private readonly book: CostsOf,
    readonly channel: ChannelRecord,
    private amount_: bigint,
    /** The floor's epoch when this request was signed: its charge counts only if no floor was set since. */
    private readonly epoch: number,
  ) {}

  /** Counts `amount` in flight on `ch` (call right before signing, nothing awaited in between). */
  static take(s: ClientSession, book: CostsOf, ch: ChannelRecord, amount: bigint): Reservation {
    const f = book.flagsOf(ch);
    f.reserved += amount;
    f.reservations++;
    ch.restartBase = undefined; // a crash now leaves this request's outcome unknown: a new process starts at `signed`
    return new Reservation(s, book, ch, amount, f.epoch);
  }

  /** What this request may cost now. */
  get amount(): bigint {
    return this.amount_;
  }

  /** Whether {@link end} was called. */
  get isEnded(): boolean {
    return this.ended;
  }

  /** A stream's top-up: the request may now cost `by` more (call right before signing the top-up's voucher). */
  grow(by: bigint): void {
    if (this.ended) return;
    this.amount_ += by;
    this.book.flagsOf(this.channel).reserved += by;
  }

  /** A top-up the provider refused with a 402 (nothing was reserved by it): the request may cost `by` less again. */
  shrink(by: bigint): void {
    if (this.ended || by > this.amount_) return;
    this.amount_ -= by;
    this.book.flagsOf(this.channel).reserved -= by;
  }

  /**
   * The request ended (call after its receipt, if any, was applied): a receipt adds its charge (at most the
   * reservation) to the channel's known cost; an unknown outcome raises the floor to the channel's highest voucher,
   * which covers whatever this request and every earlier one may have been charged. Idempotent.
   */
  end(outcome: RequestOutcome): void {
    if (this.ended) return;
    this.ended = true;
    const ch = this.channel;
    const f = this.book.flagsOf(ch);
    f.reserved -= this.amount_;
    f.reservations--;
    if (outcome === "unknown") raiseFloor(this.book, ch, ch.signed);
    else if (outcome !== "refused" && f.epoch === this.epoch) f.charged += min(outcome.receipt, this.amount_);
    if (f.reservations === 0) {
      ch.restartBase = f.floor + f.charged; // nothing in flight: a new process may start from here
      this.s.persister.schedule();
    }
  }
}
