/**
 * Follows the escrow's channel events from a persisted block cursor by polling `eth_getLogs` in bounded ranges.
 * Rather than replaying event arguments, it re-reads every channel the server knows that an event touched
 * (`getChannels` at the range's last block) and stores that snapshot together with the new cursor in one
 * transaction: idempotent, order-independent, and resumable after a restart from the stored cursor.
 *
 * At start, and every `refreshEvery` poll intervals, it also re-reads all active stored channels, which bounds any
 * divergence (e.g. a reorg below the cursor) to that period.
 *
 * With an `index` ({@link ChannelIndex}), it also keeps the index of channels opened to this payee: every
 * `ChannelOpened` log naming the payee is indexed and read in the same `getChannels` call into the view's memory, so
 * a new channel's first request needs no chain read of its own, and a stranger's random signer on it is refused from
 * memory.
 */
import type { Hex } from "viem";
import type { Logger } from "pino";
import type { ChannelRef } from "@paychan/protocol";
import type { ChannelStore } from "../store/types";
import type { BlockInfo, ChainReader } from "./reader";
import type { ChannelView } from "./view";
import type { ChannelIndex } from "./channel-index";

export interface EventFollowerOptions {
  reader: ChainReader;
  store: ChannelStore;
  view: ChannelView;
  /** Poll period, ms. */
  interval: number;
  /** Most blocks per getLogs. */
  blockRange: number;
  /** Blocks to stay behind the head. */
  confirmations: number;
  /** Full refresh of active channels every N poll intervals (0 = only at start). */
  refreshEvery?: number;
  logger?: Logger;
  /** The index of channels opened to the payee (scanned at start, then kept up; see the file comment). */
  index?: ChannelIndex;
  /** Called after each pass (metrics). */
  onPass?: (p: { head: bigint; cursor: bigint; ok: boolean }) => void;
}

export class EventFollower {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** The pass that starts after the running one (see {@link EventFollower.sync}). */
  private queued: Promise<void> | null = null;
  private stopped = false;
  private lastRefreshAt = Date.now();
  /** Callers of {@link EventFollower.nextPass} waiting for a pass that has not started yet. */
  private waiting: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private lastPassStartedAt = 0;
  private soon: NodeJS.Timeout | null = null;
  /** Last block processed. */
  cursor: bigint | null = null;
  /** Hash of the cursor block, when known (reorg detection). */
  cursorHash: Hex | undefined;
  /** Reorganisations handled. */
  reorgs = 0;
  /** Last head seen. */
  head: bigint | null = null;
  lastError: string | null = null;
  lastPassAt = 0;

  constructor(private readonly o: EventFollowerOptions) {}

  /** Blocks between the head and the cursor (null before the first pass). */
  lag(): bigint | null {
    if (this.head === null || this.cursor === null) return null;
    const l = this.head - this.cursor;
    return l > 0n ? l : 0n;
  }

  /** Loads the cursor, refreshes active channels, then polls every `interval` ms. Throws if the chain is unreachable. */
  async start(): Promise<void> {
    const stored = await this.o.store.getCursor();
    this.cursor = stored?.block ?? null;
    this.cursorHash = stored?.hash;
    await this.refreshActive();
    if (this.o.index) await this.startIndex();
    await this.sync();
    this.schedule();
  }

  /**
   * Scans the index up to the head; on a first start (no cursor yet) the cursor starts there too, so the passes cover
   * every later block and the index has no gap.
   */
  private async startIndex(): Promise<void> {
    const head = await this.o.reader.block();
    await this.o.index!.scan(head.number);
    if (this.cursor !== null) return;
    const target = head.number > BigInt(this.o.confirmations) ? head.number - BigInt(this.o.confirmations) : 0n;
    const hash = target === head.number ? head.hash : (await this.o.reader.block(target)).hash;
    await this.o.store.applyChainSnapshots([], { block: target, hash });
    this.cursor = target;
    this.cursorHash = hash;
  }

