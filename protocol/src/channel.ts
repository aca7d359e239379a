import { encodeAbiParameters, keccak256, zeroAddress, type Address, type Hex } from "viem";

/** What identifies a channel (the arguments of the contract's `computeChannelId`). */
export interface ChannelParams {
  chainId: number;
  escrow: Address;
  payer: Address;
  payee: Address;
  token: Address;
  /** Voucher signer; the zero address means the payer. */
  signer: Address;
  salt: Hex;
}

/**
 * The channel id, exactly as `ChannelEscrow.computeChannelId`:
 * `keccak256(abi.encode(chainId, escrow, payer, payee, token, signer, salt))` with a zero signer replaced by the payer.
 */
export function computeChannelId(p: ChannelParams): Hex {
  const signer = p.signer.toLowerCase() === zeroAddress ? p.payer : p.signer;
  return keccak256(
    encodeAbiParameters(
      [
        { type: "uint256" },
        { type: "address" },
        { type: "address" },
        { type: "address" },
        { type: "address" },
        { type: "address" },
        { type: "bytes32" },
      ],
      [BigInt(p.chainId), p.escrow, p.payer, p.payee, p.token, signer, p.salt],
    ),
  );
}

/** Channel close delay bounds enforced by the contract, in seconds. */
export const MIN_CLOSE_DELAY = 15 * 60;
export const MAX_CLOSE_DELAY = 30 * 24 * 60 * 60;
/** Largest deposit a channel can hold (amounts are packed in 96 bits on chain). */
export const MAX_DEPOSIT = (1n << 96n) - 1n;

/**
 * The EIP-3009 nonce `ChannelEscrow.openWithAuthorization` requires: `keccak256(abi.encode(channelId, closeDelay))`,
 * so a payer's authorization opens exactly one channel with exactly one close delay.
 */
export function authorizationNonce(channelId: Hex, closeDelay: number): Hex {
  return keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "uint32" }], [channelId, closeDelay]));
}
