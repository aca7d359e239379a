/**
 * Voucher signature checks, on a worker thread when the server is busy.
 *
 * The public-key recovery (libsecp256k1, ~65 µs) is the largest single cost of a paid request, and the server's
 * main thread is its bottleneck under load. When several paid requests are in progress at once (the caller says
 * so), the recovery runs on a worker thread, on another core, while the main thread parses, accounts and answers
 * other requests. A lone request is checked inline: the thread hop would only add latency.
 *
 * The rules are the protocol's, unchanged: the signature is split and checked (v in {27, 28}, low s) by
 * `splitSignature`, the digest is computed on the main thread, the worker only runs `ecdsaRecover`, and the
 * recovered key is compared with the channel's signer by `VoucherVerifier.isSignerKey`.
 *
 * Transport: a ring of slots in shared memory per worker, not `postMessage`. A message costs the main thread about
 * as much as the recovery it would save (serialisation, wake-up, event dispatch: measured, no gain); here a check
 * costs the main thread a 97-byte copy, an `Atomics.notify` when the worker sleeps, and a poll of the slot's state,
 * done once per event-loop turn (`setImmediate`) while checks are outstanding. The worker sleeps in `Atomics.wait`
 * when its ring is empty.
 * If a worker fails, every outstanding and later check runs inline (logged once).
 *
 * Workers are never terminated from outside (`worker.terminate()`): one stopped inside the native recovery can abort
 * the whole process (node-addon-api throws into a terminating environment). Closing sets a stop flag instead; the
 * worker sees it between two recoveries and returns.
 */
import path from "node:path";
import { Worker } from "node:worker_threads";
import type { Address } from "viem";
import type { Logger } from "pino";
import { recoverSplitPublicKey, splitSignature, type SplitSignature, type Voucher, type VoucherVerifier } from "@paychan/protocol";

/** Slots per worker ring: more outstanding checks than this are checked inline. */
const SLOTS = 1024;
/** Bytes per request slot: digest (32) ‖ r ‖ s (64) ‖ recid (1). */
const IN = 97;
/** Bytes per answer slot: uncompressed public key (65). */
const OUT = 65;
/** Slot states (Int32 per slot). */
const SUBMITTED = 1;
const RECOVERED = 2;
const FAILED = 3;
/** Control array: the submission counter (the worker waits on it), whether the worker is (about to be) asleep, and a stop request. */
const HEAD = 0;
const SLEEPING = 1;
const STOP = 2;
/** Stop requests: return (close), or throw (tests: a worker that fails). */
const STOP_RETURN = 1;
const STOP_THROW = 2;

// The worker: takes slots in order, recovers each key with the native binding (path passed in, so resolution does
// not depend on the working directory), marks the slot, and sleeps when it has caught up with the main thread.
const WORKER_SOURCE = `
const { workerData } = require("node:worker_threads");
const secp = require(workerData.secp256k1);
const { control, states, input, output, slots } = workerData;
const ctl = new Int32Array(control), st = new Int32Array(states), inp = new Uint8Array(input), out = new Uint8Array(output);
let next = 0;
for (;;) {
  const stop = Atomics.load(ctl, ${STOP});
  if (stop === ${STOP_RETURN}) break;
  if (stop === ${STOP_THROW}) throw new Error("signature worker failing on request (test)");
  if (next === Atomics.load(ctl, ${HEAD})) {
    // Say so before sleeping, then look again: the main thread notifies only a worker that may be asleep, and
    // wait() returns at once if the counter moved in between.
    Atomics.store(ctl, ${SLEEPING}, 1);
    const head = Atomics.load(ctl, ${HEAD});
    if (next === head && Atomics.load(ctl, ${STOP}) === 0) Atomics.wait(ctl, ${HEAD}, head);
    Atomics.store(ctl, ${SLEEPING}, 0);
    continue;
  }
  const slot = next % slots, o = slot * ${IN};
  let state = ${FAILED};
  try {
    out.set(secp.ecdsaRecover(inp.subarray(o + 32, o + 96), inp[o + 96], inp.subarray(o, o + 32), false), slot * ${OUT});
    state = ${RECOVERED};
  } catch {}
  Atomics.store(st, slot, state);
  next = (next + 1) | 0;
}
`;

interface Outstanding {
  slot: number;
  digest: Uint8Array;
  split: SplitSignature;
  resolve: (pub: Uint8Array | null) => void;
}

/** One worker and its shared ring. */
interface Lane {
  worker: Worker;
  control: Int32Array;
  states: Int32Array;
  input: Uint8Array;
  output: Uint8Array;
  /** Submissions so far (mod 2^31); slot = head % SLOTS. */
  head: number;
  /** Submitted and not yet answered, oldest first (the worker answers in order). */
  outstanding: Outstanding[];
  /** Resolves when the worker thread has ended (however). */
  exited: Promise<void>;
}

export interface SignaturePoolOptions {
  verifier: VoucherVerifier;
  /** Worker threads (0: always inline). */
  threads: number;
  logger?: Logger;
}

/** Checks voucher signatures inline or on worker threads; see the file comment. */
export class SignaturePool {
  private readonly verifier: VoucherVerifier;
  private readonly logger?: Logger;
  private readonly lanes: Lane[] = [];
  private nextLane = 0;
  private polling = false;
  private broken = false;
  private closed = false;
  /** Checks sent to a worker so far. */
  offloaded = 0;

