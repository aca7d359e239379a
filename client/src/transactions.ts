/**
 * The payer's transactions: approve + open or openWithPermit, topUp, requestClose, withdraw, collect. Each is sent
 * from the funding account and waited for; every failure is a typed {@link ClientError} (`insufficient_funds` when
 * the payer's token balance is short, `nothing_owed` / `invalid_recipient` for collect, `chain_failure` otherwise).
 */
import { erc20Abi, parseEventLogs, type Abi, type Address, type Hex, type TransactionReceipt, type WalletClient } from "viem";
import { channelEscrowAbi, type ChannelRef } from "@paychan/protocol";
import { chainFailure, payerAddress, revertName, tokenBalance, type ChainContext } from "./chain";
import { ClientError } from "./errors";
import { signPermit } from "./permit";

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

/** What {@link openChannelTx} opens. */
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

/**
 * What the escrow kept owed to `account` in `token` in this transaction: the sum of its `PaymentDeferred` logs for
 * them (a transfer the token refused: paused, account blacklisted). Logs of other contracts are ignored, so a token
 * cannot fake one.
 */
export function deferredIn(receipt: TransactionReceipt, escrow: Address, token: Address, account: Address): bigint {
  const logs = receipt.logs.filter((l) => l.address.toLowerCase() === escrow.toLowerCase());
  let total = 0n;
  for (const ev of parseEventLogs({ abi: channelEscrowAbi, logs, eventName: "PaymentDeferred" })) {
    if (ev.args.token.toLowerCase() === token.toLowerCase() && ev.args.account.toLowerCase() === account.toLowerCase()) total += ev.args.amount;
  }
  return total;
}

/**
 * Withdraws the unspent rest of a channel (of `token`) after its close delay; returns the refund and how much of it
 * the escrow kept owed to the payer instead of transferring it (0n when the payer received it).
 */
export async function withdrawTx(
  ctx: ChainContext,
  escrow: Address,
  token: Address,
  ref: ChannelRef,
): Promise<{ receipt: TransactionReceipt; refund: bigint; deferred: bigint }> {
  const receipt = await sendTx(ctx, "withdraw", { address: escrow, abi: channelEscrowAbi, functionName: "withdraw", args: [ref.channelId, ref.signer] });
  const ev = parseEventLogs({ abi: channelEscrowAbi, logs: receipt.logs, eventName: "Withdrawn" })[0];
  return { receipt, refund: ev ? ev.args.refund : 0n, deferred: deferredIn(receipt, escrow, token, payerAddress(ctx)) };
}

/**
 * Collects what `escrow` owes the payer in `token`, sent to `to`; returns the amount (its `Collected` log). The
 * contract's refusals are typed: `NothingOwed` → `nothing_owed`, `InvalidRecipient` → `invalid_recipient`.
 */
export async function collectTx(ctx: ChainContext, escrow: Address, token: Address, to: Address): Promise<{ receipt: TransactionReceipt; amount: bigint }> {
  let receipt: TransactionReceipt;
  try {
    receipt = await sendTx(ctx, "collect", { address: escrow, abi: channelEscrowAbi, functionName: "collect", args: [token, to] });
  } catch (e) {
    const name = revertName((e as ClientError).cause);
    if (name === "NothingOwed") {
      throw new ClientError("nothing_owed", `the escrow ${escrow} owes ${payerAddress(ctx)} nothing in token ${token}`, { cause: e });
    }
    if (name === "InvalidRecipient") throw new ClientError("invalid_recipient", `the escrow cannot collect to ${to} (the zero address or the escrow itself)`, { cause: e });
    throw e;
  }
  const logs = receipt.logs.filter((l) => l.address.toLowerCase() === escrow.toLowerCase());
  const ev = parseEventLogs({ abi: channelEscrowAbi, logs, eventName: "Collected" })[0];
  return { receipt, amount: ev ? ev.args.amount : 0n };
}
