/**
 * The framework-free payment core. Given a plain request description and the route's pricing, it answers either
 * "serve" (with a {@link Charge} to finish after the handler: receipt header, release on failure, metered amount)
 * or "reply" (402 with `PAYMENT-REQUIRED`, or 4xx/503, with a problem body).
 *
 * Order of checks for a paid request (docs/protocol.md, "Server accounting per channel"):
 *   header present → strict decode → terms echoed match ours → channel (memory → store → chain)
 *   → SIGNATURE (always, before any shortcut, even for a voucher that looks stale)
 *   → payee, token, finalized, close delay, deposit minimum, pending close vs. safety margin
 *   → v <= deposit (one chain re-read before `exceeds_deposit`)
 *   → one atomic store transaction (floor, used set, accepted, spent), durable before the handler runs.
 */
import type { Address, Hex } from "viem";
import type { Logger } from "pino";
import {
  BaseError,
  decodeCloseRequest,
  decodeExactPaymentSignature,
  decodePaymentSignature,
  encodeExactPaymentResponse,
  encodePaymentRequired,
  encodePaymentResponse,
  escrowDomain,
  ESCROW_DOMAIN_NAME,
  ESCROW_DOMAIN_VERSION,
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_RESPONSE,
  isSignerMismatch,
  networkOf,
  paymentSignatureScheme,
  EXACT_SCHEME,
  PaymentError,
  recoverCloseRequestSigner,
  SCHEME,
  ServiceError,
  VoucherVerifier,
  X402_VERSION,
  type ChannelHint,
  type ChannelRequirements,
  type ChannelStatus,
  type CloseRequest,
  type EscrowDomain,
  type Network,
  type PaymentErrorCode,
  type PaymentPayload,
} from "@paychan/protocol";
import type { ChannelView } from "../chain/view";
import type { ChainChannel, ChannelStore, StoredChannel } from "../store/types";
import { problem, PROBLEM_CONTENT_TYPE, type ErrorContext, type ProblemBody, type ServerErrorCode } from "./errors";
import { maxCharge, type RoutePricing } from "./pricing";
import { SignaturePool } from "./signature-pool";
import type { ExactPayments } from "../exact/payments";
import type { GaslessOpens } from "../open/opens";

/** A request as the core needs it (header names lowercase, as Node gives them). */
export interface PaymentRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The client's address (IP), for the per-source bound on chain reads of unknown channels. */
  source?: string;
}

/** Hooks for metrics; all optional. */
export interface PaymentObserver {
  verified?(seconds: number): void;
  refused?(code: ServerErrorCode, status: number): void;
  served?(charge: bigint): void;
  accountingCommitted?(seconds: number): void;
  finished?(p: { charged: bigint; released: bigint; failed: boolean }): void;
}

export interface PaymentCoreOptions {
  chainId: number;
  escrow: Address;
  token: Address;
  payee: Address;
  view: ChannelView;
  store: ChannelStore;
  /** Atomic units. */
  minDeposit: bigint;
  /** Seconds. */
  minCloseDelay: number;
  /** Seconds that must remain before a pending close's deadline. */
  closeSafetyMargin: number;
  /** Sizes the default window: `maxInFlight × highest route price`. */
  maxInFlight: number;
  /** Explicit window, atomic units (overrides the default). */
  window?: bigint;
  /** Worker threads for signature checks under concurrent load (default 0: inline); see signature-pool.ts. */
  verifyThreads?: number;
  /** Payment checks that may be in progress at once; more are refused 503 `overloaded` (default 1024). */
  maxPendingPayments?: number;
  maxTimeoutSeconds: number;
  /** Base URL for `resource.url`; default from the Host header, when its name is allowed (`allowedHosts`). */
  publicUrl?: string;
  /**
   * Without `publicUrl`: the host names (no port; IPv6 in brackets) whose Host header may name `resource.url`, on top of
   * the loopback names (localhost, 127.0.0.1, [::1]). A paid request naming another host is refused 421 `host_not_allowed`.
   */
  allowedHosts?: readonly string[];
  logger?: Logger;
  observer?: PaymentObserver;
  /**
   * The x402 `exact` scheme (docs/protocol.md § 5.8): when set, fixed-price routes offer `exact` after `channel` and
   * accept `exact` payments (settled on chain before the handler runs).
   */
  exact?: ExactPayments;
  /**
   * Gasless opens (docs/protocol.md § 5.9): when set, every channel offer carries `extra.open`, and a payment whose
   * payload carries `open` has its channel opened by the provider first (first charge: price + fee).
   */
  opens?: GaslessOpens;
}

/** A reply that is not "serve": status, headers and a problem body. */
export interface PaymentReply {
  kind: "reply";
  status: number;
  code: ServerErrorCode;
  headers: Record<string, string>;
  body: ProblemBody;
  /** The channel hint of a 402 refusal (also in `PAYMENT-REQUIRED` when there is a request to answer). */
  hint?: ChannelHint;
}

