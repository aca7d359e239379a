/**
 * The paying fetch (docs/protocol.md § 5): a route whose terms are remembered pays on its first attempt (one round
 * trip); otherwise the provider's 402 names the terms and the call is sent again with a voucher. A call refused
 * because its voucher went stale (or the provider's state moved) is retried once with a fresh voucher, after the
 * resynchronisation of paying/resync.ts. A 402 offering `exact` (and no `channel` the owner's limits and preference
 * pick, paying/offers.ts) is paid with one EIP-3009 authorization (paying/exact.ts): two round trips, never remembered
 * per route, retried with a new authorization only when the provider says the first was not used. A 402 of another
 * scheme is returned to the caller untouched. Refused and served paid calls feed the provider guard
 * (provider-guard.ts): too many refusals in a row stop the signing; a 402 answering an `exact` payment is a refused
 * call at once (the provider may hold the authorization). A paid request that fails in transport once connected (the
 * provider read the voucher and dropped the connection) counts as refused.
 */
import {
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_SIGNATURE,
  PAYMENT_ERROR_RECOVERY,
  PaymentError,
  decodeOffers,
  isPaymentErrorCode,
  type ExactRequirements,
  type PaymentRequired,
} from "@paychan/protocol";
import type { ChannelBook } from "../channels/book";
import type { GaslessOpens } from "../channels/gasless";
import { ClientError } from "../errors";
import { normalizeRequest, routeKey, type FetchInput } from "../request";
import type { ClientSession } from "../session";
import type { ChannelPaymentInfo, ExactPaymentInfo } from "../options";
import { ExactPayer, exactMayRetry, type ExactPayment } from "./exact";
import { chooseScheme, payableOffers, type Offer } from "./offers";
import type { Receipts } from "./receipts";
import { learnFromRefusal } from "./resync";
import { isPaidStream, payStream } from "./stream";
import { rememberRoute } from "./routes";
import type { Payment, VoucherIssuer } from "./vouchers";
import type { RequestOutcome } from "../channels/in-flight";

/** A 402 as the paying fetch reads it: the `channel` challenge, its `exact` offers, and a stock server's reason. */
type Challenge = PaymentRequired & { exact: ExactRequirements[]; reason?: string };

/** Codes after which a new voucher (or channel) may succeed: one retry (the protocol's classification). */
const retryable = (code: string) => isPaymentErrorCode(code) && PAYMENT_ERROR_RECOVERY[code].retry;

/** Failures before any connection exists (refused, no such host, unreachable): the voucher never left this process. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);

/** An `http_failure` after which the provider may hold the voucher sent (anything but a failure to connect). */
function voucherMayHaveLeft(e: unknown): boolean {
  if (!(e instanceof ClientError) || e.code !== "http_failure") return false;
  const fetchError = e.cause as { cause?: { code?: string } } | undefined;
  return !NOT_CONNECTED.has(fetchError?.cause?.code ?? "");
}

/** fetch with payment: sends, reads the 402 challenge, pays, and retries at most once. */
export class PayingFetch {
  constructor(
    private readonly s: ClientSession,
    private readonly book: ChannelBook,
    private readonly vouchers: VoucherIssuer,
    private readonly receipts: Receipts,
    private readonly gasless: GaslessOpens,
    private readonly exact: ExactPayer = new ExactPayer(s),
  ) {}

  /** What the call that produced `res` paid with `exact` (channel payments: {@link Receipts.paymentOf}). */
  exactPaymentOf(res: Response): ExactPaymentInfo | undefined {
    return this.exact.paymentOf(res);
  }

