/**
 * Typed errors of the agent client. Every failure the client raises is a {@link ClientError} with a stable
 * snake_case `code`, a one-line `shortMessage`, optional `details` and the `cause` (viem style, from protocol/).
 */
import { BaseError, type BaseErrorOptions } from "@paychan/protocol";

/** Stable codes of client failures; never rename one (scripts match on them). */
export const CLIENT_ERROR_CODES = [
  "spending_limit", // the terms or the deposit needed are above the owner's limits (maxPrice, maxDeposit, maxSpend)
  "untrusted_terms", // the 402 names an asset, network, escrow or payee outside the allow-lists, or is malformed
  "untrusted_hint", // the server's extra.channel is not signed by our session key or claims impossible amounts
  "insufficient_funds", // the payer's token balance, or the channel's deposit with no top-up allowed, is too small
  "chain_failure", // an RPC call or a transaction failed
  "payment_refused", // the server still refused the payment after the one retry (serverCode says why)
  "unknown_channel", // no such channel in the store or on chain
  "channel_closed", // the channel is closing or finalized
  "close_not_requested", // withdraw before requestClose
  "close_pending", // withdraw before the close delay has elapsed
  "provider_failure", // the provider answered the cooperative close with an error
  "store_failure", // the state store could not be read or written
  "invalid_argument", // a bad option or argument from the caller
  "nothing_owed", // collect when the escrow owes the payer nothing in that token (the contract's NothingOwed)
  "invalid_recipient", // collect to the zero address or to the escrow itself (the contract's InvalidRecipient)
  "channel_limit", // opening a channel would exceed maxChannelsPerProvider, maxDepositPerProvider, or the one new channel per refusal streak
  "provider_refusing", // the provider refused maxConsecutiveRefusals paid calls in a row: nothing more is signed for it
  "http_failure", // the HTTP request failed: connection refused or reset, or an answer too large or malformed to parse
  "store_locked", // another live process holds the state directory's lock (one process at a time per directory)
  "insecure_store", // the state directory or a file in it is owned by another user, or writable by group or others
  "unverified_escrow", // the escrow is not allow-listed and its code or EIP-712 domain is not the released ChannelEscrow's
  "insufficient_gas", // a channel must be opened and the payer cannot pay the gas of its own open, with no gasless open possible
  "gasless_unavailable", // gaslessOpen "always", and the provider offers no gasless open (no extra.open)
  "stream_interrupted", // a paid stream ended without its final receipt (connection dropped, aborted, or the provider sent none)
  "open_refused", // the provider refused to open the channel from the payer's signature (serverCode says why); nothing was served
] as const;
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/** Options of a {@link ClientError}: the server's code when the server refused, plus the usual details/cause. */
export interface ClientErrorOptions extends BaseErrorOptions {
  /** The `error` code of the server's `PAYMENT-REQUIRED`, when the failure comes from a 402. */
  serverCode?: string;
  /** HTTP status of the provider's answer, when there was one. */
  status?: number;
}

/** A failure of the agent client. */
export class ClientError extends BaseError<ClientErrorCode> {
  override name = "ClientError";
  readonly serverCode?: string;
  readonly status?: number;

  constructor(code: ClientErrorCode, shortMessage: string, options: ClientErrorOptions = {}) {
    super(code, shortMessage, options);
    this.serverCode = options.serverCode;
    this.status = options.status;
  }
}

/** Whether `e` is a {@link ClientError}, optionally with the given code. */
export function isClientError(e: unknown, code?: ClientErrorCode): e is ClientError {
  return e instanceof ClientError && (code === undefined || e.code === code);
}

/** The short message of any error (viem's `shortMessage` when present). */
export function shortMessageOf(e: unknown): string {
  if (e && typeof e === "object" && "shortMessage" in e && typeof (e as { shortMessage: unknown }).shortMessage === "string") {
    return (e as { shortMessage: string }).shortMessage;
  }
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}
