/**
 * Several REAL provider server processes (`server/main.ts`, as `npm start` runs it with RPC_URL set) sharing one
 * PostgreSQL database, against the in-process Hardhat chain exposed over JSON-RPC: what a provider runs behind a
 * load balancer. Also a load-balancing `fetch` that spreads requests over the replicas round-robin and, like
 * nginx's `proxy_next_upstream error`, sends a request to the next replica when one cannot be reached.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { CONFIG_VARIABLES } from "@paychan/server";
import { PG_POOL_VARIABLES } from "@paychan/server/postgres";
import { SERVER_MAIN, TS_NODE_ARGS } from "../helpers/process";

const ROOT = path.resolve(__dirname, "../..");

export interface Replica {
  name: string;
  /** `http://127.0.0.1:<port>` */
  url: string;
  child: ChildProcess;
  /** The process's output (stdout and stderr, last 20,000 characters). */
  output(): string;
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<string>;
  /** Kills the process with `signal` and waits for it to end. */
  kill(signal?: NodeJS.Signals): Promise<string>;
  /** SIGTERM (graceful stop), SIGKILL after `ms`. */
  stop(ms?: number): Promise<string>;
}

/** Starts `server/main.ts` with `env` (on top of this process's environment); resolves once it printed `ready`. */
export function startReplica(name: string, env: Record<string, string>, timeoutMs = 90_000): Promise<Replica> {
  // The server's own variables come only from `env`: none leaks in from the environment the tests run in.
  const inherited: Record<string, string | undefined> = { ...process.env };
  for (const v of [...CONFIG_VARIABLES, ...PG_POOL_VARIABLES]) delete inherited[v.name];
  const child = spawn(process.execPath, [...TS_NODE_ARGS, SERVER_MAIN], {
    cwd: ROOT,
    env: { ...inherited, TS_NODE_TRANSPILE_ONLY: "true", HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const append = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  const exited = new Promise<string>((resolve) => child.once("exit", (code, signal) => resolve(signal ?? String(code))));
  return new Promise<Replica>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not print ready within ${timeoutMs} ms:\n${out.slice(-3000)}`));
    }, timeoutMs);
    const onData = () => {
      const m = /ready in [0-9.]+s: (http:\/\/[0-9.:]+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stdout!.off("data", onData);
      const r: Replica = {
        name,
        url: m[1],
        child,
        output: () => out,
        exited,
        kill: async (signal = "SIGKILL") => {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
        stop: async (ms = 10_000) => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const t = setTimeout(() => child.kill("SIGKILL"), ms);
          const how = await exited;
          clearTimeout(t);
          return how;
        },
      };
      resolve(r);
    };
    child.stdout!.on("data", onData);
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${how}) before ready:\n${out.slice(-3000)}`));
    });
  });
}

/** Starts `n` replicas at once (they migrate and bind the shared database concurrently). */
export async function startReplicas(n: number, env: (i: number) => Record<string, string>): Promise<Replica[]> {
  const started = await Promise.allSettled(Array.from({ length: n }, (_, i) => startReplica(`replica-${i + 1}`, env(i))));
  const ok = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) {
    await Promise.all(ok.map((r) => r.kill()));
    throw failed.reason;
  }
  return ok;
}

/** Errors that mean the request may not have been processed, or its answer was lost: try the next replica. */
function isConnectionError(e: unknown): boolean {
  const codes = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CLOSED", "ETIMEDOUT"]);
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur; i++) {
    const c = cur as { code?: string; cause?: unknown; message?: string };
    if (c.code && codes.has(c.code)) return true;
    if (typeof c.message === "string" && /other side closed|socket hang up|fetch failed/i.test(c.message)) return true;
    cur = c.cause;
  }
  return false;
}

export interface Balancer {
  /** A fetch for URLs on `base` (any origin): each request goes to the next live replica. */
  fetch: typeof fetch;
  /** Requests sent to each replica (by name), and the number retried on another replica. */
  counts: Record<string, number>;
  retried: number;
  /** Stops sending to `name` (a load balancer's health check noticed it died). */
  markDown(name: string): void;
}

/**
 * A client-side round-robin balancer over `replicas`: rewrites the origin of each request to a replica's, and on a
 * connection error marks that replica down and sends the same request to the next one.
 */
export function balancer(replicas: readonly Replica[]): Balancer {
  const down = new Set<string>();
  const counts: Record<string, number> = Object.fromEntries(replicas.map((r) => [r.name, 0]));
  let next = 0;
  const b: Balancer = {
    counts,
    retried: 0,
    markDown: (name) => down.add(name),
    fetch: async (input, init) => {
      const req = input instanceof Request ? input : null;
      const url = new URL(req ? req.url : String(input));
      let lastError: unknown;
      for (let attempt = 0; attempt < replicas.length; attempt++) {
        const live = replicas.filter((r) => !down.has(r.name));
        if (live.length === 0) break;
        const r = live[next++ % live.length];
        const target = new URL(url.pathname + url.search, r.url).toString();
        counts[r.name]++;
        try {
          return await fetch(target, req ? new Request(target, req) : init);
        } catch (e) {
          if (!isConnectionError(e)) throw e;
          lastError = e;
          down.add(r.name);
          b.retried++;
        }
      }
      throw lastError ?? new Error("no replica is up");
    },
  };
  return b;
}
