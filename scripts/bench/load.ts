/**
 * The load generator of `npm run bench` (HTTP section), run as a SECOND process so the server's core is its own:
 * autocannon against a route for a fixed duration with C connections (= requests in flight), after a warm-up;
 * several runs in sequence, one process.
 *
 * Paid runs send a distinct, pre-signed voucher with every request: voucher i is `(start + i) × price` on the given
 * channel, signed and encoded before the clock starts (`count` of them); the k-th request built takes the k-th
 * voucher, so requests in flight carry consecutive amounts (docs/protocol.md § 7). If the pre-signed vouchers run
 * out, further ones are signed on the fly and the result says so (`signedDuringRun`).
 *
 * Input: one JSON argument ({@link LoadSpec}). Output: one JSON line `{ results: LoadResult[], vouchersUsed }` on stdout.
 * Latency is taken from autocannon's per-response timing (hrtime, µs resolution), 2xx responses only.
 */
import fs from "node:fs";
import { type Address, type Hex } from "viem";
import {
  decodePaymentRequired,
  encodePaymentSignature,
  escrowDomain,
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_SIGNATURE,
  VoucherSigner,
  X402_VERSION,
} from "@paychan/protocol";

/** The part of autocannon's API used here (the package ships no types). */
interface AutocannonInstance {
  on(event: "response", fn: (client: unknown, statusCode: number, bytes: number, responseTime: number) => void): void;
}
type Autocannon = (
  opts: Record<string, unknown>,
  cb: (err: Error | null, result: { errors: number; timeouts: number }) => void,
) => AutocannonInstance;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require("autocannon") as Autocannon;

/** What to run: `runs` in order against one server, each `warmup` + `duration` seconds. */
export interface LoadSpec {
  url: string;
  /**
   * Several replicas of one server (the first is `url`): each run's connections are split over them (connection k to
   * replica k mod n) and the vouchers come from one sequence; CPU is summed over `serverPids`.
   */
  urls?: string[];
  /** The replicas' pids (with `urls`). */
  serverPids?: number[];
  /** Measured seconds per run. */
  duration: number;
  /** Seconds of unmeasured load before each run (JIT, connections, the first chain read). */
  warmup: number;
  runs: Array<{ label: string; path: string; connections: number; paid: boolean }>;
  /** The server's pid: its CPU time per request is read from /proc during each measured run (Linux). */
  serverPid?: number;
  /** The channel paid runs use (required when a run is paid). */
  voucher?: {
    chainId: number;
    escrow: Address;
    channelId: Hex;
    signerKey: Hex;
    /** Atomic units per call. */
    price: string;
    /** Vouchers already used on this server: the first voucher is `(start + 1) × price`. */
    start: number;
    /** Vouchers to pre-sign before a paid run when no unpaid run at the same concurrency came before it. */
    presign: number;
  };
}

