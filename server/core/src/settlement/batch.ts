/**
 * Splitting claims into `settle` transactions: at most `batchSize` channels and at most `gasBudget` gas each.
 * The plan uses a conservative per-channel estimate; the job then asks the node (`eth_estimateGas`) and halves a
 * batch whose real estimate is over the budget.
 */
import { TX_GAS_CAP } from "./config";

/**
 * Planning figures for `settle`, gas: measured 54,149 for one channel and 11,902 per additional channel
 * (test/gas-snapshot.json). Planned with margins: a first payout to a payee holding no tokens costs ~17k more, and a
 * skipped item's diagnosis reads cold storage.
 */
export const SETTLE_GAS_PLAN = { base: 75_000, perChannel: 14_000 } as const;

/** Planned gas of a `settle` with `n` channels. */
export function plannedSettleGas(n: number): number {
  return SETTLE_GAS_PLAN.base + SETTLE_GAS_PLAN.perChannel * n;
}

/** Most channels one `settle` may carry under `gasBudget` and `batchSize` (at least 1). */
export function maxChannelsPerTx(batchSize: number, gasBudget: number): number {
  const budget = Math.min(gasBudget, TX_GAS_CAP);
  const byGas = Math.floor((budget - SETTLE_GAS_PLAN.base) / SETTLE_GAS_PLAN.perChannel);
  return Math.max(1, Math.min(batchSize, byGas));
}

/** Splits `items` into consecutive batches of at most {@link maxChannelsPerTx}, as even as possible. */
export function planBatches<T>(items: readonly T[], batchSize: number, gasBudget: number): T[][] {
  if (items.length === 0) return [];
  const max = maxChannelsPerTx(batchSize, gasBudget);
  const count = Math.ceil(items.length / max);
  const base = Math.floor(items.length / count);
  const extra = items.length % count; // the first `extra` batches take one more
  const out: T[][] = [];
  let i = 0;
  for (let b = 0; b < count; b++) {
    const size = base + (b < extra ? 1 : 0);
    out.push(items.slice(i, i + size));
    i += size;
  }
  return out;
}

/**
 * The gas limit to sign for a transaction the node estimated at `estimate`: 25 % headroom (state may change between
 * the estimate and inclusion, e.g. an item becoming a skip), never above the budget or the per-transaction cap, never
 * below the estimate.
 */
export function gasLimitFor(estimate: bigint, gasBudget: number): bigint {
  const cap = BigInt(Math.min(gasBudget, TX_GAS_CAP));
  let limit = (estimate * 5n) / 4n + 10_000n;
  if (limit > cap) limit = cap;
  if (limit < estimate) limit = estimate;
  return limit;
}
