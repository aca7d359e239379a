/**
 * Which escrow contracts the client deposits into and signs for (docs/protocol.md § 7): one the owner allow-listed
 * (`limits.escrows`), or one whose on-chain runtime code is the released `ChannelEscrow` (up to its immutables,
 * `escrowCodeMatches` of @paychan/protocol) and whose `eip712Domain()` names `ChannelEscrow`, version 1, this chain
 * and its own address. Anything else is refused with `unverified_escrow` before anything is signed or sent.
 * Results are cached per (chain id, escrow); a failed chain read is not cached (`chain_failure`, retried next call).
 */
import { getAddress, type Address, type Hex } from "viem";
import { ESCROW_DOMAIN_NAME, ESCROW_DOMAIN_VERSION, channelEscrowAbi, escrowCodeMatches } from "@paychan/protocol";
import { chainFailure, type ChainContext } from "./chain";
import { ClientError } from "./errors";

/** Whether an escrow was verified (true), refused (a ClientError), or is being checked. */
type Verdict = true | ClientError;

/** Verifies escrows once per (chain id, address) for one client. */
export class EscrowVerifier {
  private readonly verdicts = new Map<string, Verdict | Promise<Verdict>>();

  constructor(private readonly ctx: ChainContext) {}

  /** Resolves when `escrow` on `chainId` is the released escrow; throws `unverified_escrow` or `chain_failure`. */
  async assertVerified(chainId: number, escrow: Address): Promise<void> {
    const k = `${chainId}:${escrow.toLowerCase()}`;
    let v = this.verdicts.get(k);
    if (v === undefined) {
      v = this.check(chainId, getAddress(escrow)).then(
        (r) => (this.verdicts.set(k, r), r),
        (e) => {
          this.verdicts.delete(k); // a chain failure is not a verdict
          throw e;
        },
      );
      this.verdicts.set(k, v);
    }
    const r = await v;
    if (r !== true) throw r;
  }

  private async check(chainId: number, escrow: Address): Promise<Verdict> {
    const refuse = (why: string) =>
      new ClientError("unverified_escrow", `the escrow ${escrow} is not a verified ChannelEscrow: ${why}`, {
        details: "Nothing was signed or deposited. Allow-list an escrow you trust with limits.escrows (CLI: --escrow).",
      });
    let code: Hex | undefined;
    try {
      code = await this.ctx.publicClient.getCode({ address: escrow });
    } catch (e) {
      throw chainFailure(`reading the code of ${escrow}`, e);
    }
    if (!code || code === "0x") return refuse("no contract at that address");
    if (!escrowCodeMatches(code)) return refuse("its code is not the released ChannelEscrow's");
    let domain: readonly [Hex, string, string, bigint, Address, Hex, readonly bigint[]];
    try {
      domain = await this.ctx.publicClient.readContract({ address: escrow, abi: channelEscrowAbi, functionName: "eip712Domain" });
    } catch (e) {
      throw chainFailure(`reading eip712Domain() of ${escrow}`, e);
    }
    const [, name, version, cid, verifying] = domain;
    if (name !== ESCROW_DOMAIN_NAME || version !== ESCROW_DOMAIN_VERSION) return refuse(`its EIP-712 domain is ${name} ${version}`);
    if (cid !== BigInt(chainId)) return refuse(`its EIP-712 domain is for chain ${cid}`);
    if (getAddress(verifying) !== escrow) return refuse(`its EIP-712 domain names ${verifying}`);
    return true;
  }
}
