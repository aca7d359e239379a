/** Builds the benchmark report (Markdown: printed, and written to docs/benchmarks.md) from the measured results. */
import type { E2eResult } from "./e2e";
import { CALLS_PER_CHANNEL, CHANNELS_PER_BATCH, perCall, X402_EXACT_REFERENCE_GAS, type GasResults } from "./gas-per-call";
import type { HttpResults } from "./http";
import type { SchemesResults } from "./schemes";
import { GASLESS_OPEN_GAS_TARGET, type GaslessResults } from "./gasless";
import type { CpuShare, MachineInfo } from "./machine";
import type { VoucherThroughput } from "./verify";

export interface SectionLoad {
  /** `uptime`-style load before the section. */
  before: string;
  cpu: CpuShare | null;
  seconds: number;
}

export interface BenchResults {
  machine: MachineInfo;
  command: string;
  totalSeconds: number;
  verify?: { rows: VoucherThroughput[]; load: SectionLoad };
  gas?: { results: GasResults; load: SectionLoad };
  http?: { results: HttpResults; duration: number; warmup: number; rounds: number; load: SectionLoad };
  e2e?: { result: E2eResult; load: SectionLoad };
  schemes?: { results: SchemesResults; load: SectionLoad };
  gasless?: { results: GaslessResults; load: SectionLoad };
  errors: Array<{ section: string; message: string }>;
}

export interface Target {
  name: string;
  goal: string;
  measured: string;
  pass: boolean | null;
  note?: string;
}

const int = (n: number | bigint) => (typeof n === "bigint" ? n : BigInt(Math.round(n))).toLocaleString("en-US");
/** A ratio "N×": whole numbers from 10 up, one decimal below. */
const times = (n: number) => `${n >= 10 ? int(n) : fix(n, 1)}×`;
const fix = (n: number, d = 1) => (Number.isFinite(n) ? n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }) : "n/a");
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : "n/a");
/** A ratio against a baseline: "N×", two significant digits below 1 (e.g. 0.045×). */
const ratio = (n: number) => (!Number.isFinite(n) ? "n/a" : n >= 1 ? times(n) : `${n.toPrecision(2)}×`);

