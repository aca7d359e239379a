/**
 * The settlement job: one cycle ({@link SettlementJob.runOnce}) takes the settler lease, reconciles the transactions
 * already recorded, picks channels by policy, and submits `settle` batches and cooperative `close`s, recording every
 * step in the `SettlementStore` before acting on it; with `wait`, it waits for them to become final.
 *
 * Crash safety (idempotence) comes from three rules:
 * 1. A transaction is signed locally and recorded (`built`, with hash, nonce and raw bytes) BEFORE it is broadcast
 *    (`submit.ts`). After a crash at any point the job finds it in `openTxs()` and looks its hash up (`lifecycle.ts`):
 *    mined → record it; unknown and its nonce still free → broadcast the same bytes again (same hash: it can only
 *    land once); nonce used by another transaction → `dropped`, and its channels become candidates again.
 * 2. A channel with a `pending` item is never claimed by another transaction (except a same-nonce fee bump, which
 *    can only land instead of it).
 * 3. Claims are cumulative (`amount = spent`), and channel `settled` only moves from chain facts: the confirmed
 *    receipt's `Settled` / `Closed` logs (raised, never lowered, in the same store transaction that confirms) and
 *    chain snapshots. Re-sending a claim that already landed is skipped by the contract (`AmountNotAboveSettled`).
 *
 * Where the steps are: `select.ts` (policy and plan), `settle-batches.ts` (building and submitting `settle`
 * batches), `close.ts` (cooperative closes), `submit.ts` (sign, record, broadcast), `lifecycle.ts` (confirmation,
 * reorgs, drops, re-broadcast, fee bumps, the wait), `report.ts` (the run report), `cycle.ts` (their shared state).
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import { describe, detailsOf, SettlementCycle } from "./cycle";
import { SimulatedStop, type RunOptions, type SettlementJobOptions } from "./job-options";
import { reconcile, waitFinal } from "./lifecycle";
import type { PolicyConfig } from "./policy";
import { summariseRun, type SettlementRunReport } from "./report";
import { expireReservations } from "./reservations";
import { selectAndSubmit } from "./select";

// The job's option types, where a reader of the job looks for them (defined in job-options.ts).
export type { RunOptions, SettlementJobOptions, SettlementStep, SettlementStepInfo } from "./job-options";

/** Settles channels for one payee: {@link preflight} once, then {@link runOnce} per cycle (cron, or the scheduler). */
export class SettlementJob {
  /** Name of this job as the settler-lease holder. */
  readonly holder: string;
  private readonly o: SettlementJobOptions;
  private readonly policy: PolicyConfig;
  private readonly log?: Logger;
  private stopping = false;

  constructor(o: SettlementJobOptions) {
    this.o = o;
    this.holder = o.holder ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.policy = { threshold: o.threshold, maxAge: o.config.maxAge, exhaustedPercent: o.config.exhaustedPercent };
    this.log = o.logger?.child({ component: "settlement" });
  }

  /** Checks the settler may settle for the payee; throws with an operator-facing message otherwise. */
  async preflight(): Promise<void> {
    const c = this.o.chain;
    if (!(await c.authorized())) {
      throw new Error(`the settler ${c.sender} is neither the payee ${c.payee} nor an operator it approved (payee must call setOperator(${c.sender}, true))`);
    }
    const balance = await c.balance();
    if (balance === 0n) this.log?.warn({ settler: c.sender }, "the settler has no native balance to pay gas");
  }

  /** Makes a running wait loop return early (server shutdown). */
  stop(): void {
    this.stopping = true;
  }

  /** One settlement cycle. Errors are reported in `failures`; only a {@link SimulatedStop} from a test hook is thrown. */
  async runOnce(opts: RunOptions = {}): Promise<SettlementRunReport> {
    const started = Date.now();
    const cy = new SettlementCycle(this.o, this.holder, this.policy, this.log, () => this.stopping, started);
    const r = cy.report;
    const waitMs = opts.waitTimeoutMs ?? this.o.config.waitTimeout * 1000;
    const ttl = this.o.leaseTtlMs ?? Math.max(60_000, 2 * waitMs);
    let leased = false;
    try {
      leased = await this.o.settlement.tryAcquireSettlerLease(this.holder, ttl);
    } catch (e) {
      r.failures.push(`settler lease: ${describe(e)}`);
    }
    if (!leased) {
      r.leased = false;
      r.finishedAt = Date.now();
      this.o.metrics?.cycle(r.failures.length ? "failed" : "lease_busy", (r.finishedAt - started) / 1000);
      return r;
    }
    let crashed: SimulatedStop | null = null;
    try {
      await reconcile(cy);
      await expireReservations(cy, opts.dryRun);
      const deadline = Date.now() + waitMs;
      // A dropped transaction frees its channels: the one-shot re-selects them (up to three rounds).
      for (let round = 0; round < (opts.wait ? 3 : 1); round++) {
        const dropsBefore = cy.countDropped();
        await selectAndSubmit(cy, opts);
        if (opts.dryRun || !opts.wait) break;
        await waitFinal(cy, deadline, ttl);
        if (r.timedOut || cy.countDropped() === dropsBefore) break;
      }
    } catch (e) {
      if (e instanceof SimulatedStop) crashed = e;
      else {
        r.failures.push(describe(e));
        this.log?.error({ err: describe(e), details: detailsOf(e) }, "settlement cycle failed");
      }
    } finally {
      // A simulated crash keeps the lease, as a killed process would (it lapses after its TTL).
      if (!crashed) await this.o.settlement.releaseSettlerLease(this.holder).catch(() => undefined);
    }
    if (crashed) throw crashed;
    try {
      r.pending = (await this.o.settlement.openTxs()).length;
    } catch {
      /* reported elsewhere */
    }
    summariseRun(r, cy.touched);
    r.finishedAt = Date.now();
    this.o.metrics?.cycle(r.failures.length ? "failed" : "ok", (r.finishedAt - started) / 1000);
    return r;
  }
}
