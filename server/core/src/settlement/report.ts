/**
 * The report of one settlement cycle ({@link SettlementRunReport}): what the policy selected, the transactions the
 * cycle created or moved, totals of what was confirmed, failures. The steps of a cycle fill `selected`, `plan`,
 * `closeFallbacks`, `amountDeferred`, `failures`, `timedOut` and `nextDueAt` as they go; {@link summariseRun} adds the
 * transactions and totals at the end.
 */
import type { Hex } from "viem";
import { PERMANENT_SKIP_REASONS, type SettlementTx, type SettlementTxKind, type SkipReason } from "../store/settlement-types";
import type { SelectReason, SettlementAction } from "./policy";

/** One transaction in a run report. */
export interface TxSummary {
  id: number;
  kind: SettlementTxKind;
  status: SettlementTx["status"];
  hash: Hex;
  nonce: number;
  channels: number;
  /** Channels whose settled amount rose (settle) or that were closed (close). */
  settled: number;
  skipped: Array<{ channelId: Hex; reason: SkipReason }>;
  amount: bigint;
  gasUsed: bigint | null;
  error: string | null;
}

/** What one cycle did (`SettlementJob.runOnce`). */
export interface SettlementRunReport {
  /** False when another settler held the lease (nothing was done). */
  leased: boolean;
  startedAt: number;
  finishedAt: number;
  /** What the policy picked, by reason. */
  selected: Partial<Record<SelectReason, number>>;
  /** In a dry run: the channels that would be settled or closed. */
  plan: Array<{ channelId: Hex; action: SettlementAction["action"]; reason: SelectReason; amount: bigint }>;
  /** Transactions this run created or moved. */
  txs: TxSummary[];
  /** Channels settled by `settle` transactions confirmed in this run. */
  channelsSettled: number;
  /** Channels closed by `close` transactions confirmed in this run. */
  channelsClosed: number;
  /** Paid to the payee by transactions confirmed in this run. */
  amountSettled: bigint;
  /**
   * Settled by transactions confirmed in this run but not transferred: the escrow's payout to the payee failed
   * (paused token, blacklisted payee) and it keeps the amount owed to the payee (`PaymentDeferred`), who takes it
   * with `collect(token, to)`. Not part of `amountSettled`.
   */
  amountDeferred: bigint;
  /**
   * Closes that could not be sent (the node's estimate reverted with `error`, e.g. `CloseNotConsented` or
   * `TransferOutOfGas`): what the channel owed (`amount`) was put in a `settle` batch instead.
   */
  closeFallbacks: Array<{ channelId: Hex; error: string; amount: bigint }>;
  /** Gas of the transactions confirmed or failed in this run. */
  gasUsed: bigint;
  /** Gas of confirmed `settle` transactions / channels they settled (null when none). */
  gasPerChannel: number | null;
  skipped: Array<{ channelId: Hex; reason: SkipReason; permanent: boolean }>;
  /** Everything that went wrong (reverts, RPC errors, failed or dropped transactions, permanent skips). */
  failures: string[];
  /** Transactions still open at the end (sent but not yet confirmed). */
  pending: number;
  /** The wait for confirmations ran out. */
  timedOut: boolean;
  /** Unix ms when a close waiting for its grace period becomes due (the scheduler wakes then). */
  nextDueAt: number | null;
}

/** The report of a cycle started at `startedAt` (unix ms), before anything was done. */
export function emptyRunReport(startedAt: number): SettlementRunReport {
  return {
    leased: true,
    startedAt,
    finishedAt: startedAt,
    selected: {},
    plan: [],
    txs: [],
    channelsSettled: 0,
    channelsClosed: 0,
    amountSettled: 0n,
    amountDeferred: 0n,
    closeFallbacks: [],
    gasUsed: 0n,
    gasPerChannel: null,
    skipped: [],
    failures: [],
    pending: 0,
    timedOut: false,
    nextDueAt: null,
  };
}

/**
 * Adds the transactions the cycle touched (latest state of each) to `r`: their summaries, the totals of the confirmed
 * ones, permanent skips and unexpected drops as failures.
 */
export function summariseRun(r: SettlementRunReport, touched: ReadonlyMap<number, SettlementTx>): void {
  let settleGas = 0n;
  let settleChannels = 0;
  for (const t of touched.values()) {
    const settled = t.items.filter((i) => i.status === "settled" || i.status === "closed").length;
    const skipped = t.items.filter((i) => i.status === "skipped").map((i) => ({ channelId: i.channelId, reason: i.skipReason! }));
    r.txs.push({
      id: t.id,
      kind: t.kind,
      status: t.status,
      hash: t.hash,
      nonce: t.nonce,
      channels: t.items.length,
      settled,
      skipped,
      amount: t.amountSettled ?? 0n,
      gasUsed: t.gasUsed,
      error: t.error,
    });
    if (t.status === "confirmed") {
      r.amountSettled += t.amountSettled ?? 0n;
      if (t.kind === "settle") {
        r.channelsSettled += settled;
        settleChannels += settled;
        settleGas += t.gasUsed ?? 0n;
      } else r.channelsClosed += settled;
      for (const s of skipped) {
        const permanent = PERMANENT_SKIP_REASONS.includes(s.reason);
        r.skipped.push({ ...s, permanent });
        if (permanent) r.failures.push(`channel ${s.channelId} was skipped: ${s.reason} (its voucher cannot be settled)`);
      }
    }
    if ((t.status === "confirmed" || t.status === "failed") && t.gasUsed !== null) r.gasUsed += t.gasUsed;
    if (t.status === "dropped" && !replacedByLiveSibling(t, touched)) r.failures.push(`transaction #${t.id} (${t.hash}) dropped: ${t.error}`);
  }
  r.txs.sort((a, b) => a.id - b.id);
  r.gasPerChannel = settleChannels > 0 ? Math.round(Number(settleGas) / settleChannels) : null;
}

/** Whether a dropped transaction was superseded by a same-nonce replacement that landed (not a failure). */
function replacedByLiveSibling(t: SettlementTx, touched: ReadonlyMap<number, SettlementTx>): boolean {
  for (const o of touched.values()) {
    if (o.id !== t.id && o.nonce === t.nonce && o.sender === t.sender && o.status !== "dropped" && o.status !== "failed") return true;
  }
  return false;
}
