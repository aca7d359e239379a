/**
 * Cooperative closes (`ChannelEscrow.close`): when a payer asks (`POST /channel/close`) or a close is requested on
 * chain, the job stops charges on the channel, lets in-flight requests finish for SETTLE_CLOSE_GRACE, then closes it
 * with the latest voucher, so the payee is paid and the payer gets the rest back at once.
 */
import type { ChainChannel, StoredChannel } from "../store/types";
import { SettlementRevertError } from "./chain";
import { refundOnlyCloseClaim, type CloseClaim } from "@paychan/protocol";
import { recordedClaim } from "./claims";
import { describe, type SettlementCycle } from "./cycle";
import { SimulatedStop } from "./job-options";
import { claimable } from "./policy";
import { refreshChannels } from "./refresh";
import { sendNew } from "./submit";

/** The chain part of a stored channel (what `requestCooperativeClose` takes). */
function chainOf(c: StoredChannel): ChainChannel {
  return {
    channelId: c.channelId,
    payer: c.payer,
    payee: c.payee,
    token: c.token,
    signer: c.signer,
    deposit: c.deposit,
    settled: c.settled,
    closeDelay: c.closeDelay,
    closeRequestedAt: c.closeRequestedAt,
    closesAt: c.closesAt,
    finalized: c.finalized,
    block: c.block,
  };
}

/**
 * Cooperative close: first mark the channel closing in the store (the server refuses new charges on it from then
 * on), let in-flight requests finish for `closeGrace` (the report's `nextDueAt` says when), then
 * `close(channelId, signer, accepted, spent, signature)`, or a refund-only close when nothing is owed. Nothing is
 * sent for a channel the chain does not know or has already finalized.
 */
export async function submitClose(cy: SettlementCycle, c: StoredChannel): Promise<void> {
  const r = cy.report;
  let ch: StoredChannel = c;
  const nowS = Math.floor(Date.now() / 1000);
  if (ch.payerCloseRequestedAt === 0) {
    ch = await cy.o.store.requestCooperativeClose(chainOf(ch), nowS);
    cy.log?.info({ channelId: ch.channelId, closesAt: ch.closesAt }, "close requested on chain: charges stopped, closing");
  }
  const dueAt = (ch.payerCloseRequestedAt + cy.o.config.closeGrace) * 1000;
  if (Date.now() < dueAt) {
    r.nextDueAt = r.nextDueAt === null ? dueAt : Math.min(r.nextDueAt, dueAt);
    return;
  }
  const snap = (await refreshChannels(cy, [ch])).get(ch.channelId.toLowerCase());
  if (!snap || snap.finalized) return; // unknown (a reorged open) or already closed/withdrawn: nothing to do
  const stored = (await cy.o.store.getChannel(ch.channelId))!;
  const amount = claimable({ ...stored, deposit: snap.deposit });
  const pays = amount > snap.settled;
  const claim: CloseClaim = pays
    ? { channelId: stored.channelId, signer: stored.signer, cumulativeAmount: stored.accepted, amount, signature: stored.acceptedSignature! }
    : refundOnlyCloseClaim(stored.channelId, stored.signer);
  const data = cy.o.chain.closeData(claim);
  let estimate: bigint;
  try {
    estimate = await cy.o.chain.estimate(data);
  } catch (e) {
    if (e instanceof SettlementRevertError && e.errorName === "ChannelFinalized") return;
    throw e;
  }
  await sendNew(cy, "close", data, estimate, [recordedClaim({ ...claim, previousSettled: snap.settled })]);
}

/** {@link submitClose}, with an error reported as a failure of this channel's close (a test's `SimulatedStop` is rethrown). */
export async function submitCloseReportingFailure(cy: SettlementCycle, c: StoredChannel): Promise<void> {
  try {
    await submitClose(cy, c);
  } catch (e) {
    if (e instanceof SimulatedStop) throw e;
    cy.report.failures.push(`close ${c.channelId}: ${describe(e)}`);
  }
}
