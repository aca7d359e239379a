/**
 * The dependency rule (docs/architecture.md, `.dependency-cruiser.cjs`), enforced: the packages obey it, each
 * package imports only what its own package.json declares, and the checker really fails on each kind of violation
 * (a fixture tree with one planted violation per rule).
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "../helpers/process";

const DEPCRUISE = path.join(REPO_ROOT, "node_modules", "dependency-cruiser", "bin", "dependency-cruise.mjs");
const CONFIG = path.join(REPO_ROOT, ".dependency-cruiser.cjs");
/** What the check covers: every package's sources, the scripts and the tests. */
const TARGETS = ["protocol/src", "client/src", "server/core/src", "server/express/src", "server/demo/src", "scripts", "test", "hardhat.config.ts"];
/** The workspace packages: folder and whether agents or providers install it. */
const PACKAGES = [
  { dir: "protocol", runtime: true },
  { dir: "client", runtime: true },
  { dir: "server/core", runtime: true },
  { dir: "server/express", runtime: true },
  { dir: "server/demo", runtime: false },
];

interface Violation {
  from: string;
  to: string;
  rule: { name: string; severity: string };
  cycle?: Array<{ name: string }>;
}
interface CruiseModule {
  source: string;
  dependencies: Array<{ module: string; resolved: string; dependencyTypes: string[]; couldNotResolve: boolean }>;
}
interface CruiseResult {
  modules: CruiseModule[];
  summary: { violations: Violation[]; error: number; totalCruised: number };
}

/** Runs dependency-cruiser with the repository's configuration in `cwd`; resolves with its JSON result. */
function cruise(cwd: string, targets: string[]): Promise<CruiseResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [DEPCRUISE, "--config", CONFIG, "--output-type", "json", ...targets],
      { cwd, maxBuffer: 256 * 1024 * 1024, timeout: 240_000 },
      (err, stdout, stderr) => {
        // Exit status is the number of errors; the JSON says which.
        try {
          resolve(JSON.parse(stdout) as CruiseResult);
        } catch {
          reject(new Error(`dependency-cruiser failed: ${err?.message ?? ""}\n${stderr.slice(-2000)}`));
        }
      },
    );
  });
}

const describeViolation = (v: Violation) => `${v.rule.name}: ${v.from} → ${v.to}${v.cycle ? ` (cycle ${v.cycle.map((c) => c.name).join(" → ")})` : ""}`;

/** The npm package an import resolved to (`node_modules/@scope/name/...` or `node_modules/name/...`). */
function npmPackageOf(resolved: string): string | null {
  const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(resolved);
  return m ? m[1] : null;
}

describe("packages: the dependency rule", function () {
  this.timeout(300_000);
  let real: CruiseResult;

  before(async function () {
    real = await cruise(REPO_ROOT, TARGETS);
  });

  it("the packages, scripts and tests break no rule (no cycles; client and server apart; nothing of dev code in installed packages)", function () {
    expect(real.summary.totalCruised).to.be.greaterThan(150);
    expect(real.summary.violations.map(describeViolation)).to.deep.equal([]);
  });

  it("every package imports only what its own package.json declares", function () {
    const problems: string[] = [];
    for (const p of PACKAGES) {
      const manifest = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, p.dir, "package.json"), "utf8"));
      const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})]);
      const prefix = `${p.dir}/src/`;
      for (const m of real.modules.filter((x) => x.source.startsWith(prefix))) {
        for (const d of m.dependencies) {
          if (d.dependencyTypes.includes("core")) continue; // node: built-ins
          let name = npmPackageOf(d.resolved);
          if (!name) {
            // A workspace package resolves to its sources: name it by the folder it lives in.
            const ws = PACKAGES.find((q) => q.dir !== p.dir && d.resolved.startsWith(`${q.dir}/`));
            if (!ws) continue; // inside this package
            name = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, ws.dir, "package.json"), "utf8")).name as string;
          }
          if (name.startsWith("@types/")) continue;
          if (!declared.has(name)) problems.push(`${m.source} imports ${d.module} (${name}), not declared in ${p.dir}/package.json`);
        }
      }
    }
    expect(problems).to.deep.equal([]);
  });

  it("fails on each kind of violation planted in a fixture tree", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "depcruise-fixture-"));
    try {
      const write = (file: string, text: string) => {
        fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
        fs.writeFileSync(path.join(dir, file), text);
      };
      write("tsconfig.json", JSON.stringify({ compilerOptions: { module: "node20", moduleResolution: "node16", strict: true } }));
      for (const name of ["hardhat", "pg", "express"]) {
        write(`node_modules/${name}/package.json`, JSON.stringify({ name, version: "1.0.0", main: "index.js" }));
        write(`node_modules/${name}/index.js`, "module.exports = {};\n");
      }
      // One violation per rule; each file is otherwise harmless.
      write("protocol/src/index.ts", 'import "../../client/src/index";\nexport const p = 1;\n'); // protocol-imports-nothing-ours
      write("client/src/index.ts", 'import "../../server/core/src/index";\nexport const c = 1;\n'); // client-not-server
      write("server/core/src/index.ts", 'import "../../express/src/index";\nexport const s = 1;\n'); // core-not-adapters
      write("server/express/src/index.ts", 'import "../../demo/src/index";\nimport "../../../client/src/index";\nexport const e = 1;\n'); // adapter-not-demo, server-not-client
      write("server/demo/src/index.ts", "export const d = 1;\n");
      write("server/core/src/local.ts", 'import "../../../test/helper";\nimport "hardhat";\nimport "pg";\nexport const l = 1;\n'); // runtime-not-dev-code, -dev-tools, drivers
      write("test/helper.ts", "export const t = 1;\n");
      write("client/src/a.ts", 'import { b } from "./b";\nimport "express";\nimport "./missing";\nexport const a = b;\n'); // sdk-without-server-dependencies, not-to-unresolvable
      write("client/src/b.ts", 'import { a } from "./a";\nexport const b = 1;\nexport const again = a;\n'); // no-circular
      const r = await cruise(dir, ["protocol", "client", "server", "test"]);
      const broken = new Set(r.summary.violations.map((v) => v.rule.name));
      expect([...broken].sort()).to.deep.equal(
        [
          "adapter-not-demo",
          "client-not-server",
          "core-not-adapters",
          "drivers-only-in-their-store",
          "no-circular",
          "not-to-unresolvable",
          "protocol-imports-nothing-ours",
          "runtime-not-dev-code",
          "runtime-not-dev-tools",
          "sdk-without-server-dependencies",
          "server-not-client",
        ].sort(),
      );
      expect(r.summary.error).to.be.greaterThan(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
