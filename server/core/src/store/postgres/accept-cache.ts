/**
 * What this process last knew of the channel rows it accepts on, with each row's version token (migration 5), so
 * that a batch of accepts can be decided in memory and written in ONE round trip: a single statement that commits
 * on its own, writing each row only if its token is still the one the batch planned on (./accept-batch.ts).
 *
 * The cache is only a guess: a wrong guess (another replica, the chain follower or the settlement job wrote the row)
 * costs one failed round trip, after which the batch runs the locking path, whose read the next batches plan on. A
 * channel whose guesses keep failing (replicas sharing it) is left to the locking path for a while (a backoff from
 * 25 ms, doubling, up to {@link MAX_BACKOFF_MS}). Batches of one process never run on the same channel at once
 * (./group-commit.ts keys), so a batch never plans on another's outcome still in flight.
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

  /**
   * A batch planned on `base` wrote nothing. Its entries go (unless replaced meanwhile); when the cause was a token
   * or used amount it did not expect (`guessFailed`) the channel also backs off.
   */
  failed(base: ReadonlyMap<string, CachedRow>, now: number, guessFailed: boolean): void {
    for (const [id, row] of base) {
      if (this.rows.get(id) !== row) continue; // a writer of this process changed it: that explains the failure
      this.rows.delete(id);
      if (!guessFailed) continue;
      const count = (this.strikes.get(id)?.count ?? 0) + 1;
      this.strikes.delete(id);
      this.strikes.set(id, { count, until: now + Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.min(count - 1, 20)) });
      if (this.strikes.size > this.maxRows) this.strikes.delete(this.strikes.keys().next().value!);
    }
  }

  /** A row as committed by a transaction of this process that held its lock (the locking path, a release). */
  observe(channel: StoredChannel, version: string): void {
    this.touch(channel.channelId.toLowerCase(), { channel, version });
  }

  /** Forgets channels another statement of this process is changing (their next batch takes the locking path). */
  forget(ids: Iterable<string>): void {
    for (const id of ids) this.rows.delete(id.toLowerCase());
  }

  /** (Re)inserts `id` as the most recently used, evicting the least recently used rows beyond the bound. */
  private touch(id: string, row: CachedRow): void {
    this.rows.delete(id);
    this.rows.set(id, row);
    if (this.rows.size > this.maxRows) this.rows.delete(this.rows.keys().next().value!);
  }
}