  constructor(o: SignaturePoolOptions) {
    this.verifier = o.verifier;
    this.logger = o.logger;
    const secp256k1 = path.dirname(require.resolve("secp256k1/package.json"));
    for (let i = 0; i < o.threads; i++) {
      const control = new SharedArrayBuffer(12);
      const states = new SharedArrayBuffer(4 * SLOTS);
      const input = new SharedArrayBuffer(IN * SLOTS);
      const output = new SharedArrayBuffer(OUT * SLOTS);
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { secp256k1, control, states, input, output, slots: SLOTS } });
      worker.unref(); // never keeps the process alive
      const exited = new Promise<void>((r) => worker.once("exit", () => r()));
      worker.on("error", (e) => this.fail(e));
      worker.on("exit", (code) => {
        if (!this.closed) this.fail(new Error(`signature worker exited with code ${code}`));
      });
      this.lanes.push({
        worker,
        control: new Int32Array(control),
        states: new Int32Array(states),
        input: new Uint8Array(input),
        output: new Uint8Array(output),
        head: 0,
        outstanding: [],
        exited,
      });
    }
  }

  /**
   * Whether `voucher` carries a valid signature of `signer` (the protocol's rules). Never rejects. With `offload`
   * (the caller has other requests in progress) the recovery runs on a worker, if there is one; else inline.
   */
  async verify(voucher: Voucher, signer: Address, offload: boolean): Promise<boolean> {
    if (!offload || this.lanes.length === 0 || this.broken) return this.verifier.verify(voucher, signer);
    const lane = this.lanes[this.nextLane];
    this.nextLane = (this.nextLane + 1) % this.lanes.length;
    if (lane.outstanding.length >= SLOTS) return this.verifier.verify(voucher, signer); // ring full
    const split = splitSignature(voucher.signature);
    if (split === null) return false;
    const digest = this.verifier.hasher.digestBytes(voucher.channelId, voucher.cumulativeAmount);
    const pub = await new Promise<Uint8Array | null>((resolve) => {
      const slot = lane.head % SLOTS;
      const o = slot * IN;
      lane.input.set(digest, o);
      lane.input.set(split.rs, o + 32);
      lane.input[o + 96] = split.recid;
      Atomics.store(lane.states, slot, SUBMITTED);
      lane.outstanding.push({ slot, digest, split, resolve });
      lane.head = (lane.head + 1) | 0;
      Atomics.store(lane.control, HEAD, lane.head);
      if (Atomics.load(lane.control, SLEEPING) === 1) Atomics.notify(lane.control, HEAD, 1); // a syscall: only when needed
      this.offloaded++;
      this.schedulePoll();
    });
    return pub !== null && this.verifier.isSignerKey(pub, signer);
  }

  private schedulePoll(): void {
    if (this.polling) return;
    this.polling = true;
    setImmediate(() => this.poll());
  }

  /** Answers the checks the workers have finished; polls again next turn while any are outstanding. */
  private poll(): void {
    this.polling = false;
    if (this.broken) return;
    let waiting = false;
    for (const lane of this.lanes) {
      let done = 0;
      for (const c of lane.outstanding) {
        const state = Atomics.load(lane.states, c.slot);
        if (state === SUBMITTED) break; // answered in order: the rest are not done either
        c.resolve(state === RECOVERED ? lane.output.slice(c.slot * OUT, (c.slot + 1) * OUT) : null);
        done++;
      }
      if (done) lane.outstanding.splice(0, done);
      if (lane.outstanding.length) waiting = true;
    }
    if (waiting) this.schedulePoll();
  }

  /** Outstanding checks (taken off the lanes), answered inline. */
  private drainInline(): void {
    for (const lane of this.lanes) {
      const pending = lane.outstanding;
      lane.outstanding = [];
      for (const c of pending) c.resolve(recoverSplitPublicKey(c.digest, c.split));
    }
  }

  /** A worker failed: everything outstanding and later runs inline. */
  private fail(e: Error): void {
    if (this.broken || this.closed) return;
    this.broken = true;
    this.logger?.error({ err: e.message }, "signature worker failed; checking signatures inline from now on");
    void this.close();
  }

  /** Tests: makes the workers fail (throw between two recoveries), as a crash would; resolves once they ended. */
  async crashWorkersForTest(): Promise<void> {
    this.stopWorkers(STOP_THROW);
    await Promise.all(this.lanes.map((l) => l.exited));
  }

  /** Stops the workers (between two recoveries: see the file comment); checks still outstanding are finished inline. */
  async close(): Promise<void> {
    const wasClosed = this.closed;
    this.closed = true;
    this.broken = true;
    this.drainInline();
    if (wasClosed) return;
    this.stopWorkers(STOP_RETURN);
    await Promise.all(this.lanes.map((l) => l.exited));
  }

  private stopWorkers(how: number): void {
    for (const lane of this.lanes) {
      if (Atomics.compareExchange(lane.control, STOP, 0, how) !== 0) continue;
      Atomics.notify(lane.control, HEAD);
    }
  }
}
