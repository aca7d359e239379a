/**
 * Settlement metrics (prom-client), registered on the server's registry (`server/metrics.ts`) so one `/metrics`
 * shows both. Counters move when the job records a final outcome (once per transaction: the store's
 * compare-and-set decides), gauges are read from the store at scrape time.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { SettlementStore, SettlementTx } from "../store/settlement-types";
import type { ChannelStore } from "../store/types";

export interface SettlementMetrics {
  /** A transaction reached a final status. */
  txFinished(tx: SettlementTx): void;
  /** A mined transaction disappeared (reorg). */
  reorg(): void;
  /** A confirmed transaction's payout of `amount` was kept owed to the payee by the escrow (`PaymentDeferred`). */
  deferred(amount: bigint): void;
  /** A cycle ended. */
  cycle(result: "ok" | "failed" | "lease_busy", seconds: number): void;
  /** Wires the scrape-time gauges. `chainNow` gives chain time (s) for the close-deadline gauge. */
  attach(store: ChannelStore, settlement: SettlementStore, chainNow?: () => number): void;
}

/** How many channels the per-channel exposure gauge shows (the largest; bounded label cardinality). */
export const EXPOSURE_TOP_CHANNELS = 10;

const byRegistry = new WeakMap<Registry, SettlementMetrics>();

/** Options of the settlement metrics on a registry. */
export interface SettlementMetricsOptions {
  /**
   * Label gauges by channel id (METRICS_PER_CHANNEL, default off): the top-10 exposure per channel and the channel of
   * the most urgent close. Off, `/metrics` publishes no channel id (aggregates only).
   */
  perChannel?: boolean;
}

const optionsByRegistry = new WeakMap<Registry, SettlementMetricsOptions>();

/** Sets the options the settlement metrics on `registry` will be built with (call before {@link createSettlementMetrics}). */
export function configureSettlementMetrics(registry: Registry, o: SettlementMetricsOptions): void {
  optionsByRegistry.set(registry, o);
}

/** The settlement metrics on `registry` (created once per registry; later calls return the same object). */
export function createSettlementMetrics(registry: Registry): SettlementMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const m = build(registry, optionsByRegistry.get(registry)?.perChannel === true);
  byRegistry.set(registry, m);
  return m;
}

