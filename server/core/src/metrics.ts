/**
 * Prometheus metrics (prom-client), one registry per server instance (several servers can share a process in tests).
 * Request-path metrics are counters/histograms updated by the payment core's observer; money totals are read from
 * the store when scraped.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { PaymentObserver } from "./payments/core";
import type { ChannelStore } from "./store/types";
import type { EventFollower } from "./chain/follower";
import { configureSettlementMetrics } from "./settlement/metrics";
import type { ExactObserver } from "./exact/reconcile";
import type { ExactStore } from "./store/exact-types";
import type { GaslessOpenObserver } from "./open/reconcile";
import type { GaslessOpenStore } from "./store/open-types";

/** Chain reads refused by the read budget, by the bucket that was empty (chain/read-budget.ts). */
export interface ReadRefusals {
  readonly refusedPerSource: number;
  readonly refusedGlobal: number;
}

/** Connections closed at accept, by the limit they met (@paychan/express `limitConnections`). */
export interface ConnectionRefusals {
  readonly refusedPerSource: number;
  readonly refusedOverall: number;
}

export interface ServerMetrics {
  registry: Registry;
  observer: PaymentObserver;
  /** The `exact` scheme's hooks (exact/payments.ts). */
  exactObserver: ExactObserver;
  /** Wires the store/follower gauges and the read budget's refusals (read at scrape time). */
  attach(store: ChannelStore, follower: EventFollower, budget?: ReadRefusals): void;
  /** Wires `exact_payments{status}` to the store's `exact` records (read at scrape time); the provider does when `exact` is on. */
  attachExact(store: ExactStore): void;
  /** Gasless opens' hooks (open/opens.ts): `gasless_opens_total{status}`, `gasless_open_seconds`. */
  openObserver: GaslessOpenObserver;
  /** Wires `gasless_opens{status}` to the store's open records (read at scrape time). */
  attachOpens(store: GaslessOpenStore): void;
  /** Wires `channel_connections_refused_total` to the listener's connection limits (read at scrape time). */
  attachConnections(connections: ConnectionRefusals): void;
}

/**
 * Creates the server's metrics. `defaults` adds Node process metrics. No series is labelled by channel id unless
 * `perChannel` (METRICS_PER_CHANNEL): the settlement gauges then name the channels owing most and closing soonest.
 */
