/**
 * Express adapter over the payment core:
 *
 * ```ts
 * const paywall = createExpressPaywall(core, { decimals: 6 });
 * app.get("/v1/echo", paywall.charge({ price: "0.001" }), handler);             // token units, or a bigint of atomic units
 * app.get("/v1/quote", paywall.charge({ price: (req) => "0.002", max: "0.01" }), handler); // computed per request
 * app.post("/v1/infer", paywall.meter({ max: "0.01" }), (req, res) => {
 *   paymentOf(res)!.charge(250n);                                                // actual cost, <= max
 *   res.json(...);
 * });
 * ```
 * The charge is committed before the handler runs. A response with status >= 500 (thrown errors included)
 * releases it; a metered route that never reports is charged its maximum. Successful responses carry
 * `PAYMENT-RESPONSE`, written when the headers go out (report a metered charge before the first byte).
 *
 * With the x402 `exact` scheme on (docs/protocol.md § 5.8), fixed-price routes also take `exact` payments: the transfer
 * is confirmed on chain before the handler runs, and nothing is given back when the handler fails (the payment is
 * a transfer, not a charge on a channel). `paymentOf(res).scheme` says which scheme paid.
 */
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { problem, PROBLEM_CONTENT_TYPE, toAtomic, type Charge, type ExactGrant, type PaymentCore, type PaymentReply, type PriceInput, type RoutePricing, type StreamRegistry } from "@paychan/server";
import { streamHandlers, type StreamHandler, type StreamOptions } from "./stream";

/** `res.locals.payment` on a paid route. */
export interface PaymentLocals {
  /** The scheme that paid: `channel` (a charge on a channel) or `exact` (an on-chain transfer, already confirmed). */
  scheme: "channel" | "exact";
  /** The channel charged; `0x` for `exact`. */
  channelId: `0x${string}`;
  /** `exact`: the transfer's transaction hash. */
  transaction?: `0x${string}`;
  payer: `0x${string}`;
  /** What was reserved: the price, or the metered maximum (atomic units). */
  reserved: bigint;
  /** Metered routes: report the actual charge (token-unit string or atomic bigint), at most `reserved`. */
  charge(amount: PriceInput): void;
  /** The current charge (atomic units). */
  readonly amount: bigint;
}

export interface ChargeOptions {
  /** Token units ("0.001"), atomic units (1000n), or a function of the request returning either. */
  price: PriceInput | ((req: Request) => PriceInput | Promise<PriceInput>);
  /** For computed prices: the most a request can cost (sizes the voucher window; a computed price above it is a 500). */
  max?: PriceInput;
  description?: string;
  mimeType?: string;
}

export interface MeterOptions {
  /** Most a request may cost (reserved before the handler). */
  max: PriceInput;
  description?: string;
  mimeType?: string;
}

export interface ExpressPaywallOptions {
  /** Token decimals (for token-unit prices). */
  decimals: number;
  /** A paid handler that has not sent headers after this many ms gets 504 and its charge released. */
  handlerTimeout?: number;
  /** The provider's paid streams (`provider.streams`): needed by `stream` and `streamVoucherHandler`. */
  streams?: StreamRegistry;
}

export interface ExpressPaywall {
  readonly core: PaymentCore;
  charge(opts: ChargeOptions): RequestHandler;
  meter(opts: MeterOptions): RequestHandler;
  /** Handler for `POST /channel/close` (needs a JSON body parser before it). */
  closeHandler(): RequestHandler;
  /**
   * A streamed route paid per unit (docs/protocol.md § 5.10): the request's voucher reserves `reserve`; `handler` writes
   * Server-Sent Events with `stream.send(data, { event?, id?, units? })`, each charged `unitPrice` × units when written;
   * top-ups are asked in band; the receipt is the last event and the `PAYMENT-RESPONSE` trailer.
   */
  stream(opts: StreamOptions, handler: StreamHandler): RequestHandler;
  /** Handler for the top-up side request, mounted at `POST /channel/streams/:id/voucher` (the path the events name). */
  streamVoucherHandler(): RequestHandler;
}

/** The payment locals of a paid response, if any. */
export function paymentOf(res: Response): PaymentLocals | undefined {
  return res.locals.payment as PaymentLocals | undefined;
}

/**
 * The client's address for per-source bounds: `req.ip`, which follows the app's `trust proxy` setting (behind a
 * reverse proxy, set it so that the client's address is used, not the proxy's), else the socket's peer.
 */
export function sourceOf(req: Request): string | undefined {
  return req.ip ?? req.socket?.remoteAddress;
}

/** Sends a core reply (402 / 4xx / 503). */
export function sendReply(res: Response, r: PaymentReply): void {
  res.status(r.status);
  for (const [k, v] of Object.entries(r.headers)) res.setHeader(k, v);
  res.end(JSON.stringify(r.body));
}

