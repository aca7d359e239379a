/**
 * Codec for the x402 version 2 headers of the `channel` scheme:
 * `PAYMENT-REQUIRED` (402 challenge), `PAYMENT-SIGNATURE` (payment), `PAYMENT-RESPONSE` (receipt).
 * Each header is standard base64 of UTF-8 JSON. Decoding is strict and bounded: every failure is a
 * {@link PaymentError} (`invalid_payload` or `unsupported_scheme`), never an untyped exception.
 */
import type { Address, Hex } from "viem";
import { formatWireAmount, parseWireAmount } from "./amounts";
import { isPaymentErrorCode, PaymentError, type PaymentErrorCode } from "./errors";
import { ESCROW_DOMAIN_NAME, ESCROW_DOMAIN_VERSION } from "./eip712";
import { parseExactRequirements, exactRequirementsToJson, EXACT_SCHEME, type ExactRequirements } from "./exact";
import { address, bad, bytes32, fromBase64Json, networkField, obj, signature, str, toBase64Json, uint } from "./decode";
import { openAuthorizationToJson, openTermsToJson, parseOpenAuthorization, parseOpenTerms, type OpenAuthorization, type OpenTerms } from "./open";
import { parseStreamTerms, streamTermsToJson, type StreamTerms } from "./stream-terms";

import {
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_SIGNATURE,
  HEADER_PAYMENT_RESPONSE,
  MAX_PAYMENT_REQUIRED_BYTES,
  MAX_PAYMENT_SIGNATURE_BYTES,
  X402_VERSION,
  type Network,
} from "./envelope";

// The envelope (envelope.ts) is part of this module's API.
export {
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_SIGNATURE,
  HEADER_PAYMENT_RESPONSE,
  MAX_PAYMENT_REQUIRED_BYTES,
  MAX_PAYMENT_SIGNATURE_BYTES,
  X402_VERSION,
  type Network,
};

export const SCHEME = "channel" as const;

/** Channel states as the server reports them. */
export type ChannelStatus = "open" | "closing" | "finalized";

/** The server's view of a channel, sent in a 402 so a client can resynchronise (a hint, never trusted). */
export interface ChannelHint {
  channelId: Hex;
  deposit: bigint;
  settled: bigint;
  accepted: bigint;
  spent: bigint;
  /** Signature of the voucher for `accepted`; absent when the server holds none. */
  signature?: Hex;
  status: ChannelStatus;
}

/** One way to pay: the `channel` scheme's `PaymentRequirements`. */
export interface ChannelRequirements {
  scheme: typeof SCHEME;
  network: Network;
  /** Token address. */
  asset: Address;
  /** Most this request may cost, in atomic units. */
  amount: bigint;
  payTo: Address;
  maxTimeoutSeconds: number;
  extra: {
    escrow: Address;
    name: typeof ESCROW_DOMAIN_NAME;
    version: typeof ESCROW_DOMAIN_VERSION;
    minDeposit: bigint;
    minCloseDelay: number;
    /** Present when the provider opens channels from the payer's signature (gasless opens, § 5.9). */
    open?: OpenTerms;
    /** Present on a streamed route paid per unit (§ 5.10); then `amount` is the initial reservation. */
    stream?: StreamTerms;
    channel?: ChannelHint;
  };
}

export interface ResourceInfo {
  url: string;
  description?: string;
  mimeType?: string;
}

/** The `PAYMENT-REQUIRED` header. */
export interface PaymentRequired {
  x402Version: typeof X402_VERSION;
  error: PaymentErrorCode;
  resource: ResourceInfo;
  /** The `channel` offers (listed first on the wire). */
  accepts: ChannelRequirements[];
  /** The x402 `exact` offers (exact.ts), listed after the `channel` ones; absent or empty when none. */
  exact?: ExactRequirements[];
}

/** The scheme-specific part of a payment: a voucher. */
export interface VoucherPayload {
  channelId: Hex;
  cumulativeAmount: bigint;
  signature: Hex;
  /** The payer's signed deposit when the provider is to open the channel (gasless open, § 5.9). */
  open?: OpenAuthorization;
}

