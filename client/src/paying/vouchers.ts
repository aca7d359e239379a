/**
 * The voucher of one paid call (docs/protocol.md § 7, client concurrency rule): each call signs
 * `max(signed, accepted, spent) + price` and raises `signed` synchronously, so the k-th call in flight on a channel
 * signs `base + k × price` and no call waits for another. Nothing is signed above the channel's on-chain deposit or
 * the owner's `maxSpend`, nor more than `maxUnservedPerChannel` above the highest voucher served; a short deposit waits
 * for a top-up (twice at most), then fails `insufficient_funds`.
 */
import { X402_VERSION, encodePaymentSignature, type ChannelRequirements, type Voucher } from "@paychan/protocol";
import { max } from "../bigint";
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
}

/** Signs the vouchers of paid calls on the channels the selector picks, topping up when a deposit is short. */
export class VoucherIssuer {
  constructor(
    private readonly s: ClientSession,
    private readonly selector: ChannelSelector,
    private readonly topUps: TopUps,
  ) {}

  /** The payment of one call at `terms` (checked against the limits first), on a channel for `origin`. */
  async prepare(terms: ChannelRequirements, origin: string): Promise<Payment> {
    const tl = await assertAllowed(this.s, terms);
    let ch = await this.selector.channelFor(terms, origin);
    for (let attempt = 0; ; attempt++) {
      const payment = this.reserve(ch, terms, tl);
      if (payment) return payment;
      if (attempt >= 2) {
        throw new ClientError("insufficient_funds", `channel ${ch.id} has ${ch.deposit - ch.signed} left, the call needs ${terms.amount}`);
      }
      await this.topUps.fund(ch, terms.amount);
      ch = await this.selector.channelFor(terms, origin);
    }
  }

  /** Signs the next voucher on `ch` for one call at `terms.amount`, or returns undefined when the deposit is short. */
  private reserve(ch: ChannelRecord, terms: ChannelRequirements, tl: TokenLimits): Payment | undefined {
    const price = terms.amount;
    const next = max(ch.signed, ch.accepted, ch.spent) + price;
    if (next > ch.deposit) return undefined;
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
    const k = ch.token.toLowerCase();
    this.s.stats.amountSigned[k] = (this.s.stats.amountSigned[k] ?? 0n) + (next - ch.signed);
    ch.signed = next;
    const voucher = this.s.signerFor(ch.escrow).sign(ch.id, next);
    this.s.stats.vouchersSigned++;
    this.s.persister.schedule();
    this.topUps.maybeTopUp(ch, price);
    const header = encodePaymentSignature({ x402Version: X402_VERSION, accepted: terms, payload: voucher });
    return { channel: ch, voucher, terms, header };
  }
}