/** "Serve": the charge is committed; finish it after the handler. */
export interface PaymentGrant {
  kind: "serve";
  charge: Charge;
}

export type PaymentDecision = PaymentReply | PaymentGrant;

/** "Serve" after an `exact` payment: the transfer is confirmed on chain; nothing is left to finish. */
export interface ExactGrant {
  kind: "paid";
  scheme: typeof EXACT_SCHEME;
  payer: Address;
  amount: bigint;
  /** The transfer's transaction hash. */
  transaction: Hex;
  /** `PAYMENT-RESPONSE` naming the transaction. */
  headers: Record<string, string>;
}

/** What {@link PaymentCore.authorize} decides for an HTTP request: a channel charge, a settled `exact` payment, or a reply. */
export type RequestDecision = PaymentDecision | ExactGrant;

const HOST = /^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$/;
/** Host names always allowed in the Host header (a local server). */
export const LOOPBACK_HOSTS: readonly string[] = ["localhost", "127.0.0.1", "[::1]"];

/** The lowercase host name of a Host header value (port removed; IPv6 kept in brackets), or null when malformed. */
export function hostNameOf(host: string | string[] | undefined): string | null {
  if (typeof host !== "string" || !HOST.test(host)) return null;
  const h = host.toLowerCase();
  return h.startsWith("[") ? h.slice(0, h.indexOf("]") + 1) : h.split(":")[0];
}

function statusOf(c: { finalized: boolean; closesAt: number; payerCloseRequestedAt?: number }): ChannelStatus {
  if (c.finalized) return "finalized";
  if (c.closesAt !== 0 || (c.payerCloseRequestedAt ?? 0) !== 0) return "closing";
  return "open";
}

/**
 * A committed charge: what this request reserved on its channel. Call {@link Charge.report} on metered routes,
 * read {@link Charge.receiptHeaders} when sending headers, then {@link Charge.finish} once with the final status.
 */
export class Charge {
  private actual: bigint | null = null;
  private finished = false;

  constructor(
    private readonly core: PaymentCore,
    readonly channelId: Hex,
    readonly payer: Address,
    /** What was committed at accept: the price (added to `spent`), or the metered maximum (added to `reserved`). */
    readonly reserved: bigint,
    readonly metered: boolean,
    /** The channel as committed by this request's transaction. */
    readonly committed: StoredChannel,
    /** The voucher amount that paid for this request (a metered reservation's key in the store). */
    readonly voucher: bigint = 0n,
    /**
     * The open fee in `reserved` (a gasless open's first charge, docs/protocol.md § 5.9): charged whatever the handler
     * does (the open happened), never released.
     */
    readonly fee: bigint = 0n,
  ) {}

  /**
   * Metered routes: the actual charge, at most the reserved maximum (RangeError otherwise). May be called again to
   * change it until the response finishes; ignored afterwards.
   */
  report(amount: bigint): void {
    if (this.finished) return; // the response is over (e.g. the client went away); nothing left to change
    if (typeof amount !== "bigint" || amount < 0n) throw new RangeError("a charge is a non-negative bigint of atomic units");
    if (amount > this.reserved - this.fee) throw new RangeError(`charge ${amount} is above the reserved maximum ${this.reserved - this.fee}`);
    this.actual = amount;
  }

  /** What this request costs: the reported amount, else the reservation (with the open fee, if any). */
  get amount(): bigint {
    return this.actual === null ? this.reserved : this.actual + this.fee;
  }

  /** The `PAYMENT-RESPONSE` header as of now. */
  receiptHeaders(): Record<string, string> {
    const c = this.committed;
    // What the server counts against the channel: charges, open reservations, and this request as reported now.
    const spent = c.spent + c.reserved - (this.reserved - this.amount);
    return {
      [HEADER_PAYMENT_RESPONSE]: encodePaymentResponse({
        success: true,
        transaction: "",
        network: this.core.network,
        payer: this.payer,
        amount: this.amount,
        extra: { channelId: this.channelId, accepted: c.accepted, spent, deposit: c.deposit, remaining: c.deposit > spent ? c.deposit - spent : 0n },
      }),
    };
  }

  /**
   * Completes the charge once the handler answered: status >= 500 (or `failed`) releases the whole charge (the
   * voucher stays used); otherwise a metered route's reservation becomes a charge of `amount` (store
   * `finishReservation`: until then it was never claimable). Idempotent; never throws (a store failure is logged: a
   * fixed price stays charged, a metered reservation stays open until it expires, uncharged).
   */
  async finish(status: number, failed = false): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    const fail = failed || status >= 500;
    const release = fail ? this.reserved - this.fee : this.reserved - this.amount;
    try {
      if (this.metered) {
        const r = await this.core.store.finishReservation(this.channelId, this.voucher, this.reserved - release);
        if (!r.finished) this.core.logger?.warn({ channelId: this.channelId, charge: String(this.reserved - release) }, "the reservation had expired; not charged");
      } else if (release > 0n) await this.core.store.releaseCharge(this.channelId, release);
      this.core.observer?.finished?.({ charged: this.reserved - release, released: release, failed: fail });
    } catch (e) {
      this.core.logger?.error({ channelId: this.channelId, release: String(release), err: (e as Error).message }, "could not release a charge");
    }
  }
}

