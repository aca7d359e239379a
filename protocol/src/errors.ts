/**
 * Error codes of the `channel` scheme and the typed errors that carry them.
 * The codes are stable wire values (docs/protocol.md, "Error codes"); never rename one.
 */

/** Codes a server puts in `PAYMENT-REQUIRED.error` (HTTP 402). */
export const PAYMENT_ERROR_CODES = [
  "payment_required",
  "invalid_payload",
  "unsupported_scheme",
  "network_mismatch",
  "requirements_mismatch",
  "unknown_channel",
  "channel_payee_mismatch",
  "channel_token_mismatch",
  "channel_closing",
  "channel_finalized",
  "close_delay_too_short",
  "deposit_too_small",
  "invalid_signature",
  "voucher_reused",
  "voucher_too_low",
  "insufficient_voucher",
  "exceeds_deposit",
  // the x402 `exact` scheme (docs/protocol.md § 5.8)
  "authorization_used",
  "authorization_value_mismatch",
  "authorization_recipient_mismatch",
  "authorization_not_yet_valid",
  "authorization_expired",
  "authorization_signature_invalid",
  "insufficient_balance",
  "transfer_failed",
  // gasless opens (docs/protocol.md § 5.9); the authorization_* codes and insufficient_balance above apply too
  "open_unsupported",
  "open_channel_mismatch",
  "open_limit",
  "open_failed",
  // streamed responses paid per unit (docs/protocol.md § 5.10): refusals of a top-up side request
  "stream_not_found",
  "stream_channel_mismatch",
] as const;
export type PaymentErrorCode = (typeof PAYMENT_ERROR_CODES)[number];

/** What a payer can do after a refusal (docs/protocol.md, "Error codes"). */
export interface RefusalRecovery {
  /** A new attempt may pass: a fresh voucher on the same channel, or, when `channelUnusable`, on another channel. */
  retry: boolean;
  /** This channel cannot be used with this provider any more (closing, finalized, or not acceptable to it). */
  channelUnusable: boolean;
}

const VOUCHER: RefusalRecovery = { retry: true, channelUnusable: false };
const CHANNEL: RefusalRecovery = { retry: true, channelUnusable: true };
const REQUEST: RefusalRecovery = { retry: false, channelUnusable: false };

/** The recovery of every payment error code: one entry per code, so a new code cannot go unclassified. */
export const PAYMENT_ERROR_RECOVERY: Readonly<Record<PaymentErrorCode, RefusalRecovery>> = {
  payment_required: VOUCHER,
  invalid_payload: REQUEST,
  unsupported_scheme: REQUEST,
  network_mismatch: REQUEST,
  requirements_mismatch: VOUCHER,
  unknown_channel: VOUCHER, // the provider may not see a new channel yet
  channel_payee_mismatch: CHANNEL,
  channel_token_mismatch: CHANNEL,
  channel_closing: CHANNEL,
  channel_finalized: CHANNEL,
  close_delay_too_short: CHANNEL,
  deposit_too_small: CHANNEL,
  invalid_signature: { retry: false, channelUnusable: true }, // the channel's signer is not ours: never sign for it again
  voucher_reused: VOUCHER,
  voucher_too_low: VOUCHER,
  insufficient_voucher: VOUCHER,
  exceeds_deposit: VOUCHER, // after a top-up
  // `exact`: no channel is involved; a retry means a new authorization (new nonce, window or terms).
  authorization_used: VOUCHER, // sign again with a new nonce
  authorization_value_mismatch: VOUCHER, // re-read the offer's amount
  authorization_recipient_mismatch: VOUCHER, // re-read the offer's payTo
  authorization_not_yet_valid: VOUCHER,
  authorization_expired: VOUCHER,
  authorization_signature_invalid: REQUEST, // the payer's key does not sign as the authorization's `from`
  insufficient_balance: REQUEST, // after the payer is funded
  transfer_failed: VOUCHER, // the transfer reverted on chain; nothing was served or paid
  // gasless opens: the channel named was not opened
  open_unsupported: CHANNEL, // this provider does not open channels: open one yourself
  open_channel_mismatch: { retry: false, channelUnusable: true }, // the payload's channel id is not the one its parameters give
  open_limit: VOUCHER, // too many opens by this payer in flight or recently: later
  open_failed: CHANNEL, // the open reverted on chain: nothing was opened, served or paid
  // top-ups of a stream: the stream ended, lives on another replica, or is another channel's; the stream is unaffected
  stream_not_found: REQUEST,
  stream_channel_mismatch: REQUEST,
};

