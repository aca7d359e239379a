/**
 * A streamed route's terms (docs/protocol.md § 5.10), resolved and checked once when the route is registered.
 */
import { MAX_STREAM_DEADLINE_MS, type StreamTerms } from "@paychan/protocol";
import type { RoutePricing } from "../payments/pricing";

/** Shortest lease of a stream reservation: a sweeper finishes a stream whose checkpoint is older than this. */
export const STREAM_LEASE_MIN_MS = 10_000;

/** What a provider writes for a streamed route (atomic units; the adapter converts token units). */
export interface StreamRouteOptions {
  /** Price of one unit (an event's worth by default). */
  unitPrice: bigint;
  /** The initial reservation: what the request's voucher must cover (the offer's `amount`). At least one unit. */
  reserve: bigint;
  /** Asked per top-up (default: `reserve`). At least one unit. */
  topUp?: bigint;
  /** How long a top-up is waited for once asked, ms (default 10,000; 1 to 600,000). */
  deadlineMs?: number;
  /** A checkpoint after this many units written (default 1,000). */
  checkpointUnits?: number;
  /** A checkpoint at least this often while the stream lives, ms (default 1,000). */
  checkpointMs?: number;
  description?: string;
  mimeType?: string;
}

/** A registered streamed route. */
export interface StreamRoute {
  pricing: Extract<RoutePricing, { kind: "stream" }>;
  terms: StreamTerms;
  unitPrice: bigint;
  reserve: bigint;
  topUp: bigint;
  deadlineMs: number;
  checkpointUnits: number;
  checkpointMs: number;
  /** max(STREAM_LEASE_MIN_MS, 5 × checkpointMs). */
  leaseMs: number;
  /** Ask for a top-up when the unspent reservation would drop below this (half a top-up, at least one unit). */
  lowWater: bigint;
}

function positiveInt(v: number, what: string, max: number): number {
  if (!Number.isSafeInteger(v) || v < 1 || v > max) throw new RangeError(`${what} must be an integer from 1 to ${max}`);
  return v;
}

/** Checks and completes a streamed route's options (RangeError on a bad one). */
export function streamRoute(o: StreamRouteOptions): StreamRoute {
  const unitPrice = o.unitPrice;
  if (typeof unitPrice !== "bigint" || unitPrice <= 0n) throw new RangeError("unitPrice must be above zero");
  if (typeof o.reserve !== "bigint" || o.reserve < unitPrice) throw new RangeError("reserve must cover at least one unit");
  const topUp = o.topUp ?? o.reserve;
  if (typeof topUp !== "bigint" || topUp < unitPrice) throw new RangeError("topUp must cover at least one unit");
  const deadlineMs = positiveInt(o.deadlineMs ?? 10_000, "deadlineMs", MAX_STREAM_DEADLINE_MS);
  const checkpointUnits = positiveInt(o.checkpointUnits ?? 1_000, "checkpointUnits", 1e9);
  const checkpointMs = positiveInt(o.checkpointMs ?? 1_000, "checkpointMs", 600_000);
  const terms: StreamTerms = { unitPrice, topUp, deadlineMs };
  const half = topUp / 2n;
  return {
    pricing: { kind: "stream", reserve: o.reserve, terms, description: o.description, mimeType: o.mimeType ?? "text/event-stream" },
    terms,
    unitPrice,
    reserve: o.reserve,
    topUp,
    deadlineMs,
    checkpointUnits,
    checkpointMs,
    leaseMs: Math.max(STREAM_LEASE_MIN_MS, 5 * checkpointMs),
    lowWater: half > unitPrice ? half : unitPrice,
  };
}
