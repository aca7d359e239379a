/**
 * Bounds the chain reads that requests about channels the server does not know can cause: a token bucket per source
 * (client IP; IPv6 by /64) and one for all sources together, each refilled at its rate per minute with a burst of the
 * same size. A read takes one token from both; when either is empty the read is not made (the caller waits for the
 * event follower's index, then refuses 503 `overloaded`). Channels in memory or in the store never take a token.
 */

export interface ReadBudgetOptions {
  /** Reads one source may cause per minute (also its burst). */
  perSource: number;
  /** Reads all sources together may cause per minute (also the burst). */
  global: number;
  /** Sources remembered at once (the oldest are forgotten first; a forgotten source starts full). Default 10,000. */
  maxSources?: number;
  /** Clock, ms (tests). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const PERIOD_MS = 60_000;

/** The key of a source: an IPv4 address as is (IPv4-mapped IPv6 unwrapped), an IPv6 address by its /64 prefix. */
export function sourceKey(source: string | undefined): string {
  if (!source) return "unknown";
  const s = source.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
  if (!s.includes(":")) return s;
  const [head, tail = ""] = s.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = s.includes("::") ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t] : h;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

/** Token buckets per source and overall; see the file comment. */
export class ReadBudget {
  private readonly sources = new Map<string, Bucket>();
  private readonly all: Bucket;
  private readonly now: () => number;
  private readonly maxSources: number;
  /** Reads refused so far (metrics, tests): `refusedPerSource + refusedGlobal`. */
  refused = 0;
  /** Reads refused because the source's own bucket was empty (whatever the global one held). */
  refusedPerSource = 0;
  /** Reads refused because only the global bucket was empty. */
  refusedGlobal = 0;

  constructor(private readonly o: ReadBudgetOptions) {
    if (!(o.perSource >= 1) || !(o.global >= 1)) throw new RangeError("read budgets must be at least 1 per minute");
    this.now = o.now ?? Date.now;
    this.maxSources = o.maxSources ?? 10_000;
    this.all = { tokens: o.global, at: this.now() };
  }

  private refill(b: Bucket, cap: number, now: number): void {
    b.tokens = Math.min(cap, b.tokens + ((now - b.at) * cap) / PERIOD_MS);
    b.at = now;
  }

  /** Takes one read for `source` (a client IP) if both its bucket and the global one allow; false otherwise. */
  take(source?: string): boolean {
    const now = this.now();
    const key = sourceKey(source);
    let b = this.sources.get(key);
    if (b) {
      this.sources.delete(key); // re-insert: most recently used last
      this.refill(b, this.o.perSource, now);
    } else {
      b = { tokens: this.o.perSource, at: now };
      if (this.sources.size >= this.maxSources) this.sources.delete(this.sources.keys().next().value as string);
    }
    this.sources.set(key, b);
    this.refill(this.all, this.o.global, now);
    if (b.tokens < 1 || this.all.tokens < 1) {
      this.refused++;
      if (b.tokens < 1) this.refusedPerSource++;
      else this.refusedGlobal++;
      return false;
    }
    b.tokens -= 1;
    this.all.tokens -= 1;
    return true;
  }
}