function table(header: string[], rows: string[][], right: number[] = []): string {
  const align = header.map((_, i) => (right.includes(i) ? "---:" : "---"));
  return [header, align, ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
}

function loadNote(l: SectionLoad, cores: number): string {
  const parts = [`${fix(l.seconds, 0)} s; before: ${l.before}`];
  if (l.cpu) {
    parts.push(
      `during: this benchmark's processes used ${fix(l.cpu.ours, 2)} cores, everything else ${fix(l.cpu.others, 2)} of ${cores} ` +
        "(other processes, and kernel work not charged to a process, such as loopback networking)",
    );
    if (l.cpu.others > cores * 0.25) parts.push("**the machine was busy: timings of this section may understate what the code can do**");
  }
  return `_Load: ${parts.join("; ")}._`;
}

/** The targets of issue 7, evaluated on what was measured (null = not measured in this run). */
export function targets(r: BenchResults): Target[] {
  const out: Target[] = [];
  if (r.gas) {
    const g = r.gas.results;
    const cell = perCall(g, 1_000, 100);
    const a = X402_EXACT_REFERENCE_GAS / cell.settleOnly;
    const b = X402_EXACT_REFERENCE_GAS / cell.withOpen;
    out.push({
      name: "gas per paid call, settled every 1,000 calls in batches of 100",
      goal: `≥ 5,000× less than x402 exact (${int(X402_EXACT_REFERENCE_GAS)})`,
      measured: `${fix(cell.settleOnly, 2)} gas: ${int(a)}× less (${int(g.x402Bytes / cell.settleOnly)}× vs the local x402 figure ${int(g.x402Bytes)})`,
      pass: a >= 5_000,
    });
    const maxOpen = (X402_EXACT_REFERENCE_GAS / 700) * 1_000 - cell.settleGas / 100;
    out.push({
      name: "… counting the channel's open over a 1,000-call life",
      goal: "≥ 700× less",
      measured: `${fix(cell.withOpen, 2)} gas: ${int(b)}× less (${int(g.x402Bytes / cell.withOpen)}× vs local x402)`,
      pass: b >= 700,
      note:
        b >= 700
          ? undefined
          : `open costs ${int(g.open)} gas (standing allowance, no refunds); the target needs open ≤ ${int(maxOpen)} (open + settle share ≤ ${int((X402_EXACT_REFERENCE_GAS / 700) * 1_000)} per 1,000 calls)`,
    });
  } else {
    out.push({ name: "gas per paid call (both targets)", goal: "", measured: "not measured", pass: null });
  }
  if (r.http) {
    const row = r.http.results.rows.find((x) => x.store === "SQLite NORMAL" && x.connections === 16);
    if (row) {
      const ratio = row.paid.rps / row.unpaid.rps;
      const cpu = row.unpaid.serverCpuUs && row.paid.serverCpuUs ? row.unpaid.serverCpuUs / row.paid.serverCpuUs : null;
      out.push({
        name: "paid throughput, SQLite NORMAL, 16 in flight, trivial handler",
        goal: "≥ 50% of unpaid",
        measured: `${int(row.paid.rps)} vs ${int(row.unpaid.rps)} req/s: ${fix(ratio * 100, 0)}%`,
        pass: ratio >= 0.5,
        note: cpu
          ? `server process CPU per request (all threads): unpaid ${int(row.unpaid.serverCpuUs!)} µs, paid ${int(row.paid.serverCpuUs!)} µs; the paid path's signature recoveries run on a worker thread (second core) while the main thread parses, accounts (group commit) and answers`
          : undefined,
      });
    } else out.push({ name: "paid throughput, SQLite NORMAL, 16 in flight", goal: "≥ 50% of unpaid", measured: "not measured", pass: null });
    // Issue 15: PostgreSQL at (nearly) SQLite's speed.
    const pgRow = r.http.results.rows.find((x) => x.store.startsWith("PostgreSQL") && !x.store.includes("replicas") && x.connections === 16);
    if (pgRow) {
      const ratio = pgRow.paid.rps / pgRow.unpaid.rps;
      const added = pgRow.paid.p50 - pgRow.unpaid.p50;
      const cpu = pgRow.paid.serverCpuUs;
      const three = r.http.results.rows.find((x) => x.store.includes("3 replicas") && x.connections === 16);
      out.push({
        name: "PostgreSQL, 16 in flight, trivial handler",
        goal: "paid ≥ 35% of unpaid, added p50 ≤ 3 ms, server CPU ≤ 600 µs per paid request",
        measured: `${int(pgRow.paid.rps)} vs ${int(pgRow.unpaid.rps)} req/s: ${fix(ratio * 100, 0)}%; added p50 ${ms(added)} ms; CPU ${cpu === null ? "n/a" : `${int(cpu)} µs`}`,
        pass: ratio >= 0.35 && added <= 3 && cpu !== null && cpu <= 600,
        note: three
          ? `three replicas on one database: ${int(three.paid.rps)} paid req/s (${fix((three.paid.rps / pgRow.paid.rps) * 100, 0)}% of one replica's), server CPU ${three.paid.serverCpuUs === null ? "n/a" : int(three.paid.serverCpuUs)} µs per paid request (all three processes)`
          : undefined,
      });
    }
  } else {
    out.push({ name: "paid throughput, SQLite NORMAL, 16 in flight", goal: "≥ 50% of unpaid", measured: "not measured", pass: null });
  }
  if (r.verify) {
    const fast = r.verify.rows.find((x) => x.op === "verify" && !x.impl.startsWith("viem"))!;
    const viem = r.verify.rows.find((x) => x.op === "verify" && x.impl.startsWith("viem"))!;
    const ratio = fast.perSecond / viem.perSecond;
    out.push({
      name: "voucher verification vs viem verifyTypedData",
      goal: "≥ 15× faster",
      measured: `${int(fast.perSecond)} vs ${int(viem.perSecond)} per second: ${fix(ratio, 1)}×`,
      pass: ratio >= 15,
    });
  } else out.push({ name: "voucher verification vs viem", goal: "≥ 15× faster", measured: "not measured", pass: null });
  if (r.gasless) {
    const g = r.gasless.results;
    // Judged on the payer that keeps a balance (no storage refund), the first open to a new payee/token pair excluded.
    const max = (xs: bigint[]) => xs.reduce((a, b) => (b > a ? b : a), 0n);
    const kept = max(g.openGasKept);
    out.push({
      name: "gas of a provider-submitted open (openWithAuthorization)",
      goal: `≤ ${int(GASLESS_OPEN_GAS_TARGET)}`,
      measured:
        `max ${int(kept)} over ${g.openGasKept.length} opens leaving the payer a balance; ` +
        `max ${int(max(g.openGasEmptied))} over ${g.openGasEmptied.length} opens of the payer's whole balance (4,800 gas refund)`,
      pass: g.openGasKept.length ? kept <= GASLESS_OPEN_GAS_TARGET : null,
    });
  } else out.push({ name: "gas of a provider-submitted open", goal: `≤ ${int(GASLESS_OPEN_GAS_TARGET)}`, measured: "not measured", pass: null });
  return out;
}

export function renderReport(r: BenchResults): string {
  const m = r.machine;
  const s: string[] = [];
  s.push("# Benchmarks");
  s.push("");
  s.push(
    "Generated by `npm run bench` (`scripts/bench/index.ts`); rerun it to refresh this file. Every figure comes from the real code: " +
      "the contracts on Hardhat's local chain, the real server as a child process, load from a second process over loopback, " +
      "the client SDK and the settlement job.",
  );
  s.push("");
  s.push("## Machine");
  s.push("");
  s.push(
    table(
      ["", ""],
      [
        ["CPU", `${m.cpu}`],
        ["cores", `${m.cores}`],
        ["memory", `${m.memoryGiB} GiB`],
        ["node", m.node],
        ["OS", m.os],
        ["date", m.date],
        ["commit", m.commit],
        ["command", `\`${r.command}\` (${fix(r.totalSeconds, 0)} s)`],
      ],
    ),
  );
  s.push("");
  s.push("## Targets (issue 7)");
  s.push("");
  const t = targets(r);
  s.push(
    table(
      ["target", "goal", "measured", "result"],
      t.map((x) => [x.name, x.goal, x.measured + (x.note ? ` — ${x.note}` : ""), x.pass === null ? "not run" : x.pass ? "**pass**" : "**FAIL**"]),
    ),
  );
  s.push("");

  if (r.verify) {
    s.push("## Voucher verification (one core)");
    s.push("");
    const base = (op: string) => r.verify!.rows.find((x) => x.op === op && x.impl.startsWith("viem"))!.perSecond;
    s.push(
      table(
        ["operation", "implementation", "per second", "µs each", "vs viem"],
        r.verify.rows.map((x) => [x.op, x.impl, int(x.perSecond), fix(1e6 / x.perSecond, 1), `${fix(x.perSecond / base(x.op), 1)}×`]),
        [2, 3, 4],
      ),
    );
    s.push("");
    s.push("Distinct vouchers, same process, one after the other (2 s each after a warm-up). " + loadNote(r.verify.load, m.cores));
    s.push("");
  }

  if (r.gas) {
    const g = r.gas.results;
    s.push("## Gas per paid call: x402 `exact` vs channels");
    s.push("");
    s.push(
      table(
        ["way", "gas per call"],
        [
          [`x402 \`exact\`, reference figure of the issue`, int(X402_EXACT_REFERENCE_GAS)],
          ["x402 `exact` measured here: `MockUSDC.transferWithAuthorization(…, bytes signature)`, warm payee", int(g.x402Bytes)],
          ["x402 `exact` measured here: `transferWithAuthorization(…, v, r, s)`, warm payee", int(g.x402Vrs)],
        ],
        [1],
      ),
    );
    s.push("");
    s.push(
      `Channel costs measured here: \`open\` ${int(g.open)} gas (median; standing allowance, payee/token pair already registered, ` +
        `no storage refunds), \`openWithPermit\` ${int(g.openWithPermit)} (one transaction, what the client SDK sends for an ` +
        `EIP-2612 token), \`approve\` ${int(g.approve)} (once per payer when a standing allowance is used).`,
    );
    s.push("");
    s.push(
      "Gas per call = (settle batch gas / channels in the batch) / calls per channel (settle only), and (open + that share) / calls. " +
        "Every settle is a real transaction on real channels with a voucher for `calls × 0.001 USDC`. Ratios are against 85,704.",
    );
    s.push("");
    const rows: string[][] = [];
    for (const calls of CALLS_PER_CHANNEL) {
      for (const batch of CHANNELS_PER_BATCH) {
        const c = perCall(g, calls, batch);
        rows.push([
          int(calls),
          int(batch),
          int(c.settleGas),
          fix(c.settleOnly, 2),
          times(X402_EXACT_REFERENCE_GAS / c.settleOnly),
          fix(c.withOpen, 2),
          times(X402_EXACT_REFERENCE_GAS / c.withOpen),
          fix((g.openWithPermit + c.settleGas / batch) / calls, 2),
        ]);
      }
    }
    s.push(
      table(
        ["calls / channel", "channels / batch", "settle tx gas", "settle only, gas/call", "less than x402", "open + settle, gas/call", "less than x402", "openWithPermit + settle, gas/call"],
        rows,
        [0, 1, 2, 3, 4, 5, 6, 7],
      ),
    );
    s.push("");
    s.push(`Gas is deterministic (up to a few gas of calldata); the load does not affect it. ${loadNote(r.gas.load, m.cores)}`);
    s.push("");
  }

  if (r.http) {
    const h = r.http;
    s.push("## HTTP: the same trivial handler unpaid vs paid");
    s.push("");
    s.push(
      `\`GET /bench/free\` vs \`GET /bench/paid\` (same handler, price 0.001 USDC, one round trip with a distinct pre-signed voucher per ` +
        `request) on the real server (one process), load from autocannon in a second process over loopback, ${h.duration} s measured ` +
        `after ${h.warmup} s of warm-up per run; each cell is the fastest of ${h.rounds} run(s), unpaid and paid alternating ` +
        `(other processes can only slow a run down). Latency in ms (2xx only). "server CPU" = the server process's CPU time per ` +
        `response during the run (from /proc, all threads): unlike req/s it barely depends on what else runs on the machine; "CPU ratio" = ` +
        `unpaid CPU / paid CPU, the paid/unpaid throughput ratio to expect if one core ran everything. Paid requests in progress ` +
        `together have their signatures recovered on a worker thread (\`VERIFY_THREADS\`, default 1), so paid throughput can exceed it. ` +
        `"PostgreSQL, 3 replicas": three server processes on one database, the 16 connections split over them, paying the one channel ` +
        `(its row lock is shared by the three), CPU summed over the three processes.`,
    );
    s.push("");
    s.push(
      table(
        ["store", "in flight", "unpaid req/s", "paid req/s", "paid / unpaid", "unpaid p50", "paid p50", "unpaid p99", "paid p99", "added p50", "server CPU µs/req unpaid", "paid", "CPU ratio"],
        h.results.rows.map((x) => [
          x.store,
          String(x.connections),
          int(x.unpaid.rps),
          int(x.paid.rps),
          `${fix((x.paid.rps / x.unpaid.rps) * 100, 0)}%`,
          ms(x.unpaid.p50),
          ms(x.paid.p50),
          ms(x.unpaid.p99),
          ms(x.paid.p99),
          ms(x.paid.p50 - x.unpaid.p50),
          x.unpaid.serverCpuUs === null ? "n/a" : int(x.unpaid.serverCpuUs),
          x.paid.serverCpuUs === null ? "n/a" : int(x.paid.serverCpuUs),
          x.unpaid.serverCpuUs && x.paid.serverCpuUs ? `${fix((x.unpaid.serverCpuUs / x.paid.serverCpuUs) * 100, 0)}%` : "n/a",
        ]),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
      ),
    );
    s.push("");
    if (h.results.breakdown.length) {
      s.push(
        "Inside a paid request, from the server's own histograms (means over all paid requests of the store, µs; latencies, so they " +
          "include waiting: for the worker thread, and for the SQLite group commit that the accepts of one event-loop turn share):",
      );
      s.push("");
      s.push(
        table(
          ["store", "voucher signature check", "accounting transaction (wait + commit)"],
          h.results.breakdown.map((b) => [b.store, fix(b.verifyUs, 0), fix(b.commitUs, 0)]),
          [1, 2],
        ),
      );
      s.push("");
    }
    for (const n of h.results.notes) s.push(`- ${n}`);
    if (h.results.notes.length) s.push("");
    s.push(
      "SQLite `FULL` fsyncs every commit; `NORMAL` (WAL) survives a process crash but may lose the last commits on power loss; " +
        "PostgreSQL is a local throwaway server with `fsync=on`, `synchronous_commit=on`. Server, load generator and (for " +
        "PostgreSQL) the database share the cores. " +
        loadNote(h.load, m.cores),
    );
    s.push("");
  }

  if (r.e2e) {
    const e = r.e2e.result;
    s.push("## End to end: one agent, then settlement");
    s.push("");
    s.push(
      table(
        ["", ""],
        [
          ["paid calls (client SDK → real server, SQLite NORMAL)", `${int(e.calls)}, ${e.concurrency} in flight, ${int(e.httpRequests)} HTTP requests`],
          ["wall time of the calls", `${fix(e.callsSeconds, 1)} s`],
          ["calls per second", fix(e.callsPerSecond, 0)],
          ["channel funding by the SDK", `${e.funding}: ${int(e.clientGas)} gas in ${e.clientTxs} transaction(s)`],
          ["settlement (`npm run settle -- --all`, process start included)", `${fix(e.settleSeconds, 1)} s, ${int(e.settleGas)} gas in ${e.settleTxs} transaction(s), ${e.channelsSettled} channel(s)`],
          ["amount settled (= payee's balance increase = calls × price)", `${(Number(e.amountSettled) / 1e6).toFixed(6)} USDC`],
          ["total gas", int(e.totalGas)],
          ["gas per paid call", `${fix(e.gasPerCall, 2)}: ${times(X402_EXACT_REFERENCE_GAS / e.gasPerCall)} less than x402 \`exact\` (${int(X402_EXACT_REFERENCE_GAS)})`],
        ],
      ),
    );
    s.push("");
    s.push(loadNote(r.e2e.load, m.cores));
    s.push("");
  }

  if (r.schemes) {
    const sc = r.schemes.results;
    const base = sc.paths.find((p) => p.id === 1);
    s.push("## One paid call by scheme: `channel` vs x402 `exact` (issue 12)");
    s.push("");
    s.push(
      `The real server (one process, SQLite NORMAL) serves \`GET /bench/paid\` (0.001 USDC; its 402 offers \`channel\` then \`exact\`) ` +
        `on the local chain; each path pays it from this process: one untimed warm-up call (opens the channel), ${int(sc.calls)} ` +
        `sequential calls (latency from request start to body read, in ms), then ${sc.concurrency ? `${int(Math.floor(sc.calls / 4))} calls with ${sc.concurrency} in flight` : "no concurrent phase"}. ` +
        "Every call was served (200). An `exact` call is served only once its `transferWithAuthorization` is mined (Hardhat automine: " +
        "one block per transaction). Ratios are against path (1).",
    );
    s.push("");
    s.push(
      table(
        ["path", "scheme", "client", "HTTP requests / call", "p50", "p95", "mean", "calls/s sequential", `calls/s, ${sc.concurrency} in flight`, "p50 vs (1)", "calls/s vs (1)", `calls/s in flight vs (1)`],
        sc.paths.map((p) => [
          `(${p.id})`,
          `\`${p.scheme}\``,
          p.client,
          fix(p.requestsPerCall, 1),
          ms(p.sequential.p50),
          ms(p.sequential.p95),
          ms(p.sequential.mean),
          fix(p.sequential.callsPerSecond, 0),
          p.concurrent ? fix(p.concurrent.callsPerSecond, 0) : "n/a",
          base ? ratio(p.sequential.p50 / base.sequential.p50) : "n/a",
          base ? ratio(p.sequential.callsPerSecond / base.sequential.callsPerSecond) : "n/a",
          base?.concurrent && p.concurrent ? ratio(p.concurrent.callsPerSecond / base.concurrent.callsPerSecond) : "n/a",
        ]),
        [3, 4, 5, 6, 7, 8, 9, 10, 11],
      ),
    );
    s.push("");
    const channel = sc.gas.find((g) => g.scheme === "channel");
    s.push(
      table(
        ["scheme", "paid calls (paths)", "transactions", "gas", "gas / paid call", "vs `channel`", "what was mined"],
        sc.gas.map((g) => [
          `\`${g.scheme}\``,
          `${int(g.paidCalls)} (${g.paths.map((x) => `(${x})`).join(", ")})`,
          int(g.transactions),
          int(g.gas),
          fix(g.gasPerCall, 2),
          channel ? ratio(g.gasPerCall / channel.gasPerCall) : "n/a",
          g.detail,
        ]),
        [2, 3, 4, 5],
      ),
    );
    s.push("");
    s.push(
      "Gas is read from the chain: for `channel`, every transaction mined while paths (1) and (2) ran (the SDK's funding; the server " +
        "sends none) plus the settlement job's; for `exact`, the `gasUsed` of each transfer named by the call's receipt (`PAYMENT-RESPONSE`). " +
        "A channel's cost per call falls with the calls it carries (see the gas section for 1 to 1,000 calls per channel and " +
        "settle batches of 1 to 100 channels); `exact` costs the same on every call.",
    );
    s.push("");
    for (const n of sc.notes) s.push(`- ${n}`);
    if (sc.notes.length) s.push("");
    s.push(
      "The bench chain lets blocks share a timestamp, so its clock follows the wall clock that the exact clients sign their " +
        `windows from (the latest block was ${sc.chainClockAheadSeconds} s from the wall clock at the end). ` +
        loadNote(r.schemes.load, m.cores),
    );
    s.push("");
  }

  if (r.gasless) {
    const g = r.gasless.results;
    const sorted = [...g.openGas].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const median = sorted[Math.floor(sorted.length / 2)];
    s.push("## Gasless opens: the provider opens the channel from the agent's signature (issue 16)");
    s.push("");
    s.push(
      `The real server (one process, SQLite NORMAL, \`GASLESS_OPEN=on\`, open fee 0) serves \`GET /bench/paid\` (0.001 USDC) on the local chain. ` +
        `${int(g.agents)} fresh agents, each a new key holding only MockUSDC and no ETH, pay through our SDK one after the other: ` +
        `the first call carries the signed open (a 402, then the paid request; the server submits \`openWithAuthorization\` from its sender ` +
        `key and serves once it is mined), then ${int(g.laterCallsPerAgent)} later calls. Every agent's ETH stayed 0; each first call mined ` +
        "exactly one transaction (the provider's open of that agent's channel) and no later call mined any. For comparison, one agent with " +
        "ETH opens its own channel (`gaslessOpen: \"never\"`). Latency in ms, request start to body read.",
    );
    s.push("");
    s.push(
      table(
        ["agent", "first call p50", "first call p95", "later calls p50", "later calls p95", "first / later (p50)", "open transactions", "open gas"],
        [
          [
            `gasless (${int(g.agents)} agents)`,
            ms(g.gasless.first.p50),
            ms(g.gasless.first.p95),
            ms(g.gasless.later.p50),
            ms(g.gasless.later.p95),
            ratio(g.gasless.first.p50 / g.gasless.later.p50),
            `${int(g.openGas.length)}, sent by the provider`,
            `median ${int(median)} (min ${int(sorted[0])}, max ${int(sorted[sorted.length - 1])})`,
          ],
          [
            "own open (1 agent)",
            ms(g.selfFunded.first.p50),
            "n/a",
            ms(g.selfFunded.later.p50),
            ms(g.selfFunded.later.p95),
            ratio(g.selfFunded.first.p50 / g.selfFunded.later.p50),
            `${int(g.selfFunded.openTransactions)}, sent by the agent`,
            int(g.selfFunded.openGas),
          ],
        ],
        [1, 2, 3, 4, 5],
      ),
    );
    s.push("");
    for (const n of g.others) s.push(`- ${n}`);
    if (g.others.length) s.push("");
    const range = (xs: bigint[]) => {
      const t = [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return t.length ? `${int(t[Math.floor(t.length / 2)])} (min ${int(t[0])}, max ${int(t[t.length - 1])}, ${t.length} opens)` : "n/a";
    };
    s.push(
      `Gas of the provider-submitted open, median: ${range(g.openGasKept)} when the payer keeps a token balance after the deposit; ` +
        `${range(g.openGasEmptied)} when the deposit is its whole balance (the token clears the payer's balance slot and refunds 4,800 gas; ` +
        "the contract gas snapshot, `openWithAuthorization` in test/gas-snapshot.json, measures this case).",
    );
    s.push("");
    s.push(
      (g.firstRegisteredPair ? `The first open (${int(g.openGas[0])} gas) also registered the payee/token pair, a one-time cost of the first channel to a payee. ` : "") +
        `Target: a provider-submitted open ≤ ${int(GASLESS_OPEN_GAS_TARGET)} gas. ` +
        loadNote(r.gasless.load, m.cores),
    );
    s.push("");
  }

  s.push("## Safety under faults (not benchmarked here: `npm test`, `test/faults/`)");
  s.push("");
  s.push(
    "- `crash-loop.test.ts`: the real server process is SIGKILLed at 20 random moments under 12 concurrent paid requests on " +
      "3 channels and restarted on the same SQLite database; after every kill each served voucher is durably recorded " +
      "(accepted ≥ v, v used or below the floor, spent ≥ price × served), spent ≤ accepted ≤ deposit, and over the whole " +
      "history (including re-sent and replayed vouchers) no voucher is served twice.",
  );
  s.push(
    "- `rpc-outage.test.ts`: the chain RPC behind a fault proxy that refuses, black-holes or delays: reads needed → 503 " +
      "with Retry-After in bounded time, never a free response, nothing written; the same vouchers are served after healing.",
  );
  s.push(
    "- `hostile-input.test.ts`: a fast-check fuzz of raw HTTP requests (methods, repeated/odd headers, mutated payments, " +
      "bodies, sizes) never gets a 5xx or a stack trace and never writes to the database; a flood of 5,000 unauthenticated " +
      "requests writes nothing (SQLite data_version, table dump and file sizes unchanged).",
  );
  s.push("");

  if (r.errors.length) {
    s.push("## Sections that failed");
    s.push("");
    for (const e of r.errors) s.push(`- ${e.section}: ${e.message}`);
    s.push("");
  }
  return s.join("\n");
}
