/**
 * Selection: the store's candidates (channels owing something or closing, none in flight), the policy's decision for
 * each (`policy.ts`), most urgent first; then closes (`close.ts`) and `settle` batches (`settle-batches.ts`), or only
 * the plan in a dry run.
 */
import type { Hex } from "viem";
import type { SettlementCandidate } from "../store/settlement-types";
import type { PlannedClaim } from "./claims";
import { submitCloseReportingFailure } from "./close";
import type { SettlementCycle } from "./cycle";
import type { RunOptions } from "./job-options";
import { claimable, decide, urgencyOrder, type SettlementAction } from "./policy";
import { refreshChannels } from "./refresh";
import { submitSettles } from "./settle-batches";

/** Every settlement candidate of the store, read in pages. */
async function allCandidates(cy: SettlementCycle): Promise<SettlementCandidate[]> {
  const out: SettlementCandidate[] = [];
  let after: Hex | undefined;
  for (;;) {
    const page = await cy.o.settlement.listCandidates({ limit: 2_000, after });
    out.push(...page);
    if (page.length < 2_000) return out;
    after = page[page.length - 1].channelId;
  }
}

/**
 * Picks channels by policy (`opts.all`: everything owed), counts them by reason in the report, and submits their
 * closes and settles (`opts.dryRun`: records the plan instead). `opts.refreshCandidates` re-reads the candidates from
 * the chain first.
 */
export async function selectAndSubmit(cy: SettlementCycle, opts: RunOptions): Promise<void> {
  const r = cy.report;
  let cands = await allCandidates(cy);
  if (opts.refreshCandidates && cands.length > 0) {
    await refreshChannels(cy, cands);
    cands = await allCandidates(cy);
  }
  const nowMs = Date.now();
  const picked = cands
    .map((c) => ({ c, d: decide(c, cy.policy, { nowMs, all: opts.all }) }))
    .filter((x): x is { c: SettlementCandidate; d: SettlementAction } => x.d !== null)
    .sort(urgencyOrder);
  for (const { d } of picked) r.selected[d.reason] = (r.selected[d.reason] ?? 0) + 1;
  if (opts.dryRun) {
    r.plan = picked.map(({ c, d }) => ({ channelId: c.channelId, action: d.action, reason: d.reason, amount: claimable(c) - c.settled }));
    return;
  }
  if (picked.length) cy.log?.info({ selected: r.selected }, "settlement selected channels");
  // A close that cannot be sent falls back to settling what the channel owes, in the settle batches.
  const fallbacks: PlannedClaim[] = [];
  for (const { c } of picked.filter((x) => x.d.action === "close")) {
    const f = await submitCloseReportingFailure(cy, c);
    if (f) fallbacks.push(f);
  }
  const settles = picked.filter((x) => x.d.action === "settle").map((x) => x.c);
  if (settles.length || fallbacks.length) await submitSettles(cy, settles, fallbacks);
}
