/**
 * The token calls an `exact` payment needs (EIP-3009 and EIP-5267), as a minimal ABI: the provider knows the token
 * only by address, so nothing here depends on MockUSDC's generated ABI.
 */
import { parseAbi, type Address, type PublicClient } from "viem";

/** `transferWithAuthorization` (v, r, s form: every EIP-3009 token has it), `authorizationState`, `balanceOf`, `eip712Domain`. */
export const EIP3009_ABI = parseAbi([
  "function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)",
  "function authorizationState(address authorizer, bytes32 nonce) view returns (bool)",
  "function balanceOf(address account) view returns (uint256)",
  "function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions)",
]);

/** The token's EIP-712 name and version (what `exact` authorizations are signed under), read once at start. */
export async function readTokenDomain(client: PublicClient, token: Address): Promise<{ name: string; version: string }> {
  const d = (await client.readContract({ address: token, abi: EIP3009_ABI, functionName: "eip712Domain" })) as readonly [unknown, string, string, ...unknown[]];
  return { name: d[1], version: d[2] };
}
