/**
 * The account that submits `exact` transfers (EXACT_PRIVATE_KEY): chain reads the payment needs, local signing (the
 * hash and nonce are known, and recorded, before anything is broadcast), raw broadcast and receipts. Its key lives
 * only inside the viem account created here.
 */
import {
  BaseError,
  createPublicClient,
  encodeFunctionData,
  http,
  keccak256,
  type Address,
  type Hex,
  type PublicClient,
  type Transport,
} from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import type { ExactAuthorization } from "@paychan/protocol";
import { EIP3009_ABI } from "./token";
import { splitSignature } from "./checks";

/** What the node said to a raw transaction. */
export type ExactBroadcast = "accepted" | "known" | "nonce_too_low" | "nonce_too_high" | "underpriced";

/** Fees of one transaction. */
export type ExactFees = { type: "eip1559"; maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } | { type: "legacy"; gasPrice: bigint };

/** The transfer would revert (simulation). */
export class TransferRevertError extends Error {
  override name = "TransferRevertError";
}

/** A mined transfer. */
export interface TransferReceipt {
  success: boolean;
  blockNumber: bigint;
  gasUsed: bigint;
}

export interface ExactSenderOptions {
  rpcUrl?: string;
  transport?: Transport;
  chainId: number;
  token: Address;
  /** The sender's key; absent when a facilitator submits the transfers (then only the chain reads are used). */
  privateKey?: Hex;
  /** Timeout of one RPC call, ms. */
  timeout?: number;
}

/** Gas of a transfer whose estimate is not possible (it would revert): it still takes its nonce when mined. */
const FALLBACK_GAS = 150_000n;

export class ExactSender {
  readonly client: PublicClient;
  readonly address: Address;
  readonly chainId: number;
  readonly token: Address;
  private readonly account: () => PrivateKeyAccount;

  /** The sender of transfers submitted by a facilitator (no key of ours): the zero address in the store. */
  static readonly FACILITATOR: Address = "0x0000000000000000000000000000000000000000";

  constructor(o: ExactSenderOptions) {
    const transport = o.transport ?? http(o.rpcUrl, { timeout: o.timeout ?? 10_000, retryCount: 0, batch: false });
    this.client = createPublicClient({ transport, cacheTime: 0 });
    const account = o.privateKey ? privateKeyToAccount(o.privateKey) : null;
    this.account = () => {
      if (!account) throw new Error("no exact sender key: transfers go through the facilitator");
      return account;
    };
    this.address = account?.address ?? ExactSender.FACILITATOR;
    this.chainId = o.chainId;
    this.token = o.token;
  }

  /** Calldata of `transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, v, r, s)`. */
  transferData(a: ExactAuthorization, signature: Hex): Hex {
    const { v, r, s } = splitSignature(signature);
    return encodeFunctionData({ abi: EIP3009_ABI, functionName: "transferWithAuthorization", args: [a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s] });
  }

  authorizationUsed(from: Address, nonce: Hex): Promise<boolean> {
    return this.client.readContract({ address: this.token, abi: EIP3009_ABI, functionName: "authorizationState", args: [from, nonce] }) as Promise<boolean>;
  }

  balanceOf(account: Address): Promise<bigint> {
    return this.client.readContract({ address: this.token, abi: EIP3009_ABI, functionName: "balanceOf", args: [account] }) as Promise<bigint>;
  }

  /** The sender's transaction count including the node's pool. */
  pendingNonce(): Promise<number> {
    return this.client.getTransactionCount({ address: this.address, blockTag: "pending" });
  }

  /**
   * Gas of the transfer (+25 %), or of a call to `to` (a gasless open: the escrow); {@link TransferRevertError} when it
   * would revert.
   */
  async estimate(data: Hex, to: Address = this.token): Promise<bigint> {
    try {
      const g = BigInt((await this.client.request({ method: "eth_estimateGas", params: [{ from: this.address, to, data }] })) as Hex);
      return (g * 5n) / 4n;
    } catch (e) {
      if (/revert/i.test(errorText(e))) throw new TransferRevertError(`the transfer would revert: ${firstLine(e)}`);
      throw e;
    }
  }

  /** Current fees: EIP-1559 when the chain supports it, else a legacy gas price. */
  async fees(): Promise<ExactFees> {
    try {
      const f = await this.client.estimateFeesPerGas();
      if (f.maxFeePerGas !== undefined && f.maxPriorityFeePerGas !== undefined) return { type: "eip1559", maxFeePerGas: f.maxFeePerGas, maxPriorityFeePerGas: f.maxPriorityFeePerGas };
    } catch {
      // no EIP-1559
    }
    return { type: "legacy", gasPrice: await this.client.getGasPrice() };
  }

  /** Signs the transfer transaction, or a call to `to` (a gasless open: the escrow); nothing is sent. */
  async sign(t: { data: Hex; nonce: number; gas?: bigint; fees: ExactFees; to?: Address }): Promise<{ raw: Hex; hash: Hex }> {
    const base = { chainId: this.chainId, to: t.to ?? this.token, data: t.data, nonce: t.nonce, gas: t.gas ?? FALLBACK_GAS, value: 0n };
    const raw =
      t.fees.type === "eip1559"
        ? await this.account().signTransaction({ ...base, type: "eip1559", maxFeePerGas: t.fees.maxFeePerGas, maxPriorityFeePerGas: t.fees.maxPriorityFeePerGas })
        : await this.account().signTransaction({ ...base, type: "legacy", gasPrice: t.fees.gasPrice });
    return { raw, hash: keccak256(raw) };
  }

  /** Hands signed bytes to the node. Known outcomes are returned; anything else (network errors) throws. */
  async broadcast(raw: Hex): Promise<ExactBroadcast> {
    try {
      await this.client.request({ method: "eth_sendRawTransaction", params: [raw] });
      return "accepted";
    } catch (e) {
      const text = errorText(e).toLowerCase();
      if (/already known|known transaction|already imported|alreadyknown|already exists/.test(text)) return "known";
      if (/nonce too low|nonce has already been used|nonce_expired|nonce is too low/.test(text)) return "nonce_too_low";
      if (/underpriced|replacement fee too low/.test(text)) return "underpriced";
      // A node that does not queue future nonces (Hardhat automining): an earlier transfer is still on its way.
      if (/nonce too high|can't be queued|cannot be queued/.test(text)) return "nonce_too_high";
      throw e;
    }
  }

  /** The receipt of `hash`, or null when not mined (as this node sees it). */
  async receipt(hash: Hex): Promise<TransferReceipt | null> {
    const r = (await this.client.request({ method: "eth_getTransactionReceipt", params: [hash] })) as { status: Hex; blockNumber: Hex | null; gasUsed: Hex } | null;
    if (!r || !r.blockNumber) return null;
    return { success: BigInt(r.status) === 1n, blockNumber: BigInt(r.blockNumber), gasUsed: BigInt(r.gasUsed) };
  }

  /** The sender's mined transaction count. */
  minedNonce(): Promise<number> {
    return this.client.getTransactionCount({ address: this.address, blockTag: "latest" });
  }
}

function errorText(e: unknown): string {
  if (e instanceof BaseError) return `${e.shortMessage} ${e.details ?? ""} ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

function firstLine(e: unknown): string {
  return (e instanceof BaseError ? e.shortMessage : e instanceof Error ? e.message : String(e)).split("\n")[0].slice(0, 200);
}