export function createMetrics(opts: { defaults?: boolean; perChannel?: boolean } = {}): ServerMetrics {
  const registry = new Registry();
  if (opts.defaults) collectDefaultMetrics({ register: registry });
  configureSettlementMetrics(registry, { perChannel: opts.perChannel === true });

  const paid = new Counter({ name: "channel_paid_requests_total", help: "Paid requests served (charge committed)", registers: [registry] });
  const byScheme = new Counter({
    name: "paid_requests_total",
    help: "Paid requests served, by scheme: channel (charge committed) or exact (transfer confirmed on chain)",
    labelNames: ["scheme"],
    registers: [registry],
  });
  const exactPayments = new Counter({
    name: "exact_payments_total",
    help: "exact payments by outcome: submitted, confirmed, failed (reverted or dropped), refused (before any transfer)",
    labelNames: ["status"],
    registers: [registry],
  });
  const exactSettle = new Histogram({
    name: "exact_settlement_seconds",
    help: "Time from broadcast to the confirmed receipt of an exact payment's transfer (paid requests)",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30],
    registers: [registry],
  });
  const opensTotal = new Counter({
    name: "gasless_opens_total",
    help: "gasless opens (the provider opens the channel from the payer's signature) by outcome: submitted, confirmed, failed (reverted or dropped), refused (before any transaction)",
    labelNames: ["status"],
    registers: [registry],
  });
  const openSeconds = new Histogram({
    name: "gasless_open_seconds",
    help: "Time from broadcast to the receipt of a gasless open (paid requests)",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30],
    registers: [registry],
  });
  let openStore: GaslessOpenStore | null = null;
  new Gauge({
    name: "gasless_opens",
    help: "gasless opens in the store by status: pending and submitted are open (the reconciler finishes them), confirmed, failed",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      if (!openStore) return;
      try {
        const c = await openStore.openCounts();
        for (const [status, n] of Object.entries(c)) this.set({ status }, n);
      } catch {
        // store unavailable: no sample
      }
    },
  });
  const refused = new Counter({
    name: "channel_payment_refusals_total",
    help: "Paid-route requests not served, by error code and HTTP status (402s are payment refusals)",
    labelNames: ["code", "status"],
    registers: [registry],
  });
  const verify = new Histogram({
    name: "channel_voucher_verification_seconds",
    help: "Time to verify one voucher signature",
    buckets: [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005],
    registers: [registry],
  });
  const commit = new Histogram({
    name: "channel_accounting_commit_seconds",
    help: "Time of the atomic accounting transaction (durable commit included)",
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
    registers: [registry],
  });
  const charged = new Counter({ name: "channel_charged_atomic_total", help: "Amount charged to channels (after releases), atomic units", registers: [registry] });
  const released = new Counter({ name: "channel_released_atomic_total", help: "Amount released (handler failures, metered remainders), atomic units", registers: [registry] });
  const failures = new Counter({ name: "channel_handler_failures_total", help: "Paid handlers that failed (status >= 500); charge released", registers: [registry] });

  let store: ChannelStore | null = null;
  let follower: EventFollower | null = null;
  let budget: ReadRefusals | null = null;
  let connections: ConnectionRefusals | null = null;
  // Monotonic counts kept by their owners, exported as counters: bounded labels only (never a source or a channel).
  new Counter({
    name: "channel_chain_reads_refused_total",
    help: "Chain reads of unknown channels refused by the read budget: scope=source (the client's CHAIN_READS_PER_SOURCE), scope=global (CHAIN_READS_GLOBAL)",
    labelNames: ["scope"],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ scope: "source" }, budget?.refusedPerSource ?? 0);
      this.inc({ scope: "global" }, budget?.refusedGlobal ?? 0);
    },
  });
  new Counter({
    name: "channel_connections_refused_total",
    help: "Client connections closed at accept: reason=per_source (MAX_CONNECTIONS_PER_SOURCE), reason=overall (MAX_CONNECTIONS)",
    labelNames: ["reason"],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ reason: "per_source" }, connections?.refusedPerSource ?? 0);
      this.inc({ reason: "overall" }, connections?.refusedOverall ?? 0);
    },
  });
  const totals = async () => {
    if (!store) return null;
    try {
      return await store.totals();
    } catch {
      return null;
    }
  };
  const moneyGauge = (name: string, help: string, pick: (t: NonNullable<Awaited<ReturnType<typeof totals>>>) => bigint) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const t = await totals();
        if (t) this.set(Number(pick(t)));
      },
    });
  moneyGauge("channel_accepted_atomic", "Sum of accepted voucher amounts over stored channels, atomic units", (t) => t.accepted);
  moneyGauge("channel_spent_atomic", "Sum of spent over stored channels, atomic units", (t) => t.spent);
  moneyGauge("channel_settled_atomic", "Sum of settled-on-chain over stored channels, atomic units", (t) => t.settled);
  moneyGauge("channel_unsettled_exposure_atomic", "Sum of spent - settled over open channels: owed, not yet on chain", (t) => t.unsettled);
  new Gauge({
    name: "channel_channels",
    help: "Channels in the store",
    registers: [registry],
    async collect() {
      const t = await totals();
      if (t) this.set(t.channels);
    },
  });
  new Gauge({
    name: "channel_chain_cursor_lag_blocks",
    help: "Blocks between the chain head and the event cursor",
    registers: [registry],
    collect() {
      const l = follower?.lag();
      if (l !== null && l !== undefined) this.set(Number(l));
    },
  });
  new Gauge({
    name: "channel_chain_head_block",
    help: "Latest chain head seen",
    registers: [registry],
    collect() {
      if (follower?.head != null) this.set(Number(follower.head));
    },
  });
  new Gauge({
    name: "channel_chain_last_pass_age_seconds",
    help: "Seconds since the event follower last caught up",
    registers: [registry],
    collect() {
      if (follower?.lastPassAt) this.set((Date.now() - follower.lastPassAt) / 1000);
    },
  });

  const observer: PaymentObserver = {
    verified: (s) => verify.observe(s),
    accountingCommitted: (s) => commit.observe(s),
    refused: (code, status) => refused.inc({ code, status: String(status) }),
    served: () => {
      paid.inc();
      byScheme.inc({ scheme: "channel" });
    },
    finished: (p) => {
      if (p.charged > 0n) charged.inc(Number(p.charged));
      if (p.released > 0n) released.inc(Number(p.released));
      if (p.failed) failures.inc();
    },
  };
  let exactStore: ExactStore | null = null;
  new Gauge({
    name: "exact_payments",
    help: "exact payments in the store by status: pending and submitted are open (the reconciler finishes them), confirmed, failed",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      if (!exactStore) return;
      try {
        const c = await exactStore.exactCounts();
        for (const [status, n] of Object.entries(c)) this.set({ status }, n);
      } catch {
        // store unavailable: no sample
      }
    },
  });
  const exactObserver: ExactObserver = {
    outcome: (status) => exactPayments.inc({ status }),
    settled: (s) => exactSettle.observe(s),
    served: () => byScheme.inc({ scheme: "exact" }),
  };
  return {
    registry,
    observer,
    exactObserver,
    attach(s, f, b) {
      store = s;
      follower = f;
      budget = b ?? null;
    },
    attachExact(s) {
      exactStore = s;
    },
    openObserver: {
      outcome: (status) => opensTotal.inc({ status }),
      opened: (s) => openSeconds.observe(s),
    },
    attachOpens(s) {
      openStore = s;
    },
    attachConnections(c) {
      connections = c;
    },
  };
}
