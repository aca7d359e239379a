/**
 * Building and submitting `settle` batches: the chosen channels are re-read from the chain, each becomes a
 * {@link PlannedClaim} (the latest voucher, claiming `spent`), the claims are split under SETTLE_BATCH_SIZE and
 * SETTLE_GAS_BUDGET (`batch.ts`), and each batch is estimated by the node (halved when over the budget) and sent.
 */
import type { SettlementCandidate } from "../store/settlement-types";
import { planBatches, plannedSettleGas } from "./batch";
import { SettlementRevertError } from "./chain";
import { recordedClaim, type PlannedClaim } from "./claims";
import { submitCloseReportingFailure } from "./close";
import type { SettlementCycle } from "./cycle";
import { claimable } from "./policy";
import { refreshChannels } from "./refresh";
import { sendNew } from "./submit";

/**
 * Re-reads the chosen channels, then submits `settle` batches under the size and gas limits. A channel finalized
 * or settled meanwhile is left out; one whose close was requested meanwhile is closed cooperatively instead.
 * `fallbacks`: claims of channels whose close could not be sent (already sized against a fresh chain read), settled
 * in the same batches.
 */
export async function submitSettles(cy: SettlementCycle, list: readonly SettlementCandidate[], fallbacks: readonly PlannedClaim[] = []): Promise<void> {
  const snaps = await refreshChannels(cy, list);
  const claims: PlannedClaim[] = [...fallbacks];
  for (const c of list) {
    const s = snaps.get(c.channelId.toLowerCase());
    if (!s || s.finalized) continue; // withdrawn or closed meanwhile
    if (s.closesAt > 0) {
      // A close was requested since the store last looked: it becomes a cooperative close (or, when that cannot be
      // sent, a settle after all).
      const fallback = await submitCloseReportingFailure(cy, { ...c, ...s });
      if (fallback) claims.push(fallback);
      continue;
    }
    const amount = claimable({ ...c, deposit: s.deposit });
    if (amount <= s.settled) continue; // settled meanwhile
    claims.push({ channelId: c.channelId, cumulativeAmount: c.accepted, amount, signature: c.acceptedSignature!, previousSettled: s.settled });
  }
  for (const batch of planBatches(claims, cy.o.config.batchSize, cy.o.config.gasBudget)) {
    await submitBatch(cy, batch);
  }
}

/** One `settle` transaction for `batch`, halved recursively while the node's estimate is over the gas budget. */
async function submitBatch(cy: SettlementCycle, batch: readonly PlannedClaim[]): Promise<void> {
  await cy.step("batch", { channelIds: batch.map((b) => b.channelId) });
  const data = cy.o.chain.settleData(batch);
  let estimate: bigint;
  try {
    estimate = await cy.o.chain.estimate(data, BigInt(plannedSettleGas(batch.length)));
  } catch (e) {
    if (e instanceof SettlementRevertError) {
      // A settle reverts only for the whole call (caller not allowed, malformed items): no retry will help.
      cy.report.failures.push(`settle batch of ${batch.length} would revert${e.errorName ? ` (${e.errorName})` : ""}`);
      cy.log?.error({ channels: batch.length, error: e.errorName }, "settle batch would revert; not sent");
      return;
    }
    throw e;
  }
  if (estimate > BigInt(cy.o.config.gasBudget) && batch.length > 1) {
    const half = Math.ceil(batch.length / 2);
    await submitBatch(cy, batch.slice(0, half));
    await submitBatch(cy, batch.slice(half));
    return;
  }
  await sendNew(cy, "settle", data, estimate, batch.map(recordedClaim));
}
