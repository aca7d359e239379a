/**
 * Every error code the server answers with, and the ONE function mapping a code to its HTTP status.
 * Bodies are `application/problem+json`: `{ title, status, error, detail }`; never a stack trace.
 */
import { isPaymentErrorCode, type ErrorCode } from "@paychan/protocol";

/** Codes only the server uses (not part of the payment scheme): plain HTTP problems. */
export const SERVER_ONLY_ERROR_CODES = ["bad_request", "method_not_allowed", "handler_timeout", "host_not_allowed"] as const;
export type ServerOnlyErrorCode = (typeof SERVER_ONLY_ERROR_CODES)[number];

/** Any code the server can put in a problem body. */
export type ServerErrorCode = ErrorCode | ServerOnlyErrorCode;

/**
 * Where an error is answered: `payment` = a paid route (payment codes are 402 with `PAYMENT-REQUIRED`),
 * `endpoint` = a plain JSON endpoint such as `POST /channel/close` (payment codes become ordinary 4xx).
 */
export type ErrorContext = "payment" | "endpoint";

/**
 * Every code's title and HTTP status, one entry each. Payment codes answer 402 on a paid route (`payment` context);
 * the status here is theirs on a plain endpoint (`endpoint` context, e.g. `POST /channel/close`).
 */
const ERRORS: Readonly<Record<ServerErrorCode, { status: number; title: string }>> = {
  // payment codes
  payment_required: { status: 402, title: "Payment required" },
  invalid_payload: { status: 400, title: "Invalid payment payload" },
  unsupported_scheme: { status: 400, title: "Unsupported payment scheme" },
  network_mismatch: { status: 400, title: "Wrong network" },
  requirements_mismatch: { status: 400, title: "Payment terms changed" },
  unknown_channel: { status: 404, title: "Unknown channel" },
  channel_payee_mismatch: { status: 403, title: "Channel pays another payee" },
  channel_token_mismatch: { status: 403, title: "Channel holds another token" },
  channel_closing: { status: 409, title: "Channel is closing" },
  channel_finalized: { status: 409, title: "Channel is finalized" },
  close_delay_too_short: { status: 400, title: "Channel close delay too short" },
  deposit_too_small: { status: 400, title: "Channel deposit too small" },
  invalid_signature: { status: 403, title: "Invalid signature" },
  voucher_reused: { status: 409, title: "Voucher already used" },
  voucher_too_low: { status: 400, title: "Voucher too low" },
  insufficient_voucher: { status: 400, title: "Voucher does not cover the price" },
  exceeds_deposit: { status: 400, title: "Voucher exceeds the deposit" },
  authorization_used: { status: 409, title: "Authorization already used" },
  authorization_value_mismatch: { status: 400, title: "Authorization value is not the price" },
  authorization_recipient_mismatch: { status: 400, title: "Authorization pays another recipient" },
  authorization_not_yet_valid: { status: 400, title: "Authorization not yet valid" },
  authorization_expired: { status: 400, title: "Authorization expired" },
  authorization_signature_invalid: { status: 403, title: "Invalid authorization signature" },
  insufficient_balance: { status: 400, title: "Payer balance too low" },
  transfer_failed: { status: 409, title: "Transfer failed on chain" },
  open_unsupported: { status: 400, title: "Provider does not open channels" },
  open_channel_mismatch: { status: 400, title: "Open does not name its channel" },
  open_limit: { status: 429, title: "Too many opens by this payer" },
  open_failed: { status: 409, title: "Open failed on chain" },
  stream_not_found: { status: 404, title: "Stream not found" },
  stream_channel_mismatch: { status: 400, title: "Top-up names another channel" },
  // service codes
  upstream_unavailable: { status: 503, title: "Upstream unavailable" },
  request_too_large: { status: 413, title: "Request too large" },
  request_timeout: { status: 408, title: "Request timeout" },
  not_found: { status: 404, title: "Not found" },
  overloaded: { status: 503, title: "Overloaded" },
  internal_error: { status: 500, title: "Internal error" },
  // server-only codes
  bad_request: { status: 400, title: "Bad request" },
  method_not_allowed: { status: 405, title: "Method not allowed" },
  handler_timeout: { status: 504, title: "Handler timeout" },
  host_not_allowed: { status: 421, title: "Host not served here" },
};

/** The HTTP status for `code`. The only place statuses are chosen. */
export function httpStatusOf(code: ServerErrorCode, context: ErrorContext = "payment"): number {
  if (isPaymentErrorCode(code) && context === "payment") return 402;
  return ERRORS[code]?.status ?? 500;
}

/** A problem body (RFC 9457 shape plus the stable `error` code). */
export interface ProblemBody {
  title: string;
  status: number;
  error: ServerErrorCode;
  detail: string;
}

/** The problem body for `code`; `detail` is trimmed to one bounded line. */
export function problem(code: ServerErrorCode, detail: string, context: ErrorContext = "payment"): ProblemBody {
  return { title: ERRORS[code]?.title ?? "Error", status: httpStatusOf(code, context), error: code, detail: detail.split("\n")[0].slice(0, 500) };
}

export const PROBLEM_CONTENT_TYPE = "application/problem+json";
