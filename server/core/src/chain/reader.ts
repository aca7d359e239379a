/**
 * The server's only access to the chain: a few JSON-RPC reads of the escrow and token. Every failure
 * (network, timeout, bad answer) becomes a `ServiceError("upstream_unavailable")`, which the payment core
 * answers with 503: a request that needs the chain is never served without it.
 */
import {
  createPublicClient,
  erc20Abi,
  getAbiItem,
  http,
  toEventSelector,
  type Address,
  type Hex,
  type PublicClient,
  type Transport,
} from "viem";
import { channelEscrowAbi, isSignerMismatch, ServiceError, toOnchainChannel, type ChannelRef, type EscrowChannel } from "@paychan/protocol";
import type { ChainChannel } from "../store/types";

/** The escrow events that change a channel's state (topic 1 of each is the channel id). */
export const CHANNEL_EVENTS = ["ChannelOpened", "ChannelToppedUp", "CloseRequested", "Settled", "Withdrawn", "Closed"] as const;
const EVENT_TOPICS: Hex[] = CHANNEL_EVENTS.map((name) => toEventSelector(getAbiItem({ abi: channelEscrowAbi, name }) as never));
const OPENED_TOPIC = EVENT_TOPICS[0];

/** A block header, as much as the server needs. */
export interface BlockInfo {
  number: bigint;
  hash: Hex;
  timestamp: number;
}

/** A channel-changing escrow log. */
export interface ChannelLog {
  channelId: Hex;
  blockNumber: bigint;
  logIndex: number;
  /** For `ChannelOpened`: the payee (indexed topic 3) and the signer (second data word). */
  opened?: { payee: Address; signer: Address };
}

export interface ChainReaderOptions {
  /** JSON-RPC URL (http/https). */
  rpcUrl?: string;
  /** Or any viem transport (tests may pass `custom(hre.network.provider)`). */
  transport?: Transport;
  escrow: Address;
  /** Timeout of one call, ms. */
  timeout?: number;
}

function upstream(what: string, cause: unknown): ServiceError {
  const msg = cause instanceof Error ? ((cause as { shortMessage?: string }).shortMessage ?? cause.message) : String(cause);
  return new ServiceError("upstream_unavailable", `chain RPC failed: ${what}`, { details: msg.split("\n")[0].slice(0, 200), cause });
}

/**
 * Converts a `getChannel` result; unknown channels (payer 0) give null. A signer mismatch (the channel exists but was
 * asked for with another signer) converts like any answer: its `signer` is the zero address and its money zero
 * (see {@link isSignerMismatch}); such a snapshot must never be cached or stored.
 */
export function toChainChannel(channelId: Hex, r: EscrowChannel, block: bigint): ChainChannel | null {
  const c = toOnchainChannel(channelId, r);
  return c && { ...c, block };
}

/** Reads the escrow through JSON-RPC. */
export class ChainReader {
  readonly client: PublicClient;
  readonly escrow: Address;

  constructor(opts: ChainReaderOptions) {
    const transport = opts.transport ?? http(opts.rpcUrl, { timeout: opts.timeout ?? 5_000, retryCount: 0, batch: false });
    this.client = createPublicClient({ transport, cacheTime: 0, pollingInterval: 1_000 });
    this.escrow = opts.escrow;
  }

