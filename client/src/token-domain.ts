/**
 * The EIP-712 domain of the tokens the client signs `exact` authorizations for (docs/protocol.md § 7): the name and
 * version an offer names must be the token's own, read from the chain, or nothing is signed. Otherwise a provider
 * could name a domain of its choosing (another token's, another contract's) and have the payer sign for it.
 * The token's domain is read once per token: its `eip712Domain()` (EIP-5267) when it has one, else its
 * `DOMAIN_SEPARATOR()` compared with the separator of the offered name and version (FiatToken USDC has no
 * `eip712Domain()`), else `name()` and `version()`. A failed chain read is not cached (`chain_failure`).
 */
import { getAddress, hashDomain, parseAbi, type Address, type Hex } from "viem";
import { chainFailure, type ChainContext } from "./chain";
import { ClientError } from "./errors";

const domainAbi = parseAbi([
  "function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions)",
  "function DOMAIN_SEPARATOR() view returns (bytes32)",
  "function name() view returns (string)",
  "function version() view returns (string)",
]);

/** What the chain says of a token's domain. */
type Known =
  | { kind: "domain"; name: string; version: string; chainId: bigint; verifyingContract: Address }
  | { kind: "separator"; separator: Hex }
  | { kind: "none" };

/** Verifies that a name and version are a token's EIP-712 domain on this chain (the token's facts read once). */
export class TokenDomains {
  private readonly known = new Map<string, Known | Promise<Known>>();

  constructor(private readonly ctx: ChainContext) {}

  /**
   * Resolves when `{ name, version }` with `chainId` and `token` is the token's own EIP-712 domain; otherwise throws
   * `untrusted_terms` (or `chain_failure` when the chain cannot be read).
   */
  async assertDomain(chainId: number, token: Address, name: string, version: string): Promise<void> {
    const k = await this.read(token);
    const refuse = (why: string) =>
      new ClientError("untrusted_terms", `the provider asks to sign for the domain ${JSON.stringify(name)} version ${JSON.stringify(version)} of ${getAddress(token)}: ${why}`, {
        details: "Nothing was signed: an exact authorization is signed only in the token's own EIP-712 domain.",
      });
    if (k.kind === "none") throw refuse("the token publishes no EIP-712 domain (no eip712Domain(), DOMAIN_SEPARATOR() or version())");
    if (k.kind === "separator") {
      const mine = hashDomain({ domain: { name, version, chainId: BigInt(chainId), verifyingContract: getAddress(token) }, types: { EIP712Domain: DOMAIN_FIELDS } });
      if (mine.toLowerCase() !== k.separator.toLowerCase()) throw refuse("it is not the token's DOMAIN_SEPARATOR()");
      return;
    }
    if (k.name !== name || k.version !== version) throw refuse(`the token's domain is ${JSON.stringify(k.name)} version ${JSON.stringify(k.version)}`);
    if (k.chainId !== BigInt(chainId)) throw refuse(`the token's domain is for chain ${k.chainId}`);
    if (getAddress(k.verifyingContract) !== getAddress(token)) throw refuse(`the token's domain names ${k.verifyingContract}`);
  }

  /**
   * The token's own EIP-712 name and version on this chain (to sign a gasless open's authorization under): from
   * `eip712Domain()`, else `name()` / `version()` checked against its `DOMAIN_SEPARATOR()`. Throws `untrusted_terms`
   * when the token publishes no usable domain (or one for another chain or contract), `chain_failure` on a failed read.
   */
  async domainOf(chainId: number, token: Address): Promise<{ name: string; version: string }> {
    const k = await this.read(token);
    const refuse = (why: string) =>
      new ClientError("untrusted_terms", `the token ${getAddress(token)} has no EIP-712 domain to sign an authorization under: ${why}`, {
        details: "A gasless open needs a token with EIP-3009 (receiveWithAuthorization) and its own EIP-712 domain.",
      });
    if (k.kind === "domain") {
      if (k.chainId !== BigInt(chainId)) throw refuse(`its domain is for chain ${k.chainId}`);
      if (getAddress(k.verifyingContract) !== getAddress(token)) throw refuse(`its domain names ${k.verifyingContract}`);
      return { name: k.name, version: k.version };
    }
    if (k.kind === "none") throw refuse("no eip712Domain(), DOMAIN_SEPARATOR() or version()");
    const named = await this.readNameVersion(getAddress(token));
    if (!named) throw refuse("DOMAIN_SEPARATOR() without name() and version()");
    await this.assertDomain(chainId, token, named.name, named.version); // the separator must match
    return named;
  }

