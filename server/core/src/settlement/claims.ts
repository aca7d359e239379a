/**
 * The claims settlement sends, defined once on top of the protocol's {@link SettleClaim} (`channelId`,
 * `cumulativeAmount`, `amount`, `signature`: one `settle` item, one voucher).
 *
 * - {@link PlannedClaim}: a `settle` item as the job plans it, with the channel's `settled` as the chain showed it.
 * - `CloseClaim` (protocol): the arguments of `ChannelEscrow.close(channelId, signer, cumulativeAmount, amount, signature,
 *   closeRequestSignature)`.
 * - {@link RecordedClaim}: what the settlement store keeps of a claim (no signature: the raw transaction carries it).
 */
import type { SettleClaim } from "@paychan/protocol";
import type { NewSettlementItem } from "../store/settlement-types";

/** A `settle` item the job planned: the claim plus the channel's `settled` on chain when it was read. */
export interface PlannedClaim extends SettleClaim {
  /** The channel's `settled` as the settler knew it when building (recorded, informational). */
  previousSettled: bigint;
}

/** What a settlement transaction records per channel (the store's item input): a planned claim without its signature. */
export type RecordedClaim = NewSettlementItem;

/** The part of a claim (planned, or an item of a recorded transaction) that a settlement transaction records. */
export function recordedClaim(c: RecordedClaim): RecordedClaim {
  return { channelId: c.channelId, cumulativeAmount: c.cumulativeAmount, amount: c.amount, previousSettled: c.previousSettled };
}