  private async call<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw upstream(what, e);
    }
  }

  chainId(): Promise<number> {
    return this.call("eth_chainId", () => this.client.getChainId());
  }

  /** The latest block (or `number`). */
  block(number?: bigint): Promise<BlockInfo> {
    return this.call("eth_getBlockByNumber", async () => {
      const b = number === undefined ? await this.client.getBlock({ blockTag: "latest" }) : await this.client.getBlock({ blockNumber: number });
      return { number: b.number!, hash: b.hash!, timestamp: Number(b.timestamp) };
    });
  }

  blockNumber(): Promise<bigint> {
    return this.call("eth_blockNumber", () => this.client.getBlockNumber({ cacheTime: 0 }));
  }

  /** Whether code is deployed at `address` (at `block`, default the latest). */
  hasCode(address: Address, block?: bigint): Promise<boolean> {
    return this.call("eth_getCode", async () => {
      const code = await this.client.getCode(block === undefined ? { address } : { address, blockNumber: block });
      return code !== undefined && code !== "0x";
    });
  }

  /**
   * The channel `channelId` whose signer is `signer`, at `block` (default: the latest block). Null when the escrow
   * does not know the id; a snapshot with the zero address as signer (and no money) when it knows the id but
   * `signer` is not the channel's signer ({@link isSignerMismatch}).
   */
  async readChannel(channelId: Hex, signer: Address, block?: bigint): Promise<ChainChannel | null> {
    const at = block ?? (await this.blockNumber());
    const raw = await this.call("getChannel", () =>
      this.client.readContract({ address: this.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [channelId, signer], blockNumber: at }),
    );
    return toChainChannel(channelId, raw as EscrowChannel, at);
  }

  /**
   * Many channels at `block`, in chunks of 200. Unknown ones are left out, and so are signer mismatches (the
   * callers pass the signers they stored, so a mismatch can only be a channel they never should have stored).
   */
  async readChannels(refs: readonly ChannelRef[], block: bigint): Promise<ChainChannel[]> {
    const out: ChainChannel[] = [];
    for (let i = 0; i < refs.length; i += 200) {
      const chunk = refs.slice(i, i + 200).map((r) => ({ channelId: r.channelId, signer: r.signer }));
      const raws = await this.call("getChannels", () =>
        this.client.readContract({ address: this.escrow, abi: channelEscrowAbi, functionName: "getChannels", args: [chunk], blockNumber: block }),
      );
      (raws as readonly EscrowChannel[]).forEach((r, j) => {
        if (isSignerMismatch(r)) return;
        const c = toChainChannel(chunk[j].channelId, r, block);
        if (c) out.push(c);
      });
    }
    return out;
  }

  /** Channel-changing escrow logs in `[from, to]`, in chain order. */
  async channelLogs(from: bigint, to: bigint): Promise<ChannelLog[]> {
    const logs = await this.call("eth_getLogs", () =>
      this.client.request({
        method: "eth_getLogs",
        params: [{ address: this.escrow, fromBlock: `0x${from.toString(16)}`, toBlock: `0x${to.toString(16)}`, topics: [EVENT_TOPICS] }],
      }),
    );
    const out: ChannelLog[] = [];
    for (const l of logs as Array<{ topics: Hex[]; data?: Hex; blockNumber: Hex; logIndex: Hex; removed?: boolean }>) {
      if (l.removed || !l.topics?.[1]) continue;
      const log: ChannelLog = { channelId: l.topics[1].toLowerCase() as Hex, blockNumber: BigInt(l.blockNumber), logIndex: Number(l.logIndex) };
      if (l.topics[0]?.toLowerCase() === OPENED_TOPIC && l.topics[3] && typeof l.data === "string" && l.data.length >= 2 + 128) {
        log.opened = { payee: `0x${l.topics[3].slice(-40)}` as Address, signer: `0x${l.data.slice(2 + 64 + 24, 2 + 128)}` as Address };
      }
      out.push(log);
    }
    return out;
  }

  /** `ChannelOpened` logs naming `payee` in `[from, to]` (filtered by the node on the indexed payee topic). */
  async openedTo(payee: Address, from: bigint, to: bigint): Promise<Array<{ channelId: Hex; signer: Address }>> {
    const topic = `0x${payee.slice(2).toLowerCase().padStart(64, "0")}` as Hex;
    const logs = await this.call("eth_getLogs", () =>
      this.client.request({
        method: "eth_getLogs",
        params: [{ address: this.escrow, fromBlock: `0x${from.toString(16)}`, toBlock: `0x${to.toString(16)}`, topics: [OPENED_TOPIC, null, null, topic] }],
      }),
    );
    const out: Array<{ channelId: Hex; signer: Address }> = [];
    for (const l of logs as Array<{ topics: Hex[]; data?: Hex; removed?: boolean }>) {
      if (l.removed || !l.topics?.[1] || typeof l.data !== "string" || l.data.length < 2 + 128) continue;
      out.push({ channelId: l.topics[1].toLowerCase() as Hex, signer: `0x${l.data.slice(2 + 64 + 24, 2 + 128)}` as Address });
    }
    return out;
  }

  /** The token's decimals. */
  tokenDecimals(token: Address): Promise<number> {
    return this.call("decimals", async () => Number(await this.client.readContract({ address: token, abi: erc20Abi, functionName: "decimals" })));
  }
}