/** The codes only the `exact` scheme refuses with (a channel payment never gets them). */
export const EXACT_ERROR_CODES = [
  "authorization_used",
  "authorization_value_mismatch",
  "authorization_recipient_mismatch",
  "authorization_not_yet_valid",
  "authorization_expired",
  "authorization_signature_invalid",
  "insufficient_balance",
  "transfer_failed",
] as const satisfies readonly PaymentErrorCode[];

/** The codes only a gasless open refuses with (with the `authorization_*` codes and `insufficient_balance`). */
export const OPEN_ERROR_CODES = ["open_unsupported", "open_channel_mismatch", "open_limit", "open_failed"] as const satisfies readonly PaymentErrorCode[];

/** The codes only a stream's top-up side request refuses with (§ 5.10; the voucher codes of § 6 apply too). */
export const STREAM_ERROR_CODES = ["stream_not_found", "stream_channel_mismatch"] as const satisfies readonly PaymentErrorCode[];

/** Codes the accounting transaction can refuse a voucher with (docs/protocol.md § 6), decided on the stored row. */
export const ACCEPT_REFUSAL_CODES = ["voucher_too_low", "voucher_reused", "insufficient_voucher", "exceeds_deposit", "channel_closing", "channel_finalized"] as const satisfies readonly PaymentErrorCode[];
export type AcceptRefusalCode = (typeof ACCEPT_REFUSAL_CODES)[number];

/** Codes of failures that are not a payment problem (never 402). */
export const SERVICE_ERROR_CODES = [
  "upstream_unavailable", // 503: the chain (or the store) could not be reached when needed
  "request_too_large", // 413/431: body or headers over the limit
  "request_timeout", // 408
  "not_found", // 404
  "overloaded", // 503: too many requests in flight
  "internal_error", // 500: a bug; the body never says more
] as const;
export type ServiceErrorCode = (typeof SERVICE_ERROR_CODES)[number];

export type ErrorCode = PaymentErrorCode | ServiceErrorCode;

const paymentCodes: ReadonlySet<string> = new Set(PAYMENT_ERROR_CODES);
/** Whether `code` is one of the 402 codes. */
export function isPaymentErrorCode(code: string): code is PaymentErrorCode {
  return paymentCodes.has(code);
}

/** Options common to every typed error. */
export interface BaseErrorOptions {
  /** Longer explanation, safe to show to a client. */
  details?: string;
  cause?: unknown;
}

/**
 * The base of the project's typed errors (in the style of viem's `BaseError`):
 * a stable `code`, a one-line `shortMessage`, optional `details`, and the `cause`.
 */
export class BaseError<C extends string = string> extends Error {
  override name = "BaseError";
  readonly code: C;
  readonly shortMessage: string;
  readonly details?: string;

  constructor(code: C, shortMessage: string, options: BaseErrorOptions = {}) {
    super(options.details ? `${shortMessage}\n\nDetails: ${options.details}` : shortMessage, { cause: options.cause });
    this.code = code;
    this.shortMessage = shortMessage;
    this.details = options.details;
  }
}

/** A payment problem with one of {@link PAYMENT_ERROR_CODES}: the server answers it with 402. */
export class PaymentError extends BaseError<PaymentErrorCode> {
  override name = "PaymentError";
}

/** A failure that is not the payer's fault (chain unreachable, overload, ...). */
export class ServiceError extends BaseError<ServiceErrorCode> {
  override name = "ServiceError";
}
