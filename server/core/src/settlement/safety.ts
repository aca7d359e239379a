/**
 * The close-delay rule: a payer who calls `requestClose` can `withdraw` the whole unsettled rest after the channel's
 * close delay. Everything the server accepted must be on chain before then, so the slowest path from "close requested
 * on chain" to "settlement confirmed" must fit comfortably inside the shortest close delay the server accepts
 * (`MIN_CLOSE_DELAY`). docs/protocol.md ("Settlement") explains the rule; this is its one definition.
 *
 * ```
 * reaction = CHAIN_POLL_INTERVAL + CONFIRMATIONS × SETTLE_BLOCK_TIME   the server's follower sees CloseRequested
 *          + SETTLE_INTERVAL                                           the next settlement cycle starts
 *          + SETTLE_CLOSE_GRACE                                        in-flight requests finish before the close
 * landing  = 2 × SETTLE_RESUBMIT_AFTER                                 included, allowing one fee-bump replacement
 *          + SETTLE_CONFIRMATIONS × SETTLE_BLOCK_TIME                  then confirmed
 * required = 2 × (reaction + landing) + SETTLE_RPC_OUTAGE_MARGIN
 * start only when MIN_CLOSE_DELAY ≥ required
 * ```
 * The factor 2 is the "comfortably": one whole cycle may fail (a node error, a lost lease) and be retried.
 * The outage margin is how long the chain RPC (or the settler) may be unavailable without loss.
 */
import type { SettlementConfig } from "./config";

/** Inputs of the rule, all in seconds (or counts of blocks). */
export interface CloseDelayRuleInput {
  /** The smallest close delay the server accepts on a channel (MIN_CLOSE_DELAY). */
  minCloseDelay: number;
  /** Period of the settlement job (SETTLE_INTERVAL), or of the cron running `npm run settle`. */
  settleInterval: number;
  /** How often the server's event follower polls the chain (CHAIN_POLL_INTERVAL, converted to seconds). */
  chainPollInterval: number;
  /** Blocks the event follower stays behind the head (CONFIRMATIONS). */
  followerConfirmations: number;
  /** Blocks after which a settlement transaction counts as confirmed (SETTLE_CONFIRMATIONS). */
  settleConfirmations: number;
  /** Expected time between blocks (SETTLE_BLOCK_TIME). */
  blockTime: number;
  /** Time after which a pending settlement transaction is re-broadcast or replaced with higher fees (SETTLE_RESUBMIT_AFTER). */
  resubmitAfter: number;
  /** Wait between marking a channel closing and sending its close (SETTLE_CLOSE_GRACE). */
  closeGrace: number;
  /** Tolerated unavailability of the chain RPC or the settler (SETTLE_RPC_OUTAGE_MARGIN). */
  rpcOutageMargin: number;
}

export interface CloseDelayRuleResult {
  ok: boolean;
  /** Smallest MIN_CLOSE_DELAY the rule allows, seconds. */
  required: number;
  reaction: number;
  landing: number;
  /** Human-readable explanation (the refusal message when not ok). */
  message: string;
}

/** Evaluates the rule (pure). */
export function checkCloseDelayRule(i: CloseDelayRuleInput): CloseDelayRuleResult {
  for (const [k, v] of Object.entries(i)) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new RangeError(`${k} must be a finite number >= 0`);
  }
  const reaction = i.chainPollInterval + i.followerConfirmations * i.blockTime + i.settleInterval + i.closeGrace;
  const landing = 2 * i.resubmitAfter + i.settleConfirmations * i.blockTime;
  const required = Math.ceil(2 * (reaction + landing) + i.rpcOutageMargin);
  const ok = i.minCloseDelay >= required;
  const formula =
    `2 × (reaction ${fmt(reaction)} + landing ${fmt(landing)}) + RPC outage margin ${fmt(i.rpcOutageMargin)} = ${fmt(required)}` +
    ` (reaction = poll ${fmt(i.chainPollInterval)} + ${i.followerConfirmations} follower confirmations × ${fmt(i.blockTime)}` +
    ` + SETTLE_INTERVAL ${fmt(i.settleInterval)} + close grace ${fmt(i.closeGrace)};` +
    ` landing = 2 × SETTLE_RESUBMIT_AFTER ${fmt(i.resubmitAfter)} + ${i.settleConfirmations} confirmations × ${fmt(i.blockTime)})`;
  const message = ok
    ? `MIN_CLOSE_DELAY ${fmt(i.minCloseDelay)} ≥ ${formula}`
    : `MIN_CLOSE_DELAY is ${fmt(i.minCloseDelay)}, but settlement needs at least ${formula}. ` +
      `Raise MIN_CLOSE_DELAY, or lower SETTLE_INTERVAL / SETTLE_RESUBMIT_AFTER / SETTLE_RPC_OUTAGE_MARGIN.`;
  return { ok, required, reaction, landing, message };
}

/** The server settings the rule reads (a `ServerConfig` has them, in its units). */
export interface CloseDelayServerSettings {
  minCloseDelay: number;
  /** Milliseconds (CHAIN_POLL_INTERVAL). */
  chainPollInterval: number;
  confirmations: number;
}

/** Evaluates the rule for a server configuration and a resolved settlement configuration (both start paths use it). */
export function checkCloseDelayRuleFor(server: CloseDelayServerSettings, s: SettlementConfig): CloseDelayRuleResult {
  return checkCloseDelayRule({
    minCloseDelay: server.minCloseDelay,
    settleInterval: s.interval,
    chainPollInterval: server.chainPollInterval / 1000,
    followerConfirmations: server.confirmations,
    settleConfirmations: s.confirmations,
    blockTime: s.blockTime,
    resubmitAfter: s.resubmitAfter,
    closeGrace: s.closeGrace,
    rpcOutageMargin: s.rpcOutageMargin,
  });
}

function fmt(s: number): string {
  return Number.isInteger(s) ? `${s} s` : `${s.toFixed(3)} s`;
}