/** The payment core of one server (one escrow, token and payee). */
export class PaymentCore {
  readonly network: Network;
  readonly domain: EscrowDomain;
  readonly verifier: VoucherVerifier;
  /** Where signatures are checked: inline, or on a worker thread when several requests are in progress. */
  readonly signatures: SignaturePool;
  readonly store: ChannelStore;
  readonly view: ChannelView;
  readonly logger?: Logger;
  readonly observer?: PaymentObserver;
  private readonly o: PaymentCoreOptions;
  private readonly escrowLc: string;
  private readonly tokenLc: string;
  private readonly payeeLc: string;
  private highestPrice = 0n;
  /** Paid requests being authorized right now (decides where signatures are checked). */
  private authorizing = 0;
  private frozenWindow: bigint | null = null;
  private readonly allowedHosts: ReadonlySet<string>;

  constructor(o: PaymentCoreOptions) {
    this.o = o;
    this.network = networkOf(o.chainId);
    this.domain = escrowDomain(o.chainId, o.escrow);
    this.verifier = new VoucherVerifier(this.domain);
    this.signatures = new SignaturePool({ verifier: this.verifier, threads: o.verifyThreads ?? 0, logger: o.logger });
    this.store = o.store;
    this.view = o.view;
    this.logger = o.logger;
    this.observer = o.observer;
    this.escrowLc = o.escrow.toLowerCase();
    this.tokenLc = o.token.toLowerCase();
    this.payeeLc = o.payee.toLowerCase();
    this.allowedHosts = new Set((o.allowedHosts ?? []).map((h) => h.toLowerCase()));
    if (o.window !== undefined) {
      if (o.window <= 0n) throw new RangeError("the payment window must be above zero");
      this.frozenWindow = o.window;
    }
  }

  /** Stops the signature workers (pending checks finish inline). */
  async close(): Promise<void> {
    await this.signatures.close();
  }

  get options(): Readonly<PaymentCoreOptions> {
    return this.o;
  }

  /** Declares a route's highest possible charge (sizes the default window). Call while registering routes. */
  registerPrice(max: bigint): void {
    if (max > this.highestPrice) {
      if (this.frozenWindow !== null && this.o.window === undefined) {
        this.logger?.warn({ price: String(max) }, "a route was registered after the first paid request; the voucher window stays as it was");
      }
      this.highestPrice = max;
    }
  }

  /** The fixed used-voucher window (frozen at the first paid request unless configured). */
  window(atLeast = 0n): bigint {
    if (this.frozenWindow === null) {
      const highest = this.highestPrice > atLeast ? this.highestPrice : atLeast;
      this.frozenWindow = BigInt(this.o.maxInFlight) * (highest > 0n ? highest : 1n);
    }
    return this.frozenWindow;
  }

  /** The channel-scheme offer for a route. */
  requirements(pricing: RoutePricing, hint?: ChannelHint): ChannelRequirements {
    const r: ChannelRequirements = {
      scheme: SCHEME,
      network: this.network,
      asset: this.o.token,
      amount: maxCharge(pricing),
      payTo: this.o.payee,
      maxTimeoutSeconds: this.o.maxTimeoutSeconds,
      extra: {
        escrow: this.o.escrow,
        name: ESCROW_DOMAIN_NAME,
        version: ESCROW_DOMAIN_VERSION,
        minDeposit: this.o.minDeposit,
        minCloseDelay: this.o.minCloseDelay,
      },
    };
    if (this.o.opens) r.extra.open = this.o.opens.terms();
    if (pricing.kind === "stream") r.extra.stream = pricing.terms;
    if (hint) r.extra.channel = hint;
    return r;
  }

  private resourceUrl(req: PaymentRequest): string {
    const path = req.url.startsWith("/") ? req.url.split("?")[0] : "/";
    if (this.o.publicUrl) return this.o.publicUrl.replace(/\/$/, "") + path;
    const host = this.hostAllowed(req) ? (req.headers.host as string).toLowerCase() : "localhost";
    return `http://${host}${path}`;
  }

  /** Without PUBLIC_URL: whether the request's Host header names an allowed host (loopback or `allowedHosts`). */
  private hostAllowed(req: PaymentRequest): boolean {
    const name = hostNameOf(req.headers.host);
    if (name === null) return false;
    return LOOPBACK_HOSTS.includes(name) || this.allowedHosts.has(name);
  }

