/**
 * The x402 version 2 envelope shared by both schemes' codecs (wire.ts for `channel`, exact.ts for `exact`): version,
 * header names, size bounds and the network id. Its own module so that the codecs and the decoding steps (decode.ts)
 * import it without importing each other (no import cycle); wire.ts re-exports everything here.
 */

export const X402_VERSION = 2 as const;

/** Header names (HTTP headers are case-insensitive; Node lowercases them). */
export const HEADER_PAYMENT_REQUIRED = "PAYMENT-REQUIRED";
export const HEADER_PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE";
export const HEADER_PAYMENT_RESPONSE = "PAYMENT-RESPONSE";

/** Largest encoded `PAYMENT-SIGNATURE` accepted (bytes of base64). */
export const MAX_PAYMENT_SIGNATURE_BYTES = 4096;
/** Largest encoded `PAYMENT-REQUIRED` / `PAYMENT-RESPONSE` accepted. */
export const MAX_PAYMENT_REQUIRED_BYTES = 16384;

/** CAIP-2 id of an EVM chain. */
export type Network = `eip155:${number}`;
