/**
 * Paying the x402 `exact` scheme (docs/protocol.md § 7): one EIP-3009 `TransferWithAuthorization` per call, signed by
 * the payer's account (the tokens are the wallet's; the session key never signs one) for exactly the offer's amount to
 * its `payTo`. Before signing: the allow-lists (network, asset, payee), the owner's unit (without `limits.assets` only
 * USDC), `maxPrice`, `maxSpend` (counted with the channels' vouchers, reserved before the signature so concurrent calls
 * cannot pass it together), and the token's own EIP-712 domain (token-domain.ts). Each authorization has a fresh random
 * nonce and `validBefore` = now + min(the offer's `maxTimeoutSeconds`, `exactMaxTimeoutSeconds`); none is ever sent twice.
 * "Now" covers both clocks that judge the window: this machine's (a stock facilitator's checks) and the chain's (the
 * token's, and our provider's checks), whose offset is read from the latest block on first use, every 10 minutes, and
 * after a provider refused a window.
 */
import { toHex, type Address } from "viem";
import {
  HEADER_PAYMENT_RESPONSE,
  X402_VERSION,
  decodeExactPaymentResponse,
  encodeExactPaymentSignature,
  exactTypedData,
  type ExactAuthorization,
  type ExactRequirements,
} from "@paychan/protocol";
import { chainTime } from "../chain";
import { ClientError, shortMessageOf } from "../errors";
import { checkExactTrust, type TokenLimits } from "../limits";
import type { ExactPaymentInfo } from "../options";
import type { ClientSession } from "../session";
import { exactKey, signedTotal } from "../spending";
import type { ExactTotals } from "../store";

/** `validAfter` is this far in the past: a provider's (or the chain's) clock a little behind ours still accepts it. */
const VALID_AFTER_SLACK_SECONDS = 60n;
/** How long a reading of the chain's clock offset is used. */
const CLOCK_TTL_MS = 10 * 60_000;
/** Refusals of an authorization's window: the chain's clock is read again before a new authorization. */
const WINDOW_REFUSALS = new Set([
  "authorization_not_yet_valid",
  "authorization_expired",
  "invalid_exact_evm_payload_authorization_valid_before",
  "invalid_exact_evm_payload_authorization_valid_after",
]);

/**
 * Codes of our provider (docs/protocol.md § 5.8) saying it refused an `exact` authorization without using it, where a
 * new one may pass: the terms changed (amount, recipient), the window was refused, or the transfer reverted (the nonce
 * was not consumed). Not `authorization_used` (a transfer may have happened), nor a signature or balance refusal.
 */
const NOT_USED_CODES = new Set([
  "requirements_mismatch",
  "authorization_value_mismatch",
  "authorization_recipient_mismatch",
  "authorization_not_yet_valid",
  "authorization_expired",
  "transfer_failed",
]);

/** The same for a stock x402 server (its `error` text, our `reason`): the facilitator refused the validity window. */
const NOT_USED_REASONS = new Set(["invalid_exact_evm_payload_authorization_valid_before", "invalid_exact_evm_payload_authorization_valid_after"]);

/** A signed `exact` authorization ready to send, and what it pays for. */
export interface ExactPayment {
  scheme: "exact";
  offer: ExactRequirements;
  authorization: ExactAuthorization;
  /** The `PAYMENT-SIGNATURE` header value. */
  header: string;
}

/**
 * Whether a 402 answering an `exact` payment says the authorization was not used, so that one new authorization (a
 * new nonce) may be sent ({@link NOT_USED_CODES}, or a stock server's refusal of the validity window). Anything else
 * ends the call: the provider may hold the authorization and submit it until it expires.
 */
export function exactMayRetry(code: string, reason?: string): boolean {
  if (reason !== undefined) return NOT_USED_REASONS.has(reason);
  return NOT_USED_CODES.has(code);
}

/** Signs `exact` authorizations under the owner's limits and records what each paid call paid. */
export class ExactPayer {
  private readonly payments = new WeakMap<Response, ExactPaymentInfo>();
  /** Chain time − this machine's time (seconds), and when it was read. */
  private clock?: { offset: number; at: number } | Promise<{ offset: number; at: number }>;

  constructor(private readonly s: ClientSession) {}

  /** A provider refused an authorization with `code` / `reason`: after a window refusal, the chain's clock is read again. */
  onRefused(code: string, reason?: string): void {
    if (WINDOW_REFUSALS.has(reason ?? code)) this.clock = undefined;
  }

  /** The chain's clock offset (read when unknown or older than {@link CLOCK_TTL_MS}; a failed read is not kept). */
  private async chainOffset(): Promise<number> {
    const c = await this.clock;
    if (c && Date.now() - c.at < CLOCK_TTL_MS) return c.offset;
    const p = chainTime(this.s.ctx).then(
      (t) => ({ offset: t - Date.now() / 1000, at: Date.now() }),
      (e) => {
        this.clock = undefined;
        throw e;
      },
    );
    this.clock = p;
    return (await p).offset;
  }

