/**
 * The voucher of one paid call (docs/protocol.md § 7.1, the client's voucher rule): each call reserves what it may
 * cost (the offer's `amount`: a fixed price, a metered maximum, a stream's initial reservation) and signs
 * `max(signed + 1, base + the reservations in flight on the channel, its own included)` (channels/in-flight.ts),
 * raising `signed` synchronously, so no call waits for another and what is signed tracks what is charged plus what is
 * in flight. Nothing is signed above the channel's on-chain deposit or the owner's `maxSpend`, nor more than
 * `maxUnservedPerChannel` above the highest voucher served; a short deposit waits for a top-up (twice at most), then
 * fails `insufficient_funds`.
 */
import { X402_VERSION, encodePaymentSignature, type ChannelRequirements, type OpenAuthorization, type Voucher } from "@paychan/protocol";
import type { ChannelBook } from "../channels/book";
import { checkOpenFee, pendingDeposit, type GaslessOpens } from "../channels/gasless";
import { Reservation, nextVoucher, type RequestOutcome } from "../channels/in-flight";
import type { ChannelSelector } from "../channels/selection";
import type { TopUps } from "../channels/top-ups";
import { ClientError } from "../errors";
import type { TokenLimits } from "../limits";
import type { ClientSession } from "../session";
import { assertAllowed, signedTotal } from "../spending";
import type { ChannelRecord } from "../store";

/** A signed voucher ready to send, and what it pays for. */
export interface Payment {
  channel: ChannelRecord;
  voucher: Voucher;
  terms: ChannelRequirements;
  /** The `PAYMENT-SIGNATURE` header value. */
  header: string;
  /** The gasless open this call carries (`payload.open`, docs/protocol.md § 5.9), when the channel is not open yet. */
  open?: OpenAuthorization;
  /** What this request may cost, counted in the channel's next vouchers until it ends. */
  reservation: Reservation;
  /**
   * Call once the answer to this payment was handled (served, refused, or failed), after its receipt (if any) was
   * applied: ends its reservation (`outcome`, default "unknown": the floor rises to the highest voucher), lets the
   * calls waiting for a carried open go on, and counts the channel's calls in flight. Idempotent.
   */
  finish(outcome?: RequestOutcome): void;
}

/** How long a call waits for another call carrying the same gasless open before carrying it too (the provider submits it once, § 5.9). */
const OPEN_GATE_MAX_WAIT_MS = 60_000;

/** Signs the vouchers of paid calls on the channels the selector picks, topping up when a deposit is short. */
export class VoucherIssuer {
  constructor(
    private readonly s: ClientSession,
    private readonly selector: ChannelSelector,
    private readonly topUps: TopUps,
    private readonly book: ChannelBook,
    private readonly gasless: GaslessOpens,
  ) {}

  /** The payment of one call at `terms` (checked against the limits first), on a channel for `origin`. */
  async prepare(terms: ChannelRequirements, origin: string): Promise<Payment> {
    const tl = await assertAllowed(this.s, terms);
    let ch = await this.selector.channelFor(terms, origin);
    let carryAnyway = false;
    for (let attempt = 0; ; ) {
      if (ch.status === "opening" && ch.openAuthorization) {
        checkOpenFee(terms.extra.open?.fee ?? ch.openFee ?? 0n, tl);
        await this.gasless.refresh(ch);
        // A pending gasless open: one call at a time carries it; the others wait for its outcome. Nothing is awaited
        // between this check and reserve(), which takes the gate.
        const gate = this.book.flagsOf(ch).openGate;
        if (gate && !carryAnyway) {
          carryAnyway = !(await waitFor(gate, OPEN_GATE_MAX_WAIT_MS));
          ch = await this.selector.channelFor(terms, origin);
          continue;
        }
      }
      const payment = this.reserve(ch, terms, tl);
      if (payment) return payment;
      if (attempt++ >= 2) {
        throw new ClientError("insufficient_funds", `channel ${ch.id} has ${ch.deposit - ch.signed} left, the call needs ${terms.amount}`);
      }
      if (await this.gasless.shouldReplace(ch)) this.gasless.replace(ch); // a new gasless channel, § 5.9 top-ups
      else await this.topUps.fund(ch, terms.amount);
      ch = await this.selector.channelFor(terms, origin);
    }
  }

