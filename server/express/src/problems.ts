/**
 * Error replies in the one format every endpoint uses (`application/problem+json` with a stable `code`; statuses from
 * `httpStatusOf`): helpers for the routes around the paid ones. Never a stack trace to the client.
 */
import type { ErrorRequestHandler, RequestHandler, Response } from "express";
import { httpStatusOf, problem, PROBLEM_CONTENT_TYPE, type Logger, type ServerErrorCode } from "@paychan/server";

/** Answers `code` (status from `httpStatusOf(code, "endpoint")`), or drops the connection when headers are already out. */
export function sendProblem(res: Response, code: ServerErrorCode, detail: string, status?: number): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(status ?? httpStatusOf(code, "endpoint"));
  res.setHeader("content-type", PROBLEM_CONTENT_TYPE);
  res.setHeader("cache-control", "no-store");
  res.end(JSON.stringify(problem(code, detail, "endpoint")));
}

/** Refuses a declared body over `maxBytes` with 413 `request_too_large` before any route reads it. */
export function bodyLimit(maxBytes: number): RequestHandler {
  return (req, res, next) => {
    const len = Number(req.headers["content-length"] ?? 0);
    if (len > maxBytes) return sendProblem(res, "request_too_large", `the body is over ${maxBytes} bytes`);
    next();
  };
}

/** The last route: 404 `not_found`. */
export function notFound(): RequestHandler {
  return (_req, res) => sendProblem(res, "not_found", "no such route");
}

/** Whether `err` is a body parser's "this body is not JSON" (or an unsupported encoding). */
export function isBodyParseError(err: unknown): boolean {
  const type = (err as { type?: string } | null)?.type;
  return type === "entity.parse.failed" || type === "encoding.unsupported" || type === "charset.unsupported";
}

/**
 * The app's error handler: a body over the limit is 413, an unreadable body 400 `bad_request`, another 4xx from a
 * parser 400; anything else is a handler bug: 500 `internal_error`, the details only in the log.
 */
export function errorHandler(opts: { logger?: Logger } = {}): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const e = err as { type?: string; status?: number; message?: string; stack?: string };
    if (e?.type === "entity.too.large") return sendProblem(res, "request_too_large", "the body is over the limit");
    if (isBodyParseError(e)) return sendProblem(res, "bad_request", "the body is not valid JSON");
    if (typeof e?.status === "number" && e.status >= 400 && e.status < 500) return sendProblem(res, "bad_request", "the request could not be read");
    opts.logger?.error({ err: e?.message, stack: e?.stack, path: req.path }, "handler error");
    sendProblem(res, "internal_error", "internal error");
  };
}
