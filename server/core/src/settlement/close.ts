/**
 * Cooperative closes (`ChannelEscrow.close`): when a payer asks (`POST /channel/close`) or a close is requested on
 * chain, the job stops charges on the channel, lets in-flight requests finish for SETTLE_CLOSE_GRACE, then closes it
 * with the latest voucher, so the payee is paid and the payer gets the rest back at once.
 *
 * An operator's close that refunds the payer needs the payer's consent (else the escrow reverts `CloseNotConsented`):
 * a close pending on chain, or the payer's `CloseRequest(channelId)` signature, which the store keeps from
 * `POST /channel/close` and the close passes as its last argument. A close that cannot be sent (its estimate reverts
 * for any reason but `ChannelFinalized`: the payer topped up after the store saw its on-chain request, which cancels
 * it; the refund's transfer runs out of gas in a hostile token hook; …) falls back to a `settle` of what is owed, so
 * the payee is still paid before the payer can withdraw (`report.closeFallbacks` says so).
 */
import type { ChainChannel, StoredChannel } from "../store/types";
import { SettlementRevertError } from "./chain";
import { refundOnlyCloseClaim, type CloseClaim } from "@paychan/protocol";
import { recordedClaim, type PlannedClaim } from "./claims";
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
 * `close(channelId, signer, accepted, spent, signature, closeRequestSignature)`, or a refund-only close when nothing
 * is owed. Nothing is sent for a channel the chain does not know or has already finalized.
 *
 * Returns the `settle` claim to send instead when the close cannot be sent and something is owed (see the file
 * comment), else null. A close that cannot be sent with nothing owed throws its {@link SettlementRevertError}.
 */
export async function submitClose(cy: SettlementCycle, c: StoredChannel): Promise<PlannedClaim | null> {
  const r = cy.report;
  let ch: StoredChannel = c;
  const nowS = Math.floor(Date.now() / 1000);
  if (ch.payerCloseRequestedAt === 0) {
    ch = await cy.o.store.requestCooperativeClose(chainOf(ch), nowS);
    cy.log?.info({ channelId: ch.channelId, closesAt: ch.closesAt }, "close requested on chain: charges stopped, closing");
  }
  // The mark is in whole seconds, rounded down: a grace counted from it could be up to 1 s short (all of a 1 s grace
  // on a busy machine), so a grace runs from the end of the mark's second.
  const grace = cy.o.config.closeGrace;
  const dueAt = grace > 0 ? (ch.payerCloseRequestedAt + 1 + grace) * 1000 : 0;
  if (Date.now() < dueAt) {
    r.nextDueAt = r.nextDueAt === null ? dueAt : Math.min(r.nextDueAt, dueAt);
    return null;
  }
  const snap = (await refreshChannels(cy, [ch])).get(ch.channelId.toLowerCase());
  if (!snap || snap.finalized) return null; // unknown (a reorged open) or already closed/withdrawn: nothing to do
  const stored = (await cy.o.store.getChannel(ch.channelId))!;
  const amount = claimable({ ...stored, deposit: snap.deposit });
  // The payer's consent for an operator's refunding close; unneeded (but harmless) while a close is pending on chain.
  const consent = stored.closeRequestSignature ?? "0x";
  const claim: CloseClaim =
    amount > snap.settled
      ? { channelId: stored.channelId, signer: stored.signer, cumulativeAmount: stored.accepted, amount, signature: stored.acceptedSignature!, closeRequestSignature: consent }
      : refundOnlyCloseClaim(stored.channelId, stored.signer, consent);
  const data = cy.o.chain.closeData(claim);
  let estimate: bigint;
  try {
    estimate = await cy.o.chain.estimate(data);
  } catch (e) {
    if (!(e instanceof SettlementRevertError)) throw e;
    if (e.errorName === "ChannelFinalized") return null;
    if (amount <= snap.settled) throw e; // nothing owed: only the close was wanted, and it failed
    return fallBackToSettle(cy, stored, snap, amount, e);
  }
  await sendNew(cy, "close", data, estimate, [recordedClaim({ ...claim, previousSettled: snap.settled })]);
  return null;
}

/** Records (report, log) that the close of `c` would revert, and returns the `settle` claim of what it owes. */
function fallBackToSettle(cy: SettlementCycle, c: StoredChannel, snap: ChainChannel, amount: bigint, e: SettlementRevertError): PlannedClaim {
  const error = e.errorName ?? "reverted";
  cy.report.closeFallbacks.push({ channelId: c.channelId, error, amount: amount - snap.settled });
  cy.log?.warn(
    { channelId: c.channelId, error, owed: String(amount - snap.settled), closesAt: snap.closesAt },
    "close would revert; settling what the channel owes instead",
  );
  return { channelId: c.channelId, cumulativeAmount: c.accepted, amount, signature: c.acceptedSignature!, previousSettled: snap.settled };
}

/**
 * {@link submitClose}, with an error reported as a failure of this channel's close (a test's `SimulatedStop` is
 * rethrown). Returns the fallback `settle` claim, if any.
 */
export async function submitCloseReportingFailure(cy: SettlementCycle, c: StoredChannel): Promise<PlannedClaim | null> {
  try {
    return await submitClose(cy, c);
  } catch (e) {
    if (e instanceof SimulatedStop) throw e;
    cy.report.failures.push(`close ${c.channelId}: ${describe(e)}`);
    return null;
  }
}