function build(registry: Registry, byChannel: boolean): SettlementMetrics {
  const txs = new Counter({
    name: "channel_settlement_transactions_total",
    help: "Settlement transactions that reached a final status, by kind (settle, close) and outcome (confirmed, failed, dropped)",
    labelNames: ["kind", "outcome"],
    registers: [registry],
  });
  const items = new Counter({
    name: "channel_settlement_channels_total",
    help: "Channel claims in confirmed settlement transactions, by outcome (settled, closed, skipped) and skip reason",
    labelNames: ["outcome", "reason"],
    registers: [registry],
  });
  const amount = new Counter({ name: "channel_settlement_amount_atomic_total", help: "Amount paid to the payee by settlement transactions, atomic units", registers: [registry] });
  const gas = new Counter({ name: "channel_settlement_gas_used_total", help: "Gas used by settlement transactions (confirmed and failed)", registers: [registry] });
  const fee = new Counter({ name: "channel_settlement_fee_wei_total", help: "Fees paid by settlement transactions, wei", registers: [registry] });
  const perChannel = new Histogram({
    name: "channel_settlement_gas_per_channel",
    help: "Gas per settled channel of each confirmed settle transaction",
    buckets: [12_000, 13_000, 15_000, 20_000, 30_000, 60_000, 100_000],
    registers: [registry],
  });
  const deferredAmount = new Counter({
    name: "channel_settlement_deferred_atomic_total",
    help: "Payouts to the payee the escrow could not transfer (token paused, payee blacklisted) and keeps owed until the payee calls collect, atomic units",
    registers: [registry],
  });
  const reorgs = new Counter({ name: "channel_settlement_reorgs_total", help: "Mined settlement transactions that a reorg removed (then re-sent)", registers: [registry] });
  const cycles = new Counter({ name: "channel_settlement_cycles_total", help: "Settlement cycles by result", labelNames: ["result"], registers: [registry] });
  const cycleTime = new Histogram({
    name: "channel_settlement_cycle_seconds",
    help: "Duration of settlement cycles",
    buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });
  const lastOk = new Gauge({ name: "channel_settlement_last_success_timestamp_seconds", help: "When a settlement cycle last completed", registers: [registry] });

  let store: ChannelStore | null = null;
  let settlement: SettlementStore | null = null;
  let now: () => number = () => Math.floor(Date.now() / 1000);
  new Gauge({
    name: "channel_settlement_open_transactions",
    help: "Settlement transactions not yet final (built, sent, mined)",
    registers: [registry],
    async collect() {
      if (!settlement) return;
      try {
        this.set((await settlement.openTxs()).length);
      } catch {
        /* store unavailable: keep the last value */
      }
    },
  });
  if (byChannel) new Gauge({
    name: "channel_settlement_unsettled_exposure_channel_atomic",
    help: `spent - settled of the ${EXPOSURE_TOP_CHANNELS} open channels owing most, atomic units`,
    labelNames: ["channel"],
    registers: [registry],
    async collect() {
      if (!store) return;
      try {
        const top = await store.listUnsettled(1_000);
        top.sort((a, b) => (b.spent - b.settled > a.spent - a.settled ? 1 : b.spent - b.settled < a.spent - a.settled ? -1 : 0));
        this.reset();
        for (const c of top.slice(0, EXPOSURE_TOP_CHANNELS)) this.set({ channel: c.channelId }, Number(c.spent - c.settled));
      } catch {
        /* keep */
      }
    },
  });
  new Gauge({
    name: "channel_settlement_unsettled_exposure_total_atomic",
    help: "Sum of spent - settled over open channels, atomic units (what a settler outage puts at risk)",
    registers: [registry],
    async collect() {
      if (!store) return;
      try {
        this.set(Number((await store.totals()).unsettled));
      } catch {
        /* keep */
      }
    },
  });
  new Gauge({
    name: "channel_settlement_close_deadline_seconds",
    help: `Seconds until the earliest pending on-chain close deadline (closesAt) of an open channel${byChannel ? ", labelled by channel" : ""}; absent when none`,
    labelNames: byChannel ? ["channel"] : [],
    registers: [registry],
    async collect() {
      if (!settlement) return;
      try {
        const d = await settlement.earliestCloseDeadline();
        this.reset();
        if (d && byChannel) this.set({ channel: d.channelId }, d.closesAt - now());
        else if (d) this.set(d.closesAt - now());
      } catch {
        /* keep */
      }
    },
  });

  return {
    txFinished(tx) {
      const outcome = tx.status;
      txs.inc({ kind: tx.kind, outcome });
      if (tx.gasUsed !== null && (outcome === "confirmed" || outcome === "failed")) {
        gas.inc(Number(tx.gasUsed));
        if (tx.effectiveGasPrice !== null) fee.inc(Number(tx.gasUsed * tx.effectiveGasPrice));
      }
      if (outcome !== "confirmed") return;
      if (tx.amountSettled !== null && tx.amountSettled > 0n) amount.inc(Number(tx.amountSettled));
      let paid = 0;
      for (const it of tx.items) {
        items.inc({ outcome: it.status, reason: it.skipReason ?? "" });
        if (it.status === "settled") paid++;
      }
      if (tx.kind === "settle" && paid > 0 && tx.gasUsed !== null) perChannel.observe(Number(tx.gasUsed) / paid);
    },
    reorg() {
      reorgs.inc();
    },
    deferred(value) {
      deferredAmount.inc(Number(value));
    },
    cycle(result, seconds) {
      cycles.inc({ result });
      cycleTime.observe(seconds);
      if (result === "ok") lastOk.set(Date.now() / 1000);
    },
    attach(s, st, chainNow) {
      store = s;
      settlement = st;
      if (chainNow) now = chainNow;
    },
  };
}
