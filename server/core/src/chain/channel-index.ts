/**
 * The index of channels opened to this payee: channel id → signer, from `ChannelOpened` logs (the payee is an indexed
 * topic, so the node filters them). Built at start by scanning back at most `scanBlocks` blocks, then kept up by the
 * event follower's passes. It lets the server answer requests about channels it has not stored without a chain read
 * per request:
 *
 * - an id in the index is a real channel to this payee: it is read once with the indexed signer (a stranger's random
 *   signer cannot make it read again);
 * - an id not in the index, when the index is COMPLETE and CURRENT, is no channel of this payee: `unknown_channel`.
 *   Complete: the scan reached the escrow's deployment (no code at the block before the scan's first block), and the
 *   index never overflowed. Current, for a request: a follower pass that started after the request arrived has
 *   completed with its cursor at the head it read (lag 0; never with CONFIRMATIONS > 0), so every block mined before
 *   the request arrived has been read.
 */
import type { Address, Hex } from "viem";
import type { Logger } from "pino";
import type { ChainReader } from "./reader";

export interface ChannelIndexOptions {
  reader: ChainReader;
  escrow: Address;
  payee: Address;
  /** How far back the start scan may go, blocks (0: no scan; the index is then never complete). */
  scanBlocks: number;
  /** Most blocks per `eth_getLogs`. */
  blockRange: number;
  /** Most channels held (beyond it the index stops growing and is no longer complete). Default 1,000,000. */
  maxEntries?: number;
  logger?: Logger;
}

/** See the file comment. */
export class ChannelIndex {
  private readonly signers = new Map<string, Address>();
  private full = false;
  /** Whether the start scan covered the escrow's whole history. */
  scanned = false;
  readonly payeeLc: string;

  constructor(private readonly o: ChannelIndexOptions) {
    this.payeeLc = o.payee.toLowerCase();
  }

  /** Channels indexed. */
  get size(): number {
    return this.signers.size;
  }

  /** Whether every channel ever opened to the payee up to the follower's cursor is here. */
  get complete(): boolean {
    return this.scanned && !this.full;
  }

  /** The signer of an indexed channel, or undefined. */
  signerOf(channelId: Hex): Address | undefined {
    return this.signers.get(channelId.toLowerCase());
  }

  /** Adds a channel opened to `payee` (others are ignored). */
  add(channelId: Hex, payee: Address, signer: Address): void {
    if (payee.toLowerCase() !== this.payeeLc) return;
    const id = channelId.toLowerCase();
    if (this.signers.has(id)) return;
    if (this.signers.size >= (this.o.maxEntries ?? 1_000_000)) {
      this.full = true;
      return;
    }
    this.signers.set(id, signer);
  }

  /**
   * Scans `ChannelOpened` logs naming the payee from `head - scanBlocks` (or the escrow's deployment) to `head`.
   * Never throws: a failed scan leaves the index incomplete (requests then fall back to bounded chain reads).
   */
  async scan(head: bigint): Promise<void> {
    if (this.o.scanBlocks <= 0) return;
    try {
      const from = head > BigInt(this.o.scanBlocks) ? head - BigInt(this.o.scanBlocks) : 0n;
      // Code at the block before the window: the escrow is older than the window, which cannot be complete.
      const older = from > 0n && (await this.o.reader.hasCode(this.o.escrow, from - 1n));
      for (let a = from; a <= head; a += BigInt(this.o.blockRange)) {
        const b = a + BigInt(this.o.blockRange) - 1n < head ? a + BigInt(this.o.blockRange) - 1n : head;
        for (const l of await this.o.reader.openedTo(this.o.payee, a, b)) this.add(l.channelId, this.o.payee, l.signer);
      }
      this.scanned = !older;
      this.o.logger?.info({ channels: this.signers.size, from: String(from), complete: this.complete }, "channel index built");
    } catch (e) {
      this.o.logger?.warn({ err: (e as Error).message?.split("\n")[0] }, "channel index scan failed; unknown channels are read from the chain within the read budget");
    }
  }
}
