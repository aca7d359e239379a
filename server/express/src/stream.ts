/**
 * Streamed responses paid per unit on Express (docs/protocol.md § 5.10):
 *
 * ```ts
 * app.post("/v1/chat", validate, paywall.stream({ unitPrice: 10n, reserve: 10_000n }, async (stream, req) => {
 *   for (const token of tokens) await stream.send(token);       // one unit per event; waits while a top-up is due
 * }));
 * app.post("/channel/streams/:id/voucher", paywall.streamVoucherHandler());
 * ```
 * The request's voucher reserves `reserve`; the handler writes events through the stream (never `res.write`), each
 * charged when written; the server asks for top-ups in band and ends the stream with its receipt (last event and
 * `PAYMENT-RESPONSE` trailer) when the handler returns. A handler that answers something else before its first event
 * (e.g. `res.status(400)`) is charged nothing.
 */
import type { Request, RequestHandler, Response } from "express";
import { PaidStream, StreamEndedError, toAtomic, type PaymentCore, type PriceInput, type StreamRegistry, type StreamSink } from "@paychan/server";
import { sendProblem } from "./problems";

/** Options of `paywall.stream` (prices in token units, e.g. "0.00001", or bigint atomic units). */
export interface StreamOptions {
  /** Price of one unit. */
  unitPrice: PriceInput;
  /** The initial reservation (what the request's voucher covers; the offer's `amount`). */
  reserve: PriceInput;
  /** Asked per top-up (default: `reserve`). */
  topUp?: PriceInput;
  /** A checkpoint after this many units (default 1,000). */
  checkpointUnits?: number;
  /** A checkpoint at least this often, ms (default 1,000). */
  checkpointMs?: number;
  /** How long a top-up is waited for once asked, ms (default 10,000). */
  deadlineMs?: number;
  description?: string;
  mimeType?: string;
}

/** A streamed route's handler: write events with `stream.send(data, { event?, id?, units? })`. */
export type StreamHandler = (stream: PaidStream, req: Request, res: Response) => unknown | Promise<unknown>;

/** The paid stream of a response, if any. */
export function streamOf(res: Response): PaidStream | undefined {
  return res.locals.stream as PaidStream | undefined;
}

/** A {@link StreamSink} over a Node response. */
function responseSink(res: Response): StreamSink & { readonly ownHead: boolean } {
  let own = false;
  return {
    get headersSent() {
      return res.headersSent;
    },
    get ownHead() {
      return own;
    },
    writeHead(headers) {
      own = true;
      res.statusCode = 200;
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      res.flushHeaders();
    },
    write: (chunk) => res.write(chunk),
    waitDrain: () =>
      new Promise<void>((resolve) => {
        if (res.destroyed || res.writableEnded) return resolve();
        const done = () => {
          res.off("drain", done);
          res.off("close", done);
          resolve();
        };
        res.on("drain", done);
        res.on("close", done);
      }),
    end(trailers) {
      if (res.getHeader("trailer")) res.addTrailers(trailers);
      res.end();
    },
  };
}

/** The `stream` and `streamVoucherHandler` of a paywall. */
export function streamHandlers(core: PaymentCore, registry: StreamRegistry | undefined, decimals: number, sourceOf: (req: Request) => string | undefined) {
  const need = (): StreamRegistry => {
    if (!registry) throw new Error("paid streams need the provider's stream registry (createPaywall(provider), or createExpressPaywall(core, { streams }))");
    return registry;
  };
  return {
    stream(o: StreamOptions, handler: StreamHandler): RequestHandler {
      const reg = need();
      const route = reg.route({
        unitPrice: toAtomic(o.unitPrice, decimals, "unitPrice"),
        reserve: toAtomic(o.reserve, decimals, "reserve"),
        topUp: o.topUp === undefined ? undefined : toAtomic(o.topUp, decimals, "topUp"),
        checkpointUnits: o.checkpointUnits,
        checkpointMs: o.checkpointMs,
        deadlineMs: o.deadlineMs,
        description: o.description,
        mimeType: o.mimeType,
      });
      return async (req, res) => {
        const decision = await core.authorize({ method: req.method, url: req.originalUrl ?? req.url, headers: req.headers, source: sourceOf(req) }, route.pricing);
        if (decision.kind === "reply") {
          res.status(decision.status);
          for (const [k, v] of Object.entries(decision.headers)) res.setHeader(k, v);
          res.end(JSON.stringify(decision.body));
          return;
        }
        if (decision.kind !== "serve") return sendProblem(res, "internal_error", "a stream is paid on a channel only");
        const sink = responseSink(res);
        const stream = await reg.open(route, decision.charge, sink);
        if (!stream) return sendProblem(res, "upstream_unavailable", "the payment store is unavailable; try again");
        res.locals.stream = stream;
        res.once("close", () => {
          if (!res.writableFinished) stream.sinkClosedNow();
        });
        // The client may have gone while the payment was being checked: then nothing is written, nothing charged.
        if (res.destroyed || req.socket.destroyed) stream.sinkClosedNow();
        try {
          await handler(stream, req, res);
          if (stream.ended) return;
          if (res.headersSent && !sink.ownHead) await stream.release();
          else await stream.complete();
        } catch (e) {
          if (e instanceof StreamEndedError && stream.ended) return;
          reg.logger?.error({ err: (e as Error)?.message, stream: { id: stream.id } }, "stream handler failed");
          if (!res.headersSent) {
            await stream.release();
            sendProblem(res, "internal_error", "internal error");
          } else if (!stream.ended) await stream.fail();
        }
      };
    },
    streamVoucherHandler(): RequestHandler {
      const reg = need();
      return async (req, res) => {
        const r = await reg.topUp(String(req.params.id ?? ""), { method: req.method, url: req.originalUrl ?? req.url, headers: req.headers, source: sourceOf(req) });
        res.status(r.status);
        for (const [k, v] of Object.entries(r.headers)) res.setHeader(k, v);
        res.end(JSON.stringify(r.body));
      };
    },
  };
}
