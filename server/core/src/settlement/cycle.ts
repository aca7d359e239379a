/**
 * The state one settlement cycle shares between its steps (reconcile, select, close, settle, submit): the job's
 * parts, the report being filled, and the transactions the cycle touched. A new {@link SettlementCycle} per
 * `SettlementJob.runOnce`; the steps are functions of it, one file per responsibility.
 */
import type { Logger } from "pino";
import type { SettlementTx } from "../store/settlement-types";
import type { SettlementJobOptions, SettlementStep, SettlementStepInfo } from "./job-options";
import type { PolicyConfig } from "./policy";
import { emptyRunReport, type SettlementRunReport } from "./report";

/** One cycle in progress. */
export class SettlementCycle {
  /** The report being filled. */
  readonly report: SettlementRunReport;
  /** Transactions this cycle created or moved, latest state of each (the report lists them). */
  readonly touched = new Map<number, SettlementTx>();

  constructor(
    /** The job's parts. */
    readonly o: SettlementJobOptions,
    /** The job's settler-lease holder name. */
    readonly holder: string,
    /** The policy's thresholds, in atomic units. */
    readonly policy: PolicyConfig,
    /** The job's logger (`component: "settlement"`). */
    readonly log: Logger | undefined,
    /** Whether the job was asked to stop (a wait returns early). */
    readonly stopping: () => boolean,
    startedAt: number,
  ) {
    this.report = emptyRunReport(startedAt);
  }

  /** Calls the test hook of `step` (which may throw a `SimulatedStop`). */
  async step(step: SettlementStep, info: SettlementStepInfo): Promise<void> {
    await this.o.onStep?.(step, info);
  }

  /** Remembers the latest state of a transaction for the report; returns it. */
  touch(tx: SettlementTx): SettlementTx {
    this.touched.set(tx.id, tx);
    return tx;
  }

  /** Transactions of this cycle that ended `dropped` (their channels are candidates again). */
  countDropped(): number {
    let n = 0;
    for (const t of this.touched.values()) if (t.status === "dropped") n++;
    return n;
  }
}

/** The node's own words for an RPC error (viem keeps them in `details`), for logs. */
export function detailsOf(e: unknown): string | undefined {
  const d = (e as { details?: unknown })?.details;
  return typeof d === "string" ? d.slice(0, 500) : undefined;
}

/** The first line of an error's (short) message, at most 300 characters: for reports and logs. */
export function describe(e: unknown): string {
  const msg = e instanceof Error ? ((e as { shortMessage?: string }).shortMessage ?? e.message) : String(e);
  return msg.split("\n")[0].slice(0, 300);
}