  /** A 402 (payment codes) or other error reply. */
  reply(code: ServerErrorCode, detail: string, req?: PaymentRequest, pricing?: RoutePricing, hint?: ChannelHint, context: ErrorContext = "payment"): PaymentReply {
    const body = problem(code, detail, context);
    const headers: Record<string, string> = { "content-type": PROBLEM_CONTENT_TYPE, "cache-control": "no-store" };
    if (body.status === 402 && req && pricing) {
      // `exact` second, on fixed prices only (a metered route's price is known after the handler; § 5.8).
      const exact = this.o.exact && pricing.kind === "fixed" ? [this.o.exact.offer(pricing.price)] : undefined;
      headers[HEADER_PAYMENT_REQUIRED] = encodePaymentRequired({
        x402Version: X402_VERSION,
        error: code as PaymentErrorCode,
        resource: { url: this.resourceUrl(req), ...(pricing.description ? { description: pricing.description } : {}), mimeType: pricing.mimeType ?? "application/json" },
        accepts: [this.requirements(pricing, hint)],
        ...(exact ? { exact } : {}),
      });
    }
    if (code === "upstream_unavailable" || code === "overloaded") headers["retry-after"] = "2";
    this.observer?.refused?.(code, body.status);
    return { kind: "reply", status: body.status, code, headers, body, ...(hint ? { hint } : {}) };
  }

  /** The client's resynchronisation hint for a channel of ours (null for other payees' channels). */
  async hint(chain: ChainChannel, stored?: StoredChannel | null): Promise<ChannelHint | undefined> {
    if (chain.payee.toLowerCase() !== this.payeeLc) return undefined;
    let s = stored;
    if (s === undefined) {
      try {
        s = await this.store.getChannel(chain.channelId);
      } catch {
        s = null;
      }
    }
    const h: ChannelHint = {
      channelId: chain.channelId,
      deposit: s && s.deposit > chain.deposit ? s.deposit : chain.deposit,
      settled: s && s.settled > chain.settled ? s.settled : chain.settled,
      accepted: s?.accepted ?? 0n,
      spent: s?.spent ?? 0n,
      status: statusOf({ finalized: chain.finalized || !!s?.finalized, closesAt: chain.closesAt, payerCloseRequestedAt: s?.payerCloseRequestedAt }),
    };
    if (s?.acceptedSignature) h.signature = s.acceptedSignature;
    return h;
  }

  private upstreamReply(e: unknown, what: string, context: ErrorContext = "payment"): PaymentReply {
    const detail = e instanceof ServiceError ? e.shortMessage : `${what} failed`;
    if (!(e instanceof ServiceError)) this.logger?.error({ err: (e as Error)?.message }, `${what} failed`);
    // Over the chain-read budget (chain/read-budget.ts): 503 overloaded with Retry-After, like load shedding.
    return this.reply(e instanceof ServiceError && e.code === "overloaded" ? "overloaded" : "upstream_unavailable", detail, undefined, undefined, undefined, context);
  }

  /**
   * Decides a paid request. Never throws: every failure is a reply (402/4xx/503); an unexpected error becomes
   * 503 `upstream_unavailable` (never a free response).
   */
  async authorize(req: PaymentRequest, pricing: RoutePricing): Promise<RequestDecision> {
    return this.guarded(() => this.authorizeInner(req, pricing), pricing, req);
  }

  /**
   * Decides a payment that the caller decoded already (the x402 SDK plug-in, `@paychan/server/x402`): the same checks
   * and the same durable charge as {@link authorize} after the header is decoded, without the HTTP parts (Host
   * header, `PAYMENT-REQUIRED`). A refusal's reply carries the channel `hint` when the protocol allows one. Never throws.
   */
  async authorizePayment(payment: PaymentPayload, pricing: RoutePricing, source?: string): Promise<PaymentDecision> {
    return this.guarded(() => this.authorizeDecoded(payment, pricing, undefined, source), pricing);
  }

  /** Load shedding and the never-throw rule around one payment decision. */
  private async guarded<D extends RequestDecision>(decide: () => Promise<D | PaymentReply>, pricing: RoutePricing, req?: PaymentRequest): Promise<D | PaymentReply> {
    // Load shedding: when the chain or the store is slow, checks pile up here; refuse early rather than queue
    // without bound (nothing decoded, nothing written; the client retries after Retry-After).
    const max = this.o.maxPendingPayments ?? 1024;
    if (this.authorizing >= max) return this.reply("overloaded", `${max} payments are being checked already; try again shortly`);
    this.authorizing++;
    try {
      return await decide();
    } catch (e) {
      if (e instanceof ServiceError) return this.reply(e.code, e.shortMessage);
      if (e instanceof PaymentError) return this.reply(e.code, e.shortMessage, req, pricing);
      this.logger?.error({ err: e instanceof Error ? e.message : String(e) }, "payment check failed unexpectedly");
      return this.reply("upstream_unavailable", "the payment could not be checked; try again");
    } finally {
      this.authorizing--;
    }
  }

