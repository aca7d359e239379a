/**
 * The `channel` scheme as a plug-in of the stock x402 client SDK (`@x402/core`'s `x402Client`, used by `@x402/fetch`,
 * `@x402/axios`, ...): a `SchemeNetworkClient` whose payments are vouchers of a {@link ChannelClient}, signed with its
 * session key on its channels, under its limits (allow-lists, maxPrice, maxSpend, maxUnservedPerChannel, deposits and
 * top-ups, escrow verification, the provider guard). Receipts and refusals go back into the same client state.
 *
 * The stock wrappers call a scheme with the requirements only, never the request URL, while the provider guard counts
 * by the origin actually called (not the `resource.url` a provider claims). {@link ChannelSchemeClient.attach} hooks
 * the `x402HTTPClient` to learn it; a payment for a 402 whose URL it did not see is refused (`invalid_argument`).
 *
 * Only types come from `@x402/core` (an optional peer dependency of this package): nothing of it is loaded here.
 */
import type { x402HTTPClient } from "@x402/core/client";
import type {
  PaymentPayloadContext,
  PaymentPayloadResult,
  PaymentRequired as X402PaymentRequired,
  PaymentRequirements,
  SchemeNetworkClient,
} from "@x402/core/types";
import type { PaymentCreationContext, PaymentResponseContext } from "@x402/core/client";
import {
  PAYMENT_ERROR_RECOVERY,
  SCHEME,
  X402_VERSION,
  formatWireAmount,
  openAuthorizationToJson,
  isPaymentErrorCode,
  parsePaymentResponse,
  parseRequirements,
  type ChannelRequirements,
  type PaymentErrorCode,
  type PaymentRequired,
} from "@paychan/protocol";
import type { RequestOutcome } from "../channels/in-flight";
import type { ChannelClient, PayingParts } from "../client";
import { ClientError } from "../errors";
import { stripHint } from "../paying/routes";
import { learnFromRefusal } from "../paying/resync";
import type { Payment } from "../paying/vouchers";

/** A voucher handed to the stock client, and what its answer must be booked against. */
interface Pending {
  payment: Payment;
  origin: string;
  /** The 402 it paid (a retry after a refusal pays the same one again). */
  required: X402PaymentRequired;
}

/** Codes after which a new voucher may succeed (the protocol's classification, as in our own fetch). */
const retryable = (code: string) => isPaymentErrorCode(code) && PAYMENT_ERROR_RECOVERY[code].retry;

/**
 * A `SchemeNetworkClient` for the `channel` scheme over an agent's {@link ChannelClient}.
 * ```ts
 * const channel = new ChannelSchemeClient(agent);
 * const client = new x402Client().register("eip155:8453", channel)
 *   .setSpendControls({ allowedAssets: [{ network: "eip155:8453", asset: usdc }] }); // our limits apply as well
 * const pay = wrapFetchWithPayment(fetch, channel.attach(new x402HTTPClient(client)));
 * ```
 */
export class ChannelSchemeClient implements SchemeNetworkClient {
  readonly scheme = SCHEME;
  readonly schemeHooks = {
    onBeforePaymentCreation: (ctx: PaymentCreationContext) => this.beforeCreation(ctx),
    onPaymentResponse: (ctx: PaymentResponseContext) => this.onResponse(ctx),
  };

  private readonly parts: PayingParts;
  /** The origin each 402 came from (seen by the HTTP client's hook), then each selected offer's. */
  private readonly origins = new WeakMap<object, string>();
  private readonly offers = new WeakMap<object, { origin: string; required: X402PaymentRequired }>();
  /** Vouchers handed out, by their `payload` object (the stock client sends it as is). */
  private readonly pending = new WeakMap<object, Pending>();
  /** 402s already paid twice (the one retry after a refusal is spent). */
  private readonly retried = new WeakSet<object>();

  constructor(readonly agent: ChannelClient) {
    this.parts = agent.payingParts();
  }

  /**
   * Hooks `http` (the stock `x402HTTPClient` the wrapper will use) so the plug-in learns which URL each 402 answered.
   * Returns `http`, for `wrapFetchWithPayment(fetch, channel.attach(new x402HTTPClient(client)))`.
   */
  attach<T extends Pick<x402HTTPClient, "onPaymentRequired">>(http: T): T {
    http.onPaymentRequired(async ({ paymentRequired, requestUrl }) => {
      try {
        this.origins.set(paymentRequired, new URL(requestUrl).origin);
        this.parts.session.stats.challenges++;
      } catch {
        // Not a URL: no origin, so no payment.
      }
    });
    return http;
  }

  private async beforeCreation(ctx: PaymentCreationContext): Promise<void> {
    const origin = this.origins.get(ctx.paymentRequired);
    if (origin) this.offers.set(ctx.selectedRequirements, { origin, required: ctx.paymentRequired });
  }

  /** Signs the voucher of one call (the stock client's `createPaymentPayload`). Throws {@link ClientError}. */
  async createPaymentPayload(x402Version: number, requirements: PaymentRequirements, context?: PaymentPayloadContext): Promise<PaymentPayloadResult> {
    try {
      return await this.create(x402Version, requirements, context);
    } catch (e) {
      // The stock wrappers keep only the message: put the stable code first.
      if (e instanceof ClientError) throw new ClientError(e.code, `[${e.code}] ${e.shortMessage}`, { cause: e, details: e.details, serverCode: e.serverCode, status: e.status });
      throw e;
    }
  }

