import { PaymentError } from "./errors";

/** Largest `uint128`: the voucher's amount type, and so the largest amount on the wire or in a store. */
export const MAX_UINT128 = (1n << 128n) - 1n;
const DECIMAL = /^(0|[1-9][0-9]{0,38})$/;

/**
 * Parses a wire amount: a decimal string of atomic units with no sign, exponent, fraction or leading zero,
 * at most `uint128`. Throws `invalid_payload` otherwise.
 */
export function parseWireAmount(value: unknown, field: string): bigint {
  if (typeof value !== "string" || !DECIMAL.test(value)) {
    throw new PaymentError("invalid_payload", `${field} must be a decimal string of atomic units`);
  }
  const n = BigInt(value);
  if (n > MAX_UINT128) throw new PaymentError("invalid_payload", `${field} is above 2^128 - 1`);
  return n;
}

/** Formats an amount for the wire. */
export function formatWireAmount(value: bigint): string {
  if (value < 0n) throw new RangeError("amounts are never negative");
  return value.toString(10);
}

const TOKEN_AMOUNT = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;

function checkDecimals(decimals: number): void {
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 77) throw new RangeError(`decimals must be an integer from 0 to 77, got ${decimals}`);
}

/**
 * Parses a human amount in token units ("0.001") into atomic units, for a token with `decimals` decimals.
 * Surrounding whitespace is ignored (human input). Rejects more fraction digits than the token has, signs, exponents,
 * leading zeros, a bare or trailing decimal point ("1.", ".5") and empty strings, with a RangeError.
 */
export function parseTokenAmount(value: string, decimals: number): bigint {
  checkDecimals(decimals);
  if (typeof value !== "string") throw new RangeError(`not a token amount: ${typeof value}`);
  const m = TOKEN_AMOUNT.exec(value.trim());
  if (!m) throw new RangeError(`not a token amount: ${JSON.stringify(value)}`);
  const frac = (m[2] ?? ".").slice(1);
  if (frac.length > decimals) throw new RangeError(`${value} has more than ${decimals} decimals`);
  return BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt(frac.padEnd(decimals, "0") || "0");
}

/** Formats atomic units as token units, without trailing zeros ("0.001"). */
export function formatTokenAmount(value: bigint, decimals: number): string {
  checkDecimals(decimals);
  const neg = value < 0n;
  const abs = neg ? -value : value;
  const base = 10n ** BigInt(decimals);
  const whole = abs / base;
  const frac = (abs % base).toString().padStart(decimals, "0").replace(/0+$/, "");
  return `${neg ? "-" : ""}${whole}${frac ? `.${frac}` : ""}`;
}
