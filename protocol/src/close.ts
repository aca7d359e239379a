/**
 * Cooperative close request: the channel's signer asks the provider to settle and close the channel now
 * (`ChannelEscrow.close`), so the payer gets the unspent rest back without waiting for the close delay.
 * Sent as JSON `{ "channelId": "0x..", "signature": "0x.." }` to the provider's close endpoint
 * (`POST /channel/close`); the signature is EIP-712 `CloseRequest(bytes32 channelId)` in the escrow's domain.
 */
import { keccak_256 } from "@noble/hashes/sha3";
import { keccak256, toHex, type Address, type Hex } from "viem";
import { domainSeparator, type EscrowDomain } from "./eip712";
import { PaymentError } from "./errors";
import { isBytes32Hex, isSignatureHex } from "./hex";
import { recoverDigestSigner, signDigest } from "./voucher";

/** The body of `POST /channel/close`. */
export interface CloseRequest {
  /** Lowercase 0x-hex. */
  channelId: Hex;
  /** EIP-712 `CloseRequest(channelId)` signed by the channel's signer (or payer); lowercase 0x-hex. */
  signature: Hex;
}

/** Largest close request body accepted, bytes (a channel id and a signature, with room for whitespace). */
export const MAX_CLOSE_REQUEST_BYTES = 4096;

/** EIP-712 types of a close request. */
export const CLOSE_REQUEST_TYPES = {
  CloseRequest: [{ name: "channelId", type: "bytes32" }],
} as const;

/** `keccak256("CloseRequest(bytes32 channelId)")`. */
export const CLOSE_REQUEST_TYPEHASH: Hex = keccak256(toHex("CloseRequest(bytes32 channelId)"));

/** Path of the provider's cooperative close endpoint. */
export const CLOSE_PATH = "/channel/close";

/** The EIP-712 digest of a close request for `channelId`. */
export function closeRequestDigest(domain: EscrowDomain, channelId: Hex): Uint8Array {
  const struct = Buffer.concat([Buffer.from(CLOSE_REQUEST_TYPEHASH.slice(2), "hex"), Buffer.from(channelId.slice(2), "hex")]);
  const structHash = keccak_256(struct);
  return keccak_256(Buffer.concat([Buffer.from([0x19, 0x01]), Buffer.from(domainSeparator(domain).slice(2), "hex"), structHash]));
}

/** Signs a close request with the channel's signer key. */
export function signCloseRequest(domain: EscrowDomain, channelId: Hex, privateKey: Hex): Hex {
  return signDigest(closeRequestDigest(domain, channelId), Buffer.from(privateKey.slice(2), "hex"));
}

/** The signer of a close request, or null when the signature is malformed. */
export function recoverCloseRequestSigner(domain: EscrowDomain, channelId: Hex, signature: Hex): Address | null {
  return recoverDigestSigner(closeRequestDigest(domain, channelId), signature);
}

/** The JSON body of a close request (what the client sends to {@link CLOSE_PATH}). */
export function encodeCloseRequest(r: CloseRequest): string {
  return JSON.stringify({ channelId: r.channelId, signature: r.signature });
}

/**
 * Checks a parsed close request body: an object with a 32-byte `channelId` and a 65-byte `signature` (either case),
 * returned lowercase. Anything else is {@link PaymentError} `invalid_payload` saying which field is wrong.
 */
export function decodeCloseRequest(body: unknown): CloseRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new PaymentError("invalid_payload", "the body must be a JSON object { channelId, signature }");
  }
  const { channelId, signature } = body as Record<string, unknown>;
  if (!isBytes32Hex(channelId)) throw new PaymentError("invalid_payload", "channelId must be 32 bytes of 0x-hex");
  if (!isSignatureHex(signature)) throw new PaymentError("invalid_payload", "signature must be a 65-byte 0x-hex signature");
  return { channelId: channelId.toLowerCase() as Hex, signature: signature.toLowerCase() as Hex };
}