  private schedule() {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.sync()
        .catch(() => undefined)
        .finally(() => this.schedule());
    }, this.o.interval);
    this.timer.unref?.();
  }

  /** Re-reads every active stored channel at the head. */
  async refreshActive(): Promise<void> {
    const head = await this.o.reader.block();
    this.o.view.observeHead(head);
    const refs = await this.knownChannels();
    if (refs.length === 0) return;
    const snaps = await this.o.reader.readChannels(refs, head.number);
    await this.o.store.applyChainSnapshots(snaps);
    const now = this.o.view.chainNow();
    for (const s of snaps) this.o.view.apply(s, now);
  }

  /** Active stored channels and those in memory, once each, with their signers (the escrow reads need both). */
  private async knownChannels(): Promise<ChannelRef[]> {
    const byId = new Map<string, ChannelRef>();
    for (const r of [...(await this.o.store.activeChannels()), ...this.o.view.tracked()]) byId.set(r.channelId.toLowerCase(), r);
    return [...byId.values()];
  }

  /**
   * One pass: catch up from the cursor to `head - confirmations`, with a head read after this call. A pass already
   * running may have read the head before the call, so the call then waits for it and for one more pass, which every
   * call made meanwhile shares. Resolves when caught up; rejects (and records `lastError`) when the chain fails.
   */
  sync(): Promise<void> {
    if (!this.running) {
      this.running = this.pass().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.stopped ? undefined : this.sync();
      });
    return this.queued;
  }

  /**
   * After a reorg below the cursor (the head is behind it, or the cursor block's hash changed): forget the cache,
   * re-read every known channel at the new head and force that state into the store with the new cursor. A full
   * re-read supersedes replaying the reorganised range.
   */
  private async resync(head: BlockInfo, target: bigint): Promise<void> {
    this.o.logger?.warn({ cursor: String(this.cursor), head: String(head.number) }, "chain reorganisation below the cursor: re-reading all channels");
    const refs = await this.knownChannels();
    const snaps = refs.length ? await this.o.reader.readChannels(refs, head.number) : [];
    const hash = target === head.number ? head.hash : (await this.o.reader.block(target)).hash;
    await this.o.store.applyChainSnapshots(snaps, { block: target, hash }, { force: true });
    this.o.view.clear();
    this.o.view.observeHead(head, true);
    const now = this.o.view.chainNow();
    for (const s of snaps) this.o.view.apply(s, now);
    this.cursor = target;
    this.cursorHash = hash;
    this.reorgs++;
  }

  /**
   * Resolves when a pass that starts after this call has completed (rejects with its error if it fails). It starts
   * one at most every `minGap` ms (the scheduled passes count too), so any number of callers causes at most one pass
   * per `minGap`: the index of channels opened to the payee is then current for every block mined before the call.
   */
  nextPass(minGap = 250): Promise<void> {
    if (this.stopped) return Promise.reject(new Error("the event follower is stopped"));
    const p = new Promise<void>((resolve, reject) => this.waiting.push({ resolve, reject }));
    if (!this.soon) {
      const wait = Math.max(0, this.lastPassStartedAt + minGap - Date.now());
      this.soon = setTimeout(() => {
        this.soon = null;
        if (this.waiting.length && !this.stopped) this.sync().catch(() => undefined);
      }, wait);
      this.soon.unref?.();
    }
    return p;
  }

  private async pass(): Promise<void> {
    const started = this.o.view.chainNow();
    this.lastPassStartedAt = Date.now();
    const waiters = this.waiting.splice(0);
    try {
      if (this.o.refreshEvery && Date.now() - this.lastRefreshAt >= this.o.refreshEvery * this.o.interval) {
        this.lastRefreshAt = Date.now();
        await this.refreshActive();
      }
      const headBlock = await this.o.reader.block();
      this.o.view.observeHead(headBlock);
      this.head = headBlock.number;
      let target = headBlock.number - BigInt(this.o.confirmations);
      if (target < 0n) target = 0n;
      if (this.cursor === null) {
        // First start: earlier history is covered by reading each channel when first seen.
        this.cursor = target;
        this.cursorHash = target === headBlock.number ? headBlock.hash : (await this.o.reader.block(target)).hash;
        await this.o.store.applyChainSnapshots([], { block: this.cursor, hash: this.cursorHash });
      } else if (this.cursor > target) {
        await this.resync(headBlock, target);
      } else if (this.cursorHash) {
        const at = this.cursor === headBlock.number ? headBlock : await this.o.reader.block(this.cursor);
        if (at.hash !== this.cursorHash) await this.resync(headBlock, target);
      }
      let cursor: bigint = this.cursor;
      while (cursor < target && !this.stopped) {
        const from: bigint = cursor + 1n;
        const last: bigint = from + BigInt(this.o.blockRange) - 1n;
        const to: bigint = last < target ? last : target;
        const logs = await this.o.reader.channelLogs(from, to);
        const relevant = new Map<string, ChannelRef>();
        for (const l of logs) {
          if (relevant.has(l.channelId)) continue;
          const known = this.o.view.cached(l.channelId) ?? (await this.o.store.getChannel(l.channelId));
          if (l.opened) this.o.index?.add(l.channelId, l.opened.payee, l.opened.signer);
          if (known) relevant.set(l.channelId, { channelId: known.channelId, signer: known.signer });
          else if (l.opened && this.o.index?.signerOf(l.channelId)) relevant.set(l.channelId, { channelId: l.channelId, signer: l.opened.signer });
        }
        const snaps = relevant.size ? await this.o.reader.readChannels([...relevant.values()], to) : [];
        // The hash of the range's last block lets the next pass notice a reorg below the cursor.
        const hash = to === headBlock.number ? headBlock.hash : to === target ? (await this.o.reader.block(to)).hash : undefined;
        await this.o.store.applyChainSnapshots(snaps, { block: to, hash });
        for (const s of snaps) this.o.view.apply(s);
        if (snaps.length) this.o.logger?.debug({ from: String(from), to: String(to), channels: snaps.length }, "chain updates applied");
        this.cursor = cursor = to;
        this.cursorHash = hash;
      }
      this.o.view.lastSyncAt = started;
      this.lastPassAt = Date.now();
      this.lastError = null;
      this.o.onPass?.({ head: this.head, cursor, ok: true });
      for (const w of waiters) w.resolve();
    } catch (e) {
      for (const w of waiters) w.reject(e);
      this.lastError = e instanceof Error ? e.message.split("\n")[0] : String(e);
      this.o.logger?.warn({ err: this.lastError }, "chain follower pass failed");
      this.o.onPass?.({ head: this.head ?? 0n, cursor: this.cursor ?? 0n, ok: false });
      throw e;
    }
  }

  /** Stops polling and waits for a running pass. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.soon) clearTimeout(this.soon);
    for (const w of this.waiting.splice(0)) w.reject(new Error("the event follower is stopped"));
    await this.running?.catch(() => undefined);
    await this.queued?.catch(() => undefined);
  }
}
