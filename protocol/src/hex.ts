/**
 * The hex shapes the scheme uses on the wire and on chain, defined once: 20-byte addresses, 32-byte ids and keys,
 * 65-byte signatures (`r ‖ s ‖ v`). All accept either case after `0x`. Also the subpath `@paychan/protocol/hex`, which
 * loads nothing else (the CLI checks arguments with it before it loads viem).
 */
import type { Address, Hex } from "viem";

/** `0x` + 40 hex digits (an address, not checked for a checksum). */
export const ADDRESS_PATTERN = /^0x[0-9a-fA-F]{40}$/;
/** `0x` + 64 hex digits (a channel id, a digest, a private key). */
export const BYTES32_PATTERN = /^0x[0-9a-fA-F]{64}$/;
/** `0x` + 130 hex digits (a 65-byte signature). */
export const SIGNATURE_PATTERN = /^0x[0-9a-fA-F]{130}$/;
/** `0x` + 40 zeroes. */
export const ZERO_ADDRESS_PATTERN = /^0x0{40}$/i;

/** Whether `v` is a 20-byte 0x-hex string. */
export function isAddressHex(v: unknown): v is Address {
  return typeof v === "string" && ADDRESS_PATTERN.test(v);
}

/** Whether `v` is a 32-byte 0x-hex string. */
export function isBytes32Hex(v: unknown): v is Hex {
  return typeof v === "string" && BYTES32_PATTERN.test(v);
}

/** Whether `v` is a 65-byte 0x-hex string. */
export function isSignatureHex(v: unknown): v is Hex {
  return typeof v === "string" && SIGNATURE_PATTERN.test(v);
}