export interface LoadResult {
  label: string;
  /** 2xx responses in the measured period. */
  ok: number;
  /** 2xx per second. */
  rps: number;
  /** Latency of 2xx responses, ms. */
  p50: number;
  p99: number;
  /** Status code → count (measured period). */
  statuses: Record<string, number>;
  errors: number;
  /** Server CPU time (user + system) per 2xx response during the measured run, µs; null when /proc is unavailable. */
  serverCpuUs: number | null;
  /** This load generator's own CPU time per 2xx response during the measured run, µs (≥ ~1,000,000 / rps: it was the bottleneck). */
  loadCpuUs: number | null;
  /** Vouchers signed during the run because the pre-signed ones ran out (CPU taken from the load generator). */
  signedDuringRun: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** utime + stime of `pid` in µs (from /proc/<pid>/stat), or null. */
function cpuOf(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
    return (ticks * 1e6) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU of all the server processes, µs (null when one is unreadable). */
function cpuOfAll(pids: number[]): number | null {
  if (pids.length === 0) return null;
  let total = 0;
  for (const pid of pids) {
    const c = cpuOf(pid);
    if (c === null) return null;
    total += c;
  }
  return total;
}

/** {@link runOne} against every url at once, the connections split over them; one merged result. */
async function run(urls: string[], path: string, connections: number, seconds: number, record: boolean, next: (() => string) | null) {
  const parts = await Promise.all(
    urls
      .map((u, i) => ({ u, c: Math.floor(connections / urls.length) + (i < connections % urls.length ? 1 : 0) }))
      .filter((x) => x.c > 0)
      .map((x) => runOne(x.u, path, x.c, seconds, record, next)),
  );
  if (parts.length === 1) return parts[0];
  const statuses: Record<string, number> = {};
  for (const p of parts) for (const [k, n] of Object.entries(p.statuses)) statuses[k] = (statuses[k] ?? 0) + n;
  const lat = new Float64Array(parts.reduce((a, p) => a + p.lat.length, 0));
  let o = 0;
  for (const p of parts) {
    lat.set(p.lat, o);
    o += p.lat.length;
  }
  return { lat, statuses, errors: parts.reduce((a, p) => a + p.errors, 0) };
}

function runOne(url: string, path: string, connections: number, seconds: number, record: boolean, next: (() => string) | null) {
  return new Promise<{ lat: Float64Array; statuses: Record<string, number>; errors: number }>((resolve, reject) => {
    const lat = new Float64Array(4_000_000);
    let n = 0;
    const statuses: Record<string, number> = {};
    const request: Record<string, unknown> = { method: "GET", path };
    if (next) {
      request.setupRequest = (req: { headers?: Record<string, string> }) => ({ ...req, headers: { ...(req.headers ?? {}), [HEADER_PAYMENT_SIGNATURE]: next() } });
    }
    const inst = autocannon({ url, connections, duration: seconds, pipelining: 1, requests: [request] }, (err, result) => {
      if (err) return reject(err);
      resolve({ lat: lat.subarray(0, n), statuses, errors: result.errors + result.timeouts });
    });
    inst.on("response", (_client, statusCode, _bytes, responseTime) => {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      if (record && statusCode >= 200 && statusCode < 300 && n < lat.length) lat[n++] = responseTime;
    });
  });
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]) as LoadSpec;
  const urls = spec.urls?.length ? spec.urls : [spec.url];
  const pids = spec.serverPids?.length ? spec.serverPids : spec.serverPid ? [spec.serverPid] : [];
  const v = spec.voucher;
  let used = v?.start ?? 0;
  let encode: ((i: number) => string) | null = null;
  if (spec.runs.some((r) => r.paid)) {
    if (!v) throw new Error("paid runs need `voucher`");
    const paidPath = spec.runs.find((r) => r.paid)!.path;
    const challenge = await fetch(`${spec.url}${paidPath}`);
    await challenge.arrayBuffer();
    const header = challenge.headers.get(HEADER_PAYMENT_REQUIRED);
    if (challenge.status !== 402 || !header) throw new Error(`expected a 402 from ${paidPath}, got ${challenge.status}`);
    const terms = decodePaymentRequired(header).accepts[0];
    const accepted = { ...terms, extra: { ...terms.extra } };
    delete accepted.extra.channel;
    const signer = new VoucherSigner(v.signerKey, escrowDomain(v.chainId, v.escrow));
    const price = BigInt(v.price);
    encode = (i: number) => encodePaymentSignature({ x402Version: X402_VERSION, accepted, payload: signer.sign(v.channelId, BigInt(i + 1) * price) });
  }

  const results: LoadResult[] = [];
  const unpaidRps = new Map<number, number>();
  for (const r of spec.runs) {
    let next: (() => string) | null = null;
    let signedDuringRun = 0;
    if (r.paid) {
      // Enough for the run at the unpaid rate (paid cannot be faster), plus margin; signed before the clock starts.
      const expected = unpaidRps.get(r.connections);
      const count = expected ? Math.ceil(expected * (spec.warmup + spec.duration) * 1.25) + 2_000 : v!.presign;
      const first = used;
      const pre: string[] = new Array(count);
      for (let i = 0; i < count; i++) pre[i] = encode!(first + i);
      next = () => {
        const i = used++;
        if (i - first < pre.length) return pre[i - first];
        signedDuringRun++;
        return encode!(i);
      };
    }
    if (spec.warmup > 0) await run(urls, r.path, r.connections, spec.warmup, false, next);
    signedDuringRun = 0;
    const cpu0 = cpuOfAll(pids);
    const own0 = process.cpuUsage();
    const m = await run(urls, r.path, r.connections, spec.duration, true, next);
    const own = process.cpuUsage(own0);
    const cpu1 = cpuOfAll(pids);
    const sorted = Float64Array.from(m.lat).sort();
    const res: LoadResult = {
      label: r.label,
      ok: m.lat.length,
      rps: m.lat.length / spec.duration,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      statuses: m.statuses,
      errors: m.errors,
      serverCpuUs: cpu0 !== null && cpu1 !== null && m.lat.length ? (cpu1 - cpu0) / m.lat.length : null,
      loadCpuUs: m.lat.length ? (own.user + own.system) / m.lat.length : null,
      signedDuringRun,
    };
    if (!r.paid) unpaidRps.set(r.connections, res.rps);
    results.push(res);
    process.stderr.write(`  ${r.label}: ${Math.round(res.rps)} req/s, p50 ${res.p50.toFixed(3)} ms, p99 ${res.p99.toFixed(3)} ms, server CPU ${res.serverCpuUs?.toFixed(0) ?? "?"} µs/request, load generator CPU ${res.loadCpuUs?.toFixed(0) ?? "?"} µs/request\n`);
  }
  process.stdout.write(`${JSON.stringify({ results, vouchersUsed: used })}\n`);
}

main().catch((e) => {
  process.stderr.write(`load generator failed: ${(e as Error).message}\n`);
  process.exit(1);
});
