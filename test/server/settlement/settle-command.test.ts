/**
 * The `channel-settle` command of `@paychan/server` as a provider who installed the package runs it from cron: no
 * local defaults (no RPC endpoint, payee, Hardhat key or repository paths of its own). In process
 * (`runSettleCommand`) for the configuration errors, and as a child process running the compiled bin
 * (`server/core/bin/channel-settle.js` → `dist/`, without the `@paychan/source` condition) against the in-process
 * chain over JSON-RPC, from a directory outside the repository.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { runSettleCommand, SqliteStore } from "@paychan/server";
import { compiledEnv, REPO_ROOT, runNode, type ChildRun } from "../../helpers/process";
import { settlementHarness, type SettlementHarness } from "../../helpers/settlement";

const BIN = path.join(REPO_ROOT, "server", "core", "bin", "channel-settle.js");
const COMPILED = path.join(REPO_ROOT, "server", "core", "dist", "cli", "settle.js");

type Run = Pick<ChildRun, "code" | "stdout" | "stderr">;

/** `runSettleCommand` in this process, its output captured. */
async function settleInProcess(argv: string[], env: Record<string, string>): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await runSettleCommand(argv, env, { out: (t) => (stdout += `${t}\n`), err: (t) => (stderr += `${t}\n`) });
  return { code, stdout, stderr };
}

/** The compiled bin in `cwd`, with only `env` (plus PATH and HOME) as its environment. */
function settleBin(args: string[], cwd: string, env: Record<string, string>): Promise<Run> {
  return runNode([BIN, ...args], {
    cwd,
    env: compiledEnv({ PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NODE_OPTIONS: process.env.NODE_OPTIONS, ...env }),
    timeoutMs: 90_000,
  });
}

describe("settlement: the channel-settle command of the package (no local defaults)", function () {
  this.timeout(120_000);
  let h: SettlementHarness;
  /** A provider's directory outside the repository: its own ./deployments, no .data. */
  let cwd: string;
  before(async function () {
    if (!fs.existsSync(COMPILED)) throw new Error(`${path.relative(REPO_ROOT, COMPILED)} is missing: build first (npx tsc -b tsconfig.build.json)`);
    h = await settlementHarness();
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), "channel-settle-"));
    fs.mkdirSync(path.join(cwd, "deployments"));
    const record = {
      chainId: h.env.chainId,
      escrow: h.env.escrow.address,
      token: h.env.usdc.address,
      blockNumber: 0,
      deployer: h.payee,
      deployedAt: new Date().toISOString(),
    };
    fs.writeFileSync(path.join(cwd, "deployments", `${h.env.chainId}.json`), JSON.stringify(record));
  });
  after(async () => {
    await h?.close();
    if (cwd) fs.rmSync(cwd, { recursive: true, force: true });
  });

  /** What a provider sets: everything but the escrow and token, which come from ./deployments/<chainId>.json. */
  const providerEnv = (): Record<string, string> => ({
    RPC_URL: h.rpcUrl,
    PAYEE_ADDRESS: h.payee,
    SETTLER_PRIVATE_KEY: h.operator.key,
    DATABASE_URL: h.databaseUrl,
    SETTLE_WAIT_TIMEOUT: "30",
  });

  it("exits 2 naming RPC_URL, PAYEE_ADDRESS and SETTLER_PRIVATE_KEY when the environment is empty, before reaching any chain", async () => {
    const r = await settleInProcess(["--all"], {});
    expect(r.code).to.equal(2);
    expect(r.stdout).to.equal("");
    expect(r.stderr).to.contain("invalid configuration:");
    expect(r.stderr).to.contain("RPC_URL is required");
    expect(r.stderr).to.contain("PAYEE_ADDRESS is required");
    expect(r.stderr).to.contain("SETTLER_PRIVATE_KEY is required");

    // On a local chain too: the package never falls back to Hardhat's accounts (the repository's npm run settle does).
    const local = await settleInProcess(["--all"], { RPC_URL: h.rpcUrl, DATABASE_URL: h.databaseUrl });
    expect(local.code).to.equal(2);
    expect(local.stderr).not.to.contain("RPC_URL is required");
    expect(local.stderr).to.contain("PAYEE_ADDRESS is required");
    expect(local.stderr).to.contain("SETTLER_PRIVATE_KEY is required");

    const help = await settleInProcess(["--help"], {});
    expect(help.code).to.equal(0);
    expect(help.stdout).to.contain("usage: channel-settle [--all] [--dry-run] [--json]");
    expect(help.stdout).to.match(/SETTLER_PRIVATE_KEY .*\[default: \(required\)\]/);
  });

  it("settles with its configuration from the environment (the compiled bin, escrow and token from ./deployments/<chainId>.json): summary, exit 0, the payee paid exactly what was spent, no key printed", async () => {
    const chans = [await h.paidChannel({ spent: 250_000n }), await h.paidChannel({ spent: 4_321n })];
    const before = await h.tokenBalance(h.payee);
    const r = await settleBin(["--all"], cwd, providerEnv());
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    expect(r.stdout.toLowerCase()).to.contain(`chain ${h.env.chainId}, escrow ${h.env.escrow.address}, payee ${h.payee}, settler ${h.operator.address} (settler_private_key)`.toLowerCase());
    expect(r.stdout).to.contain("selected: 2 channels (all 2)");
    expect(r.stdout).to.match(/#\d+ settle +confirmed +0x[0-9a-f]{64} +nonce \d+ +channels 2\/2 +amount 0\.254321 +gas [0-9,]+/);
    expect(r.stdout).to.contain("failures: none");
    expect((await h.tokenBalance(h.payee)) - before).to.equal(250_000n + 4_321n);
    for (const c of chans) expect((await h.channelOnChain(c)).settled).to.equal(c.spent);
    const key = h.operator.key.slice(2).toLowerCase();
    expect((r.stdout + r.stderr).toLowerCase()).not.to.contain(key);
  });

  it("uses the server's default database .data/server-<chainId>.sqlite when DATABASE_URL is unset, and exits 2 naming DATABASE_URL when that does not exist", async () => {
    const env = providerEnv();
    delete env.DATABASE_URL;
    const missing = await settleBin(["--all"], cwd, env);
    expect(missing.code, missing.stderr).to.equal(2);
    expect(missing.stderr).to.contain(`no database found (looked for .data/server-${h.env.chainId}.sqlite); set DATABASE_URL`);

    // A provider's server database (bound to this deployment, nothing owed yet).
    const file = path.join(cwd, ".data", `server-${h.env.chainId}.sqlite`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const store = new SqliteStore({ url: file, synchronous: "NORMAL" });
    const genesis = await h.reader.block(0n);
    await store.bind({ chainId: h.env.chainId, escrow: h.env.escrow.address, token: h.env.usdc.address, payee: h.payee, genesisHash: genesis.hash });
    await store.close();
    const r = await settleBin(["--all", "--json"], cwd, env);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ leased: true, channelsSettled: 0, amountSettled: "0" });
  });
});
