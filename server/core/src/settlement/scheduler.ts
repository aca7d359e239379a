/**
 * Runs the settlement job inside the server every SETTLE_INTERVAL: one cycle at start (which also resumes whatever a
 * previous process left half-done), then one per interval, earlier when a cooperative close's grace period ends.
 * Cycles never overlap; `stop()` waits for the running one.
 */
import type { Logger } from "pino";
import type { SettlementJob } from "./job";
import type { RunOptions } from "./job-options";
import type { SettlementRunReport } from "./report";

export interface SettlementSchedulerOptions {
  /** Period between cycles, ms. */
  intervalMs: number;
  /** How long a cycle waits for its transactions to confirm before leaving them to the next one, ms. */
  waitTimeoutMs?: number;
  logger?: Logger;
  /** Called after every cycle. */
  onReport?: (r: SettlementRunReport) => void;
  /** Called by {@link SettlementScheduler.start}. */
  onStart?: () => void;
}

export class SettlementScheduler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SettlementRunReport> | null = null;
  private stopped = false;
  /** The last cycle's report. */
  lastReport: SettlementRunReport | null = null;

  constructor(
    readonly job: SettlementJob,
    private readonly o: SettlementSchedulerOptions,
  ) {}

  /** Starts: a cycle now, then every interval. */
  start(): void {
    this.o.onStart?.();
    this.stopped = false;
    this.schedule(0);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runNow().then(
        (r) => this.schedule(this.nextDelay(r)),
        () => this.schedule(this.o.intervalMs),
      );
    }, delay);
    this.timer.unref?.();
  }

  private nextDelay(r: SettlementRunReport): number {
    let d = this.o.intervalMs;
    if (r.nextDueAt !== null) d = Math.min(d, Math.max(50, r.nextDueAt - Date.now() + 50));
    return d;
  }

  /** Runs a cycle now (or joins the running one). */
  runNow(opts: RunOptions = {}): Promise<SettlementRunReport> {
    if (this.running) return this.running;
    const wait = this.o.waitTimeoutMs ?? Math.min(30_000, Math.max(1_000, Math.floor(this.o.intervalMs / 2)));
    this.running = this.job
      .runOnce({ wait: true, waitTimeoutMs: wait, ...opts })
      .then((r) => {
        this.lastReport = r;
        if (r.failures.length) this.o.logger?.warn({ failures: r.failures.slice(0, 5) }, "settlement cycle had failures");
        this.o.onReport?.(r);
        return r;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  /** Stops scheduling and waits for a running cycle (its confirmation wait is cut short). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.job.stop();
    await this.running?.catch(() => undefined);
  }
}
