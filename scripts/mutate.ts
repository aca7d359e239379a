/**
 * `npm run mutate`: mutation check of contracts/ChannelEscrow.sol's safety conditions.
 *
 * For each mutation of scripts/mutations.ts (a `find` that must occur exactly once, replaced by `replace`), the
 * script copies a snapshot of contracts/ to cache/mutate/<mutant>/contracts (inside the project, as Hardhat requires
 * of sources; cache/ is git-ignored), applies the mutation there, compiles it with the project's compiler settings
 * into that folder's own artifacts and cache (HARDHAT_SOURCES / HARDHAT_ARTIFACTS / HARDHAT_CACHE, read by
 * hardhat.config.ts), then runs the contract suite against it with mocha's bail (scripts/mutate-suite.ts). The
 * working tree's contracts/, artifacts/ and cache/ are never written, so others may compile and test meanwhile.
 *
 * Outcomes: killed (the first failing test is named), survived (the whole suite passed), compile-error (reported
 * apart: not a kill), timeout, error (the runner failed without a test failure). A baseline run of the unmutated
 * snapshot comes first; if it fails, the run stops (every mutant would look killed).
 *
 * Usage:
 *   npm run mutate -- [--list] [--only id,id] [--out file.json] [--files a.test.ts,b.test.ts] [--no-baseline]
 *                     [--timeout minutes] [--keep]
 * Environment: MODEL_RUNS etc. pass through to the tests.
 * The default suite: test/contracts/*.test.ts except gas.test.ts (gas figures, not behaviour), fast files first and
 * the random/model suites last, then test/protocol/parity.test.ts (it deploys the compiled escrow; golden.test.ts
 * deploys the committed bytecode of server/demo, not the mutant, so it is left out).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { MUTATIONS, TARGET, type Mutation } from "./mutations";

const ROOT = join(__dirname, "..");
const HARDHAT = join(ROOT, "node_modules", ".bin", "hardhat");
const WORK = join(ROOT, "cache", "mutate");

type Status = "killed" | "survived" | "compile-error" | "timeout" | "error";

interface Result {
  id: string;
  kind: Mutation["kind"];
  description: string;
  expect?: Mutation["expect"];
  status: Status;
  killedBy?: { title: string; file?: string; error: string };
  detail?: string;
  passes?: number;
  compileMs: number;
  testMs: number;
}

// ------------------------------------------------------------------ arguments

interface Options {
  list: boolean;
  only?: string[];
  out?: string;
  files?: string[];
  baseline: boolean;
  timeoutMs: number;
  keep: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { list: false, baseline: true, timeoutMs: 20 * 60_000, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--list") o.list = true;
    else if (a === "--only") o.only = value().split(",").map((s) => s.trim()).filter(Boolean);
    else if (a === "--out") o.out = value();
    else if (a === "--files") o.files = value().split(",").map((s) => s.trim()).filter(Boolean);
    else if (a === "--no-baseline") o.baseline = false;
    else if (a === "--timeout") o.timeoutMs = Number(value()) * 60_000;
    else if (a === "--keep") o.keep = true;
    else if (a === "--help" || a === "-h") {
      console.log(readFileSync(__filename, "utf8").split("*/")[0]);
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  if (!(o.timeoutMs > 0)) throw new Error("--timeout must be a positive number of minutes");
  return o;
}

// ------------------------------------------------------------------ mutations

