/**
 * The terms of a streamed route paid per unit (docs/protocol.md § 5.10), carried in the `channel` offer as
 * `extra.stream`. Its own module so that the offer codec (wire.ts) and the stream events (stream.ts, which builds on
 * the receipt of wire.ts) import it without importing each other.
 */
import { formatWireAmount, parseWireAmount } from "./amounts";
import { bad, obj, uint } from "./decode";

/** Longest `deadlineMs` an offer may name (10 minutes). */
export const MAX_STREAM_DEADLINE_MS = 600_000;

/**
 * `extra.stream` of a streamed route's offer. The offer's `amount` is the initial reservation (what the request's
 * voucher must cover); the stream is charged `unitPrice` per delivered unit, never above its reservation, and the
 * server asks for `topUp` more at a time.
 */
export interface StreamTerms {
  /** Price of one unit (an event's worth, e.g. one token), atomic units; > 0. */
  unitPrice: bigint;
  /** What the server asks per top-up, atomic units; ≥ unitPrice. */
  topUp: bigint;
  /** How long the server waits for an accepted top-up once it asked, milliseconds (1 to {@link MAX_STREAM_DEADLINE_MS}). */
  deadlineMs: number;
}

/** `extra.stream` in its wire (JSON) form, the inverse of {@link parseStreamTerms}. */
export function streamTermsToJson(t: StreamTerms): Record<string, unknown> {
  return { unitPrice: formatWireAmount(t.unitPrice), topUp: formatWireAmount(t.topUp), deadlineMs: t.deadlineMs };
}

/** Decodes `extra.stream` (strict: every failure is `invalid_payload`). */
export function parseStreamTerms(v: unknown, field = "extra.stream"): StreamTerms {
  const o = obj(v, field);
  const unitPrice = parseWireAmount(o.unitPrice, `${field}.unitPrice`);
  if (unitPrice === 0n) bad(`${field}.unitPrice must be above 0`);
  const topUp = parseWireAmount(o.topUp, `${field}.topUp`);
  if (topUp < unitPrice) bad(`${field}.topUp must be at least unitPrice`);
  const deadlineMs = uint(o.deadlineMs, `${field}.deadlineMs`, MAX_STREAM_DEADLINE_MS);
  if (deadlineMs === 0) bad(`${field}.deadlineMs must be at least 1`);
  return { unitPrice, topUp, deadlineMs };
}
