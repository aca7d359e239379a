import type { Address, Hex } from "viem";

/**
 * A channel as `ChannelEscrow.getChannel(channelId, signer)` / `getChannels` return it through viem
 * (`IChannelEscrow.Channel`). An unknown channel reads as all zeroes (`payer == address(0)`); a known channel asked
 * for with a signer that is not its own reads with its record fields (payer, payee, token, closeRequestedAt,
 * closeDelay) and `signer == address(0)`, `deposit == settled == 0`, `finalized == false` (see
 * {@link isSignerMismatch}).
 */
export interface EscrowChannel {
  payer: Address;
  payee: Address;
  token: Address;
  signer: Address;
  deposit: bigint;
  settled: bigint;
  closeRequestedAt: bigint;
  closeDelay: number;
  finalized: boolean;
}

/**
 * Names a channel for the escrow (`IChannelEscrow.ChannelRef`): every call after `open` and every view takes the
 * channel id together with the channel's signer, which the escrow stores only inside the key of the channel's
 * balance slot.
 */
export interface ChannelRef {
  channelId: Hex;
  signer: Address;
}

const ZERO_ADDRESS = /^0x0{40}$/i;

/** Whether a `getChannel` answer says "no channel with this id" (payer zero). */
export function isUnknownChannel(c: Pick<EscrowChannel, "payer">): boolean {
  return ZERO_ADDRESS.test(c.payer);
}

/** Whether a `getChannel` answer says "the channel exists, but the signer asked for is not its signer". */
export function isSignerMismatch(c: Pick<EscrowChannel, "payer" | "signer">): boolean {
  return !ZERO_ADDRESS.test(c.payer) && ZERO_ADDRESS.test(c.signer);
}
