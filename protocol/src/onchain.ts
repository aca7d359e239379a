import type { Address, Hex } from "viem";
import { ZERO_ADDRESS_PATTERN } from "./hex";

/**
 * A channel exactly as `ChannelEscrow.getChannel(channelId, signer)` / `getChannels` return it through viem
 * (`IChannelEscrow.Channel`). An unknown channel reads as all zeroes (`payer == address(0)`); a known channel asked
 * for with a signer that is not its own reads with its record fields (payer, payee, token, closeRequestedAt,
 * closeDelay) and `signer == address(0)`, `deposit == settled == 0`, `finalized == false` (see
 * {@link isSignerMismatch}). Convert it with {@link toOnchainChannel}.
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
 * A channel as the escrow reports it: the one shape client and server work with (times in seconds as numbers, the
 * id lowercase, the close deadline derived). The server's snapshots add the block they were read at.
 */
export interface OnchainChannel extends Omit<EscrowChannel, "closeRequestedAt"> {
  /** Lowercase 0x-hex. */
  channelId: Hex;
  /** Chain time (s) of a pending close request; 0 when none. */
  closeRequestedAt: number;
  /** `closeRequestedAt + closeDelay` when a close is pending, else 0. */
  closesAt: number;
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

/** Whether a `getChannel` answer says "no channel with this id" (payer zero). */
export function isUnknownChannel(c: Pick<EscrowChannel, "payer">): boolean {
  return ZERO_ADDRESS_PATTERN.test(c.payer);
}

/** Whether a `getChannel` answer says "the channel exists, but the signer asked for is not its signer". */
export function isSignerMismatch(c: Pick<EscrowChannel, "payer" | "signer">): boolean {
  return !ZERO_ADDRESS_PATTERN.test(c.payer) && ZERO_ADDRESS_PATTERN.test(c.signer);
}

/**
 * Converts a `getChannel` answer; an unknown channel gives null. A signer mismatch converts like any answer (its
 * `signer` is the zero address and its money zero): callers check {@link isSignerMismatch} before trusting it.
 */
export function toOnchainChannel(channelId: Hex, r: EscrowChannel): OnchainChannel | null {
  if (isUnknownChannel(r)) return null;
  const requested = Number(r.closeRequestedAt);
  const closeDelay = Number(r.closeDelay);
  return {
    channelId: channelId.toLowerCase() as Hex,
    payer: r.payer,
    payee: r.payee,
    token: r.token,
    signer: r.signer,
    deposit: r.deposit,
    settled: r.settled,
    closeDelay,
    closeRequestedAt: requested,
    closesAt: requested === 0 ? 0 : requested + closeDelay,
    finalized: r.finalized,
  };
}
