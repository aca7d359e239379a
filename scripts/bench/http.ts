/**
 * HTTP section of `npm run bench`: the same trivial handler unpaid (`/bench/free`) and paid (`/bench/paid`, one
 * round trip, a distinct pre-signed voucher per request) on the real server, 1 and 16 requests in flight, load from
 * a second process (`load.ts`, autocannon) on loopback, fixed duration; for each store: SQLite `synchronous=FULL`,
 * SQLite `NORMAL`, PostgreSQL (throwaway server with fsync on, or TEST_DATABASE_URL; skipped with a note when
 * neither is available); and PostgreSQL with THREE server processes (replicas) on one database, 16 in flight only, the
 * connections split over the replicas, one voucher sequence on the one channel (the replicas contend for its row),
 * server CPU summed over the three processes.
 *
 * Each cell is measured `rounds` times (unpaid and paid alternating) and the fastest run is reported.
 * After each store's runs the server's `channel_paid_requests_total` must equal the 2xx count of the paid runs
 * (every 200 was a committed paid request), else the section fails.
 *
 * Knobs for profiling (environment): BENCH_MODES=0,1,2,3 keeps only those stores (FULL, NORMAL, PostgreSQL, PostgreSQL 3 replicas);
 * BENCH_RUNS=u1,p1,u16,p16 keeps only those runs (unpaid/paid × in flight); BENCH_SERVER_NODE_ARGS adds node
 * arguments to the server process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnTs, type ChildHandle } from "../../test/helpers/process";
import { fundPayer, openBenchChannel, type BenchChain } from "./chain";
import type { LoadResult, LoadSpec } from "./load";

export interface HttpRow {
  store: string;
  connections: number;
  unpaid: LoadResult;
  paid: LoadResult;
}

/** Where a store's paid requests spent their time, from the server's own histograms (all paid runs, warm-ups included). */
export interface PaidBreakdown {
  store: string;
  /** Mean voucher signature check, µs. */
  verifyUs: number;
  /** Mean accounting transaction (store round trip and commit, fsync included), µs. */
  commitUs: number;
}

export interface HttpResults {
  rows: HttpRow[];
  breakdown: PaidBreakdown[];
  notes: string[];
}

export interface HttpOptions {
  duration: number;
  warmup: number;
  /** Each (store, in flight, paid?) cell is measured this many times, alternating; the best run is reported. */
  rounds: number;
  log: (m: string) => void;
  /** Children started (so the caller can stop them on abort). */
  children: Set<ChildHandle>;
}

const PRICE = 1_000n; // 0.001 USDC, the price of /bench/paid

interface StoreMode {
  name: string;
  env: Record<string, string>;
  cleanup(): Promise<void>;
  /** Server processes on the one database (default 1). */
  replicas?: number;
  /** Requests in flight measured (default 1 and 16). */
  inFlight?: number[];
}

/** PostgreSQL with three server processes on one database (16 in flight: one connection cannot be spread). */
async function postgresReplicasMode(log: (m: string) => void): Promise<StoreMode | { skip: string }> {
  const mode = await postgresMode(log);
  if ("skip" in mode) return mode;
  return { ...mode, name: mode.name.replace("PostgreSQL", "PostgreSQL, 3 replicas"), replicas: 3, inFlight: [16] };
}

async function postgresMode(log: (m: string) => void): Promise<StoreMode | { skip: string }> {
  // Loaded lazily: only this section needs pg and the PostgreSQL helper.
  const pgh = require("../../test/helpers/postgres") as typeof import("../../test/helpers/postgres");
  if (process.env.TEST_DATABASE_URL) {
    const url = await pgh.newTestDatabase("bench");
    return { name: "PostgreSQL (TEST_DATABASE_URL)", env: { DATABASE_URL: url }, cleanup: () => pgh.stopTestPostgres() };
  }
  if (!pgh.findPostgresBinDir()) return { skip: `PostgreSQL skipped: ${pgh.POSTGRES_SKIP_LINE.replace(/^PostgreSQL tests skipped: /, "")}` };
  log("starting a throwaway PostgreSQL (fsync on)...");
  const server = await pgh.startThrowawayPostgres({ fsync: true });
  return { name: "PostgreSQL", env: { DATABASE_URL: server.url }, cleanup: () => server.stop() };
}

function sqliteMode(sync: "FULL" | "NORMAL"): StoreMode {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-http-"));
  return {
    name: `SQLite ${sync}`,
    env: { DATABASE_URL: path.join(dir, "bench.sqlite"), SQLITE_SYNCHRONOUS: sync },
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Reads one counter's value from the server's Prometheus text. */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.split(" ").pop());
  return total;
}