/** `find` as a regular expression in which every run of whitespace matches any run of whitespace. */
function pattern(find: string): RegExp {
  const parts = find.trim().split(/\s+/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(parts.join("\\s+"), "g");
}

function matches(source: string, m: Mutation): number {
  return [...source.matchAll(pattern(m.find))].length;
}

function apply(source: string, m: Mutation): string {
  return source.replace(pattern(m.find), () => m.replace);
}

/** Refuses a stale or inconsistent list: every selected `find` must match exactly once and change the source. */
function validate(source: string, list: Mutation[]): void {
  const problems: string[] = [];
  const ids = new Set<string>();
  for (const m of MUTATIONS) {
    if (ids.has(m.id)) problems.push(`duplicate id ${m.id}`);
    ids.add(m.id);
  }
  for (const m of list) {
    const n = matches(source, m);
    if (n !== 1) problems.push(`${m.id}: \`find\` matches ${n} times (must be exactly once): ${JSON.stringify(m.find)}`);
    else if (apply(source, m) === source) problems.push(`${m.id}: the replacement leaves the source unchanged`);
  }
  if (problems.length > 0) {
    throw new Error(
      `scripts/mutations.ts is stale for contracts/${TARGET} (fix these entries, then rerun):\n  ` + problems.join("\n  "),
    );
  }
}

// ------------------------------------------------------------------ test files

function defaultTestFiles(): string[] {
  const dir = join(ROOT, "test", "contracts");
  const all = readdirSync(dir)
    .filter((f) => f.endsWith(".test.ts") && f !== "gas.test.ts")
    .sort();
  // Random and model-based suites are slow: run them after the targeted tests so a kill is found early.
  const slow = (f: string) => /model|invariant|fuzz|propert/i.test(f);
  const ordered = [...all.filter((f) => !slow(f)), ...all.filter(slow)].map((f) => join("test", "contracts", f));
  return [...ordered, join("test", "protocol", "parity.test.ts")];
}

// ------------------------------------------------------------------ processes

interface Run {
  code: number | null;
  output: string;
  timedOut: boolean;
  ms: number;
}

/** Runs the Hardhat CLI in its own process group (so a timeout can end it and its children), logging to `log`. */
function hardhat(args: string[], env: NodeJS.ProcessEnv, log: string, timeoutMs: number): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(HARDHAT, args, { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const onData = (d: Buffer) => {
      output += d.toString();
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        /* already gone */
      }
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      output = output.replace(/\x1b\[[0-9;]*m/g, ""); // colours, whatever the tools decided
      writeFileSync(log, output);
      resolve({ code, output, timedOut, ms: Date.now() - started });
    });
  });
}

function envFor(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const nodeOptions = process.env.NODE_OPTIONS ?? "";
  return {
    ...process.env,
    HARDHAT_SOURCES: relative(ROOT, join(dir, "contracts")),
    HARDHAT_ARTIFACTS: relative(ROOT, join(dir, "artifacts")),
    HARDHAT_CACHE: relative(ROOT, join(dir, "cache")),
    NODE_OPTIONS: nodeOptions.includes("--conditions=@paychan/source") ? nodeOptions : `${nodeOptions} --conditions=@paychan/source`.trim(),
    NO_COLOR: "1",
    ...extra,
  };
}