export function createExpressPaywall(core: PaymentCore, opts: ExpressPaywallOptions): ExpressPaywall {
  const decimals = opts.decimals;
  const handlerTimeout = opts.handlerTimeout ?? 30_000;

  function attach(req: Request, res: Response, next: NextFunction, charge: Charge) {
    const locals: PaymentLocals = {
      scheme: "channel",
      channelId: charge.channelId,
      payer: charge.payer,
      reserved: charge.reserved,
      charge: (amount: PriceInput) => charge.report(typeof amount === "bigint" ? amount : toAtomic(amount, decimals, "charge")),
      get amount() {
        return charge.amount;
      },
    };
    res.locals.payment = locals;

    // The receipt goes out with the headers, computed then (a metered handler reports before its first byte).
    const writeHead = res.writeHead;
    res.writeHead = function (this: Response, ...args: unknown[]) {
      const status = typeof args[0] === "number" ? args[0] : res.statusCode;
      if (!res.headersSent && status < 500) {
        for (const [k, v] of Object.entries(charge.receiptHeaders())) res.setHeader(k, v);
      }
      return (writeHead as (...a: unknown[]) => Response).apply(this, args);
    } as Response["writeHead"];

    const timer = setTimeout(() => {
      if (!res.headersSent) {
        res.status(504).setHeader("content-type", PROBLEM_CONTENT_TYPE);
        res.end(JSON.stringify(problem("handler_timeout", "the handler did not answer in time; the charge was released")));
      }
    }, handlerTimeout);
    timer.unref?.();
    const done = () => {
      clearTimeout(timer);
      void charge.finish(res.statusCode);
    };
    res.once("finish", done);
    res.once("close", done);
    next();
  }

  /** An `exact` payment is settled already: its receipt goes out with whatever the handler answers. */
  function attachExact(res: Response, next: NextFunction, g: ExactGrant) {
    const locals: PaymentLocals = {
      scheme: "exact",
      channelId: "0x",
      transaction: g.transaction,
      payer: g.payer,
      reserved: g.amount,
      charge: (amount: PriceInput) => {
        const v = typeof amount === "bigint" ? amount : toAtomic(amount, decimals, "charge");
        if (v !== g.amount) throw new RangeError("an exact payment is the route's fixed price; it cannot be changed");
      },
      amount: g.amount,
    };
    res.locals.payment = locals;
    for (const [k, v] of Object.entries(g.headers)) res.setHeader(k, v);
    next();
  }

  function guard(pricingOf: (req: Request) => Promise<RoutePricing>): RequestHandler {
    return async (req, res, next) => {
      let pricing: RoutePricing;
      try {
        pricing = await pricingOf(req);
      } catch (e) {
        next(e);
        return;
      }
      const decision = await core.authorize({ method: req.method, url: req.originalUrl ?? req.url, headers: req.headers, source: sourceOf(req) }, pricing);
      if (decision.kind === "reply") sendReply(res, decision);
      else if (decision.kind === "paid") attachExact(res, next, decision);
      else attach(req, res, next, decision.charge);
    };
  }

  return {
    core,
    ...streamHandlers(core, opts.streams, decimals, sourceOf),
    charge(o: ChargeOptions): RequestHandler {
      const meta = { description: o.description, mimeType: o.mimeType };
      if (typeof o.price === "function") {
        const fn = o.price;
        const max = o.max !== undefined ? toAtomic(o.max, decimals, "max") : undefined;
        if (max !== undefined) core.registerPrice(max);
        return guard(async (req) => {
          const price = toAtomic(await fn(req), decimals);
          if (max !== undefined && price > max) throw new RangeError(`computed price ${price} is above the route's max ${max}`);
          return { kind: "fixed", price, ...meta };
        });
      }
      const price = toAtomic(o.price, decimals);
      core.registerPrice(price);
      const pricing: RoutePricing = { kind: "fixed", price, ...meta };
      return guard(async () => pricing);
    },
    meter(o: MeterOptions): RequestHandler {
      const max = toAtomic(o.max, decimals, "max");
      core.registerPrice(max);
      const pricing: RoutePricing = { kind: "metered", max, description: o.description, mimeType: o.mimeType };
      return guard(async () => pricing);
    },
    closeHandler(): RequestHandler {
      return async (req, res) => {
        const r = await core.cooperativeClose(req.body, sourceOf(req));
        res.status(r.status);
        for (const [k, v] of Object.entries(r.headers)) res.setHeader(k, v);
        if (!r.headers["content-type"]) res.setHeader("content-type", "application/json");
        res.end(JSON.stringify(r.body));
      };
    },
  };
}
