/**
 * `npm run bench`: the benchmarks of issues 7 and 12, in one bounded run (a few minutes; aborted after 9.5, plus the
 * schemes section's allowance of 1 minute + 0.4 s per scheme call), printed as Markdown tables and written to
 * `docs/benchmarks.md` with the machine's description and the targets' pass/fail.
 *
 *   npm run bench [-- --only verify,gas,http,e2e,schemes,gasless] [--duration 5] [--warmup 1] [--rounds 3] [--calls 10000]
 *                 [--scheme-calls 1000] [--scheme-concurrency 8] [--gasless-agents 20] [--no-write]
 *
 * Sections (each can fail without stopping the others; a failed section is reported and the exit code is 1):
 *   verify  vouchers verified per second, VoucherVerifier vs viem's verifyTypedData (scripts/bench/verify.ts)
 *   gas     gas per paid call, x402 `exact` vs channels (scripts/bench/gas-per-call.ts)
 *   http    the same trivial handler unpaid vs paid, SQLite FULL / NORMAL / PostgreSQL (scripts/bench/http.ts)
 *   e2e     one agent, 10,000 paid calls through the client SDK, then `npm run settle` (scripts/bench/e2e.ts)
 *   schemes one paid call by path: channel (our SDK; stock @x402/fetch + our plug-in) vs x402 exact (the stock client;
 *           our SDK): latency, calls/s, gas per paid call read from the chain (scripts/bench/schemes.ts)
 *   gasless fresh USDC-only agents whose channels the provider opens: gas of each provider-submitted open, first call
 *           vs later calls, against an agent opening its own channel (scripts/bench/gasless.ts)
 *   stream  streamed responses paid per token vs the same producer unpaid, 1 and 8 concurrent streams; bytes and ms per
 *           top-up round trip; signed / spent (scripts/bench/stream.ts)
 * A target that is not met does not change the exit code: the report says FAIL.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { ChildHandle } from "../../test/helpers/process";
import { startBenchChain, type BenchChain } from "./chain";
import { benchE2e } from "./e2e";
import { measureGasPerCall } from "./gas-per-call";
import { benchHttp } from "./http";
import { cpuMeter, load, machineInfo } from "./machine";
import { renderReport, targets, type BenchResults, type SectionLoad } from "./report";
import { benchSchemes } from "./schemes";
import { benchGasless } from "./gasless";
import { measureVoucherThroughput } from "./verify";
import { benchStream, renderStream } from "./stream";

const SECTIONS = ["verify", "gas", "http", "e2e", "schemes", "gasless", "stream"] as const;
type Section = (typeof SECTIONS)[number];

const { values: args } = parseArgs({
  options: {
    only: { type: "string" },
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    rounds: { type: "string", default: "3" },
    calls: { type: "string", default: "10000" },
    "scheme-calls": { type: "string", default: "1000" },
    "scheme-concurrency": { type: "string", default: "8" },
    "gasless-agents": { type: "string", default: "20" },
    "no-write": { type: "boolean", default: false },
    out: { type: "string", default: path.join("docs", "benchmarks.md") },
  },
});

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

const only = (args.only ?? SECTIONS.join(",")).split(",").map((x) => x.trim()) as Section[];
for (const s of only) if (!SECTIONS.includes(s)) fail(`unknown section ${s} (sections: ${SECTIONS.join(", ")})`);
const duration = Number(args.duration);
const warmup = Number(args.warmup);
const calls = Number(args.calls);
const rounds = Number(args.rounds);
if (!(duration > 0 && duration <= 30)) fail("--duration must be in (0, 30] seconds");
if (!(warmup >= 0 && warmup <= 10)) fail("--warmup must be in [0, 10] seconds");
if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 5)) fail("--rounds must be an integer in [1, 5]");
if (!(Number.isInteger(calls) && calls > 0 && calls <= 100_000)) fail("--calls must be an integer in [1, 100000]");
const schemeCalls = Number(args["scheme-calls"]);
const schemeConcurrency = Number(args["scheme-concurrency"]);
if (!(Number.isInteger(schemeCalls) && schemeCalls >= 4 && schemeCalls <= 5_000)) fail("--scheme-calls must be an integer in [4, 5000]");
if (!(Number.isInteger(schemeConcurrency) && schemeConcurrency >= 0 && schemeConcurrency <= 64)) fail("--scheme-concurrency must be an integer in [0, 64]");
// The exact paths mine one transaction per call (~70 ms each on an idle machine): the schemes section gets its own allowance.
const gaslessAgents = Number(args["gasless-agents"]);
if (!(Number.isInteger(gaslessAgents) && gaslessAgents >= 1 && gaslessAgents <= 200)) fail("--gasless-agents must be an integer in [1, 200]");
const DEADLINE_MS =
  9.5 * 60_000 + (only.includes("schemes") ? 60_000 + schemeCalls * 400 : 0) + (only.includes("gasless") ? 30_000 + gaslessAgents * 2_000 : 0);

const children = new Set<ChildHandle>();
const log = (m: string) => console.error(`[bench] ${m}`);

async function section<T>(name: Section, results: BenchResults, fn: () => Promise<T>): Promise<{ value: T; load: SectionLoad } | undefined> {
  if (!only.includes(name)) return undefined;
  const before = load().line;
  log(`${name}: start (${before})`);
  const meter = cpuMeter();
  const t0 = performance.now();
  try {
    const value = await fn();
    const l: SectionLoad = { before, cpu: meter(), seconds: (performance.now() - t0) / 1000 };
    log(`${name}: done in ${l.seconds.toFixed(0)} s`);
    return { value, load: l };
  } catch (e) {
    const message = (e as Error)?.message?.split("\n").slice(0, 3).join(" ") ?? String(e);
    results.errors.push({ section: name, message });
    log(`${name}: FAILED: ${message}`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const results: BenchResults = {
    machine: machineInfo(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    totalSeconds: 0,
    errors: [],
  };

  // Verification first, while nothing else of ours runs.
  const v = await section("verify", results, () => measureVoucherThroughput(2));
  if (v) results.verify = { rows: v.value, load: v.load };

  let chain: BenchChain | null = null;
  let streamReport = "";
  if (only.some((s) => s !== "verify")) {
    log("starting the local chain and deploying the contracts");
    chain = await startBenchChain();
  }
  try {
    // Gas before the others: a fresh chain, the payee made warm by the x402 runs (as in the reference figure).
    const g = await section("gas", results, () => measureGasPerCall(chain!, log));
    if (g) results.gas = { results: g.value, load: g.load };
    const h = await section("http", results, () => benchHttp(chain!, { duration, warmup, rounds, log, children }));
    if (h) results.http = { results: h.value, duration, warmup, rounds, load: h.load };
    const e = await section("e2e", results, () => benchE2e(chain!, { calls, concurrency: 16, log, children }));
    if (e) results.e2e = { result: e.value, load: e.load };
    const sc = await section("schemes", results, () => benchSchemes(chain!, { calls: schemeCalls, concurrency: schemeConcurrency, log, children }));
    if (sc) results.schemes = { results: sc.value, load: sc.load };
    const gl = await section("gasless", results, () => benchGasless(chain!, { agents: gaslessAgents, calls: 20, log, children }));
    if (gl) results.gasless = { results: gl.value, load: gl.load };
    const st = await section("stream", results, () => benchStream(chain!, { rounds, log, children }));
    if (st) streamReport = renderStream(st.value, `_Load: ${st.load.seconds.toFixed(0)} s; before: ${st.load.before}._`);
  } finally {
    for (const c of children) await c.stop();
    await chain?.close();
  }

  results.totalSeconds = (performance.now() - started) / 1000;
  const report = renderReport(results) + (streamReport ? `\n${streamReport}` : "");
  console.log(report);
  if (!args["no-write"]) {
    fs.mkdirSync(path.dirname(args.out!), { recursive: true });
    fs.writeFileSync(args.out!, `${report}\n`);
    log(`wrote ${args.out}`);
  }
  const t = targets(results);
  log(`targets: ${t.map((x) => `${x.name}: ${x.pass === null ? "not run" : x.pass ? "pass" : "FAIL"}`).join("; ")}`);
  process.exit(results.errors.length ? 1 : 0);
}

// Bounded: never run past the deadline, and never leave a child behind.
const watchdog = setTimeout(() => {
  console.error(`[bench] aborted: still running after ${(DEADLINE_MS / 60_000).toFixed(1)} minutes`);
  for (const c of children) c.kill("SIGKILL");
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    for (const c of children) c.kill("SIGKILL");
    process.exit(130);
  });
}

main().catch((e) => {
  console.error(e);
  for (const c of children) c.kill("SIGKILL");
  process.exit(1);
});