export async function benchHttp(chain: BenchChain, o: HttpOptions): Promise<HttpResults> {
  const PAYER = 2;
  const payee = chain.account(0);
  const deposit = 100_000n * 1_000_000n; // 100,000 USDC: far more than any run can spend
  await fundPayer(chain, PAYER, deposit);
  const channel = await openBenchChannel(chain, { payerIndex: PAYER, payee, deposit });

  const notes: string[] = [];
  const rows: HttpRow[] = [];
  const breakdown: PaidBreakdown[] = [];
  const modes: Array<() => Promise<StoreMode | { skip: string }>> = [
    async () => sqliteMode("FULL"),
    async () => sqliteMode("NORMAL"),
    () => postgresMode(o.log),
    () => postgresReplicasMode(o.log),
  ].filter((_, i) => !process.env.BENCH_MODES || process.env.BENCH_MODES.split(",").includes(String(i)));
  for (const makeMode of modes) {
    const mode = await makeMode();
    if ("skip" in mode) {
      notes.push(mode.skip);
      o.log(mode.skip);
      continue;
    }
    const servers: ChildHandle[] = [];
    try {
      o.log(`${mode.name}: starting the server${mode.replicas ? `s (${mode.replicas})` : ""}`);
      for (let i = 0; i < (mode.replicas ?? 1); i++) {
        const server = await spawnTs(path.join(__dirname, "http-server.ts"), {
          env: {
            RPC_URL: chain.rpcUrl,
            ESCROW_ADDRESS: chain.escrow,
            TOKEN_ADDRESS: chain.token,
            PAYEE_ADDRESS: payee,
            PORT: "0",
            LOG_LEVEL: "warn",
            SETTLE_IN_SERVER: "false",
            ...mode.env,
          },
          ready: /ready (http:\/\/\S+)/,
          nodeArgs: process.env.BENCH_SERVER_NODE_ARGS ? process.env.BENCH_SERVER_NODE_ARGS.split(" ") : undefined,
        });
        servers.push(server);
        o.children.add(server);
      }
      const urls = servers.map((x) => x.match[1]);
      const url = urls[0];
      const spec: LoadSpec = {
        url,
        serverPid: servers[0].pid,
        ...(servers.length > 1 ? { urls, serverPids: servers.map((x) => x.pid) } : {}),
        duration: o.duration,
        warmup: o.warmup,
        // Unpaid and paid alternate, round after round, so slow phases of the machine hit both alike.
        runs: Array.from({ length: o.rounds }, (_, round) =>
          (mode.inFlight ?? [1, 16]).flatMap((c) => [
            { label: `${mode.name}, ${c} in flight, unpaid, round ${round + 1}`, path: "/bench/free", connections: c, paid: false },
            { label: `${mode.name}, ${c} in flight, paid, round ${round + 1}`, path: "/bench/paid", connections: c, paid: true },
          ]),
        ).flat().filter((r) => !process.env.BENCH_RUNS || process.env.BENCH_RUNS.split(",").includes(`${r.paid ? "p" : "u"}${r.connections}`)),
        voucher: {
          chainId: chain.chainId,
          escrow: chain.escrow,
          channelId: channel.id,
          signerKey: channel.signerKey,
          price: PRICE.toString(),
          start: 0, // a fresh database per store: the channel starts at zero there
          presign: 30_000,
        },
      };
      const load = await spawnTs(path.join(__dirname, "load.ts"), { args: [JSON.stringify(spec)], ready: /"vouchersUsed"/, timeoutMs: (spec.runs.length * (o.duration + o.warmup) + 90) * 1000, inheritStderr: true });
      o.children.add(load);
      await load.exited;
      o.children.delete(load);
      const out = JSON.parse(load.output().trim().split("\n").pop()!) as { results: LoadResult[] };
      const paidOk = out.results.filter((_, i) => spec.runs[i].paid).reduce((a, r) => a + r.ok, 0);
      // Other processes can only slow a run down: the fastest of the rounds is the least disturbed.
      const best = (c: number, paid: boolean) =>
        out.results.filter((_, i) => spec.runs[i].connections === c && spec.runs[i].paid === paid).reduce((a, b) => (b.rps > a.rps ? b : a));
      for (const c of [1, 16]) {
        if (!spec.runs.some((r) => r.connections === c && r.paid) || !spec.runs.some((r) => r.connections === c && !r.paid)) continue;
        const unpaid = best(c, false);
        const paid = best(c, true);
        rows.push({ store: mode.name, connections: c, unpaid, paid });
        const bad = Object.entries(paid.statuses).filter(([s]) => s !== "200");
        if (bad.length || paid.errors) notes.push(`${mode.name}, ${c} in flight, paid: non-200 answers ${JSON.stringify(Object.fromEntries(bad))}, socket errors ${paid.errors}`);
        if (paid.signedDuringRun) notes.push(`${mode.name}, ${c} in flight, paid: ${paid.signedDuringRun} vouchers had to be signed during the run (load generator CPU)`);
      }
      // Every 2xx of a paid run must be a committed paid request (warm-up requests included on the server side).
      const total = async (name: string) => (await Promise.all(urls.map((u) => metric(u, name)))).reduce((a, b) => a + b, 0);
      const served = await total("channel_paid_requests_total");
      if (served < paidOk) throw new Error(`${mode.name}: the server counted ${served} paid requests but the load generator got ${paidOk} paid 200s`);
      const mean = async (h: string) => ((await total(`${h}_sum`)) / Math.max(1, await total(`${h}_count`))) * 1e6;
      breakdown.push({ store: mode.name, verifyUs: await mean("channel_voucher_verification_seconds"), commitUs: await mean("channel_accounting_commit_seconds") });
    } finally {
      for (const server of servers) {
        await server.stop();
        o.children.delete(server);
      }
      await mode.cleanup();
    }
  }
  return { rows, breakdown, notes };
}