  private async authorizeInner(req: PaymentRequest, pricing: RoutePricing): Promise<RequestDecision> {
    // Without PUBLIC_URL the Host header names `resource.url`: only configured (or loopback) hosts may (§6).
    if (!this.o.publicUrl && !this.hostAllowed(req)) {
      return this.reply("host_not_allowed", "this server does not answer for that Host; use its configured address (or set PUBLIC_URL / ALLOWED_HOSTS)");
    }
    const raw = req.headers["payment-signature"];
    if (raw === undefined) return this.reply("payment_required", "this resource needs a PAYMENT-SIGNATURE header (scheme: channel)", req, pricing);
    if (Array.isArray(raw)) return this.reply("invalid_payload", "PAYMENT-SIGNATURE must appear once", req, pricing);
    if (this.o.exact && isExactPayment(raw)) return this.authorizeExact(raw, req, pricing);

    let payment;
    try {
      payment = decodePaymentSignature(raw);
    } catch (e) {
      if (e instanceof BaseError) return this.reply(e.code as ServerErrorCode, e.shortMessage, req, pricing);
      return this.reply("invalid_payload", "PAYMENT-SIGNATURE could not be decoded", req, pricing);
    }
    return this.authorizeDecoded(payment, pricing, req, req.source);
  }

  private async authorizeDecoded(payment: PaymentPayload, pricing: RoutePricing, req: PaymentRequest | undefined, source: string | undefined): Promise<PaymentDecision> {
    const price = maxCharge(pricing);
    // Terms: the offer the client echoes must be ours (a 402 here means "terms changed": the client re-reads them).
    const a = payment.accepted;
    if (a.network !== this.network) return this.reply("network_mismatch", `this server takes payments on ${this.network}, not ${a.network}`, req, pricing);
    if (a.asset.toLowerCase() !== this.tokenLc || a.payTo.toLowerCase() !== this.payeeLc || a.extra.escrow.toLowerCase() !== this.escrowLc) {
      return this.reply("requirements_mismatch", "asset, payTo or escrow differ from this server's terms", req, pricing);
    }
    if (a.amount < price) return this.reply("requirements_mismatch", `this request costs up to ${price}; the payment accepted ${a.amount}`, req, pricing);

    // A gasless open (§ 5.9): the provider opens the channel first; the voucher then goes the ordinary way.
    let fee = 0n;
    if (payment.payload.open) {
      const opened = await this.gaslessOpen(payment, price, req, pricing);
      if (opened.kind === "reply") return opened;
      fee = opened.fee;
    }

    const { channelId, cumulativeAmount: v, signature } = payment.payload;
    const checked = await this.checkVoucher(payment, req, pricing, source);
    if (checked.kind === "reply") return checked;
    const chain = checked.chain;

    // One atomic, durable transaction; nothing is written when it refuses.
    const window = this.window(price);
    let result;
    const t1 = process.hrtime.bigint();
    try {
      result = await this.store.acceptVoucher({ chain, amount: v, signature, charge: price + fee, window, reserve: pricing.kind !== "fixed" });
    } catch (e) {
      this.logger?.error({ err: (e as Error).message, channelId }, "store failed while accepting a voucher");
      return this.reply("upstream_unavailable", "the payment store is unavailable; try again");
    }
    this.observer?.accountingCommitted?.(Number(process.hrtime.bigint() - t1) / 1e9);
    if (!result.ok) {
      const detail = REFUSAL_DETAIL[result.code](v, result.channel, price + fee);
      return this.reply(result.code, detail, req, pricing, await this.hint(chain, result.channel));
    }
    this.observer?.served?.(price + fee);
    if (fee > 0n) this.logger?.info({ scheme: "channel", open: { channelId, payer: chain.payer, fee: String(fee) } }, "first charge of a gasless open: price + fee");
    return { kind: "serve", charge: new Charge(this, chain.channelId, chain.payer, price + fee, pricing.kind !== "fixed", result.channel, v, fee) };
  }

