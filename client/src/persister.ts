/**
 * Coalesces state saves: at most one save in flight, the latest state written after it, and at most one save per
 * `minIntervalMs` unless flushed. Losing the last few updates in a crash is safe by design: the client resynchronises
 * from the provider's signed `extra.channel` hint and the chain (paying/resync.ts applyHint, channels/book.ts verify).
 */
export class Persister {
  private running?: Promise<void>;
  private dirty = false;
  private urgent = false;
  private lastStart = 0;
  /** The error of the last failed save, cleared by the next successful one. */
  lastError?: unknown;

  constructor(
    private readonly saveFn: () => Promise<void>,
    private readonly minIntervalMs = 50,
    private readonly onError: (e: unknown) => void = () => {},
  ) {}

  /** Marks the state changed; a save follows soon. */
  schedule(): void {
    this.dirty = true;
    if (!this.running) this.running = this.loop();
  }

  /** Saves now (after any save in flight) and resolves when the current state is durable; throws the save's error. */
  async flush(): Promise<void> {
    this.urgent = true;
    this.schedule();
    while (this.running) await this.running;
    if (this.lastError) throw this.lastError;
  }

  private async loop(): Promise<void> {
    try {
      while (this.dirty) {
        const wait = this.lastStart + this.minIntervalMs - Date.now();
        if (wait > 0 && !this.urgent) await new Promise((r) => setTimeout(r, wait));
        this.dirty = false;
        this.urgent = false;
        this.lastStart = Date.now();
        try {
          await this.saveFn();
          this.lastError = undefined;
        } catch (e) {
          this.lastError = e;
          this.onError(e);
          return; // the next schedule() retries
        }
      }
    } finally {
      this.running = undefined;
    }
  }
}
