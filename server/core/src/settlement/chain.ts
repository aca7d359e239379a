/**
 * The settlement job's writes to the chain: one settler key, transactions signed locally (so the hash and nonce are
 * known, and recorded, before anything is broadcast), raw broadcast, receipts, nonces and fees.
 *
 * The private key lives only inside the viem local account created here; no property of this class holds it, so
 * logging or serialising a `SettlementChain` cannot leak it.
 */
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  encodeFunctionData,
  http,
  keccak256,
  parseTransaction,
  type Address,
  type Hex,
  type PublicClient,
  type Transport,
} from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { channelEscrowAbi, encodeSettleItems, type CloseClaim, type SettleClaim } from "@paychan/protocol";
import { TX_GAS_CAP } from "./config";
import type { ReceiptLike } from "./receipt";

/** Fees of a transaction (EIP-1559, or a legacy gas price on chains without it). */
export type Fees = { type: "eip1559"; maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } | { type: "legacy"; gasPrice: bigint };

/** The call reverted (in simulation): `errorName` is the escrow's custom error when it could be decoded. */
export class SettlementRevertError extends Error {
  override name = "SettlementRevertError";
  constructor(
    readonly errorName: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** What the node said to a raw transaction. */
export type BroadcastResult = "accepted" | "known" | "nonce_too_low" | "underpriced";

export interface SettlementChainOptions {
  rpcUrl?: string;
  /** Instead of `rpcUrl` (in-process chains). */
  transport?: Transport;
  chainId: number;
  escrow: Address;
  token: Address;
  payee: Address;
  /** The settler's key: the payee's, or an operator's (`setOperator`). */
  privateKey: Hex;
  /** Timeout of one RPC call, ms. */
  timeout?: number;
}

type RawReceipt = {
  status: Hex;
  blockNumber: Hex;
  blockHash: Hex;
  gasUsed: Hex;
  effectiveGasPrice?: Hex;
  logs: Array<{ address: Address; data: Hex; topics: Hex[]; removed?: boolean }>;
};

export class SettlementChain {
  readonly client: PublicClient;
  readonly sender: Address;
  readonly chainId: number;
  readonly escrow: Address;
  readonly token: Address;
  readonly payee: Address;
  private readonly signer: () => PrivateKeyAccount;

  constructor(o: SettlementChainOptions) {
    const transport = o.transport ?? http(o.rpcUrl, { timeout: o.timeout ?? 10_000, retryCount: 1, batch: false });
    this.client = createPublicClient({ transport, cacheTime: 0 });
    const account = privateKeyToAccount(o.privateKey);
    this.signer = () => account;
    this.sender = account.address;
    this.chainId = o.chainId;
    this.escrow = o.escrow;
    this.token = o.token;
    this.payee = o.payee;
  }

  /** Whether the settler may settle for the payee (it is the payee, or an approved operator). */
  async authorized(): Promise<boolean> {
    if (this.sender.toLowerCase() === this.payee.toLowerCase()) return true;
    return (await this.client.readContract({
      address: this.escrow,
      abi: channelEscrowAbi,
      functionName: "isOperator",
      args: [this.payee, this.sender],
    })) as boolean;
  }

  async head(): Promise<{ number: bigint; timestamp: number; hash: Hex }> {
    const b = await this.client.getBlock({ blockTag: "latest" });
    return { number: b.number!, timestamp: Number(b.timestamp), hash: b.hash! };
  }

  /** The settler's transaction count at `latest` (mined) or `pending` (mined + in the node's pool). */
  async nonce(tag: "latest" | "pending"): Promise<number> {
    return this.nonceOf(this.sender, tag);
  }

  /** Any account's transaction count (open transactions of a previous settler key are reconciled too). */
  async nonceOf(address: Address, tag: "latest" | "pending"): Promise<number> {
    return this.client.getTransactionCount({ address, blockTag: tag });
  }

  /** The settler's native balance (to warn before it runs dry). */
  balance(): Promise<bigint> {
    return this.client.getBalance({ address: this.sender });
  }

  /** Current fees: EIP-1559 when the chain supports it, else a legacy gas price. */
  async fees(): Promise<Fees> {
    try {
      const f = await this.client.estimateFeesPerGas();
      if (f.maxFeePerGas !== undefined && f.maxPriorityFeePerGas !== undefined) {
        return { type: "eip1559", maxFeePerGas: f.maxFeePerGas, maxPriorityFeePerGas: f.maxPriorityFeePerGas };
      }
    } catch {
      // no EIP-1559: fall through
    }
    return { type: "legacy", gasPrice: await this.client.getGasPrice() };
  }

  /** Calldata of `settle(payee, token, items)`. */
  settleData(claims: readonly SettleClaim[]): Hex {
    return encodeFunctionData({ abi: channelEscrowAbi, functionName: "settle", args: [this.payee, this.token, encodeSettleItems(claims)] });
  }

  /** Calldata of `close(channelId, signer, cumulativeAmount, amount, signature, closeRequestSignature)`. */
  closeData(c: CloseClaim): Hex {
    return encodeFunctionData({ abi: channelEscrowAbi, functionName: "close", args: [c.channelId, c.signer, c.cumulativeAmount, c.amount, c.signature, c.closeRequestSignature] });
  }

  /**
   * Gas estimate of calling the escrow with `data` from the settler. Throws {@link SettlementRevertError} when the
   * call would revert (with the escrow's error name), or the RPC error when the node cannot be reached.
   *
   * Some nodes refuse to estimate a large transaction because their search's upper bound exceeds the per-transaction
   * gas cap (Hardhat does above ~450 channels, "transaction gas limit … is greater than the cap"). Then the call is
   * checked with `eth_call` at the cap (a revert is still detected) and `fallback` (the planned gas) is returned.
   */
  async estimate(data: Hex, fallback?: bigint): Promise<bigint> {
    const call = { from: this.sender, to: this.escrow, data, gas: `0x${TX_GAS_CAP.toString(16)}` as Hex };
    try {
      return BigInt((await this.client.request({ method: "eth_estimateGas", params: [call] })) as Hex);
    } catch (e) {
      const name = revertName(e);
      if (name !== null) throw new SettlementRevertError(name || undefined, `the escrow would revert${name ? ` with ${name}` : ""}`);
      if (fallback === undefined || !/gas limit|gas cap|cap \(|exceeds/i.test(errorText(e))) throw e;
    }
    try {
      await this.client.request({ method: "eth_call", params: [call, "latest"] });
    } catch (e) {
      const name = revertName(e);
      if (name !== null) throw new SettlementRevertError(name || undefined, `the escrow would revert${name ? ` with ${name}` : ""}`);
      throw e;
    }
    return fallback;
  }

  /** Signs a transaction to the escrow; returns the raw bytes and their hash (nothing is sent). */
  async sign(t: { data: Hex; nonce: number; gas: bigint; fees: Fees }): Promise<{ raw: Hex; hash: Hex }> {
    const base = { chainId: this.chainId, to: this.escrow, data: t.data, nonce: t.nonce, gas: t.gas, value: 0n };
    const raw =
      t.fees.type === "eip1559"
        ? await this.signer().signTransaction({ ...base, type: "eip1559", maxFeePerGas: t.fees.maxFeePerGas, maxPriorityFeePerGas: t.fees.maxPriorityFeePerGas })
        : await this.signer().signTransaction({ ...base, type: "legacy", gasPrice: t.fees.gasPrice });
    return { raw, hash: keccak256(raw) };
  }

  /** Hands signed bytes to the node. Known outcomes are returned; anything else (network errors) throws. */
  async broadcast(raw: Hex): Promise<BroadcastResult> {
    try {
      await this.client.request({ method: "eth_sendRawTransaction", params: [raw] });
      return "accepted";
    } catch (e) {
      const text = errorText(e).toLowerCase();
      if (/already known|known transaction|already imported|alreadyknown|already exists/.test(text)) return "known";
      if (/nonce too low|nonce has already been used|nonce_expired|nonce is too low/.test(text)) return "nonce_too_low";
      if (/underpriced|replacement fee too low/.test(text)) return "underpriced";
      throw e;
    }
  }

  /** The receipt of `hash`, or null when the chain (as this node sees it) has not included it. */
  async receipt(hash: Hex): Promise<ReceiptLike | null> {
    const r = (await this.client.request({ method: "eth_getTransactionReceipt", params: [hash] })) as RawReceipt | null;
    if (!r || !r.blockNumber) return null;
    return {
      status: BigInt(r.status) === 1n ? "success" : "reverted",
      blockNumber: BigInt(r.blockNumber),
      blockHash: r.blockHash,
      gasUsed: BigInt(r.gasUsed),
      effectiveGasPrice: r.effectiveGasPrice ? BigInt(r.effectiveGasPrice) : 0n,
      logs: r.logs.filter((l) => !l.removed).map((l) => ({ address: l.address, data: l.data, topics: l.topics as [Hex, ...Hex[]] })),
    };
  }

  /** Whether the node holds `hash` in its pool (known and not mined). */
  async isPending(hash: Hex): Promise<boolean> {
    const t = (await this.client.request({ method: "eth_getTransactionByHash", params: [hash] })) as { blockNumber: Hex | null } | null;
    return t !== null && !t.blockNumber;
  }
}

/** The calldata, gas and fees of signed bytes (for a fee-bump replacement of the same call). */
export function decodeRawTransaction(raw: Hex): { data: Hex; gas: bigint; nonce: number; fees: Fees } {
  const t = parseTransaction(raw);
  const fees: Fees =
    t.type === "eip1559"
      ? { type: "eip1559", maxFeePerGas: t.maxFeePerGas!, maxPriorityFeePerGas: t.maxPriorityFeePerGas! }
      : { type: "legacy", gasPrice: (t as { gasPrice: bigint }).gasPrice };
  return { data: t.data ?? "0x", gas: t.gas ?? 0n, nonce: t.nonce ?? 0, fees };
}

/** Fees at least 12.5 % above `old` (nodes require ≥ 10 % to replace) and at least `now`. */
export function bumpFees(old: Fees, now: Fees): Fees {
  const up = (v: bigint) => (v * 9n) / 8n + 1n;
  const max = (a: bigint, b: bigint) => (a > b ? a : b);
  if (old.type === "eip1559" && now.type === "eip1559") {
    return { type: "eip1559", maxFeePerGas: max(up(old.maxFeePerGas), now.maxFeePerGas), maxPriorityFeePerGas: max(up(old.maxPriorityFeePerGas), now.maxPriorityFeePerGas) };
  }
  const o = old.type === "eip1559" ? old.maxFeePerGas : old.gasPrice;
  const n = now.type === "eip1559" ? now.maxFeePerGas : now.gasPrice;
  return old.type === "eip1559"
    ? { type: "eip1559", maxFeePerGas: max(up(o), n), maxPriorityFeePerGas: max(up(old.maxPriorityFeePerGas), n) }
    : { type: "legacy", gasPrice: max(up(o), n) };
}

/** The custom error name of a revert ("" when it reverted without a decodable reason), or null when it is not a revert. */
function revertName(e: unknown): string | null {
  if (e instanceof BaseError) {
    const rev = e.walk((x) => x instanceof ContractFunctionRevertedError) as ContractFunctionRevertedError | null;
    if (rev) return rev.data?.errorName ?? "";
    // estimateGas does not decode: find the revert data and decode it with the escrow's ABI.
    const data = findRevertData(e);
    if (data) {
      try {
        const err = new ContractFunctionRevertedError({ abi: channelEscrowAbi, data, functionName: "settle" });
        return err.data?.errorName ?? "";
      } catch {
        return "";
      }
    }
    if (/revert|execution reverted/i.test(errorText(e))) return "";
  }
  return null;
}

function findRevertData(e: BaseError): Hex | undefined {
  let found: Hex | undefined;
  e.walk((x) => {
    const d = (x as { data?: unknown }).data;
    if (typeof d === "string" && /^0x[0-9a-fA-F]{8,}$/.test(d)) found = d as Hex;
    else if (d && typeof d === "object" && typeof (d as { data?: unknown }).data === "string") found = (d as { data: Hex }).data;
    return false;
  });
  return found;
}

function errorText(e: unknown): string {
  if (e instanceof BaseError) return `${e.shortMessage} ${e.details ?? ""} ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}
