/**
 * Amount encodings for stores. SQL engines have no uint128, so amounts are stored as fixed-width decimal text
 * (39 digits, zero-padded: 2^128 - 1 has 39 digits). Fixed width makes text order equal numeric order, so
 * `amount <= floor` and `spent > settled` work in SQL without casts.
 */
import { MAX_UINT128 } from "@paychan/protocol";

const WIDTH = 39;

/** Encodes an amount (0 to 2^128 - 1) as 39 zero-padded digits. */
export function encodeAmount(value: bigint): string {
  if (value < 0n || value > MAX_UINT128) throw new RangeError(`amount out of range: ${value}`);
  return value.toString(10).padStart(WIDTH, "0");
}

/** Decodes {@link encodeAmount}'s text (also accepts unpadded decimal text). */
export function decodeAmount(text: string): bigint {
  return BigInt(text);
}
