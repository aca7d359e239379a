/**
 * Group commit for SQLite: calls made while the event loop is busy are queued and applied together in ONE
 * transaction (one BEGIN IMMEDIATE / COMMIT, i.e. one WAL append) at the end of the current loop turn
 * (`setImmediate`). Every caller still gets its own result only after that transaction committed, so "durable
 * before the handler runs" holds exactly as with one transaction per call.
 *
 * Why: under concurrent paid load the commit, not the statements, dominates a voucher's accounting (about 90 µs
 * alone vs 35 µs batched, eight per commit, measured here with `synchronous=NORMAL`).
 *
 * Each item's decision is made inside the shared transaction on the rows as earlier items of the batch left them,
 * which is the same as running the calls one after the other in queue order. If the batch throws (a statement or
 * the commit failed), nothing of it was committed; each item is then retried alone in its own transaction, so one
 * bad item fails only its own caller.
 */
export class GroupCommit<I, R> {
  private queue: Array<{ input: I; resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;
  /** Transactions run so far (a batch counts once; its one-by-one retry counts each item). */
  transactions = 0;

  /**
   * @param one   runs one item in its own transaction
   * @param batch runs several items in one transaction, returning their results in order
   */
  constructor(
    private readonly one: (input: I) => R,
    private readonly batch: (inputs: readonly I[]) => R[],
  ) {}

  /** Queues `input`; resolves with its result once the transaction that holds it has committed. */
  submit(input: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Number of calls waiting for the next commit. */
  get pending(): number {
    return this.queue.length;
  }

  /** Applies everything queued now (also called by `close` so no caller is left waiting). */
  flush(): void {
    this.scheduled = false;
    const items = this.queue;
    if (items.length === 0) return;
    this.queue = [];
    if (items.length > 1) {
      let results: R[] | null = null;
      try {
        this.transactions++;
        results = this.batch(items.map((x) => x.input));
      } catch {
        results = null; // rolled back as a whole: fall through and run the items one by one
      }
      if (results) {
        for (let i = 0; i < items.length; i++) items[i].resolve(results[i]);
        return;
      }
    }
    for (const x of items) {
      try {
        this.transactions++;
        x.resolve(this.one(x.input));
      } catch (e) {
        x.reject(e);
      }
    }
  }
}
