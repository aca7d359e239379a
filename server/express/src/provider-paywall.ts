/**
 * The paywall of a provider (`createProvider` from `@paychan/server`), for an Express app the provider owns:
 *
 * ```ts
 * const provider = await createProvider({ env: process.env });
 * const paywall = createPaywall(provider);
 * app.use(paywall.closeRoute());                                   // POST /channel/close (cooperative close)
 * app.get("/healthz", paywall.healthz());
 * app.get("/metrics", paywall.metrics());
 * app.get("/weather", paywall.charge({ price: "0.001" }), (req, res) => res.json({ sunny: true }));
 * ```
 */
import express, { type RequestHandler } from "express";
import { CLOSE_PATH } from "@paychan/protocol";
import type { Provider } from "@paychan/server";
import { createExpressPaywall, type ExpressPaywall } from "./paywall";
import { isBodyParseError, sendProblem } from "./problems";

/** What the paywall uses of a provider. */
export type PaywallProvider = Pick<Provider, "core" | "decimals" | "config" | "health" | "metrics" | "logger"> & Partial<Pick<Provider, "streams">>;

export interface PaywallOptions {
  /** A paid handler that has not sent headers after this many ms gets 504 and its charge released (default HANDLER_TIMEOUT). */
  handlerTimeout?: number;
}

export interface Paywall extends ExpressPaywall {
  /** Middleware answering `POST /channel/close` (with its own bounded JSON parser); mount it with `app.use(...)`. */
  closeRoute(): RequestHandler;
  /** `GET` handler answering the provider's health: 200 `ok`, or 503 `degraded` (chain or store unreachable). */
  healthz(): RequestHandler;
  /** `GET` handler answering the Prometheus metrics of the provider (payments, store totals, settlement). */
  metrics(): RequestHandler;
}

/** The body limit of a close request (a channel id and a signature). */
const CLOSE_BODY_LIMIT = 4096;

/** The Express paywall of `provider`. */
export function createPaywall(provider: PaywallProvider, opts: PaywallOptions = {}): Paywall {
  // The paywall's own endpoints answer their failures themselves (problem+json, details only in the log), whatever
  // error handler the app has.
  const failed = (e: unknown, msg: string) => provider.logger.error({ err: (e as Error)?.message, stack: (e as Error)?.stack }, msg);
  const base = createExpressPaywall(provider.core, { decimals: provider.decimals, handlerTimeout: opts.handlerTimeout ?? provider.config.handlerTimeout, streams: provider.streams });
  return {
    ...base,
    closeRoute() {
      const parse = express.json({ limit: CLOSE_BODY_LIMIT, strict: true, type: () => true });
      const handle = base.closeHandler();
      // A plain middleware, not a Router: other methods and paths fall through to the app's own routes and 404
      // (a Router would answer OPTIONS itself). Paths match as Express routes do: any case, an optional trailing slash.
      return (req, res, next) => {
        if (req.method !== "POST" || req.path.toLowerCase().replace(/\/$/, "") !== CLOSE_PATH) return next();
        parse(req, res, (err?: unknown) => {
          if (!err) {
            void (async () => {
              try {
                await handle(req, res, next);
              } catch (e) {
                failed(e, "close request failed");
                sendProblem(res, "internal_error", "internal error");
              }
            })();
            return;
          }
          if ((err as { type?: string }).type === "entity.too.large") return sendProblem(res, "request_too_large", "the body is over the limit");
          if (isBodyParseError(err)) return sendProblem(res, "invalid_payload", "the body is not valid JSON");
          const status = (err as { status?: number }).status;
          if (typeof status === "number" && status >= 400 && status < 500) return sendProblem(res, "bad_request", "the request could not be read");
          failed(err, "close request failed");
          sendProblem(res, "internal_error", "internal error");
        });
      };
    },
    healthz() {
      return async (_req, res) => {
        try {
          const h = await provider.health();
          res.status(h.ok ? 200 : 503).setHeader("cache-control", "no-store");
          res.json(h.body);
        } catch (e) {
          failed(e, "health check failed");
          sendProblem(res, "internal_error", "internal error");
        }
      };
    },
    metrics() {
      return async (_req, res) => {
        try {
          const text = await provider.metrics.registry.metrics();
          res.setHeader("content-type", provider.metrics.registry.contentType);
          res.end(text);
        } catch (e) {
          failed(e, "metrics collection failed");
          sendProblem(res, "internal_error", "internal error");
        }
      };
    },
  };
}