  private async create(x402Version: number, requirements: PaymentRequirements, context?: PaymentPayloadContext): Promise<PaymentPayloadResult> {
    const { session: s, vouchers } = this.parts;
    if (x402Version !== X402_VERSION) throw new ClientError("untrusted_terms", `the channel scheme is x402 version ${X402_VERSION}, not ${x402Version}`);
    const seen = this.offers.get(requirements);
    if (!seen) {
      throw new ClientError("invalid_argument", "the plug-in did not see which URL this 402 answered", {
        details: "Pass the x402HTTPClient through channel.attach(...) before wrapping fetch with it.",
      });
    }
    await s.ready();
    let terms: ChannelRequirements;
    try {
      terms = stripHint(parseRequirements(requirements));
    } catch (e) {
      throw new ClientError("untrusted_terms", "the provider's channel offer is malformed", { cause: e });
    }
    const cap = context?.maxAmountPerPayment;
    if (cap !== undefined && /^\d+$/.test(cap) && terms.amount > BigInt(cap)) {
      throw new ClientError("spending_limit", `the price ${terms.amount} is above the x402 client's maxAmountPerPayment ${cap}`);
    }
    s.guard.assertMaySign(seen.origin);
    // As our fetch does: allow-lists, maxPrice, escrow verification, then the channel (opened or topped up) and the
    // voucher under maxSpend and maxUnservedPerChannel.
    const payment = await vouchers.prepare(terms, seen.origin);
    const payload: Record<string, unknown> = {
      channelId: payment.voucher.channelId,
      cumulativeAmount: formatWireAmount(payment.voucher.cumulativeAmount),
      signature: payment.voucher.signature,
    };
    // A gasless open (docs/protocol.md § 5.9): the provider opens the channel from the payer's signature.
    if (payment.open) payload.open = openAuthorizationToJson(payment.open);
    this.pending.set(payload, { payment, origin: seen.origin, required: seen.required });
    return { x402Version: X402_VERSION, payload };
  }

  /**
   * The answer to a paid request: a receipt (served), a 402 (refused: learn from its hint, and ask the stock wrapper
   * for its one retry when the code allows), or neither (a 5xx, or a provider that sends no receipt: not served).
   */
  private async onResponse(ctx: PaymentResponseContext): Promise<void | { recovered: true }> {
    const p = this.pending.get(ctx.paymentPayload.payload);
    if (!p) return;
    this.pending.delete(ctx.paymentPayload.payload);
    const outcome: { value: RequestOutcome } = { value: "unknown" };
    try {
      return await this.answer(p, ctx, outcome);
    } finally {
      p.payment.finish(outcome.value); // after the answer was applied: calls waiting for a carried open see it
    }
  }

  private async answer(p: Pending, ctx: PaymentResponseContext, outcome: { value: RequestOutcome }): Promise<void | { recovered: true }> {
    const { session: s, book, receipts, gasless } = this.parts;
    const served = ctx.settleResponse?.success === true;
    if (served) {
      receipts.markServed(p.payment);
      s.guard.onServed(p.origin);
      s.stats.paidCalls++;
      try {
        const r = parsePaymentResponse(ctx.settleResponse);
        if (receipts.apply(p.payment, r)) outcome.value = { receipt: r.amount };
      } catch {
        // A malformed receipt changes nothing we rely on.
      }
      if (p.payment.open) gasless.confirm(p.payment.channel); // served: the provider opened it
      return;
    }
    const refusal = ctx.paymentRequired ? channelRefusal(ctx.paymentRequired) : undefined;
    if (!refusal) {
      s.guard.onRefusedCall(p.origin); // paid, and not served
      return;
    }
    outcome.value = "refused"; // a 402 of the channel scheme: the provider committed nothing
    s.stats.challenges++;
    s.guard.onRefusedAttempt(p.origin);
    let mayRetry = retryable(refusal.error);
    try {
      if (p.payment.open) mayRetry = await gasless.onRefused(p.payment.channel, refusal.error, refusal);
      else await learnFromRefusal(s, book, p.payment.channel, refusal.error, refusal);
    } catch {
      // An untrusted hint teaches nothing; the refusal still counts.
    }
    if (mayRetry && !this.retried.has(p.required)) {
      this.retried.add(p.required);
      s.stats.retries++;
      s.emit({ type: "retry", url: ctx.paymentPayload.resource?.url ?? p.origin, serverCode: refusal.error });
      return { recovered: true };
    }
    s.guard.onRefusedCall(p.origin);
  }
}

/**
 * A 402 answer as our resync needs it: its code and the `channel` offers (with their hints); undefined when it is not
 * a channel-scheme refusal. A stock server's error that is not one of our codes reads as `payment_required`.
 */
function channelRefusal(r: X402PaymentRequired): PaymentRequired | undefined {
  const accepts: ChannelRequirements[] = [];
  for (const a of r.accepts ?? []) {
    if (a?.scheme !== SCHEME) continue;
    try {
      accepts.push(parseRequirements(a));
    } catch {
      // A malformed offer teaches nothing.
    }
  }
  if (accepts.length === 0) return undefined;
  const error: PaymentErrorCode = typeof r.error === "string" && isPaymentErrorCode(r.error) ? r.error : "payment_required";
  return { x402Version: X402_VERSION, error, resource: { url: r.resource?.url ?? "" }, accepts };
}
