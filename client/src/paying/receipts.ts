/**
 * Receipts: the provider's `PAYMENT-RESPONSE` of a served call, what the client keeps of it (the provider's
 * accepted / spent, only when consistent with what we signed), and what each paid response paid.
 */
import { HEADER_PAYMENT_RESPONSE, decodePaymentResponse, type PaymentResponse } from "@paychan/protocol";
import type { GaslessOpens } from "../channels/gasless";
import type { ChannelPaymentInfo, PaymentInfo } from "../options";
import type { ClientSession } from "../session";
import type { Payment } from "./vouchers";

/** Decodes a response's `PAYMENT-RESPONSE` receipt, or undefined (also for a malformed one). */
export function readReceipt(res: Response): PaymentResponse | undefined {
  const h = res.headers.get(HEADER_PAYMENT_RESPONSE);
  if (!h) return undefined;
  try {
    return decodePaymentResponse(h);
  } catch {
    return undefined;
  }
}

/** What each paid response paid (held weakly: forgotten with the response). */
export class Receipts {
  private readonly payments = new WeakMap<Response, PaymentInfo>();

  constructor(
    private readonly s: ClientSession,
    private readonly gasless: GaslessOpens,
  ) {}

  /** Records that `res`, served after `requests` HTTP requests, was paid with `payment`; applies its receipt. */
  onServed(payment: Payment, res: Response, requests: number): void {
    const ch = payment.channel;
    if (res.status < 500) this.markServed(payment);
    const info: ChannelPaymentInfo = { channelId: ch.id, cumulativeAmount: payment.voucher.cumulativeAmount, price: payment.terms.amount, requests };
    if (payment.open && res.status < 500) info.open = { openedBy: "provider", fee: ch.openFee ?? 0n, deposit: payment.open.amount };
    const h = res.headers.get(HEADER_PAYMENT_RESPONSE);
    if (h) {
      try {
        const r = decodePaymentResponse(h);
        if (this.apply(payment, r)) info.receipt = r;
        // A receipt for the channel: the provider opened it (it serves only once the channel exists, § 5.9).
        if (info.receipt && payment.open) this.gasless.confirm(ch);
      } catch {
        // A malformed receipt changes nothing we rely on.
      }
    }
    this.s.stats.paidCalls++;
    this.payments.set(res, info);
  }

  /**
   * Applies the receipt `r` of a call paid with `payment` (the provider's accepted / spent, kept only when consistent
   * with what we signed); false when it names another channel. Also used by the x402 SDK plug-in.
   */
  apply(payment: Payment, r: PaymentResponse): boolean {
    const ch = payment.channel;
    if (r.extra.channelId !== ch.id.toLowerCase() && r.extra.channelId !== ch.id) return false;
    // The provider's view, kept only when consistent with what we signed.
    if (r.extra.accepted <= ch.signed && r.extra.spent <= r.extra.accepted) {
      if (r.extra.accepted > ch.accepted) ch.accepted = r.extra.accepted;
      if (r.extra.spent > ch.spent) ch.spent = r.extra.spent;
    }
    ch.lastReceipt = r;
    const k = ch.token.toLowerCase();
    this.s.stats.amountPaid[k] = (this.s.stats.amountPaid[k] ?? 0n) + r.amount;
    this.s.persister.schedule();
    return true;
  }

  /**
   * A paid call was served (status below 500): its voucher counts as served (what `maxUnservedPerChannel` measures).
   */
  markServed(payment: Payment): void {
    const ch = payment.channel;
    if (ch.served === undefined || payment.voucher.cumulativeAmount > ch.served) {
      ch.served = payment.voucher.cumulativeAmount;
      this.s.persister.schedule();
    }
  }

  /** `to` (a wrapper of `from`, e.g. a paid stream's body) paid what `from` paid. */
  alias(from: Response, to: Response): void {
    const info = this.payments.get(from);
    if (info) this.payments.set(to, info);
  }

  /** What the call that produced `res` paid (undefined for an unpaid response). */
  paymentOf(res: Response): PaymentInfo | undefined {
    return this.payments.get(res);
  }
}
