import type { Address } from "viem";

/**
 * A channel as `ChannelEscrow.getChannel` / `getChannels` return it through viem (`IChannelEscrow.Channel`);
 * an unknown channel reads as all zeroes (`payer == address(0)`).
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
