/**
 * The server's view of escrow channels: memory, then the store, then one chain read (deduplicated per channel).
 * Kept current by the {@link EventFollower}; snapshots carry the block they were read at and a newer one always wins.
 *
 * The escrow names a channel by (id, signer): a channel neither in memory nor in the store is read with the signer
 * the caller recovered from the voucher (or close request). Unknown ids, and known ids asked for with a signer that
 * is not the channel's, are remembered for a short time, so random ids or signatures cannot turn every request into
 * an RPC call. Such "signer mismatch" snapshots (signer zero, no money) are never cached as the channel nor stored.
 * The memory cache is bounded; evicted channels are found again in the store (or re-read from the chain).
 *
 * A channel neither in memory nor in the store is looked up in the index of channels opened to this payee
 * ({@link ChannelView.index}, chain/channel-index.ts): an indexed one is read with its indexed signer. Other reads are
 * bounded per source and overall ({@link ReadBudget}); over the bound, the view waits for one follower pass that
 * starts after the request arrived, then answers from the index: the channel if it was opened meanwhile, null
 * (`unknown_channel`) when the index is complete and current, else `overloaded` (503, Retry-After), never a read.
 */
import { zeroAddress, type Address, type Hex } from "viem";
import { isSignerMismatch, ServiceError, type ChannelRef } from "@paychan/protocol";
import type { ChainChannel, ChannelStore } from "../store/types";
import type { BlockInfo, ChainReader } from "./reader";
import type { ReadBudget } from "./read-budget";

export interface ChannelViewOptions {
  reader: ChainReader;
  store: ChannelStore;
  /** How long an unknown id is remembered, ms. */
  unknownTtl?: number;
  /** Most channels kept in memory. */
  maxCached?: number;
  /** Bounds the chain reads of unknown channels per source and overall (none when absent). */
  budget?: ReadBudget;
}

/** What the view asks of the channel index and its follower (provider/index.ts wires both). */
export interface ViewIndex {
  /** The signer of a channel opened to this payee, if indexed. */
  signerOf(channelId: Hex): Address | undefined;
  /** Resolves once a follower pass that started after the call has completed (rejects with its error if it failed). */
  sync(): Promise<void>;
  /** The index is complete and the follower's cursor is at the head it last read (lag 0). */
  current(): boolean;
}

export class ChannelView {
  readonly reader: ChainReader;
  private readonly store: ChannelStore;
  private readonly mem = new Map<string, ChainChannel>();
  private readonly readAt = new Map<string, number>();
  /** Negative answers until a time (ms): key `id` (unknown id, null) or `id:signer` (signer mismatch snapshot). */
  private readonly unknown = new Map<string, { until: number; snap: ChainChannel | null }>();
  private readonly inflight = new Map<string, Promise<ChainChannel | null>>();
  private readonly unknownTtl: number;
  private readonly maxCached: number;
  /** Chain time (s, {@link chainNow}) when the follower last reached the head; all cached channels were current then. */
  lastSyncAt = 0;
  /** The index of channels opened to this payee, with the follower that keeps it (set by the provider). */
  index?: ViewIndex;
  private readonly budget?: ReadBudget;
  /** Latest block seen and when (local ms), for chain time. */
  private head: { block: BlockInfo; seenAt: number } | null = null;

  constructor(opts: ChannelViewOptions) {
    this.reader = opts.reader;
    this.store = opts.store;
    this.unknownTtl = opts.unknownTtl ?? 2_000;
    this.maxCached = opts.maxCached ?? 100_000;
    this.budget = opts.budget;
  }

  /** Cached snapshot, without any I/O. */
  cached(channelId: Hex): ChainChannel | undefined {
    return this.mem.get(channelId.toLowerCase());
  }

  /** Whether the id is in memory (the follower refreshes those). */
  isTracked(channelId: Hex): boolean {
    return this.mem.has(channelId.toLowerCase());
  }

  /** Channels held in memory, with their signers (the escrow names a channel by both). */
  tracked(): ChannelRef[] {
    return [...this.mem.values()].map((c) => ({ channelId: c.channelId, signer: c.signer }));
  }

  /** Latest head block the server saw. */
  headBlock(): BlockInfo | null {
    return this.head?.block ?? null;
  }

  /** Records a head block (the follower calls this every pass). */
  observeHead(block: BlockInfo, reorg = false): void {
    if (reorg || !this.head || block.number >= this.head.block.number) this.head = { block, seenAt: Date.now() };
  }

  /**
   * Current chain time (s), conservatively: the later of the local clock and the last head's timestamp plus the
   * time elapsed since it was seen. A chain whose clock runs ahead (or was moved) is honoured; a stale head is not
   * taken as "earlier than now".
   */
  chainNow(): number {
    const local = Math.floor(Date.now() / 1000);
    if (!this.head) return local;
    const fromChain = this.head.block.timestamp + Math.floor((Date.now() - this.head.seenAt) / 1000);
    return Math.max(local, fromChain);
  }

