/**
 * Child processes for fault tests and benchmarks: a TypeScript entry point run with `node -r ts-node/register`
 * (transpile only), ready when its output matches a pattern; killed by pid only (never by name).
 *
 * ```ts
 * const srv = await startServerProcess({ RPC_URL, ESCROW_ADDRESS, TOKEN_ADDRESS, PAYEE_ADDRESS, DATABASE_URL });
 * await fetch(`${srv.url}/v1/echo`);
 * srv.kill("SIGKILL"); await srv.exited;          // or: await srv.stop()
 * ```
 * Imports no Hardhat code (usable from scripts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");

/**
 * Node arguments that run a TypeScript entry point of this repository: the workspace packages resolve to their
 * TypeScript sources (the `@paychan/source` export condition), compiled on the fly by ts-node (transpile only).
 */
export const TS_NODE_ARGS: readonly string[] = ["--conditions=@paychan/source", "-r", "ts-node/register"];

/**
 * `env` without the `@paychan/source` condition in NODE_OPTIONS: for children that run the compiled packages (the
 * `channel` bin, installed tarballs), as an installation would.
 */
export function compiledEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const nodeOptions = (env.NODE_OPTIONS ?? "").replace(/--conditions[= ]@paychan\/source/g, "").trim();
  return { ...env, NODE_OPTIONS: nodeOptions || undefined };
}

/** The demo server's entry point (what `npm start` runs, from source). */
export const SERVER_MAIN = path.join(REPO_ROOT, "server", "demo", "src", "main.ts");

export interface ChildHandle {
  child: ChildProcess;
  pid: number;
  /** The ready pattern's match. */
  match: RegExpExecArray;
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last 64 KiB of stdout + stderr. */
  output(): string;
  /** Sends `signal` (default SIGTERM) to this process if it is still running. */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves once exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnTsOptions {
  args?: string[];
  /** Added to this process's environment. */
  env?: Record<string, string | undefined>;
  /** Resolve when stdout/stderr matches (default `/ready/`). */
  ready?: RegExp;
  /** Reject (and kill the child) when not ready in time (default 60 s). */
  timeoutMs?: number;
  /** Pass the child's stderr through to ours (default false: captured only). */
  inheritStderr?: boolean;
  /** Extra node options before the script (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
}

/** Starts `node <TS_NODE_ARGS> <script> ...args` in the repository root and waits for `ready`. */
export function spawnTs(script: string, o: SpawnTsOptions = {}): Promise<ChildHandle> {
  const ready = o.ready ?? /ready/;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(o.nodeArgs ?? []), ...TS_NODE_ARGS, script, ...(o.args ?? [])], {
      cwd: REPO_ROOT,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true", ...o.env },
      stdio: ["ignore", "pipe", o.inheritStderr ? "inherit" : "pipe"],
    });
    let out = "";
    let done = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      // "close": exited AND its output is drained.
      child.once("close", (code, signal) => r({ code, signal })),
    );
    const kill = (signal: NodeJS.Signals = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      kill("SIGKILL");
      reject(new Error(`${path.basename(script)} not ready after ${o.timeoutMs ?? 60_000} ms: ${out.slice(-800)}`));
    }, o.timeoutMs ?? 60_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.length > 65_536) out = out.slice(-65_536);
      if (done) return;
      const m = ready.exec(out);
      if (m) {
        done = true;
        clearTimeout(timer);
        resolve({
          child,
          pid: child.pid!,
          match: m,
          exited,
          output: () => out,
          kill,
          async stop(graceMs = 5_000) {
            kill("SIGTERM");
            const t = setTimeout(() => kill("SIGKILL"), graceMs);
            await exited;
            clearTimeout(t);
          },
        });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then(({ code, signal }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${path.basename(script)} exited (${code ?? signal}) before it was ready: ${out.slice(-800)}`));
    });
  });
}

export interface ServerProcess extends ChildHandle {
  /** `http://127.0.0.1:<port>` */
  url: string;
}

/**
 * The real `server/demo/src/main.ts` (what `npm start` runs) as a child process, configured by `env` (RPC_URL,
 * ESCROW_ADDRESS, TOKEN_ADDRESS, PAYEE_ADDRESS, DATABASE_URL, ...). Defaults: PORT=0, LOG_LEVEL=silent,
 * SETTLE_IN_SERVER=false. Resolves on its `ready in …: <url>` line.
 */
export async function startServerProcess(env: Record<string, string>, o: { timeoutMs?: number } = {}): Promise<ServerProcess> {
  const h = await spawnTs(SERVER_MAIN, {
    env: { PORT: "0", LOG_LEVEL: "silent", SETTLE_IN_SERVER: "false", ...env },
    ready: /ready in [0-9.]+s: (http:\/\/\S+)/,
    timeoutMs: o.timeoutMs,
  });
  return Object.assign(h, { url: h.match[1] });
}

/** What a finished child printed, and how it ended. */
export interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** The last 64 KiB of standard error. */
  stderr: string;
}

/**
 * Runs `node ...args` to completion in `cwd` (default the repository) with exactly `env` as its environment; killed
 * after `timeoutMs` (default 120 s). Resolves with its exit and output; never rejects on a non-zero exit.
 */
export function runNode(args: readonly string[], o: { cwd?: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], { cwd: o.cwd ?? REPO_ROOT, env: o.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-65_536)));
    const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 120_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs `node <TS_NODE_ARGS> <script> ...args` to completion; resolves with its exit and output (never rejects on a non-zero exit). */
export function runTs(script: string, o: { args?: string[]; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<ChildRun> {
  return runNode([...TS_NODE_ARGS, script, ...(o.args ?? [])], { env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true", ...o.env }, timeoutMs: o.timeoutMs });
}
