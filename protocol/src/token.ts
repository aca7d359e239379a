/**
 * EIP-712 types of the token authorizations the escrow relies on (USDC-style tokens):
 * EIP-2612 `Permit` (for `openWithPermit`) and EIP-3009 `ReceiveWithAuthorization` / `TransferWithAuthorization`
 * (for `openWithAuthorization`, and the x402 `exact` baseline).
 */

/** EIP-2612 `Permit`. */
export const PERMIT_TYPES = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
} as const;

/** The fields shared by EIP-3009's `TransferWithAuthorization` and `ReceiveWithAuthorization`. */
export const AUTHORIZATION_FIELDS = [
  { name: "from", type: "address" },
  { name: "to", type: "address" },
  { name: "value", type: "uint256" },
  { name: "validAfter", type: "uint256" },
  { name: "validBefore", type: "uint256" },
  { name: "nonce", type: "bytes32" },
] as const;

/** EIP-3009 `ReceiveWithAuthorization` (what `ChannelEscrow.openWithAuthorization` redeems). */
export const RECEIVE_WITH_AUTHORIZATION_TYPES = { ReceiveWithAuthorization: AUTHORIZATION_FIELDS } as const;

/** EIP-3009 `TransferWithAuthorization` (one x402 `exact` payment). */
export const TRANSFER_WITH_AUTHORIZATION_TYPES = { TransferWithAuthorization: AUTHORIZATION_FIELDS } as const;