/** The `PAYMENT-SIGNATURE` header. */
export interface PaymentPayload {
  x402Version: typeof X402_VERSION;
  accepted: ChannelRequirements;
  payload: VoucherPayload;
}

/** The `PAYMENT-RESPONSE` header (the receipt of a served paid request). */
export interface PaymentResponse {
  success: true;
  transaction: "";
  network: Network;
  payer: Address;
  /** What this request cost. */
  amount: bigint;
  extra: { channelId: Hex; accepted: bigint; spent: bigint; deposit: bigint; remaining: bigint };
}

// ------------------------------------------------------------------ encoding

/** Requirements in their wire (JSON) form, the inverse of {@link parseRequirements}. */
export function requirementsToJson(r: ChannelRequirements): Record<string, unknown> {
  const extra: Record<string, unknown> = {
    escrow: r.extra.escrow,
    name: r.extra.name,
    version: r.extra.version,
    minDeposit: formatWireAmount(r.extra.minDeposit),
    minCloseDelay: r.extra.minCloseDelay,
  };
  if (r.extra.open) extra.open = openTermsToJson(r.extra.open);
  if (r.extra.stream) extra.stream = streamTermsToJson(r.extra.stream);
  if (r.extra.channel) {
    const c = r.extra.channel;
    extra.channel = {
      channelId: c.channelId,
      deposit: formatWireAmount(c.deposit),
      settled: formatWireAmount(c.settled),
      accepted: formatWireAmount(c.accepted),
      spent: formatWireAmount(c.spent),
      ...(c.signature ? { signature: c.signature } : {}),
      status: c.status,
    };
  }
  return {
    scheme: r.scheme,
    network: r.network,
    asset: r.asset,
    amount: formatWireAmount(r.amount),
    payTo: r.payTo,
    maxTimeoutSeconds: r.maxTimeoutSeconds,
    extra,
  };
}

/** Encodes a `PAYMENT-REQUIRED` header value. */
export function encodePaymentRequired(p: PaymentRequired): string {
  return toBase64Json({
    x402Version: p.x402Version,
    error: p.error,
    resource: p.resource,
    accepts: [...p.accepts.map(requirementsToJson), ...(p.exact ?? []).map(exactRequirementsToJson)],
  });
}

/** Encodes a `PAYMENT-SIGNATURE` header value. */
export function encodePaymentSignature(p: PaymentPayload): string {
  return toBase64Json({
    x402Version: p.x402Version,
    accepted: requirementsToJson(p.accepted),
    payload: {
      channelId: p.payload.channelId,
      cumulativeAmount: formatWireAmount(p.payload.cumulativeAmount),
      signature: p.payload.signature,
      ...(p.payload.open ? { open: openAuthorizationToJson(p.payload.open) } : {}),
    },
  });
}

/** A receipt in its wire (JSON) form, the inverse of {@link parsePaymentResponse}. */
export function paymentResponseToJson(p: PaymentResponse): Record<string, unknown> {
  return {
    success: true,
    transaction: "",
    network: p.network,
    payer: p.payer,
    amount: formatWireAmount(p.amount),
    extra: {
      channelId: p.extra.channelId,
      accepted: formatWireAmount(p.extra.accepted),
      spent: formatWireAmount(p.extra.spent),
      deposit: formatWireAmount(p.extra.deposit),
      remaining: formatWireAmount(p.extra.remaining),
    },
  };
}

/** Encodes a `PAYMENT-RESPONSE` header value. */
export function encodePaymentResponse(p: PaymentResponse): string {
  return toBase64Json(paymentResponseToJson(p));
}

// ------------------------------------------------------------------ decoding

function version(v: unknown): typeof X402_VERSION {
  if (v !== X402_VERSION) bad("x402Version must be 2");
  return X402_VERSION;
}

function channelHint(v: unknown): ChannelHint {
  const c = obj(v, "extra.channel");
  const status = c.status;
  if (status !== "open" && status !== "closing" && status !== "finalized") bad("extra.channel.status is unknown");
  const hint: ChannelHint = {
    channelId: bytes32(c.channelId, "extra.channel.channelId"),
    deposit: parseWireAmount(c.deposit, "extra.channel.deposit"),
    settled: parseWireAmount(c.settled, "extra.channel.settled"),
    accepted: parseWireAmount(c.accepted, "extra.channel.accepted"),
    spent: parseWireAmount(c.spent, "extra.channel.spent"),
    status: status as ChannelStatus,
  };
  if (c.signature !== undefined) hint.signature = signature(c.signature, "extra.channel.signature");
  return hint;
}

