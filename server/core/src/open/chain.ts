/**
 * The chain calls of a gasless open: the calldata of `openWithAuthorization`, whether the escrow has the channel, and
 * whether the token has EIP-3009's `receiveWithAuthorization` (bytes-signature form, what the escrow calls).
 */
import { encodeFunctionData, toFunctionSelector, type Address, type Hex, type PublicClient } from "viem";
import { channelEscrowAbi, type OpenAuthorization } from "@paychan/protocol";
import { EIP3009_ABI } from "../exact/token";

/** Calldata of `ChannelEscrow.openWithAuthorization(payer, payee, token, signer, amount, closeDelay, salt, validAfter, validBefore, signature)`. */
export function openCallData(a: Omit<OpenAuthorization, "method">): Hex {
  return encodeFunctionData({
    abi: channelEscrowAbi,
    functionName: "openWithAuthorization",
    args: [a.payer, a.payee, a.token, a.signer, a.amount, a.closeDelay, a.salt, a.validAfter, a.validBefore, a.signature],
  });
}

/** Whether the escrow knows channel `channelId` (its payer is not zero). Throws when the chain cannot be read. */
export async function channelExists(client: PublicClient, escrow: Address, channelId: Hex, signer: Address): Promise<boolean> {
  const c = (await client.readContract({ address: escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [channelId, signer] })) as { payer: Address };
  return BigInt(c.payer) !== 0n;
}

/** `receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)` (USDC v2.2's bytes form). */
const RECEIVE_WITH_AUTHORIZATION_BYTES = toFunctionSelector("receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)");

/**
 * Whether `token` looks like an EIP-3009 token the escrow can redeem authorizations of: `authorizationState` answers
 * and its code dispatches the bytes-signature `receiveWithAuthorization` (a proxy's implementation is not followed:
 * then only the first check counts).
 */
export async function supportsEip3009(client: PublicClient, token: Address): Promise<boolean> {
  try {
    await client.readContract({ address: token, abi: EIP3009_ABI, functionName: "authorizationState", args: ["0x0000000000000000000000000000000000000001", `0x${"00".repeat(32)}`] });
  } catch {
    return false;
  }
  const code = (await client.getCode({ address: token })) ?? "0x";
  // A proxy (short code, no dispatch of its own) is given the benefit of the authorizationState check.
  return code.length < 2 + 2 * 1024 || code.toLowerCase().includes(RECEIVE_WITH_AUTHORIZATION_BYTES.slice(2).toLowerCase());
}
