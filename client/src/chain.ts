/**
 * The client's view of the chain: who the payer is, reads of channels, tokens and chain time, and `ChannelOpened`
 * events. Every failure is a typed {@link ClientError}. The payer's transactions are in transactions.ts.
 */
import {
  BaseError as ViemBaseError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  erc20Abi,
  getAddress,
  type Account,
  type Address,
  type Hex,
  type PublicClient,
  type WalletClient,
} from "viem";
import { channelEscrowAbi, toOnchainChannel, type ChannelRef, type EscrowChannel, type OnchainChannel } from "@paychan/protocol";
import { ClientError, shortMessageOf } from "./errors";

/** What the client needs to read and transact. */
export interface ChainContext {
  publicClient: PublicClient;
  walletClient: WalletClient;
  /** The funding account (the channels' payer). */
  account: Account | Address;
}

/** The payer's address. */
export function payerAddress(ctx: ChainContext): Address {
  return getAddress(typeof ctx.account === "string" ? ctx.account : ctx.account.address);
}

/** `cause` as a `chain_failure` naming what failed (a {@link ClientError} passes through unchanged). */
export function chainFailure(what: string, cause: unknown): ClientError {
  if (cause instanceof ClientError) return cause;
  return new ClientError("chain_failure", `${what} failed: ${shortMessageOf(cause)}`, { cause });
}

/**
 * The name of the escrow's custom error a contract call reverted with, if any: viem's decoding, else the revert data
 * found on an error in the cause chain (an EIP-1193 provider such as Hardhat's in-process one reports the revert of
 * an estimate as an error viem does not decode).
 */
export function revertName(e: unknown): string | undefined {
  if (e instanceof ViemBaseError) {
    const r = e.walk((x) => x instanceof ContractFunctionRevertedError) as ContractFunctionRevertedError | null;
    if (r?.data?.errorName) return r.data.errorName;
  }
  for (let x: unknown = e, depth = 0; x && typeof x === "object" && depth < 10; x = (x as { cause?: unknown }).cause, depth++) {
    const d = (x as { data?: unknown }).data;
    const data = typeof d === "string" ? d : d && typeof d === "object" ? (d as { data?: unknown }).data : undefined;
    if (typeof data === "string" && /^0x[0-9a-fA-F]{8}/.test(data)) {
      try {
        return decodeErrorResult({ abi: channelEscrowAbi, data: data as Hex }).errorName;
      } catch {
        return undefined; // not one of the escrow's errors
      }
    }
  }
  return undefined;
}

/**
 * Reads the channel `id` whose signer is `signer` (the escrow names a channel by both). `exists` is false for an
 * unknown id; a known id read with another signer gives `signer` = the zero address and no money.
 */
export async function readChannel(ctx: ChainContext, escrow: Address, id: Hex, signer: Address): Promise<OnchainChannel | null> {
  try {
    const c = await ctx.publicClient.readContract({ address: escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [id, signer] });
    return toOnchainChannel(id, c);
  } catch (e) {
    throw chainFailure(`reading channel ${id}`, e);
  }
}

/** Reads many channels of one escrow in one call ({@link readChannel} for each). */
export async function readChannels(ctx: ChainContext, escrow: Address, refs: readonly ChannelRef[]): Promise<Array<OnchainChannel | null>> {
  if (refs.length === 0) return [];
  try {
    const args = refs.map((r) => ({ channelId: r.channelId, signer: r.signer }));
    const cs = await ctx.publicClient.readContract({ address: escrow, abi: channelEscrowAbi, functionName: "getChannels", args: [args] });
    return cs.map((c, i) => toOnchainChannel(refs[i].channelId, c as EscrowChannel));
  } catch (e) {
    throw chainFailure("reading channels", e);
  }
}

/**
 * What `escrow` owes `account` in `token`: payouts and refunds it could not transfer (token paused, account
 * blacklisted), kept until the account takes them with `collect`.
 */
export async function readOwed(ctx: ChainContext, escrow: Address, token: Address, account: Address): Promise<bigint> {
  try {
    return await ctx.publicClient.readContract({ address: escrow, abi: channelEscrowAbi, functionName: "owed", args: [token, account] });
  } catch (e) {
    throw chainFailure(`reading what escrow ${escrow} owes ${account}`, e);
  }
}

/** A token's decimals. */
export async function tokenDecimals(ctx: ChainContext, token: Address): Promise<number> {
  try {
    const d = await ctx.publicClient.readContract({ address: token, abi: erc20Abi, functionName: "decimals" });
    if (!Number.isInteger(d) || d < 0 || d > 36) throw new Error(`implausible decimals ${d}`);
    return d;
  } catch (e) {
    throw chainFailure(`reading decimals of token ${token}`, e);
  }
}

/** A token's symbol, or "" when it has none. */
export async function tokenSymbol(ctx: ChainContext, token: Address): Promise<string> {
  try {
    return await ctx.publicClient.readContract({ address: token, abi: erc20Abi, functionName: "symbol" });
  } catch {
    return "";
  }
}

/** The token balance of `owner`. */
export async function tokenBalance(ctx: ChainContext, token: Address, owner: Address): Promise<bigint> {
  try {
    return await ctx.publicClient.readContract({ address: token, abi: erc20Abi, functionName: "balanceOf", args: [owner] });
  } catch (e) {
    throw chainFailure(`reading the balance of ${owner}`, e);
  }
}

/** The latest block's timestamp (chain time, which tests move with evm_increaseTime). */
export async function chainTime(ctx: ChainContext): Promise<number> {
  try {
    const b = await ctx.publicClient.getBlock({ blockTag: "latest" });
    return Number(b.timestamp);
  } catch (e) {
    throw chainFailure("reading the latest block", e);
  }
}

/** A channel found in `ChannelOpened` events. */
export interface DiscoveredChannel {
  id: Hex;
  payee: Address;
  token: Address;
  signer: Address;
  deposit: bigint;
  closeDelay: number;
  blockNumber: bigint;
}

/**
 * Finds the channels `payer` opened to `payee` on `escrow` whose signer is `signer` (used when the state was lost
 * but the session key was kept). Reads `ChannelOpened` logs from `fromBlock`.
 */
export async function discoverChannels(
  ctx: ChainContext,
  q: { escrow: Address; payee: Address; token: Address; signer: Address; fromBlock: bigint },
): Promise<DiscoveredChannel[]> {
  const payer = payerAddress(ctx);
  try {
    const logs = await ctx.publicClient.getContractEvents({
      address: q.escrow,
      abi: channelEscrowAbi,
      eventName: "ChannelOpened",
      args: { payer, payee: q.payee },
      fromBlock: q.fromBlock,
      toBlock: "latest",
    });
    return logs
      .filter((l) => l.args.signer!.toLowerCase() === q.signer.toLowerCase() && l.args.token!.toLowerCase() === q.token.toLowerCase())
      .map((l) => ({
        id: l.args.channelId!,
        payee: l.args.payee!,
        token: l.args.token!,
        signer: l.args.signer!,
        deposit: l.args.deposit!,
        closeDelay: Number(l.args.closeDelay!),
        blockNumber: l.blockNumber!,
      }));
  } catch (e) {
    throw chainFailure("reading ChannelOpened events", e);
  }
}