/**
 * Decodes one `PaymentRequirements` of the `channel` scheme.
 * Throws `unsupported_scheme` for another scheme and `invalid_payload` for anything malformed.
 */
export function parseRequirements(v: unknown, field = "accepted"): ChannelRequirements {
  const r = obj(v, field);
  if (r.scheme !== SCHEME) {
    // Never String() a parsed value: an object with a "toString" member would throw a TypeError.
    const shown = typeof r.scheme === "string" ? JSON.stringify(r.scheme.slice(0, 64)) : `of type ${r.scheme === null ? "null" : typeof r.scheme}`;
    throw new PaymentError("unsupported_scheme", `${field}.scheme ${shown} is not "channel"`);
  }
  const network = networkField(r.network, `${field}.network`);
  const e = obj(r.extra, `${field}.extra`);
  if (e.name !== ESCROW_DOMAIN_NAME || e.version !== ESCROW_DOMAIN_VERSION) bad(`${field}.extra name/version must be ChannelEscrow/1`);
  const out: ChannelRequirements = {
    scheme: SCHEME,
    network,
    asset: address(r.asset, `${field}.asset`),
    amount: parseWireAmount(r.amount, `${field}.amount`),
    payTo: address(r.payTo, `${field}.payTo`),
    maxTimeoutSeconds: uint(r.maxTimeoutSeconds, `${field}.maxTimeoutSeconds`, 86_400),
    extra: {
      escrow: address(e.escrow, `${field}.extra.escrow`),
      name: ESCROW_DOMAIN_NAME,
      version: ESCROW_DOMAIN_VERSION,
      minDeposit: parseWireAmount(e.minDeposit, `${field}.extra.minDeposit`),
      minCloseDelay: uint(e.minCloseDelay, `${field}.extra.minCloseDelay`, 30 * 86_400),
    },
  };
  if (e.open !== undefined) out.extra.open = parseOpenTerms(e.open, `${field}.extra.open`);
  if (e.stream !== undefined) {
    out.extra.stream = parseStreamTerms(e.stream, `${field}.extra.stream`);
    if (out.amount < out.extra.stream.unitPrice) bad(`${field}.amount (the stream's reservation) must cover one unit`);
  }
  if (e.channel !== undefined) out.extra.channel = channelHint(e.channel);
  return out;
}

/**
 * Decodes a `PAYMENT-REQUIRED` header. Offers of other schemes are dropped; when none is of the
 * `channel` scheme, throws `unsupported_scheme`. Well-formed `exact` offers are kept in `exact`.
 */
export function decodePaymentRequired(header: unknown): PaymentRequired {
  const p = decodeOffers(header);
  if (p.accepts.length === 0) throw new PaymentError("unsupported_scheme", "no offer of the channel scheme");
  const { exact, ...rest } = p;
  return exact.length ? { ...rest, exact } : rest;
}

/**
 * Decodes a `PAYMENT-REQUIRED` header keeping the offers of both schemes we speak: `channel` (in `accepts`; a
 * malformed one makes the header invalid) and `exact` with the EIP-3009 method (in `exact`; a malformed or
 * unsupported one is dropped, as another scheme's offer is). Throws `unsupported_scheme` when neither remains.
 * When only `exact` offers remain, an `error` that is not one of our codes (a stock x402 server's text, at most 512
 * characters) is returned as `reason`, with `error` = `payment_required`.
 */
