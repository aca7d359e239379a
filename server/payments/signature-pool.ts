/**
 * Voucher signature checks, on a worker thread when the server is busy.
 *
 * The public-key recovery (libsecp256k1, ~70 µs) is the largest single cost of a paid request. When several paid
 * requests are in progress at once (the caller says so), recovering on a worker thread lets the main thread parse,
 * account and answer other requests meanwhile, on another core. A lone request is checked inline: the thread hop
 * (~50–80 µs of wake-up latency) would only slow it down.
 *
 * The rules are the protocol's, unchanged: the signature is split and checked (v in {27, 28}, low s) by
 * `splitSignature`, the digest is computed on the main thread, the worker only runs `ecdsaRecover`, and the
 * recovered key is compared with the channel's signer by `VoucherVerifier.isSignerKey`.
 *
 * Checks queued in one event-loop turn go to the worker in one message at the end of the turn, and checks queued
 * while it is busy go in one message when it answers: one transferred buffer each way per batch, because a
 * message costs the main thread about as much as a recovery when sent per request. If the worker fails, every pending and later check runs inline (logged once).
 */
import path from "node:path";
import { Worker } from "node:worker_threads";
import type { Address } from "viem";
import type { Logger } from "pino";
import { recoverSplitPublicKey, splitSignature, type SplitSignature, type Voucher, type VoucherVerifier } from "../../protocol";

/** Bytes per request in a batch: digest (32) ‖ r ‖ s (64) ‖ recid (1). */
const IN = 97;
/** Bytes per answer: ok flag (1) ‖ uncompressed public key (65). */
const OUT = 66;

// The worker: recovers each item's public key with the native binding (path passed in, so resolution does not
// depend on the working directory).
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const secp = require(workerData.secp256k1);
parentPort.on("message", ({ id, buf, n }) => {
  const input = new Uint8Array(buf);
  const out = new Uint8Array(n * ${OUT});
  for (let i = 0; i < n; i++) {
    const o = i * ${IN};
    try {
      const pub = secp.ecdsaRecover(input.subarray(o + 32, o + 96), input[o + 96], input.subarray(o, o + 32), false);
      out[i * ${OUT}] = 1;
      out.set(pub, i * ${OUT} + 1);
    } catch {
      out[i * ${OUT}] = 0;
    }
  }
  parentPort.postMessage({ id, buf: out.buffer }, [out.buffer]);
});
`;

interface Pending {
  digest: Uint8Array;
  split: SplitSignature;
  resolve: (pub: Uint8Array | null) => void;
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
  private readonly workers: Array<{ worker: Worker; busy: Pending[] | null; id: number }> = [];
  private queue: Pending[] = [];
  private broken = false;
  private scheduled = false;
  private closed = false;
  /** Checks sent to a worker so far. */
  offloaded = 0;

  constructor(o: SignaturePoolOptions) {
    this.verifier = o.verifier;
    this.logger = o.logger;
    const secp256k1 = path.dirname(require.resolve("secp256k1/package.json"));
    for (let i = 0; i < o.threads; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { secp256k1 } });
      worker.unref(); // never keeps the process alive
      const slot = { worker, busy: null as Pending[] | null, id: 0 };
      worker.on("message", (m: { id: number; buf: ArrayBuffer }) => this.answered(slot, m));
      worker.on("error", (e) => this.fail(e));
      worker.on("exit", (code) => {
        if (!this.closed) this.fail(new Error(`signature worker exited with code ${code}`));
      });
      this.workers.push(slot);
    }
  }

  /**
   * Whether `voucher` carries a valid signature of `signer` (the protocol's rules). Never rejects. With `offload`
   * (the caller has other requests in progress) the recovery runs on a worker, if there is one; else inline.
   */
  async verify(voucher: Voucher, signer: Address, offload: boolean): Promise<boolean> {
    if (!offload || this.workers.length === 0 || this.broken) return this.verifier.verify(voucher, signer);
    const split = splitSignature(voucher.signature);
    if (split === null) return false;
    const digest = this.verifier.hasher.digestBytes(voucher.channelId, voucher.cumulativeAmount);
    const pub = await new Promise<Uint8Array | null>((resolve) => {
      this.queue.push({ digest, split, resolve });
      // Send at the end of this loop turn, with every check queued meanwhile: one message per turn, not per request.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.dispatch();
        });
      }
    });
    return pub !== null && this.verifier.isSignerKey(pub, signer);
  }

  /** Sends everything queued to an idle worker, as one message. */
  private dispatch(): void {
    if (this.queue.length === 0) return;
    const slot = this.workers.find((w) => w.busy === null);
    if (!slot) return; // sent when a worker answers
    const batch = this.queue;
    this.queue = [];
    const buf = new Uint8Array(batch.length * IN);
    batch.forEach((p, i) => {
      buf.set(p.digest, i * IN);
      buf.set(p.split.rs, i * IN + 32);
      buf[i * IN + 96] = p.split.recid;
    });
    slot.busy = batch;
    slot.id++;
    this.offloaded += batch.length;
    slot.worker.postMessage({ id: slot.id, buf: buf.buffer, n: batch.length }, [buf.buffer]);
  }

  private answered(slot: { busy: Pending[] | null; id: number }, m: { id: number; buf: ArrayBuffer }): void {
    const batch = slot.busy;
    if (!batch || m.id !== slot.id) return;
    slot.busy = null;
    const out = new Uint8Array(m.buf);
    batch.forEach((p, i) => p.resolve(out[i * OUT] === 1 ? out.subarray(i * OUT + 1, (i + 1) * OUT) : null));
    this.dispatch();
  }

  /** A worker failed: everything pending and later runs inline. */
  private fail(e: Error): void {
    if (this.broken || this.closed) return;
    this.broken = true;
    this.logger?.error({ err: e.message }, "signature worker failed; checking signatures inline from now on");
    const pending = [...this.workers.flatMap((w) => w.busy ?? []), ...this.queue];
    this.queue = [];
    for (const w of this.workers) w.busy = null;
    for (const p of pending) p.resolve(recoverSplitPublicKey(p.digest, p.split));
    void this.close();
  }

  /** Tests: terminates the workers as a crash would (the pool must carry on inline). */
  async killWorkersForTest(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }

  /** Stops the workers; checks still pending are finished inline. */
  async close(): Promise<void> {
    const wasClosed = this.closed;
    this.closed = true;
    const pending = [...this.workers.flatMap((w) => w.busy ?? []), ...this.queue];
    this.queue = [];
    for (const w of this.workers) w.busy = null;
    for (const p of pending) p.resolve(recoverSplitPublicKey(p.digest, p.split));
    if (wasClosed) return;
    this.broken = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
