/** Signature surgery for tests: malleable twins, other v values, compact forms. */
import type { Hex } from "viem";

/** The secp256k1 group order. */
export const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** The parts of a 65-byte (r ‖ s ‖ v) signature. */
export function splitSignature(signature: Hex): { r: bigint; s: bigint; v: number } {
  return {
    r: BigInt(`0x${signature.slice(2, 66)}`),
    s: BigInt(`0x${signature.slice(66, 130)}`),
    v: parseInt(signature.slice(130, 132), 16),
  };
}

/** A 65-byte signature from its parts. */
export function joinSignature(r: bigint, s: bigint, v: number): Hex {
  return `0x${r.toString(16).padStart(64, "0")}${s.toString(16).padStart(64, "0")}${v.toString(16).padStart(2, "0")}`;
}

/** The malleable twin of a signature: s → n − s and v flipped. Plain ECDSA accepts it; it has a high s. */
export function flipS(signature: Hex): Hex {
  const { r, s, v } = splitSignature(signature);
  return joinSignature(r, SECP256K1_N - s, v === 27 ? 28 : 27);
}

/** The same signature with another last byte. */
export function withV(signature: Hex, v: number): Hex {
  return `0x${signature.slice(2, 130)}${v.toString(16).padStart(2, "0")}`;
}
