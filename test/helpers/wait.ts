/**
 * Waiting for the condition a test means (a store row, a counter, a chain state), not for a fixed time: the suite runs
 * on busy machines (two copies of `npm test` on two cores), where any fixed sleep or tight deadline is a coin toss.
 *
 * ```ts
 * await until(async () => (await store.getChannel(id))!.spent === charged, "the release to be committed");
 * ```
 */

/** The default deadline: generous, it only bounds how long a broken behaviour takes to fail. */
export const WAIT_MS = 60_000;

/**
 * Resolves once `cond()` is true, polling every `everyMs`; rejects with `timed out after … waiting for <what>` when
 * `timeoutMs` passes first (a deadline that only turns a hang into a failure: make it far above the normal wait).
 */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = WAIT_MS, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Milliseconds `f` took, with its result. */
export async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await f();
  return { ms: performance.now() - t0, value };
}
