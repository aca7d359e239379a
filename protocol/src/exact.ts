/**
 * The x402 `exact` scheme on EVM, as our server offers it next to `channel` and our client pays it (docs/protocol.md
 * § 5.8, § 7.5): one EIP-3009 `transferWithAuthorization` per paid request, submitted on chain by the provider (or its
 * facilitator) before the request is served. Same envelope and strict decoding as the `channel` codec (wire.ts);
 * field names and shapes are those of the x402 SDK (`ExactEIP3009Payload`), so stock x402 clients and servers
 * interoperate. Only the EIP-3009 transfer method is supported (no Permit2).
 */
import type { Address, Hex, TypedDataDomain } from "viem";
import { formatWireAmount, parseWireAmount } from "./amounts";
import { address, bad, bytes32, fromBase64Json, networkField, obj, signature, str, toBase64Json, uint, type Obj } from "./decode";
import { PaymentError } from "./errors";
import { TRANSFER_WITH_AUTHORIZATION_TYPES } from "./token";
import {
  HEADER_PAYMENT_SIGNATURE,
  MAX_PAYMENT_REQUIRED_BYTES,
  MAX_PAYMENT_SIGNATURE_BYTES,
  X402_VERSION,
  HEADER_PAYMENT_RESPONSE,
  type Network,
} from "./envelope";

export const EXACT_SCHEME = "exact" as const;
/** The one asset transfer method we speak: EIP-3009 `transferWithAuthorization`. */
export const EXACT_TRANSFER_METHOD = "eip3009" as const;

/** One `exact` offer (x402 `PaymentRequirements`). */
export interface ExactRequirements {
  scheme: typeof EXACT_SCHEME;
  network: Network;
  /** Token address (EIP-3009). */
  asset: Address;
  /** The price of this request, in atomic units: the authorization's value must be exactly this. */
  amount: bigint;
  payTo: Address;
  /** The longest validity window (`validBefore − now`) the payer should sign; also how long settling may take. */
  maxTimeoutSeconds: number;
  /** The token's EIP-712 domain name and version (what the authorization is signed under). */
  extra: { name: string; version: string; assetTransferMethod?: typeof EXACT_TRANSFER_METHOD };
}

/** An EIP-3009 authorization: `from` lets `to` take `value` between `validAfter` and `validBefore` (seconds), once per `nonce`. */
export interface ExactAuthorization {
  from: Address;
  to: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
}

/** The `PAYMENT-SIGNATURE` of an `exact` payment. */
export interface ExactPaymentPayload {
  x402Version: typeof X402_VERSION;
  accepted: ExactRequirements;
  payload: { signature: Hex; authorization: ExactAuthorization };
}

/** The `PAYMENT-RESPONSE` of an `exact` payment: the transfer's transaction. */
export interface ExactPaymentResponse {
  success: true;
  /** The hash of the transaction that transferred the payment. */
  transaction: Hex;
  network: Network;
  payer: Address;
  /** What this request cost (atomic units). Optional on the wire (stock servers omit it). */
  amount?: bigint;
}

/** Largest `validBefore` / `validAfter` accepted (seconds; far beyond any real window, within uint64). */
const MAX_TIME = 2n ** 40n;

/** An `exact` offer in its wire (JSON) form. */
export function exactRequirementsToJson(r: ExactRequirements): Record<string, unknown> {
  return {
    scheme: r.scheme,
    network: r.network,
    asset: r.asset,
    amount: formatWireAmount(r.amount),
    payTo: r.payTo,
    maxTimeoutSeconds: r.maxTimeoutSeconds,
    extra: { name: r.extra.name, version: r.extra.version, ...(r.extra.assetTransferMethod ? { assetTransferMethod: r.extra.assetTransferMethod } : {}) },
  };
}

/**
 * Decodes one `exact` offer. Throws `unsupported_scheme` for another scheme or transfer method, `invalid_payload` for
 * anything malformed.
 */
export function parseExactRequirements(v: unknown, field = "accepted"): ExactRequirements {
  const r = obj(v, field);
  if (r.scheme !== EXACT_SCHEME) throw new PaymentError("unsupported_scheme", `${field}.scheme is not "exact"`);
  const e = obj(r.extra, `${field}.extra`);
  if (e.assetTransferMethod !== undefined && e.assetTransferMethod !== EXACT_TRANSFER_METHOD) {
    throw new PaymentError("unsupported_scheme", `${field}.extra.assetTransferMethod must be "eip3009"`);
  }
  return {
    scheme: EXACT_SCHEME,
    network: networkField(r.network, `${field}.network`),
    asset: address(r.asset, `${field}.asset`),
    amount: parseWireAmount(r.amount, `${field}.amount`),
    payTo: address(r.payTo, `${field}.payTo`),
    maxTimeoutSeconds: uint(r.maxTimeoutSeconds, `${field}.maxTimeoutSeconds`, 86_400),
    extra: {
      name: str(e.name, `${field}.extra.name`, 128),
      version: str(e.version, `${field}.extra.version`, 32),
      ...(e.assetTransferMethod !== undefined ? { assetTransferMethod: EXACT_TRANSFER_METHOD } : {}),
    },
  };
}

