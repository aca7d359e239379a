/** Starting benchmark child processes (a chain or a server) that print `ready <url>` when they listen. */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { TS_NODE_ARGS } from "../../test/helpers/process";

/** The latency server every HTTP benchmark runs (`latency-server.ts`). */
export const LATENCY_SERVER = path.join(__dirname, "latency-server.ts");

/**
 * Runs `node -r ts-node/register ...args` from the repository root with `env` added, and resolves with the URL of
 * its `ready <url>` line; rejects if it exits first.
 */
export function startReadyChild(args: string[], env: Record<string, string> = {}): Promise<{ url: string; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...TS_NODE_ARGS, ...args], {
      cwd: path.resolve(__dirname, "..", ".."),
      env: { ...process.env, ...env, TS_NODE_TRANSPILE_ONLY: "true" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d.toString();
      const m = /ready (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], child });
    });
    child.on("exit", (code) => reject(new Error(`child exited with ${code}: ${out.slice(-500)}`)));
  });
}
