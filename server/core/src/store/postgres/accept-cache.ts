/**
 * What this process last knew of the channel rows it accepts on, with each row's version token (migration 5), so
 * that a batch of accepts can be decided in memory and written in ONE round trip: a single statement that commits
 * on its own, writing each row only if its token is still the one the batch planned on (./accept-batch.ts).
 *
 * The cache is only a guess: a wrong guess (another replica, the chain follower or the settlement job wrote the row)
 * costs one failed round trip, after which the batch runs the locking path, whose read the next batches plan on. A
 * channel whose row another writer changed behind the guess (replicas sharing it) is left to the locking path for a
 * while (a backoff from 25 ms, doubling, up to {@link MAX_BACKOFF_MS}); a used amount sent again is not a stale guess
 * and backs nothing off. Batches of one process never run on the same channel at once (./group-commit.ts keys), so a
 * batch never plans on another's outcome still in flight.
 *
 * Writers of this process report the rows they committed ({@link AcceptCache.observe}) with the {@link
 * AcceptCache.clock} read before they started: when two reports on a channel overlap, neither is known to be the
 * newer, so the channel is dropped (its next batch locks and reads it) rather than left older than the database.
 */
import { randomBytes } from "node:crypto";
import type { StoredChannel } from "../types";

/** Longest time a channel whose one-round-trip writes keep failing is left to the locking path. */
export const MAX_BACKOFF_MS = 5_000;
const FIRST_BACKOFF_MS = 25;

/** One row as this process last committed or read it. */
export interface CachedRow {
  readonly channel: StoredChannel;
  /** The row's version token (decimal). */
  readonly version: string;
}

/** A fresh random version token: 62 bits, positive. */
export function newVersion(): string {
  return (randomBytes(8).readBigUInt64BE() >> 2n).toString(10);
}

/** The rows (by lowercase channel id) that one-round-trip batches plan on; see the file comment. */
export class AcceptCache {
  private readonly rows = new Map<string, CachedRow>();
  /** Per channel: consecutive failed guesses, and until when (unix ms) it takes the locking path. */
  private readonly strikes = new Map<string, { count: number; until: number }>();
  /** Per channel: the {@link clock} of the last report or forget (bounded: the oldest go, as if long ago). */
  private readonly touched = new Map<string, number>();
  private ticks = 0;

  /** @param maxRows  rows kept (the least recently used go first) */
  constructor(private readonly maxRows = 10_000) {}

  /** Rows held. */
  get size(): number {
    return this.rows.size;
  }

  /** The rows to plan `ids` on (lowercase), or null when one is unknown or backing off. */
  lookup(ids: readonly string[], now: number): Map<string, CachedRow> | null {
    const out = new Map<string, CachedRow>();
    for (const id of ids) {
      const row = this.rows.get(id);
      if (!row) return null;
      const s = this.strikes.get(id);
      if (s && s.until > now) return null;
      out.set(id, row);
    }
    return out;
  }

  /**
   * A batch planned on `base` committed, leaving each channel as in `planned` with token `next`. An entry replaced
   * meanwhile (by {@link observe}: a writer of this process that committed after the batch) stays.
   */
  committed(base: ReadonlyMap<string, CachedRow>, planned: ReadonlyMap<string, StoredChannel>, next: ReadonlyMap<string, string>): void {
    for (const [id, row] of base) {
      this.strikes.delete(id);
      const channel = planned.get(id);
      const version = next.get(id);
      if (!channel || version === undefined) throw new Error(`batch plan lacks channel ${id}`);
      if (this.rows.get(id) === row) this.touch(id, { channel, version });
    }
  }

  /** A batch planned on `base` wrote nothing: its entries go (unless replaced meanwhile). */
  failed(base: ReadonlyMap<string, CachedRow>): void {
    for (const [id, row] of base) if (this.rows.get(id) === row) this.rows.delete(id);
  }

  /**
   * Channels whose row another writer changed behind a guess (the locking path read another token than the one
   * the failed batch expected): they take the locking path for a while, longer each time in a row.
   */
  strike(ids: Iterable<string>, now: number): void {
    for (const id of ids) {
      const count = (this.strikes.get(id)?.count ?? 0) + 1;
      this.strikes.delete(id);
      this.strikes.set(id, { count, until: now + Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.min(count - 1, 20)) });
      if (this.strikes.size > this.maxRows) this.strikes.delete(this.strikes.keys().next().value!);
    }
  }

  /** The current tick: read it before a write whose committed row will be reported to {@link observe}. */
  clock(): number {
    return ++this.ticks;
  }

  /**
   * A row as committed by a transaction of this process that held its lock (the locking path, a release), which
   * started at tick `since`. If another report or forget on the channel came after `since`, the two overlap and
   * neither is known to be the newer: the channel is dropped instead.
   */
  observe(channel: StoredChannel, version: string, since: number): void {
    const id = channel.channelId.toLowerCase();
    const overlap = (this.touched.get(id) ?? 0) > since;
    this.mark(id);
    if (overlap) this.rows.delete(id);
    else this.touch(id, { channel, version });
  }

  /** Forgets channels another statement of this process is changing (their next batch takes the locking path). */
  forget(ids: Iterable<string>): void {
    for (const raw of ids) {
      const id = raw.toLowerCase();
      this.mark(id);
      this.rows.delete(id);
    }
  }

  private mark(id: string): void {
    this.touched.delete(id);
    this.touched.set(id, ++this.ticks);
    if (this.touched.size > this.maxRows) this.touched.delete(this.touched.keys().next().value!);
  }

  /** (Re)inserts `id` as the most recently used, evicting the least recently used rows beyond the bound. */
  private touch(id: string, row: CachedRow): void {
    this.rows.delete(id);
    this.rows.set(id, row);
    if (this.rows.size > this.maxRows) this.rows.delete(this.rows.keys().next().value!);
  }
}