function time(v: unknown, field: string): bigint {
  const t = parseWireAmount(v, field);
  if (t > MAX_TIME) bad(`${field} is out of range`);
  return t;
}

function authorization(v: unknown): ExactAuthorization {
  const a = obj(v, "payload.authorization");
  return {
    from: address(a.from, "payload.authorization.from"),
    to: address(a.to, "payload.authorization.to"),
    value: parseWireAmount(a.value, "payload.authorization.value"),
    validAfter: time(a.validAfter, "payload.authorization.validAfter"),
    validBefore: time(a.validBefore, "payload.authorization.validBefore"),
    nonce: bytes32(a.nonce, "payload.authorization.nonce"),
  };
}

/** Encodes the `PAYMENT-SIGNATURE` of an `exact` payment. */
export function encodeExactPaymentSignature(p: ExactPaymentPayload): string {
  const a = p.payload.authorization;
  return toBase64Json({
    x402Version: p.x402Version,
    accepted: exactRequirementsToJson(p.accepted),
    payload: {
      signature: p.payload.signature,
      authorization: {
        from: a.from,
        to: a.to,
        value: formatWireAmount(a.value),
        validAfter: formatWireAmount(a.validAfter),
        validBefore: formatWireAmount(a.validBefore),
        nonce: a.nonce,
      },
    },
  });
}

/** Decodes an `exact` payment from its parsed JSON (the `PAYMENT-SIGNATURE` object). */
export function parseExactPaymentPayload(p: Obj): ExactPaymentPayload {
  if (p.x402Version !== X402_VERSION) bad("x402Version must be 2");
  const accepted = parseExactRequirements(p.accepted, "accepted");
  const v = obj(p.payload, "payload");
  if (v.permit2Authorization !== undefined) throw new PaymentError("unsupported_scheme", "only the eip3009 transfer method is accepted");
  return { x402Version: X402_VERSION, accepted, payload: { signature: signature(v.signature, "payload.signature"), authorization: authorization(v.authorization) } };
}

/** Decodes the `PAYMENT-SIGNATURE` header of an `exact` payment. */
export function decodeExactPaymentSignature(header: unknown): ExactPaymentPayload {
  return parseExactPaymentPayload(obj(fromBase64Json(header, MAX_PAYMENT_SIGNATURE_BYTES, HEADER_PAYMENT_SIGNATURE), HEADER_PAYMENT_SIGNATURE));
}

/**
 * The scheme a `PAYMENT-SIGNATURE` header names (`accepted.scheme`), decoding no more than that: the caller then
 * decodes it with the codec of that scheme. `invalid_payload` when the header is malformed.
 */
export function paymentSignatureScheme(header: unknown): string {
  const p = obj(fromBase64Json(header, MAX_PAYMENT_SIGNATURE_BYTES, HEADER_PAYMENT_SIGNATURE), HEADER_PAYMENT_SIGNATURE);
  const accepted = obj(p.accepted, "accepted");
  return str(accepted.scheme, "accepted.scheme", 64);
}

/** Encodes the `PAYMENT-RESPONSE` of an `exact` payment. */
export function encodeExactPaymentResponse(p: ExactPaymentResponse): string {
  return toBase64Json({
    success: true,
    transaction: p.transaction,
    network: p.network,
    payer: p.payer,
    ...(p.amount !== undefined ? { amount: formatWireAmount(p.amount) } : {}),
  });
}

/** Decodes the `PAYMENT-RESPONSE` of an `exact` payment (a transaction hash, never empty). */
export function decodeExactPaymentResponse(header: unknown): ExactPaymentResponse {
  const p = obj(fromBase64Json(header, MAX_PAYMENT_REQUIRED_BYTES, HEADER_PAYMENT_RESPONSE), HEADER_PAYMENT_RESPONSE);
  if (p.success !== true) bad("success must be true");
  const out: ExactPaymentResponse = {
    success: true,
    transaction: bytes32(p.transaction, "transaction"),
    network: networkField(p.network, "network"),
    payer: address(p.payer, "payer"),
  };
  if (p.amount !== undefined) out.amount = parseWireAmount(p.amount, "amount");
  return out;
}

/** The EIP-712 domain of an `exact` offer's token (the name and version the offer names). */
export function exactTokenDomain(r: Pick<ExactRequirements, "network" | "asset" | "extra">): TypedDataDomain {
  return { name: r.extra.name, version: r.extra.version, chainId: Number(r.network.slice("eip155:".length)), verifyingContract: r.asset };
}

/** The typed data a payer signs for an `exact` payment (viem `signTypedData` / `verifyTypedData` / `hashTypedData`). */
export function exactTypedData(r: Pick<ExactRequirements, "network" | "asset" | "extra">, a: ExactAuthorization) {
  return {
    domain: exactTokenDomain(r),
    types: TRANSFER_WITH_AUTHORIZATION_TYPES,
    primaryType: "TransferWithAuthorization" as const,
    message: { from: a.from, to: a.to, value: a.value, validAfter: a.validAfter, validBefore: a.validBefore, nonce: a.nonce },
  };
}