  private async readNameVersion(token: Address): Promise<{ name: string; version: string } | undefined> {
    try {
      const pc = this.ctx.publicClient;
      const [name, version] = await Promise.all([
        pc.readContract({ address: token, abi: domainAbi, functionName: "name" }),
        pc.readContract({ address: token, abi: domainAbi, functionName: "version" }),
      ]);
      return { name: name as string, version: version as string };
    } catch (e) {
      if (isRevert(e)) return undefined;
      throw chainFailure(`reading name() and version() of ${token}`, e);
    }
  }

  private read(token: Address): Promise<Known> | Known {
    const key = token.toLowerCase();
    let k = this.known.get(key);
    if (k === undefined) {
      k = this.readChain(getAddress(token)).then(
        (v) => (this.known.set(key, v), v),
        (e) => {
          this.known.delete(key); // a chain failure is not a verdict
          throw e;
        },
      );
      this.known.set(key, k);
    }
    return k;
  }

  private async readChain(token: Address): Promise<Known> {
    const pc = this.ctx.publicClient;
    let code: Hex | undefined;
    try {
      code = await pc.getCode({ address: token });
    } catch (e) {
      throw chainFailure(`reading the code of ${token}`, e);
    }
    if (!code || code === "0x") return { kind: "none" };
    // Each read below may revert (the function does not exist): that is an answer, not a failure.
    const tryRead = async <T>(functionName: "eip712Domain" | "DOMAIN_SEPARATOR" | "name" | "version"): Promise<T | undefined> => {
      try {
        return (await pc.readContract({ address: token, abi: domainAbi, functionName })) as T;
      } catch (e) {
        if (isRevert(e)) return undefined;
        throw chainFailure(`reading ${functionName}() of ${token}`, e);
      }
    };
    const d = await tryRead<readonly [Hex, string, string, bigint, Address, Hex, readonly bigint[]]>("eip712Domain");
    if (d) return { kind: "domain", name: d[1], version: d[2], chainId: d[3], verifyingContract: d[4] };
    const separator = await tryRead<Hex>("DOMAIN_SEPARATOR");
    if (separator) return { kind: "separator", separator };
    const [name, version] = [await tryRead<string>("name"), await tryRead<string>("version")];
    if (name !== undefined && version !== undefined) {
      const chainId = BigInt(pc.chain?.id ?? (await pc.getChainId()));
      return { kind: "domain", name, version, chainId, verifyingContract: token };
    }
    return { kind: "none" };
  }
}

const DOMAIN_FIELDS = [
  { name: "name", type: "string" },
  { name: "version", type: "string" },
  { name: "chainId", type: "uint256" },
  { name: "verifyingContract", type: "address" },
] as const;

/** Whether a failed read is the contract refusing (a revert, or no such function), not the RPC failing. */
function isRevert(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x && typeof x === "object" && depth < 10; x = (x as { cause?: unknown }).cause, depth++) {
    const name = (x as { name?: string }).name ?? "";
    if (["ContractFunctionRevertedError", "ContractFunctionZeroDataError", "AbiDecodingZeroDataError", "AbiDecodingDataSizeTooSmallError"].includes(name)) return true;
    const msg = (x as { message?: string }).message ?? "";
    if (/revert|invalid opcode|returned no data/i.test(msg)) return true;
  }
  return false;
}
