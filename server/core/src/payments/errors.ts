/**
 * Every error code the server answers with, and the ONE function mapping a code to its HTTP status.
 * Bodies are `application/problem+json`: `{ title, status, error, detail }`; never a stack trace.
 */
import { isPaymentErrorCode, type ErrorCode } from "@paychan/protocol";

/** Codes only the server uses (not part of the payment scheme): plain HTTP problems. */
export const SERVER_ONLY_ERROR_CODES = ["bad_request", "method_not_allowed", "handler_timeout"] as const;
export type ServerOnlyErrorCode = (typeof SERVER_ONLY_ERROR_CODES)[number];

/** Any code the server can put in a problem body. */
export type ServerErrorCode = ErrorCode | ServerOnlyErrorCode;

/**
 * Where an error is answered: `payment` = a paid route (payment codes are 402 with `PAYMENT-REQUIRED`),
 * `endpoint` = a plain JSON endpoint such as `POST /channel/close` (payment codes become ordinary 4xx).
 */
export type ErrorContext = "payment" | "endpoint";

/** The HTTP status for `code`. The only place statuses are chosen. */
export function httpStatusOf(code: ServerErrorCode, context: ErrorContext = "payment"): number {
  if (isPaymentErrorCode(code) && context === "payment") return 402;
  switch (code) {
    // payment codes outside a paid route (cooperative close endpoint)
    case "payment_required":
      return 402;
    case "invalid_payload":
    case "unsupported_scheme":
    case "network_mismatch":
    case "requirements_mismatch":
    case "close_delay_too_short":
    case "deposit_too_small":
    case "voucher_too_low":
    case "insufficient_voucher":
    case "exceeds_deposit":
      return 400;
    case "invalid_signature":
    case "channel_payee_mismatch":
    case "channel_token_mismatch":
      return 403;
    case "unknown_channel":
      return 404;
    case "channel_closing":
    case "channel_finalized":
    case "voucher_reused":
      return 409;
    // service codes
    case "upstream_unavailable":
    case "overloaded":
      return 503;
    case "request_too_large":
      return 413;
    case "request_timeout":
      return 408;
    case "not_found":
      return 404;
    case "internal_error":
      return 500;
    // server-only codes
    case "bad_request":
      return 400;
    case "method_not_allowed":
      return 405;
    case "handler_timeout":
      return 504;
  }
  return 500;
}

const TITLES: Record<ServerErrorCode, string> = {
  payment_required: "Payment required",
  invalid_payload: "Invalid payment payload",
  unsupported_scheme: "Unsupported payment scheme",
  network_mismatch: "Wrong network",
  requirements_mismatch: "Payment terms changed",
  unknown_channel: "Unknown channel",
  channel_payee_mismatch: "Channel pays another payee",
  channel_token_mismatch: "Channel holds another token",
  channel_closing: "Channel is closing",
  channel_finalized: "Channel is finalized",
  close_delay_too_short: "Channel close delay too short",
  deposit_too_small: "Channel deposit too small",
  invalid_signature: "Invalid signature",
  voucher_reused: "Voucher already used",
  voucher_too_low: "Voucher too low",
  insufficient_voucher: "Voucher does not cover the price",
  exceeds_deposit: "Voucher exceeds the deposit",
  upstream_unavailable: "Upstream unavailable",
  request_too_large: "Request too large",
  request_timeout: "Request timeout",
  not_found: "Not found",
  overloaded: "Overloaded",
  internal_error: "Internal error",
  bad_request: "Bad request",
  method_not_allowed: "Method not allowed",
  handler_timeout: "Handler timeout",
};

/** A problem body (RFC 9457 shape plus the stable `error` code). */
export interface ProblemBody {
  title: string;
  status: number;
  error: ServerErrorCode;
  detail: string;
}

/** The problem body for `code`; `detail` is trimmed to one bounded line. */
export function problem(code: ServerErrorCode, detail: string, context: ErrorContext = "payment"): ProblemBody {
  return { title: TITLES[code] ?? "Error", status: httpStatusOf(code, context), error: code, detail: detail.split("\n")[0].slice(0, 500) };
}

export const PROBLEM_CONTENT_TYPE = "application/problem+json";
