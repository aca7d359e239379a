/** Comparisons of token amounts (bigint), which `Math.max` / `Math.min` do not take. */

/** The largest of `xs` (at least one). */
export const max = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b > a ? b : a));

/** The smaller of `a` and `b`. */
export const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);
