/**
 * The client's on-chain side: reads of channels and tokens, and the payer's transactions
 * (approve + open or openWithPermit, topUp, requestClose, withdraw). Every failure is a typed {@link ClientError}.
 */
import {
  BaseError as ViemBaseError,
  ContractFunctionRevertedError,
  erc20Abi,
  getAddress,
  parseEventLogs,
  zeroAddress,
  type Abi,
  type Account,
  type Address,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
  type WalletClient,
} from "viem";
import { channelEscrowAbi, toOnchainChannel, type ChannelRef, type EscrowChannel, type OnchainChannel } from "@paychan/protocol";
import { ClientError, shortMessageOf } from "./errors";
import { signPermit } from "./permit";

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

function chainFailure(what: string, cause: unknown): ClientError {
  if (cause instanceof ClientError) return cause;
  return new ClientError("chain_failure", `${what} failed: ${shortMessageOf(cause)}`, { cause });
}

/** The name of the custom error a contract call reverted with, if any. */
export function revertName(e: unknown): string | undefined {
  if (e instanceof ViemBaseError) {
    const r = e.walk((x) => x instanceof ContractFunctionRevertedError) as ContractFunctionRevertedError | null;
    return r?.data?.errorName;
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

const INSUFFICIENT = new Set(["InsufficientBalance", "ERC20InsufficientBalance", "TransferAmountMismatch"]);

/** Sends a contract call from the payer and waits for it to be mined successfully. */
export async function sendTx(
  ctx: ChainContext,
  what: string,
  call: { address: Address; abi: Abi; functionName: string; args: readonly unknown[] },
): Promise<TransactionReceipt> {
  let hash: Hex;
  try {
    hash = await ctx.walletClient.writeContract({
      ...call,
      account: ctx.account,
      chain: ctx.walletClient.chain ?? null,
    } as Parameters<WalletClient["writeContract"]>[0]);
  } catch (e) {
    const name = revertName(e);
    if (name && INSUFFICIENT.has(name)) {
      throw new ClientError("insufficient_funds", `${what} failed: the payer's token balance is too small`, { cause: e });
    }
    throw chainFailure(what + (name ? ` (${name})` : ""), e);
  }
  let receipt: TransactionReceipt;
  try {
    receipt = await ctx.publicClient.waitForTransactionReceipt({ hash });
  } catch (e) {
    throw chainFailure(`${what}: waiting for ${hash}`, e);
  }
  if (receipt.status !== "success") throw new ClientError("chain_failure", `${what} reverted in transaction ${hash}`);
  return receipt;
}

export interface OpenParams {
  escrow: Address;
  payee: Address;
  token: Address;
  signer: Address;
  amount: bigint;
  closeDelay: number;
  salt: Hex;
  /** "auto": use EIP-2612 when the token supports it (detected safely), else approve; "never": always approve. */
  permit: "auto" | "never";
  /** Called with the hash of the open transaction as soon as it is known (before it is mined). */
  onSubmitted?: (hash: Hex) => void;
}

/** How a channel was funded. */
export interface OpenResult {
  method: "permit" | "approve" | "allowance";
  receipt: TransactionReceipt;
}

/** Checks the payer holds `amount` of `token`; throws `insufficient_funds` with the numbers otherwise. */
export async function requireBalance(ctx: ChainContext, token: Address, amount: bigint): Promise<void> {
  const payer = payerAddress(ctx);
  const balance = await tokenBalance(ctx, token, payer);
  if (balance < amount) {
    throw new ClientError("insufficient_funds", `the payer ${payer} holds ${balance} of token ${token}, needs ${amount} (atomic units)`);
  }
}

async function ensureAllowance(ctx: ChainContext, token: Address, spender: Address, amount: bigint): Promise<boolean> {
  const payer = payerAddress(ctx);
  let allowance: bigint;
  try {
    allowance = await ctx.publicClient.readContract({ address: token, abi: erc20Abi, functionName: "allowance", args: [payer, spender] });
  } catch (e) {
    throw chainFailure("reading the allowance", e);
  }
  if (allowance >= amount) return false;
  await sendTx(ctx, "approve", { address: token, abi: erc20Abi as Abi, functionName: "approve", args: [spender, amount] });
  return true;
}

/**
 * Opens a channel: `openWithPermit` (one transaction) when the token supports EIP-2612 and the payer can sign it,
 * else `approve` (when the allowance is short) then `open`.
 */
export async function openChannelTx(ctx: ChainContext, p: OpenParams): Promise<OpenResult> {
  await requireBalance(ctx, p.token, p.amount);
  const openArgs = [p.payee, p.token, p.signer, p.amount, p.closeDelay, p.salt] as const;
  if (p.permit === "auto") {
    const permit = await signPermit(ctx, p.token, p.escrow, p.amount).catch(() => null);
    if (permit) {
      try {
        const receipt = await sendTx(ctx, "openWithPermit", {
          address: p.escrow,
          abi: channelEscrowAbi,
          functionName: "openWithPermit",
          args: [...openArgs, permit.deadline, permit.v, permit.r, permit.s],
        });
        return { method: "permit", receipt };
      } catch (e) {
        if ((e as ClientError).code === "insufficient_funds") throw e;
        // A token whose permit looked right but failed: fall back to approve + open.
      }
    }
  }
  const approved = await ensureAllowance(ctx, p.token, p.escrow, p.amount);
  const receipt = await sendTx(ctx, "open", { address: p.escrow, abi: channelEscrowAbi, functionName: "open", args: openArgs });
  return { method: approved ? "approve" : "allowance", receipt };
}

/** Adds `amount` to a channel's deposit (approving first when needed). */
export async function topUpTx(ctx: ChainContext, escrow: Address, token: Address, ref: ChannelRef, amount: bigint): Promise<TransactionReceipt> {
  await requireBalance(ctx, token, amount);
  await ensureAllowance(ctx, token, escrow, amount);
  return sendTx(ctx, "topUp", { address: escrow, abi: channelEscrowAbi, functionName: "topUp", args: [ref.channelId, ref.signer, amount] });
}

/** Starts a channel's close delay; returns `closesAt` (unix seconds). */
export async function requestCloseTx(ctx: ChainContext, escrow: Address, ref: ChannelRef): Promise<{ receipt: TransactionReceipt; closesAt: number }> {
  const receipt = await sendTx(ctx, "requestClose", { address: escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [ref.channelId, ref.signer] });
  const ev = parseEventLogs({ abi: channelEscrowAbi, logs: receipt.logs, eventName: "CloseRequested" })[0];
  return { receipt, closesAt: ev ? Number(ev.args.closesAt) : 0 };
}

/** Withdraws the unspent rest of a channel after its close delay; returns the refund. */
export async function withdrawTx(ctx: ChainContext, escrow: Address, ref: ChannelRef): Promise<{ receipt: TransactionReceipt; refund: bigint }> {
  const receipt = await sendTx(ctx, "withdraw", { address: escrow, abi: channelEscrowAbi, functionName: "withdraw", args: [ref.channelId, ref.signer] });
  const ev = parseEventLogs({ abi: channelEscrowAbi, logs: receipt.logs, eventName: "Withdrawn" })[0];
  return { receipt, refund: ev ? ev.args.refund : 0n };
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
