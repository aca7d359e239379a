import { encodeAbiParameters, keccak256, toHex, type Address, type Hex } from "viem";

/** EIP-712 domain name of the escrow contract. */
export const ESCROW_DOMAIN_NAME = "ChannelEscrow" as const;
/** EIP-712 domain version of the escrow contract. */
export const ESCROW_DOMAIN_VERSION = "1" as const;

/** The voucher's EIP-712 types, as viem's `signTypedData` wants them. */
export const VOUCHER_TYPES = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "cumulativeAmount", type: "uint128" },
  ],
} as const;

/** `keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)")`, the contract's `VOUCHER_TYPEHASH`. */
export const VOUCHER_TYPEHASH: Hex = keccak256(toHex("Voucher(bytes32 channelId,uint128 cumulativeAmount)"));

/** `keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")`. */
export const DOMAIN_TYPEHASH: Hex = keccak256(
  toHex("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
);

/** An escrow's EIP-712 domain. */
export interface EscrowDomain {
  name: typeof ESCROW_DOMAIN_NAME;
  version: typeof ESCROW_DOMAIN_VERSION;
  chainId: number;
  verifyingContract: Address;
}

/** The EIP-712 domain of the escrow at `escrow` on `chainId`. */
export function escrowDomain(chainId: number, escrow: Address): EscrowDomain {
  return { name: ESCROW_DOMAIN_NAME, version: ESCROW_DOMAIN_VERSION, chainId, verifyingContract: escrow };
}

/** The domain separator, as OpenZeppelin's `EIP712._domainSeparatorV4()` computes it. */
export function domainSeparator(domain: EscrowDomain): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }, { type: "uint256" }, { type: "address" }],
      [DOMAIN_TYPEHASH, keccak256(toHex(domain.name)), keccak256(toHex(domain.version)), BigInt(domain.chainId), domain.verifyingContract],
    ),
  );
}
