/**
 * Which channels to settle now, and how (pure functions; the job feeds them the store's candidates).
 *
 * - Close requested, by the payer through `POST /channel/close` or on chain (`CloseRequested`, `closesAt > 0`):
 *   settle at once AND close cooperatively (`ChannelEscrow.close`), so the payer gets the rest back immediately.
 *   A channel closing on chain with nothing owed is left to the payer's own `withdraw`; one the payer asked us to
 *   close is closed even with nothing owed (that is what the payer asked for: the refund now).
 * - Otherwise settle (batched `settle`) when something is owed and: it reaches the threshold; or the channel was last
 *   settled (or first stored) at least `maxAge` ago; or `spent` reached `exhaustedPercent` of the deposit; or `all`.
 * - Never a channel with nothing to claim.
 */
import type { SettlementCandidate } from "../store/settlement-types";
import type { StoredChannel } from "../store/types";

export type SelectReason =
  | "close_requested_by_payer"
  | "close_requested_on_chain"
  | "threshold"
  | "max_age"
  | "deposit_nearly_exhausted"
  | "all";

export type SettlementAction = { action: "close" | "settle"; reason: SelectReason };

export interface PolicyConfig {
  /** Atomic units. */
  threshold: bigint;
  /** Seconds. */
  maxAge: number;
  /** 1-100. */
  exhaustedPercent: number;
}

export interface PolicyContext {
  /** Unix ms (server clock; `lastSettledAt` and `createdAt` are in it). */
  nowMs: number;
  /** Settle everything owed (`npm run settle --all`). */
  all?: boolean;
}

/**
 * What the channel allows claiming now: `min(spent, accepted, deposit)` (the voucher for `accepted` pays at most its
 * amount; the contract pays at most the deposit), or 0 without a voucher.
 */
export function claimable(c: Pick<StoredChannel, "spent" | "accepted" | "deposit" | "acceptedSignature">): bigint {
  if (c.acceptedSignature === null) return 0n;
  let v = c.spent;
  if (c.accepted < v) v = c.accepted;
  if (c.deposit < v) v = c.deposit;
  return v;
}

/** What claiming now would add on chain: `claimable - settled` (≤ 0 means nothing to settle). */
export function owed(c: Pick<StoredChannel, "spent" | "accepted" | "deposit" | "acceptedSignature" | "settled">): bigint {
  return claimable(c) - c.settled;
}

/** The policy for one channel: null means leave it. */
export function decide(c: SettlementCandidate, cfg: PolicyConfig, ctx: PolicyContext): SettlementAction | null {
  if (c.finalized) return null;
  const due = owed(c);
  if (c.payerCloseRequestedAt > 0) return { action: "close", reason: c.closesAt > 0 ? "close_requested_on_chain" : "close_requested_by_payer" };
  if (c.closesAt > 0) return due > 0n ? { action: "close", reason: "close_requested_on_chain" } : null;
  if (due <= 0n) return null;
  if (ctx.all) return { action: "settle", reason: "all" };
  if (due >= cfg.threshold) return { action: "settle", reason: "threshold" };
  const since = Math.max(c.lastSettledAt, c.createdAt);
  if (ctx.nowMs - since >= cfg.maxAge * 1000) return { action: "settle", reason: "max_age" };
  if (c.deposit > 0n && c.spent * 100n >= c.deposit * BigInt(cfg.exhaustedPercent)) return { action: "settle", reason: "deposit_nearly_exhausted" };
  return null;
}

/** Order of work: closes by deadline (payer requests first, then earliest `closesAt`), then settles by amount owed. */
export function urgencyOrder(a: { c: SettlementCandidate; d: SettlementAction }, b: { c: SettlementCandidate; d: SettlementAction }): number {
  if (a.d.action !== b.d.action) return a.d.action === "close" ? -1 : 1;
  if (a.d.action === "close") {
    const da = a.c.closesAt || 0;
    const db = b.c.closesAt || 0;
    if (da !== db) return da === 0 ? -1 : db === 0 ? 1 : da - db;
    return a.c.payerCloseRequestedAt - b.c.payerCloseRequestedAt;
  }
  const oa = owed(a.c);
  const ob = owed(b.c);
  return oa === ob ? 0 : oa > ob ? -1 : 1;
}
