/**
 * Cooperative close request: the channel's signer asks the provider to settle and close the channel now
 * (`ChannelEscrow.close`), so the payer gets the unspent rest back without waiting for the close delay.
 * Sent as JSON `{ "channelId": "0x..", "signature": "0x.." }` to the provider's close endpoint
 * (`POST /channel/close`); the signature is EIP-712 `CloseRequest(bytes32 channelId)` in the escrow's domain.
 */
import { keccak_256 } from "@noble/hashes/sha3";
import { keccak256, toHex, type Address, type Hex } from "viem";
import { domainSeparator, type EscrowDomain } from "./eip712";
import { recoverDigestSigner, signDigest } from "./voucher";

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