  /**
   * The checks of a voucher before its accounting transaction (docs/protocol.md § 6 rules 1-2): the channel (memory →
   * store → chain), the SIGNATURE (always, before anything else about the channel or the amount), payee, token,
   * finalized, close delay, deposit minimum, pending close, and `v <= deposit` (one chain re-read first). Answers the
   * channel snapshot to accept on, or the reply (in `context`: a paid route's 402s, or an endpoint's plain statuses,
   * e.g. a stream's top-up side request, § 5.10). Never writes anything.
   */
  async checkVoucher(payment: PaymentPayload, req?: PaymentRequest, pricing?: RoutePricing, source?: string, context: ErrorContext = "payment"): Promise<PaymentReply | { kind: "checked"; chain: ChainChannel }> {
    const { channelId, cumulativeAmount: v, signature } = payment.payload;
    const ctx = context;
    let chain: ChainChannel | null;
    try {
      // The escrow names a channel by (id, signer): a channel we have not seen is read with the voucher's signer.
      chain = await this.view.get(channelId, () => this.verifier.recover(channelId, v, signature), source);
    } catch (e) {
      return this.upstreamReply(e, "reading the channel", ctx);
    }
    if (!chain) return this.reply("unknown_channel", `the escrow has no channel ${channelId}`, req, pricing, undefined, ctx);

    // The signature, before anything else about the channel or the voucher's amount.
    const t0 = process.hrtime.bigint();
    // Offload the recovery only when other paid requests are in progress (see signature-pool.ts).
    const valid = await this.signatures.verify({ channelId, cumulativeAmount: v, signature }, chain.signer, this.authorizing > 1);
    this.observer?.verified?.(Number(process.hrtime.bigint() - t0) / 1e9);
    if (!valid) {
      // No hint: the channel's accepted, spent and latest signature are told only to a request signed by the channel's
      // signer (docs/protocol.md §6), never to a stranger's garbage voucher. A signer mismatch read carries no money.
      const mismatch = isSignerMismatch(chain);
      // Only an ECDSA signature by the signer's own key counts: a contract (ERC-1271) signer could stop validating a
      // voucher after being served (a new owner), so the detail says so, without asking the chain whether it is one.
      const detail = mismatch
        ? `the voucher is not signed by the signer of channel ${channelId}; only key (ECDSA) signers are accepted, not contract (ERC-1271) signers`
        : `the voucher is not an ECDSA signature of the channel's signer ${chain.signer}; only key (ECDSA) signers are accepted, not contract (ERC-1271) signers`;
      return this.reply("invalid_signature", detail, req, pricing, undefined, ctx);
    }

    const checked = await this.checkChannel(chain);
    if ("code" in checked) {
      if (checked.code === "upstream_unavailable") return this.reply(checked.code, checked.detail, undefined, undefined, undefined, ctx);
      return this.reply(checked.code, checked.detail, req, pricing, await this.hint(chain), ctx);
    }
    chain = checked.chain;

    if (v > chain.deposit) {
      // The payer may have topped up since we last looked: read the chain once before refusing.
      let fresh: ChainChannel | null;
      try {
        fresh = await this.view.refresh(channelId, chain.signer);
      } catch (e) {
        return this.upstreamReply(e, "re-reading the channel", ctx);
      }
      if (fresh) chain = fresh;
      if (!fresh || v > fresh.deposit) {
        return this.reply("exceeds_deposit", `voucher ${v} is above the deposit ${chain.deposit}`, req, pricing, await this.hint(chain), ctx);
      }
      const again = await this.checkChannel(fresh, true);
      if ("code" in again) {
        if (again.code === "upstream_unavailable") return this.reply(again.code, again.detail, undefined, undefined, undefined, ctx);
        return this.reply(again.code, again.detail, req, pricing, await this.hint(fresh), ctx);
      }
    }
    return { kind: "checked", chain };
  }

  /**
   * The open of a payment carrying `payload.open` (§ 5.9): check 1 here (the provider opens channels; the offer echoed
   * is the current one, `extra.open` included), checks 2-9 and the submission in open/opens.ts. Answers the fee of the
   * first charge once the channel exists on chain (known to the view), or a reply. The fee is charged only to the
   * first voucher accepted on a channel this provider opened.
   */
  private async gaslessOpen(payment: PaymentPayload, price: bigint, req: PaymentRequest | undefined, pricing: RoutePricing): Promise<PaymentReply | { kind: "ready"; fee: bigint }> {
    const opens = this.o.opens;
    if (!opens) return this.reply("open_unsupported", "this provider does not open channels (no extra.open in its offer): open the channel yourself", req, pricing);
    const terms = opens.terms();
    const echoed = payment.accepted.extra.open;
    if (!echoed || echoed.method !== terms.method || echoed.fee !== terms.fee) {
      return this.reply("requirements_mismatch", `this provider's open terms are ${terms.method} with a fee of ${terms.fee}; the payment accepted others`, req, pricing);
    }
    const out = await opens.open(payment, price);
    if (out.kind === "refused") return this.reply(out.code as ServerErrorCode, out.detail, req, pricing);
    if (out.kind === "unavailable") return this.reply("upstream_unavailable", out.detail);
    const { channelId, open } = payment.payload;
    let stored: StoredChannel | null;
    let ours: Awaited<ReturnType<typeof opens.store.getOpen>>;
    try {
      // Known to the server as the follower would make it: read from the escrow now (a negative cache is passed over).
      await this.view.refresh(channelId, open!.signer);
      [stored, ours] = await Promise.all([this.store.getChannel(channelId), out.open ? Promise.resolve(out.open) : opens.store.getOpen(channelId)]);
    } catch (e) {
      if (e instanceof ServiceError) return this.upstreamReply(e, "reading the opened channel");
      this.logger?.error({ err: (e as Error).message, channelId }, "store failed after a gasless open");
      return this.reply("upstream_unavailable", "the payment store is unavailable; try again");
    }
    // The fee is the first charge's: a channel this provider opened (recorded, not failed: the channel exists, so a
    // record still open was mined) that has not accepted a voucher yet. A concurrent repeat of the open that found the
    // channel on chain before the opener's request accepted its voucher charges it the same.
    const fee = ours && ours.status !== "failed" && (stored?.accepted ?? 0n) === 0n ? ours.fee : 0n;
    return { kind: "ready", fee };
  }

