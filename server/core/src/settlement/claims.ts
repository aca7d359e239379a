/**
 * The claims settlement sends, defined once on top of the protocol's {@link SettleClaim} (`channelId`,
 * `cumulativeAmount`, `amount`, `signature`: one `settle` item, one voucher).
 *
 * - {@link PlannedClaim}: a `settle` item as the job plans it, with the channel's `settled` as the chain showed it.
 * - {@link CloseClaim}: the arguments of `ChannelEscrow.close(channelId, signer, cumulativeAmount, amount, signature)`.
 * - {@link RecordedClaim}: what the settlement store keeps of a claim (no signature: the raw transaction carries it).
 */
import type { Address, Hex } from "viem";
import type { SettleClaim } from "@paychan/protocol";

/** A `settle` item the job planned: the claim plus the channel's `settled` on chain when it was read. */
export interface PlannedClaim extends SettleClaim {
  /** The channel's `settled` as the settler knew it when building (recorded, informational). */
  previousSettled: bigint;
}

/**
 * A claim for `close`: the voucher for `cumulativeAmount`, claiming `amount` (`0`, `0` and signature `"0x"`: refund
 * only, see {@link refundOnlyCloseClaim}).
 */
export interface CloseClaim extends SettleClaim {
  /** The channel's signer: the escrow names a channel by id and signer, and checks the voucher against it. */
  signer: Address;
}

/** What a settlement transaction records per channel (the store's item input): a planned claim without its signature. */
export type RecordedClaim = Omit<PlannedClaim, "signature">;

/** The close of a channel that pays the payee nothing: no voucher, the payer gets the whole deposit back. */
export function refundOnlyCloseClaim(channelId: Hex, signer: Address): CloseClaim {
  return { channelId, signer, cumulativeAmount: 0n, amount: 0n, signature: "0x" };
}

/** The part of a claim (planned, or an item of a recorded transaction) that a settlement transaction records. */
export function recordedClaim(c: RecordedClaim): RecordedClaim {
  return { channelId: c.channelId, cumulativeAmount: c.cumulativeAmount, amount: c.amount, previousSettled: c.previousSettled };
}
