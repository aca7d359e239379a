/**
 * Route prices. A provider writes prices in token units ("0.001") or atomic units (bigint); the core works in
 * atomic units only.
 */
import { parseTokenAmount, type StreamTerms } from "@paychan/protocol";

/** A price as a provider writes it: token units as a decimal string, or atomic units as a bigint. */
export type PriceInput = string | bigint;

/** What one request may cost, resolved for the core. */
export type RoutePricing =
  | { kind: "fixed"; /** atomic units */ price: bigint; description?: string; mimeType?: string }
  | { kind: "metered"; /** most the request may cost (reserved), atomic units */ max: bigint; description?: string; mimeType?: string }
  | {
      kind: "stream";
      /** The initial reservation (the offer's `amount`), atomic units; the stream grows it by top-ups (docs/protocol.md § 5.10). */
      reserve: bigint;
      /** `extra.stream` of the offer. */
      terms: StreamTerms;
      description?: string;
      mimeType?: string;
    };

/** Converts a {@link PriceInput} to atomic units; throws RangeError for a negative, malformed or zero price. */
export function toAtomic(price: PriceInput, decimals: number, what = "price"): bigint {
  let v: bigint;
  if (typeof price === "bigint") v = price;
  else if (typeof price === "string") {
    try {
      v = parseTokenAmount(price, decimals);
    } catch (e) {
      throw new RangeError(`${what} ${JSON.stringify(price)}: ${(e as Error).message}`);
    }
  } else throw new RangeError(`${what} must be a token amount string or a bigint of atomic units`);
  if (v <= 0n) throw new RangeError(`${what} must be above zero`);
  if (v >= 1n << 96n) throw new RangeError(`${what} is larger than any channel can hold`);
  return v;
}

/** The amount a request's voucher must cover: the price, a metered route's maximum, or a stream's initial reservation. */
export function maxCharge(p: RoutePricing): bigint {
  return p.kind === "fixed" ? p.price : p.kind === "metered" ? p.max : p.reserve;
}