  /** An `exact` payment: decoded, checked, settled on chain (exact/payments.ts); served only once the transfer is confirmed. */
  private async authorizeExact(raw: string, req: PaymentRequest, pricing: RoutePricing): Promise<RequestDecision> {
    const exact = this.o.exact!;
    if (pricing.kind !== "fixed") return this.reply("unsupported_scheme", "this route's price is metered: pay it with the channel scheme", req, pricing);
    let payment;
    try {
      payment = decodeExactPaymentSignature(raw);
    } catch (e) {
      if (e instanceof BaseError) return this.reply(e.code as ServerErrorCode, e.shortMessage, req, pricing);
      return this.reply("invalid_payload", "PAYMENT-SIGNATURE could not be decoded", req, pricing);
    }
    const out = await exact.pay(payment, pricing.price, this.resourceUrl(req));
    if (out.kind === "refused") return this.reply(out.refusal.code, out.refusal.detail, req, pricing);
    if (out.kind === "unavailable") return this.reply("upstream_unavailable", out.detail);
    const p = out.payment;
    return {
      kind: "paid",
      scheme: EXACT_SCHEME,
      payer: p.payer,
      amount: p.amount,
      transaction: p.txHash!,
      headers: { [HEADER_PAYMENT_RESPONSE]: encodeExactPaymentResponse({ success: true, transaction: p.txHash!, network: out.network, payer: p.payer, amount: p.amount }) },
    };
  }

  /**
   * Checks a channel's state against this server's terms; returns the (possibly re-read) snapshot when acceptable.
   * With `fresh`, the snapshot was just read from the chain (no staleness re-read).
   */
  private async checkChannel(chain: ChainChannel, fresh = false): Promise<{ chain: ChainChannel } | { code: ServerErrorCode; detail: string }> {
    if (chain.payee.toLowerCase() !== this.payeeLc) return { code: "channel_payee_mismatch", detail: `the channel pays ${chain.payee}, not ${this.o.payee}` };
    if (chain.token.toLowerCase() !== this.tokenLc) return { code: "channel_token_mismatch", detail: `the channel holds ${chain.token}, not ${this.o.token}` };
    if (chain.finalized) return { code: "channel_finalized", detail: "the channel was closed or withdrawn" };
    if (chain.closeDelay < this.o.minCloseDelay) {
      return { code: "close_delay_too_short", detail: `the channel's close delay is ${chain.closeDelay} s; this server needs at least ${this.o.minCloseDelay} s` };
    }
    if (chain.deposit < this.o.minDeposit) return { code: "deposit_too_small", detail: `the deposit ${chain.deposit} is below the minimum ${this.o.minDeposit}` };

    // Staleness: a close requested after our last look cannot end before confirmedAt + closeDelay. If that point is
    // within the safety margin (the follower has been failing for long), look again; a failed read is a 503.
    if (!fresh) {
      const unseenCloseDeadline = this.view.confirmedAt(chain.channelId) + chain.closeDelay;
      if (unseenCloseDeadline - this.view.chainNow() < this.o.closeSafetyMargin) {
        let again: ChainChannel | null;
        try {
          again = await this.view.refresh(chain.channelId, chain.signer);
        } catch (e) {
          return { code: "upstream_unavailable", detail: e instanceof ServiceError ? e.shortMessage : "the chain could not be read" };
        }
        if (!again) return { code: "unknown_channel", detail: "the escrow no longer knows the channel" };
        return this.checkChannel(again, true);
      }
    }
    if (chain.closesAt !== 0) {
      const left = chain.closesAt - this.view.chainNow();
      if (left < this.o.closeSafetyMargin) {
        return { code: "channel_closing", detail: `the channel closes in ${Math.max(left, 0)} s, too soon to settle (this server needs ${this.o.closeSafetyMargin} s)` };
      }
    }
    return { chain };
  }

  /** {@link closeRefusal} for `chain`, with the stored accounting (a store failure counts as "owed": the close goes on). */
  private async closeNotWorthIt(chain: ChainChannel): Promise<{ code: ServerErrorCode; detail: string } | null> {
    let stored: StoredChannel | null;
    try {
      stored = await this.store.getChannel(chain.channelId);
    } catch {
      return null;
    }
    return closeRefusal(chain, stored, { deposit: this.o.minDeposit, closeDelay: this.o.minCloseDelay });
  }

