/**
 * The strict, bounded decoding steps shared by the wire codecs (wire.ts for `channel`, exact.ts for `exact`): every
 * failure is a {@link PaymentError} `invalid_payload`, never an untyped exception. Internal to the protocol package.
 */
import type { Address, Hex } from "viem";
import { PaymentError } from "./errors";
import { isAddressHex, isBytes32Hex, isSignatureHex } from "./hex";
import type { Network } from "./envelope";

/** Standard base64 of UTF-8 JSON (the encoding of all three x402 headers). */
export function toBase64Json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64");
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const NETWORK = /^eip155:[1-9][0-9]{0,15}$/;

export function bad(message: string): never {
  throw new PaymentError("invalid_payload", message);
}

export type Obj = Record<string, unknown>;

export function obj(v: unknown, field: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(`${field} must be an object`);
  return v as Obj;
}
export function str(v: unknown, field: string, max = 2048): string {
  if (typeof v !== "string" || v.length > max) bad(`${field} must be a string of at most ${max} characters`);
  return v as string;
}
export function address(v: unknown, field: string): Address {
  if (!isAddressHex(v)) bad(`${field} must be a 20-byte 0x-hex address`);
  return v as Address;
}
export function bytes32(v: unknown, field: string): Hex {
  if (!isBytes32Hex(v)) bad(`${field} must be 32 bytes of 0x-hex`);
  return (v as string).toLowerCase() as Hex;
}
export function signature(v: unknown, field: string): Hex {
  if (!isSignatureHex(v)) bad(`${field} must be a 65-byte 0x-hex signature`);
  return (v as string).toLowerCase() as Hex;
}
export function uint(v: unknown, field: string, max: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > max || Object.is(v, -0)) {
    bad(`${field} must be an integer from 0 to ${max}`);
  }
  return v as number;
}
export function networkField(v: unknown, field: string): Network {
  const network = str(v, field, 32);
  if (!NETWORK.test(network) || !Number.isSafeInteger(Number(network.slice(7)))) bad(`${field} must be a CAIP-2 eip155 chain id`);
  return network as Network;
}

/** Strict UTF-8: malformed sequences are an error, not U+FFFD; a byte order mark is kept (and JSON.parse refuses it). */
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decodes standard base64 of UTF-8 JSON, bounded by `maxBytes`. */
export function fromBase64Json(header: unknown, maxBytes: number, name: string): unknown {
  if (typeof header !== "string") bad(`${name} must be one header value`);
  const h = (header as string).trim();
  if (h.length === 0) bad(`${name} is empty`);
  if (h.length > maxBytes) bad(`${name} is larger than ${maxBytes} bytes`);
  const bytes = Buffer.from(h, "base64");
  // Canonical standard base64 only (one value, one encoding): re-encoding must give the text back exactly. This
  // also rejects every non-alphabet character, since Buffer.from skips them; the regex only names the failure.
  if (bytes.toString("base64") !== h) bad(BASE64.test(h) ? `${name} is not canonical base64` : `${name} is not standard base64`);
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    bad(`${name} is not UTF-8`);
  }
  try {
    return JSON.parse(text);
  } catch {
    bad(`${name} is not JSON`);
  }
}

