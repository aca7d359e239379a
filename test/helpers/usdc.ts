/**
 * Signing MockUSDC authorizations in tests: EIP-2612 permits and EIP-3009 transfer / receive / cancel
 * authorizations, in the token's EIP-712 domain (`USD Coin` / `2`, as USDC).
 */
import { parseSignature, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { AUTHORIZATION_FIELDS, PERMIT_TYPES } from "@paychan/protocol";

export const USDC_DOMAIN_NAME = "USD Coin";
export const USDC_DOMAIN_VERSION = "2";

function domain(chainId: number, token: Address) {
  return { name: USDC_DOMAIN_NAME, version: USDC_DOMAIN_VERSION, chainId, verifyingContract: token } as const;
}

/** An EIP-2612 permit signed by `ownerKey`, split into (v, r, s). */
export async function signPermit(
  ownerKey: Hex,
  p: { chainId: number; token: Address; spender: Address; value: bigint; nonce: bigint; deadline: bigint },
): Promise<{ v: number; r: Hex; s: Hex; signature: Hex }> {
  const owner = privateKeyToAccount(ownerKey);
  const signature = await owner.signTypedData({
    domain: domain(p.chainId, p.token),
    types: PERMIT_TYPES,
    primaryType: "Permit",
    message: { owner: owner.address, spender: p.spender, value: p.value, nonce: p.nonce, deadline: p.deadline },
  });
  const { v, r, s } = parseSignature(signature);
  return { v: Number(v), r, s, signature };
}

/** The fields of an EIP-3009 authorization. */
export interface Authorization {
  to: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
}

/** An EIP-3009 `ReceiveWithAuthorization` (or `TransferWithAuthorization`) signed by `fromKey`. */
export async function signAuthorization(
  fromKey: Hex,
  chainId: number,
  token: Address,
  a: Authorization,
  kind: "ReceiveWithAuthorization" | "TransferWithAuthorization" = "ReceiveWithAuthorization",
): Promise<Hex> {
  const from = privateKeyToAccount(fromKey);
  return from.signTypedData({
    domain: domain(chainId, token),
    types: { [kind]: AUTHORIZATION_FIELDS } as Record<string, typeof AUTHORIZATION_FIELDS>,
    primaryType: kind,
    message: { from: from.address, ...a },
  });
}

/** An EIP-3009 `CancelAuthorization` signed by `authorizerKey`. */
export async function signCancelAuthorization(authorizerKey: Hex, chainId: number, token: Address, nonce: Hex): Promise<Hex> {
  const a = privateKeyToAccount(authorizerKey);
  return a.signTypedData({
    domain: domain(chainId, token),
    types: { CancelAuthorization: [{ name: "authorizer", type: "address" }, { name: "nonce", type: "bytes32" }] },
    primaryType: "CancelAuthorization",
    message: { authorizer: a.address, nonce },
  });
}
