/**
 * The PostgreSQL skip policy of test/helpers/postgres.ts, checked in a separate mocha process on a machine made to
 * look as if it had no PostgreSQL (`PG_BIN_DIR` pointing nowhere, no `TEST_DATABASE_URL`): the suites are skipped
 * with ONE explanatory line, and under `CI=true` they fail instead.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { POSTGRES_SKIP_LINE } from "../../helpers/postgres";
import { TS_NODE_ARGS } from "../../helpers/process";

const ROOT = path.resolve(__dirname, "../../..");

describe("PostgreSQL tests on a machine without PostgreSQL", function () {
  this.timeout(60_000);
  let dir: string;
  let fixture: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "pg-skip-policy-"));
    fixture = path.join(dir, "fixture.test.ts");
    const helper = path.join(ROOT, "test/helpers/postgres");
    fs.writeFileSync(
      fixture,
      `import { describePostgres } from ${JSON.stringify(helper)};
describePostgres("needs postgres A", () => { it("a1", () => undefined); it("a2", () => undefined); });
describePostgres("needs postgres B", () => { it("b1", () => undefined); });
describe("plain", () => { it("runs", () => undefined); });
`,
    );
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  function runMocha(extraEnv: Record<string, string>) {
    const env: Record<string, string | undefined> = { ...process.env, PG_BIN_DIR: path.join(dir, "no-such-dir"), TS_NODE_PROJECT: path.join(ROOT, "tsconfig.json"), TS_NODE_TRANSPILE_ONLY: "true", ...extraEnv };
    delete env.TEST_DATABASE_URL;
    if (!("CI" in extraEnv)) delete env.CI;
    const r = spawnSync(process.execPath, [...TS_NODE_ARGS, require.resolve("mocha/bin/mocha.js"), "--reporter", "spec", fixture], {
      cwd: ROOT,
      env,
      encoding: "utf8",
      timeout: 50_000,
    });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  }

  it("skips them, saying once how to enable them", () => {
    const r = runMocha({});
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.match(/1 passing/);
    expect(r.out).to.match(/3 pending/);
    expect(r.out.split(POSTGRES_SKIP_LINE).length - 1, r.out).to.equal(1);
  });

  it("fails them under CI=true", () => {
    const r = runMocha({ CI: "true" });
    expect(r.code, r.out).to.not.equal(0);
    expect(r.out).to.match(/2 failing/);
    expect(r.out).to.include("CI=true forbids skipping");
  });
});