  /** Chain time (s) of the last confirmation of this channel against the chain (0 = never). */
  confirmedAt(channelId: Hex): number {
    return Math.max(this.lastSyncAt, this.readAt.get(channelId.toLowerCase()) ?? 0);
  }

  /** Forgets every cached channel (after a reorg: block numbers no longer order snapshots). */
  clear(): void {
    this.mem.clear();
    this.readAt.clear();
    this.unknown.clear();
  }

  /** Takes a snapshot if it is at least as new as what memory holds. */
  apply(s: ChainChannel, confirmedAt?: number): void {
    const id = s.channelId.toLowerCase();
    const cur = this.mem.get(id);
    if (cur && cur.block > s.block) return;
    if (cur) this.mem.delete(id); // re-insert: most recently used last
    this.mem.set(id, s);
    if (confirmedAt !== undefined) this.readAt.set(id, confirmedAt);
    this.unknown.delete(id);
    if (this.mem.size > this.maxCached) {
      const oldest = this.mem.keys().next().value as string;
      this.mem.delete(oldest);
      this.readAt.delete(oldest);
    }
  }

  /** A remembered negative answer for `key`, or undefined. */
  private negative(key: string): { snap: ChainChannel | null } | undefined {
    const n = this.unknown.get(key);
    if (n === undefined) return undefined;
    if (n.until > Date.now()) return n;
    this.unknown.delete(key);
    return undefined;
  }

  /**
   * The channel: memory, then store, then a chain read with the signer `signer()` gives (called only then; null, e.g.
   * an unrecoverable signature, reads with the zero address, which no channel has). Null when the escrow does not
   * know the id; a snapshot whose signer is the zero address ({@link isSignerMismatch}) when it knows the id but the
   * signer is not the channel's. Throws `upstream_unavailable` when the chain must be read and cannot be, and
   * `overloaded` when `source` (a client IP) or all sources are over their read budget and the follower's index does
   * not know the channel either.
   */
  async get(channelId: Hex, signer: () => Address | null, source?: string): Promise<ChainChannel | null> {
    const id = channelId.toLowerCase() as Hex;
    const hit = this.mem.get(id);
    if (hit) return hit;
    if (this.negative(id)) return null;
    const stored = await this.store.getChannel(id);
    if (stored) {
      const { payerCloseRequestedAt: _p, accepted: _a, acceptedSignature: _s, spent: _sp, floor: _f, createdAt: _c, updatedAt: _u, ...chain } = stored;
      this.apply(chain);
      return this.mem.get(id) ?? chain;
    }
    // A channel opened to this payee: read with its own signer (a stranger's signer never causes another read).
    const indexed = this.index?.signerOf(id);
    if (indexed) return this.refresh(id, indexed);
    const who = signer() ?? zeroAddress;
    const known = this.negative(`${id}:${who.toLowerCase()}`);
    if (known) return known.snap;
    if (!this.budget || this.budget.take(source)) return this.refresh(id, who);
    if (this.index) {
      // Over the read budget: let the follower pass the block this request could depend on, then ask the index.
      await this.index.sync(); // a failed pass throws: the chain is unreachable (upstream_unavailable)
      const hit = this.mem.get(id);
      if (hit) return hit;
      const opened = this.index.signerOf(id);
      if (opened) return this.refresh(id, opened);
      if (this.index.current()) return null;
    }
    throw new ServiceError("overloaded", "too many reads of channels this server does not know; try again shortly");
  }

  /**
   * Reads the channel `(channelId, signer)` from the chain now (deduplicated), updating memory and, if stored, the
   * store. A signer mismatch is returned (and remembered for a short time) but neither cached as the channel nor stored.
   */
  refresh(channelId: Hex, signer: Address): Promise<ChainChannel | null> {
    const id = channelId.toLowerCase() as Hex;
    const key = `${id}:${signer.toLowerCase()}`;
    const known = this.negative(key);
    if (known) return Promise.resolve(known.snap);
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const p = (async () => {
      try {
        const c = await this.reader.readChannel(id, signer);
        const now = Date.now();
        const confirmed = this.chainNow();
        if (!c || isSignerMismatch(c)) {
          if (this.unknownTtl > 0) {
            if (this.unknown.size >= 10_000) this.unknown.clear();
            this.unknown.set(c ? key : id, { until: now + this.unknownTtl, snap: c });
          }
          return c;
        }
        await this.store.applyChainSnapshots([c]); // updates the row only if the channel is stored
        this.apply(c, confirmed);
        return this.mem.get(id) ?? c;
      } finally {
        this.inflight.delete(key);
      }
    })();
    this.inflight.set(key, p);
    return p;
  }
}
