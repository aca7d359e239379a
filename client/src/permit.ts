/**
 * EIP-2612 permits for `openWithPermit`, used only when the token provably supports them:
 * the payer is a plain key (no contract code), the token answers `nonces(owner)` and `DOMAIN_SEPARATOR()`,
 * and the domain we would sign under (from ERC-5267 `eip712Domain()`, else `name()` + `version()`/"1")
 * hashes to exactly the token's `DOMAIN_SEPARATOR()`. Anything else means "use approve".
 */
import { encodeAbiParameters, keccak256, parseSignature, toHex, type Address, type Hex } from "viem";
import { DOMAIN_TYPEHASH, PERMIT_TYPES } from "@paychan/protocol";
import { chainTime, payerAddress, type ChainContext } from "./chain";

const permitAbi = [
  { type: "function", name: "DOMAIN_SEPARATOR", stateMutability: "view", inputs: [], outputs: [{ type: "bytes32" }] },
  { type: "function", name: "nonces", stateMutability: "view", inputs: [{ name: "owner", type: "address" }], outputs: [{ type: "uint256" }] },
  { type: "function", name: "name", stateMutability: "view", inputs: [], outputs: [{ type: "string" }] },
  { type: "function", name: "version", stateMutability: "view", inputs: [], outputs: [{ type: "string" }] },
  {
    type: "function",
    name: "eip712Domain",
    stateMutability: "view",
    inputs: [],
    outputs: [
      { name: "fields", type: "bytes1" },
      { name: "name", type: "string" },
      { name: "version", type: "string" },
      { name: "chainId", type: "uint256" },
      { name: "verifyingContract", type: "address" },
      { name: "salt", type: "bytes32" },
      { name: "extensions", type: "uint256[]" },
    ],
  },
] as const;

interface PermitDomain {
  name: string;
  version: string;
  chainId: number;
  verifyingContract: Address;
}

function separator(d: PermitDomain): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }, { type: "uint256" }, { type: "address" }],
      [DOMAIN_TYPEHASH, keccak256(toHex(d.name)), keccak256(toHex(d.version)), BigInt(d.chainId), d.verifyingContract],
    ),
  );
}

/** The token's verified EIP-2612 domain and the payer's nonce, or null when permits cannot be used safely. */
export async function detectPermit(ctx: ChainContext, token: Address): Promise<{ domain: PermitDomain; nonce: bigint } | null> {
  const owner = payerAddress(ctx);
  const pc = ctx.publicClient;
  const read = <T>(functionName: string, args: readonly unknown[] = []): Promise<T | null> =>
    (pc.readContract({ address: token, abi: permitAbi, functionName, args } as never) as Promise<T>).catch(() => null);
  const [code, chainId, sep, nonce, domain5267] = await Promise.all([
    pc.getCode({ address: owner }).catch(() => null),
    pc.getChainId(),
    read<Hex>("DOMAIN_SEPARATOR"),
    read<bigint>("nonces", [owner]),
    read<readonly [Hex, string, string, bigint, Address, Hex, readonly bigint[]]>("eip712Domain"),
  ]);
  if (code === null || (code !== undefined && code !== "0x")) return null; // a contract wallet signs with ERC-1271, not ECDSA
  if (!sep || nonce === null) return null;
  const candidates: PermitDomain[] = [];
  if (domain5267) candidates.push({ name: domain5267[1], version: domain5267[2], chainId: Number(domain5267[3]), verifyingContract: domain5267[4] });
  if (!candidates.some((d) => separator(d).toLowerCase() === sep.toLowerCase())) {
    // No ERC-5267: try name() with version() (USDC has it), else the usual "1" and "2".
    const [name, version] = await Promise.all([read<string>("name"), read<string>("version")]);
    if (name !== null) {
      candidates.push({ name, version: version ?? "1", chainId, verifyingContract: token });
      if (version === null) candidates.push({ name, version: "2", chainId, verifyingContract: token });
    }
  }
  const domain = candidates.find((d) => d.chainId === chainId && separator(d).toLowerCase() === sep.toLowerCase());
  return domain ? { domain, nonce } : null;
}

/** A signed permit for `spender` to pull `value`, or null when the token (or the payer) cannot do permits. */
export async function signPermit(
  ctx: ChainContext,
  token: Address,
  spender: Address,
  value: bigint,
): Promise<{ deadline: bigint; v: number; r: Hex; s: Hex } | null> {
  const detected = await detectPermit(ctx, token);
  if (!detected) return null;
  const deadline = BigInt((await chainTime(ctx)) + 3600);
  const signature = await ctx.walletClient.signTypedData({
    account: ctx.account,
    domain: detected.domain,
    types: PERMIT_TYPES,
    primaryType: "Permit",
    message: { owner: payerAddress(ctx), spender, value, nonce: detected.nonce, deadline },
  });
  const sig = parseSignature(signature);
  const v = sig.v !== undefined ? Number(sig.v) : 27 + sig.yParity!;
  return { deadline, v, r: sig.r, s: sig.s };
}