export function decodeOffers(header: unknown): PaymentRequired & { exact: ExactRequirements[]; reason?: string } {
  const p = obj(fromBase64Json(header, MAX_PAYMENT_REQUIRED_BYTES, HEADER_PAYMENT_REQUIRED), "PAYMENT-REQUIRED");
  version(p.x402Version);
  const rawError = p.error === undefined ? "payment_required" : str(p.error, "error", 512);
  const res = obj(p.resource, "resource");
  const resource: ResourceInfo = { url: str(res.url, "resource.url") };
  if (res.description !== undefined) resource.description = str(res.description, "resource.description");
  if (res.mimeType !== undefined) resource.mimeType = str(res.mimeType, "resource.mimeType", 256);
  if (!Array.isArray(p.accepts) || p.accepts.length === 0 || p.accepts.length > 16) bad("accepts must list 1 to 16 offers");
  const accepts: ChannelRequirements[] = [];
  const exact: ExactRequirements[] = [];
  for (const [i, a] of (p.accepts as unknown[]).entries()) {
    const scheme = obj(a, `accepts[${i}]`).scheme;
    if (scheme === SCHEME) accepts.push(parseRequirements(a, `accepts[${i}]`));
    else if (scheme === EXACT_SCHEME) {
      try {
        exact.push(parseExactRequirements(a, `accepts[${i}]`));
      } catch (e) {
        if (!(e instanceof PaymentError)) throw e;
      }
    }
  }
  if (accepts.length === 0 && exact.length === 0) throw new PaymentError("unsupported_scheme", "no offer of the channel or exact scheme");
  if (isPaymentErrorCode(rawError)) return { x402Version: X402_VERSION, error: rawError, resource, accepts, exact };
  // A server offering `channel` speaks our codes. One offering only `exact` may be a stock x402 server, whose `error`
  // is free text ("Payment required") or its own code: kept in `reason`, with `error` payment_required.
  if (accepts.length > 0) bad(`error ${JSON.stringify(rawError.slice(0, 64))} is not a known code`);
  return { x402Version: X402_VERSION, error: "payment_required", reason: rawError, resource, accepts, exact };
}

/** Decodes a `PAYMENT-SIGNATURE` header. */
export function decodePaymentSignature(header: unknown): PaymentPayload {
  const p = obj(fromBase64Json(header, MAX_PAYMENT_SIGNATURE_BYTES, HEADER_PAYMENT_SIGNATURE), "PAYMENT-SIGNATURE");
  version(p.x402Version);
  const accepted = parseRequirements(p.accepted, "accepted");
  const v = obj(p.payload, "payload");
  const payload: VoucherPayload = {
    channelId: bytes32(v.channelId, "payload.channelId"),
    cumulativeAmount: parseWireAmount(v.cumulativeAmount, "payload.cumulativeAmount"),
    signature: signature(v.signature, "payload.signature"),
  };
  if (v.open !== undefined) payload.open = parseOpenAuthorization(v.open);
  return { x402Version: X402_VERSION, accepted, payload };
}

/** Decodes a `PAYMENT-RESPONSE` header. */
export function decodePaymentResponse(header: unknown): PaymentResponse {
  return parsePaymentResponse(fromBase64Json(header, MAX_PAYMENT_REQUIRED_BYTES, HEADER_PAYMENT_RESPONSE));
}

/** Checks a receipt in its JSON form (strict, like every decoder here). */
export function parsePaymentResponse(v: unknown): PaymentResponse {
  const p = obj(v, "PAYMENT-RESPONSE");
  if (p.success !== true) bad("success must be true");
  // The scheme settles later, in batches: a receipt never names a transaction.
  if (p.transaction !== "") bad("transaction must be the empty string");
  const network = networkField(p.network, "network");
  const e = obj(p.extra, "extra");
  return {
    success: true,
    transaction: "",
    network,
    payer: address(p.payer, "payer"),
    amount: parseWireAmount(p.amount, "amount"),
    extra: {
      channelId: bytes32(e.channelId, "extra.channelId"),
      accepted: parseWireAmount(e.accepted, "extra.accepted"),
      spent: parseWireAmount(e.spent, "extra.spent"),
      deposit: parseWireAmount(e.deposit, "extra.deposit"),
      remaining: parseWireAmount(e.remaining, "extra.remaining"),
    },
  };
}

/** The CAIP-2 network of an EVM chain id. */
export function networkOf(chainId: number): Network {
  return `eip155:${chainId}`;
}

/** The chain id of a CAIP-2 eip155 network. */
export function chainIdOf(network: Network): number {
  return Number(network.slice("eip155:".length));
}
