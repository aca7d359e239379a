/**
 * `npm run bench:packages`: what an agent developer pays to adopt the SDK, measured from the packed tarballs.
 *
 * - `npm install --omit=dev` of the SDK (`@paychan/client` with `@paychan/protocol`, both from `npm pack`) into an
 *   empty folder outside the repository: packages, MB on disk, seconds (the npm cache is whatever this machine has);
 * - `channel --help` of that installed CLI, a fresh process each time: median and spread of `RUNS` runs, next to a
 *   bare `node -e 0` on the same machine for scale.
 *
 * Prints one table; writes nothing in the repository. Environment: RUNS (default 5).
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { compiledEnv, REPO_ROOT } from "../../test/helpers/process";

const RUNS = Number(process.env.RUNS ?? 5);

function packagesIn(nodeModules: string): number {
  let n = 0;
  const walk = (dir: string) => {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir)) {
      if (e.startsWith(".")) continue;
      const p = path.join(dir, e);
      if (e.startsWith("@")) walk(p);
      else if (fs.existsSync(path.join(p, "package.json"))) {
        n++;
        walk(path.join(p, "node_modules"));
      }
    }
  };
  walk(nodeModules);
  return n;
}

function bytesIn(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).size;
  return n;
}

/** Median and min–max of `runs` wall-clock times of `cmd args`, ms. */
function time(cmd: string, args: string[], cwd: string): { median: number; min: number; max: number } {
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = spawnSync(cmd, args, { cwd, env: compiledEnv(), stdio: "ignore" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}`);
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { median: t[Math.floor(t.length / 2)], min: t[0], max: t[t.length - 1] };
}

function main(): void {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "paychan-bench-packages-"));
  try {
    const tarballs: string[] = [];
    for (const dir of ["protocol", "client"]) {
      const out = execFileSync("npm", ["pack", "--json", "--pack-destination", work, "--loglevel=error"], { cwd: path.join(REPO_ROOT, dir), env: compiledEnv(), encoding: "utf8" });
      tarballs.push(path.join(work, (JSON.parse(out) as Array<{ filename: string }>)[0].filename));
    }
    const project = path.join(work, "agent");
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "agent", version: "1.0.0", private: true }));
    const t0 = performance.now();
    execFileSync("npm", ["install", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error", ...tarballs], { cwd: project, env: compiledEnv(), stdio: "ignore" });
    const seconds = (performance.now() - t0) / 1000;
    const nm = path.join(project, "node_modules");
    const help = time(path.join(nm, ".bin", "channel"), ["--help"], project);
    const bare = time(process.execPath, ["-e", "0"], project);
    const row = (k: string, v: string) => console.log(`| ${k.padEnd(44)} | ${v.padEnd(28)} |`);
    console.log(`| ${"measure".padEnd(44)} | ${"value".padEnd(28)} |`);
    console.log(`|${"-".repeat(46)}|${"-".repeat(30)}|`);
    row("SDK install (--omit=dev): packages", String(packagesIn(nm)));
    row("SDK install: size on disk", `${(bytesIn(nm) / 1e6).toFixed(1)} MB`);
    row("SDK install: time", `${seconds.toFixed(1)} s`);
    row(`channel --help, median of ${RUNS} (min–max)`, `${help.median.toFixed(0)} ms (${help.min.toFixed(0)}–${help.max.toFixed(0)})`);
    row(`node -e 0, median of ${RUNS} (min–max)`, `${bare.median.toFixed(0)} ms (${bare.min.toFixed(0)}–${bare.max.toFixed(0)})`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main();