  /** Signs the next voucher on `ch` for one call at `terms.amount`, or returns undefined when the deposit is short. */
  private reserve(ch: ChannelRecord, terms: ChannelRequirements, tl: TokenLimits): Payment | undefined {
    const price = terms.amount;
    const pending = ch.status === "opening" && ch.openAuthorization !== undefined;
    if (pending && terms.extra.open) ch.openFee = terms.extra.open.fee; // checked against maxOpenFee by prepare
    // What this call may cost: the price, and the open fee when it carries a gasless open (§ 5.9).
    const reserve = price + (pending ? (ch.openFee ?? 0n) : 0n);
    const next = nextVoucher(this.book, ch, reserve);
    if (next > (pending ? pendingDeposit(ch) : ch.deposit)) return undefined;
    ch.served ??= ch.signed;
    if (next - ch.served > tl.maxUnserved) {
      throw new ClientError("spending_limit", `channel ${ch.id} has ${ch.signed - ch.served} signed and not served; one more call would be above maxUnservedPerChannel ${tl.maxUnserved}`);
    }
    if (tl.maxSpend !== undefined) {
      const total = signedTotal(this.s, ch.token) - ch.signed + next;
      if (total > tl.maxSpend) {
        throw new ClientError("spending_limit", `paying would bring the total signed to ${total}, above maxSpend ${tl.maxSpend}`);
      }
    }
    const reservation = Reservation.take(this.s, this.book, ch, reserve);
    const k = ch.token.toLowerCase();
    this.s.stats.amountSigned[k] = (this.s.stats.amountSigned[k] ?? 0n) + (next - ch.signed);
    ch.signed = next;
    const voucher = this.s.signerFor(ch.escrow).sign(ch.id, next);
    this.s.stats.vouchersSigned++;
    this.s.persister.schedule();
    if (!pending) this.topUps.maybeTopUp(ch, price);
    const open = pending ? ch.openAuthorization : undefined;
    const flags = this.book.flagsOf(ch);
    let release: (() => void) | undefined;
    if (open) {
      const gate = new Promise<void>((r) => (release = r));
      flags.openGate = gate;
      const inner = release!;
      release = () => {
        if (flags.openGate === gate) flags.openGate = undefined;
        inner();
      };
    }
    this.gasless.begin(ch);
    let finished = false;
    const finish = (outcome: RequestOutcome = "unknown") => {
      if (finished) return;
      finished = true;
      reservation.end(outcome);
      release?.();
      this.gasless.end(ch);
    };
    const header = encodePaymentSignature({ x402Version: X402_VERSION, accepted: terms, payload: open ? { ...voucher, open } : voucher });
    return { channel: ch, voucher, terms, header, open, reservation, finish };
  }
}


/**
 * Signs a stream's top-up voucher (docs/protocol.md § 7.1, § 7.7): the stream's reservation grows by `amount` and the
 * voucher covers it with everything else in flight. Returns undefined (nothing signed) when a limit says no: the whole
 * stream above `maxRequestSpend`, the deposit, `maxSpend`, `maxUnservedPerChannel`.
 */
export function signTopUp(s: ClientSession, book: ChannelBook, payment: Payment, amount: bigint, tl: TokenLimits): { voucher: Voucher; header: string } | undefined {
  const ch = payment.channel;
  const r = payment.reservation;
  if (r.isEnded || amount <= 0n || r.amount + amount > tl.maxRequestSpend) return undefined;
  const next = nextVoucher(book, ch, amount);
  if (next > ch.deposit) return undefined;
  if (next - (ch.served ?? ch.signed) > tl.maxUnserved) return undefined;
  if (tl.maxSpend !== undefined && signedTotal(s, ch.token) - ch.signed + next > tl.maxSpend) return undefined;
  r.grow(amount);
  const k = ch.token.toLowerCase();
  s.stats.amountSigned[k] = (s.stats.amountSigned[k] ?? 0n) + (next - ch.signed);
  ch.signed = next;
  const voucher = s.signerFor(ch.escrow).sign(ch.id, next);
  s.stats.vouchersSigned++;
  s.persister.schedule();
  const header = encodePaymentSignature({ x402Version: X402_VERSION, accepted: payment.terms, payload: voucher });
  return { voucher, header };
}

/** Waits for `p`, at most `ms`; true when it settled in time. */
async function waitFor(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
    timer.unref?.();
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