  /** fetch, paying the provider when it asks (`channel` or `exact`). Throws {@link ClientError} when it will not pay. */
  async fetch(input: FetchInput, init?: RequestInit): Promise<Response> {
    await this.s.ready();
    const req = await normalizeRequest(input, init);
    const key = routeKey(req.method, req.url);
    const origin = new URL(req.url).origin;
    // Remembered terms are `channel` terms: paid at once only when `channel` is the owner's first choice.
    let terms: Offer | undefined = this.s.schemes[0] === "channel" ? this.s.routes.get(key) : undefined;
    let probed = false;
    let retried = false;
    let requests = 0;
    let paidRefused = false;
    try {
      for (;;) {
        if (terms) this.s.guard.assertMaySign(origin);
        const payment: Payment | ExactPayment | undefined = !terms
          ? undefined
          : terms.scheme === "exact"
            ? await this.exact.prepare(terms)
            : await this.vouchers.prepare(terms, origin);
        let outcome: RequestOutcome | "streaming" = "unknown";
        try {
          const headers = new Headers(req.init.headers);
          if (payment) headers.set(HEADER_PAYMENT_SIGNATURE, payment.header);
          let res: Response;
          try {
            res = await this.s.http(req.url, { ...req.init, headers });
          } catch (e) {
            // A paid request that failed in transport once connected (dropped or reset, an answer that cannot be
            // parsed): the provider may hold the voucher and served nothing, a refused paid call. The caller's own
            // abort or timeout (not an http_failure) is not the provider's doing.
            if (payment && voucherMayHaveLeft(e)) paidRefused = true;
            throw e;
          }
          requests++;
          if (res.status !== 402) {
            if (payment) {
              if ("scheme" in payment) this.exact.onServed(payment, res, requests, req.url);
              else {
                this.receipts.onServed(payment, res, requests);
                const info = this.receipts.paymentOf(res) as ChannelPaymentInfo;
                if (info.receipt) outcome = { receipt: info.receipt.amount };
                else if (isPaidStream(payment, res)) {
                  // A paid stream: its reservation lives until the stream ends (paying/stream.ts finishes it).
                  const wrapped = payStream(this.s, this.book, this.receipts, payment, res, req.url, info);
                  this.receipts.alias(res, wrapped);
                  outcome = "streaming";
                  res = wrapped;
                }
              }
              if (res.status < 500) this.s.guard.onServed(origin);
              else this.s.guard.onRefusedCall(origin);
            }
            return res;
          }
          const challenge = this.readChallenge(res);
          if (!challenge) {
            if (payment) this.s.guard.onRefusedCall(origin); // paid, and not served
            return res; // not a 402 of the channel scheme: the caller's business
          }
          this.s.stats.challenges++;
          await res.arrayBuffer().catch(() => undefined); // free the connection
          const code = challenge.error;
          outcome = "refused"; // a 402 of the channel scheme: the provider committed nothing
          let openRetry = false;
          const paidExact = payment !== undefined && "scheme" in payment;
          if (paidExact) {
            this.s.guard.onRefusedCall(origin); // the provider may hold the authorization: refused at once
            this.exact.onRefused(code, challenge.reason);
          } else if (payment) {
            paidRefused = true;
            this.s.guard.onRefusedAttempt(origin);
            if (payment.open) {
              // A refused gasless open: the chain says whether it happened; otherwise a retry may pass, or it was refused.
              if (!(await this.gasless.onRefused(payment.channel, code, challenge))) throw openRefused(code, res.status, challenge.reason);
              openRetry = true;
            } else await learnFromRefusal(this.s, this.book, payment.channel, code, challenge);
          }
          const offers = payableOffers(this.s, challenge);
          if (!offers) throw refused(code, res.status, challenge.reason);
          const offer = await chooseScheme(this.s, this.exact, offers, (scheme, error) => this.s.emit({ type: "scheme_passed_over", url: req.url, scheme, error }));
          if (offer.scheme === "channel") rememberRoute(this.s, key, offer);
          if (!payment) {
            // No voucher was sent: this 402 gave the route's terms, which the next attempt pays.
            if (probed) throw refused(code, res.status, "the provider asked for payment twice");
            probed = true;
          } else {
            const mayRetry = paidExact ? exactMayRetry(code, challenge.reason) : openRetry || retryable(code);
            if (retried || !mayRetry) throw openRetry ? openRefused(code, res.status, challenge.reason) : refused(code, res.status, challenge.reason);
            retried = true;
            this.s.stats.retries++;
            this.s.emit({ type: "retry", url: req.url, serverCode: code });
          }
          terms = offer;
        } finally {
          // After its answer was applied: waiters see it. A paid stream finishes when it ends.
          if (payment && !("scheme" in payment) && outcome !== "streaming") payment.finish(outcome);
        }
      }
    } catch (e) {
      if (paidRefused) this.s.guard.onRefusedCall(origin); // the call ended without being served
      throw e;
    }
  }

  /**
   * The 402's `PAYMENT-REQUIRED`, or undefined when absent, of another scheme, or offering no scheme this client pays;
   * malformed: `untrusted_terms`.
   */
  private readChallenge(res: Response): Challenge | undefined {
    const h = res.headers.get(HEADER_PAYMENT_REQUIRED);
    if (!h) return undefined;
    try {
      const c = decodeOffers(h);
      return payableOffers(this.s, c) ? c : undefined;
    } catch (e) {
      if (e instanceof PaymentError && e.code === "unsupported_scheme") return undefined;
      throw new ClientError("untrusted_terms", "the provider's PAYMENT-REQUIRED is malformed", { cause: e });
    }
  }
}

/** A gasless open the provider refused (nothing was opened or served). */
function openRefused(code: string, status: number, extra?: string): ClientError {
  return new ClientError("open_refused", `the provider refused to open the channel from the payer's signature: ${code}${extra ? ` (${extra.slice(0, 120)})` : ""}`, {
    serverCode: code,
    status,
    details: "Nothing was served. The signed open is kept and sent again by the next call (the provider opens it at most once).",
  });
}

function refused(code: string, status: number, extra?: string): ClientError {
  return new ClientError("payment_refused", `the provider refused the payment: ${code}${extra ? ` (${extra.slice(0, 120)})` : ""}`, {
    serverCode: code,
    status,
    details: extra,
  });
}