  /** The cooperative close endpoint (`POST /channel/close`): see protocol/close.ts. */
  async cooperativeClose(body: unknown, source?: string): Promise<{ status: number; body: unknown; headers: Record<string, string> }> {
    const fail = (code: ServerErrorCode, detail: string) => {
      const r = this.reply(code, detail, undefined, undefined, undefined, "endpoint");
      return { status: r.status, body: r.body, headers: r.headers };
    };
    let request: CloseRequest;
    try {
      request = decodeCloseRequest(body);
    } catch (e) {
      if (e instanceof PaymentError) return fail(e.code, e.shortMessage);
      throw e;
    }
    const id = request.channelId;
    const recovered = recoverCloseRequestSigner(this.domain, id, request.signature);
    let chain: ChainChannel | null;
    try {
      // A channel we have not seen is read with the request's signer (the escrow names it by id and signer).
      chain = await this.view.get(id, () => recovered, source);
    } catch (e) {
      if (e instanceof ServiceError && e.code === "overloaded") return fail("overloaded", e.shortMessage);
      return fail("upstream_unavailable", e instanceof ServiceError ? e.shortMessage : "the chain could not be read");
    }
    if (!chain) return fail("unknown_channel", `the escrow has no channel ${id}`);
    const signer = recovered?.toLowerCase();
    // On a signer mismatch (signer zero) the payer's own signature is not enough: closing needs the channel's signer.
    if (!signer || isSignerMismatch(chain) || (signer !== chain.signer.toLowerCase() && signer !== chain.payer.toLowerCase())) {
      return fail("invalid_signature", "the close request is not signed by the channel's signer or payer");
    }
    if (chain.payee.toLowerCase() !== this.payeeLc) return fail("channel_payee_mismatch", "the channel pays another payee");
    if (chain.token.toLowerCase() !== this.tokenLc) return fail("channel_token_mismatch", "the channel holds another token");
    if (chain.finalized) return fail("channel_finalized", "the channel is already finalized");
    const below = await this.closeNotWorthIt(chain);
    if (below) return fail(below.code, below.detail);
    try {
      // The signature is kept: it is the payer's consent the escrow asks of an operator's refunding close.
      await this.store.requestCooperativeClose(chain, Math.floor(Date.now() / 1000), request.signature);
    } catch (e) {
      this.logger?.error({ err: (e as Error).message }, "store failed while recording a close request");
      return fail("upstream_unavailable", "the store is unavailable; try again");
    }
    this.logger?.info({ channelId: id }, "cooperative close requested");
    return { status: 202, body: { channelId: id, status: "closing" }, headers: { "cache-control": "no-store" } };
  }
}

/**
 * Why a close request for `chain` is refused without doing anything on chain, or null to go on: a channel below this
 * server's minimums (deposit or close delay: it never accepted a voucher on it) on which nothing is owed. The payer
 * gets the whole deposit back with `requestClose` and, after the close delay, `withdraw`; the provider pays no gas
 * for channels it would never have served (docs/protocol.md §8).
 */
export function closeRefusal(chain: ChainChannel, stored: StoredChannel | null, min: { deposit: bigint; closeDelay: number }): { code: ServerErrorCode; detail: string } | null {
  const owed = stored !== null && stored.spent > (stored.settled > chain.settled ? stored.settled : chain.settled);
  if (owed) return null;
  const after = "nothing is owed on it: the payer gets the deposit back with requestClose, then withdraw after the close delay";
  if (chain.deposit < min.deposit) return { code: "deposit_too_small", detail: `the deposit ${chain.deposit} is below this server's minimum ${min.deposit}; ${after}` };
  if (chain.closeDelay < min.closeDelay) {
    return { code: "close_delay_too_short", detail: `the close delay ${chain.closeDelay} s is below this server's minimum ${min.closeDelay} s; ${after}` };
  }
  return null;
}

/** Whether a `PAYMENT-SIGNATURE` names the `exact` scheme (a malformed header is left to the channel decoder's codes). */
function isExactPayment(raw: string): boolean {
  try {
    return paymentSignatureScheme(raw) === EXACT_SCHEME;
  } catch {
    return false;
  }
}

const REFUSAL_DETAIL: Record<string, (v: bigint, c: StoredChannel | null, price: bigint) => string> = {
  voucher_too_low: (v, c) => `voucher ${v} is at or below the channel's floor ${c?.floor ?? 0n}; sign above ${c?.accepted ?? 0n}`,
  voucher_reused: (v) => `voucher ${v} was already used; sign a new amount`,
  insufficient_voucher: (v, c, price) => `voucher ${v} does not cover spent ${c?.spent ?? 0n} + price ${price}`,
  exceeds_deposit: (v, c) => `voucher ${v} is above the deposit ${c?.deposit ?? 0n}`,
  channel_closing: () => "the payer asked to close this channel",
  channel_finalized: () => "the channel was closed or withdrawn",
};