/** The first solc error of a failed compile (e.g. `TypeError: ...` and its location). */
function compileError(output: string): string {
  const lines = output.split("\n");
  const i = lines.findIndex((l) => /^\s*[A-Z]\w*(Error|Exception): /.test(l) && !/HardhatError/.test(l));
  if (i < 0) return lines.filter((l) => l.trim()).slice(-3).join(" | ").slice(0, 400);
  return lines
    .slice(i, i + 2)
    .map((l) => l.trim().replace(/cache\/mutate\/[^/]+\/[^/]+\//, ""))
    .filter(Boolean)
    .join(" ")
    .slice(0, 400);
}

/** Compiles and tests the contracts in `dir`; `label` names the logs. */
async function runOne(dir: string, files: string[], timeoutMs: number): Promise<Omit<Result, "id" | "kind" | "description" | "expect">> {
  const compile = await hardhat(["compile", "--quiet"], envFor(dir), join(dir, "compile.log"), timeoutMs);
  if (compile.timedOut) return { status: "timeout", detail: "compile timed out", compileMs: compile.ms, testMs: 0 };
  if (compile.code !== 0) return { status: "compile-error", detail: compileError(compile.output), compileMs: compile.ms, testMs: 0 };

  const resultPath = join(dir, "suite.json");
  const env = envFor(dir, { MUTATE_TEST_FILES: JSON.stringify(files), MUTATE_RESULT: resultPath });
  const test = await hardhat(["run", "--no-compile", join("scripts", "mutate-suite.ts")], env, join(dir, "test.log"), timeoutMs);
  const base = { compileMs: compile.ms, testMs: test.ms };
  if (test.timedOut) return { ...base, status: "timeout", detail: `suite timed out after ${Math.round(timeoutMs / 60_000)} min` };
  let outcome: { passes: number; failures: number; firstFailure?: Result["killedBy"] } | undefined;
  try {
    outcome = JSON.parse(readFileSync(resultPath, "utf8"));
  } catch {
    outcome = undefined;
  }
  if (!outcome) return { ...base, status: "error", detail: `runner exited ${test.code} without a result: ${tail(test.output)}` };
  if (outcome.firstFailure) return { ...base, status: "killed", killedBy: outcome.firstFailure, passes: outcome.passes };
  if (test.code === 0 && outcome.failures === 0) return { ...base, status: "survived", passes: outcome.passes };
  return { ...base, status: "error", passes: outcome.passes, detail: `runner exited ${test.code}: ${tail(test.output)}` };
}

function tail(s: string): string {
  return s.split("\n").filter((l) => l.trim()).slice(-4).join(" | ").slice(0, 400);
}

// ------------------------------------------------------------------ report

function fmtMs(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function printTable(results: Result[]): void {
  const rows = results.map((r) => ({
    mutant: r.id,
    kind: r.kind,
    status: r.status + (r.expect === "equivalent" ? " (equivalent)" : ""),
    "killed by / detail": r.killedBy ? `${r.killedBy.file ?? ""}: ${r.killedBy.title}` : (r.detail ?? ""),
    time: fmtMs(r.compileMs + r.testMs),
  }));
  const cols = Object.keys(rows[0] ?? {}) as (keyof (typeof rows)[number])[];
  const width = (c: (typeof cols)[number]) => Math.min(c === "killed by / detail" ? 110 : 60, Math.max(c.length, ...rows.map((r) => r[c].length)));
  const cell = (s: string, w: number) => (s.length > w ? s.slice(0, w - 1) + "…" : s.padEnd(w));
  console.log(cols.map((c) => cell(c, width(c))).join("  "));
  console.log(cols.map((c) => "-".repeat(width(c))).join("  "));
  for (const r of rows) console.log(cols.map((c) => cell(r[c], width(c))).join("  "));
}

function summarize(results: Result[]) {
  const count = (s: Status, kind?: Mutation["kind"]) => results.filter((r) => r.status === s && (!kind || r.kind === kind)).length;
  const statuses: Status[] = ["killed", "survived", "compile-error", "timeout", "error"];
  const counts = (kind?: Mutation["kind"]) => Object.fromEntries(statuses.map((s) => [s, count(s, kind)])) as Record<Status, number>;
  return {
    total: results.length,
    ...counts(),
    safety: counts("safety"),
    survivors: results.filter((r) => r.status === "survived").map((r) => r.id),
  };
}

function git(args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn("git", args, { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("close", () => resolve(out.trim()));
    child.on("error", () => resolve(""));
  });
}

// ------------------------------------------------------------------ main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const sourcePath = join(ROOT, "contracts", TARGET);
  const source = readFileSync(sourcePath, "utf8");
  const selected = opts.only ? opts.only.map((id) => MUTATIONS.find((m) => m.id === id) ?? fail(`unknown mutant ${id} (see --list)`)) : MUTATIONS;

  if (opts.list) {
    for (const m of selected) {
      const n = matches(source, m);
      console.log(`${m.id.padEnd(40)} ${m.kind.padEnd(6)} ${n === 1 ? "ok   " : `STALE (${n} matches)`} ${m.description}`);
    }
    return;
  }
  validate(source, selected);

  const files = opts.files ?? defaultTestFiles();
  for (const f of files) if (!existsSync(join(ROOT, f))) fail(`test file ${f} does not exist`);

  // One snapshot of contracts/ for the whole run: others may edit the working tree meanwhile.
  const runDir = join(WORK, `run-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  const base = join(runDir, "base");
  mkdirSync(runDir, { recursive: true });
  cpSync(join(ROOT, "contracts"), base, { recursive: true });
  const baseSource = readFileSync(join(base, TARGET), "utf8");
  validate(baseSource, selected);

  const started = new Date();
  const report = {
    startedAt: started.toISOString(),
    finishedAt: "",
    gitHead: await git(["rev-parse", "--short", "HEAD"]),
    contractsDirty: (await git(["status", "--porcelain", "--", "contracts"])) !== "",
    sourceSha256: createHash("sha256").update(baseSource).digest("hex"),
    testFiles: files,
    modelRuns: process.env.MODEL_RUNS ?? "default",
    baseline: undefined as undefined | Omit<Result, "id" | "kind" | "description" | "expect">,
    results: [] as Result[],
    summary: {} as ReturnType<typeof summarize>,
    totalMs: 0,
  };
  const save = () => {
    if (!opts.out) return;
    report.summary = summarize(report.results);
    report.totalMs = Date.now() - started.getTime();
    writeFileSync(opts.out, JSON.stringify(report, null, 2) + "\n");
  };
  console.log(`mutate: ${selected.length} mutant(s) of contracts/${TARGET} (HEAD ${report.gitHead}${report.contractsDirty ? ", contracts/ modified" : ""})`);
  console.log(`suite: ${files.join(" ")}`);
  console.log(`work: ${relative(ROOT, runDir)}${opts.keep ? " (kept)" : ""}`);

  const prepare = (name: string, text: string) => {
    const dir = join(runDir, name);
    cpSync(base, join(dir, "contracts"), { recursive: true });
    writeFileSync(join(dir, "contracts", TARGET), text);
    return dir;
  };
  const cleanup = (dir: string) => {
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  };

  if (opts.baseline) {
    const dir = prepare("baseline", baseSource);
    process.stdout.write("baseline (unmutated) ... ");
    const r = await runOne(dir, files, opts.timeoutMs);
    report.baseline = r;
    console.log(`${r.status === "survived" ? "passes" : r.status} (${r.passes ?? 0} tests, compile ${fmtMs(r.compileMs)}, tests ${fmtMs(r.testMs)})`);
    if (r.status !== "survived") {
      save();
      const why = r.killedBy ? `${r.killedBy.file}: ${r.killedBy.title}: ${r.killedBy.error}` : r.detail;
      fail(`the unmutated suite does not pass (${r.status}: ${why}); logs in ${relative(ROOT, dir)}`);
    }
    cleanup(dir);
  }

  for (const [i, m] of selected.entries()) {
    const dir = prepare(m.id, apply(baseSource, m));
    process.stdout.write(`[${i + 1}/${selected.length}] ${m.id} ... `);
    const r = await runOne(dir, files, opts.timeoutMs);
    const result: Result = { id: m.id, kind: m.kind, description: m.description, expect: m.expect, ...r };
    report.results.push(result);
    const why = r.killedBy ? ` by ${r.killedBy.file}: ${r.killedBy.title}` : r.detail ? `: ${r.detail}` : "";
    console.log(`${r.status}${why} (${fmtMs(r.compileMs + r.testMs)})`);
    if (r.status === "killed" || r.status === "survived" || r.status === "compile-error") cleanup(dir);
    else console.log(`  logs kept in ${relative(ROOT, dir)}`);
    save();
  }
  if (!opts.keep) rmSync(base, { recursive: true, force: true });
  if (readdirSync(runDir).length === 0) rmSync(runDir, { recursive: true, force: true });

  report.finishedAt = new Date().toISOString();
  save();
  console.log("");
  printTable(report.results);
  const s = summarize(report.results);
  console.log(
    `\n${s.total} mutants: ${s.killed} killed, ${s.survived} survived, ${s["compile-error"]} compile errors, ${s.timeout} timeouts, ${s.error} errors ` +
      `(safety: ${s.safety.killed} killed, ${s.safety.survived} survived) in ${fmtMs(Date.now() - started.getTime())}`,
  );
  if (s.survivors.length) console.log(`survivors: ${s.survivors.join(", ")}`);
  if (opts.out) console.log(`result: ${opts.out}`);
}

function fail(message: string): never {
  console.error(`mutate: ${message}`);
  process.exit(1);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
