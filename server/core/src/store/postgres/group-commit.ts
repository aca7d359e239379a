/**
 * Group commit for PostgreSQL (the asynchronous sibling of `../sqlite/group-commit.ts`): accepts submitted while a
 * batch is being written are queued; at the end of the event-loop turn (`setImmediate`), and whenever one of at most
 * `maxInFlight` batches finishes, everything queued (up to `maxBatch`) goes out as ONE batch: one transaction, one
 * commit (one WAL flush). Every caller gets its own result only once the transaction holding its item committed.
 *
 * With a `key` (the channel of an accept), batches in flight never share a key: an item whose key is in a running
 * batch waits (in order) for the next one, and the items after it may go first. So a batch is always decided on
 * what the batches before it on its channels committed (./accept-cache.ts).
 *
 * If a batch throws (a statement, the commit, or retries exhausted), nothing of it was committed; its items are then
 * run again one by one, each in its own transaction, so one bad item fails only its own caller. An error without a
 * SQLSTATE while doing so (the database unreachable, a connection lost) fails the items still waiting with it at once
 * rather than making each wait for its own connection timeout.
 */
export class PgGroupCommit<I, R> {
  private queue: Array<Queued<I, R>> = [];
  private scheduled = false;
  private inFlight = 0;
  private idle: Array<() => void> = [];
  /** Keys of the batches in flight. */
  private readonly busy = new Set<string>();
  /** Transactions started so far for batches (a batch counts once; its one-by-one retry counts each item). */
  transactions = 0;

  /**
   * @param run          runs items in ONE transaction and returns their results in order (also called with one item)
   * @param maxInFlight  batches running at once (each holds one connection)
   * @param maxBatch     most items per batch
   * @param key          batches in flight never share a key (none: any item may go in any batch)
   */
  constructor(
    private readonly run: (inputs: readonly I[]) => Promise<R[]>,
    private readonly maxInFlight = 2,
    private readonly maxBatch = 256,
    private readonly key?: (input: I) => string,
  ) {}

  /** Queues `input`; resolves with its result once the transaction that holds it has committed. */
  submit(input: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.schedule();
    });
  }

  /** Calls waiting for a batch to start. */
  get pending(): number {
    return this.queue.length;
  }

  /** Resolves once nothing is queued or running (for close). */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.inFlight >= this.maxInFlight) return;
    this.scheduled = true;
    // The accepts submitted in this event-loop turn go together.
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Starts batches while there is room and something that may go. */
  private pump(): void {
    while (this.queue.length > 0 && this.inFlight < this.maxInFlight) {
      const items = this.take();
      if (items.length === 0) return; // every queued item waits for a running batch of its key
      const keys = this.key ? new Set(items.map((x) => this.key!(x.input))) : null;
      if (keys) for (const k of keys) this.busy.add(k);
      this.inFlight++;
      void this.runItems(items).then((outcomes) => {
        this.inFlight--;
        if (keys) for (const k of keys) this.busy.delete(k);
        // The next batch (what queued meanwhile) goes out before these callers' continuations run (they answer
        // their requests, which takes the thread a while): the database works while this process answers.
        this.pump();
        for (let i = 0; i < items.length; i++) {
          const o = outcomes[i];
          if (o.ok) items[i].resolve(o.value);
          else items[i].reject(o.error);
        }
        if (this.queue.length === 0 && this.inFlight === 0) for (const r of this.idle.splice(0)) r();
      });
    }
  }

  /** The next batch: queued items in order, up to `maxBatch`, skipping those whose key a running batch holds. */
  private take(): Array<Queued<I, R>> {
    if (!this.key || this.busy.size === 0) return this.queue.splice(0, this.maxBatch);
    const items: Array<Queued<I, R>> = [];
    const rest: Array<Queued<I, R>> = [];
    for (const x of this.queue) {
      if (items.length < this.maxBatch && !this.busy.has(this.key(x.input))) items.push(x);
      else rest.push(x);
    }
    this.queue = rest;
    return items;
  }

  /** Runs a batch (and, if it fails as a whole, each item alone); never throws. */
  private async runItems(items: ReadonlyArray<Queued<I, R>>): Promise<Array<Outcome<R>>> {
    try {
      this.transactions++;
      const results = await this.run(items.map((x) => x.input));
      return results.map((value) => ({ ok: true, value }));
    } catch (e) {
      if (items.length === 1) return [{ ok: false, error: e }];
    }
    // Rolled back as a whole: each item alone, in queue order.
    const outcomes: Array<Outcome<R>> = [];
    for (let i = 0; i < items.length; i++) {
      try {
        this.transactions++;
        outcomes.push({ ok: true, value: (await this.run([items[i].input]))[0] });
      } catch (e) {
        outcomes.push({ ok: false, error: e });
        if (!hasSqlState(e)) {
          for (let j = i + 1; j < items.length; j++) outcomes.push({ ok: false, error: e });
          break;
        }
      }
    }
    return outcomes;
  }
}

/** A submitted item and its caller. */
interface Queued<I, R> {
  input: I;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

/** What a caller gets. */
type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

/**
 * Whether `e` is an error PostgreSQL answered (a five-character SQLSTATE, which always has a digit, unlike Node's
 * errno codes such as EPIPE), as opposed to a connection failure.
 */
export function hasSqlState(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && /[0-9]/.test(code) && !code.startsWith("08") && !code.startsWith("57P");
}