  /**
   * Throws `untrusted_terms` / `spending_limit` unless the owner's limits allow paying `offer` (nothing is signed);
   * returns the token's limits. Reads the token's decimals, symbol and EIP-712 domain once.
   */
  async assertAllowed(offer: ExactRequirements): Promise<TokenLimits> {
    checkExactTrust(offer, this.s.limits, this.s.chainId);
    const tl = await this.s.tokens.limitsOf(offer.asset);
    if (offer.amount > tl.maxPrice) {
      throw new ClientError("spending_limit", `the price ${offer.amount} is above maxPrice ${tl.maxPrice} (atomic units)`);
    }
    await this.s.domains.assertDomain(this.s.chainId, offer.asset, offer.extra.name, offer.extra.version);
    return tl;
  }

  /** Signs one authorization for `offer` (checked against the limits first, and `maxSpend` reserved). */
  async prepare(offer: ExactRequirements): Promise<ExactPayment> {
    const tl = await this.assertAllowed(offer);
    const totals = this.totals(offer.asset);
    if (tl.maxSpend !== undefined) {
      const total = signedTotal(this.s, offer.asset) + offer.amount;
      if (total > tl.maxSpend) throw new ClientError("spending_limit", `paying would bring the total signed to ${total}, above maxSpend ${tl.maxSpend}`);
    }
    totals.signed += offer.amount; // reserved before the (asynchronous) chain read and signature
    let signature: `0x${string}`;
    let authorization: ExactAuthorization;
    try {
      const offset = await this.chainOffset();
      const wall = Math.floor(Date.now() / 1000);
      const chain = Math.floor(Date.now() / 1000 + offset);
      const earliest = BigInt(Math.min(wall, chain));
      const window = BigInt(Math.min(offer.maxTimeoutSeconds, this.s.exactMaxTimeoutSeconds));
      authorization = {
        from: this.s.payer,
        to: offer.payTo,
        value: offer.amount,
        validAfter: earliest > VALID_AFTER_SLACK_SECONDS ? earliest - VALID_AFTER_SLACK_SECONDS : 0n,
        validBefore: BigInt(Math.max(wall, chain)) + window,
        nonce: toHex(globalThis.crypto.getRandomValues(new Uint8Array(32))),
      };
      try {
        signature = await this.s.ctx.walletClient.signTypedData({ account: this.s.ctx.account, ...exactTypedData(offer, authorization) });
      } catch (e) {
        throw new ClientError("chain_failure", `signing the exact authorization failed: ${shortMessageOf(e)}`, { cause: e });
      }
    } catch (e) {
      totals.signed -= offer.amount; // nothing was signed
      throw e;
    }
    const k = offer.asset.toLowerCase();
    this.s.stats.amountSigned[k] = (this.s.stats.amountSigned[k] ?? 0n) + offer.amount;
    this.s.persister.schedule();
    const header = encodeExactPaymentSignature({ x402Version: X402_VERSION, accepted: offer, payload: { signature, authorization } });
    return { scheme: "exact", offer, authorization, header };
  }

  /** Records that `res` (for `url`, after `requests` HTTP requests) answered `payment`; applies its receipt. */
  onServed(payment: ExactPayment, res: Response, requests: number, url: string): void {
    const { offer, authorization } = payment;
    const info: ExactPaymentInfo = { scheme: "exact", asset: offer.asset, payTo: offer.payTo, price: offer.amount, authorization, requests };
    const h = res.headers.get(HEADER_PAYMENT_RESPONSE);
    if (h) {
      try {
        const r = decodeExactPaymentResponse(h);
        if (r.payer.toLowerCase() === this.s.payer.toLowerCase() && r.network === offer.network) {
          info.receipt = r;
          info.transaction = r.transaction;
          const totals = this.totals(offer.asset);
          totals.paid += authorization.value; // exact: the transfer is of the authorization's value, whatever the receipt says
          totals.lastTransaction = r.transaction;
          const k = offer.asset.toLowerCase();
          this.s.stats.amountPaid[k] = (this.s.stats.amountPaid[k] ?? 0n) + authorization.value;
          this.s.persister.schedule();
          this.s.emit({ type: "exact_paid", url, asset: offer.asset, payTo: offer.payTo, amount: authorization.value, nonce: authorization.nonce, txHash: r.transaction });
        }
      } catch {
        // A malformed receipt changes nothing we rely on.
      }
    }
    this.s.stats.paidCalls++;
    this.payments.set(res, info);
  }

  /** What the call that produced `res` paid with `exact` (undefined otherwise). */
  paymentOf(res: Response): ExactPaymentInfo | undefined {
    return this.payments.get(res);
  }

  /** The state's `exact` totals of `token` (created on first use). */
  private totals(token: Address): ExactTotals {
    const exact = (this.s.state.exact ??= {});
    const k = exactKey(this.s, token);
    return (exact[k] ??= { chainId: this.s.chainId, payer: this.s.payer, token, signed: 0n, paid: 0n });
  }
}
