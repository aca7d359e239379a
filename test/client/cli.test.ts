/**
 * The `channel` CLI (client/bin/channel.js running the compiled package, as `npx channel` runs it) against the real server on the in-process chain
 * (exposed over JSON-RPC): help and usage errors, paid calls with a summary, status, close.
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startTestServer, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";
import { compiledEnv } from "../helpers/process";

const BIN = path.resolve(__dirname, "..", "..", "client", "bin", "channel.js");
const PAYER = 17;

function run(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...compiledEnv(), ...env }, cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("client: channel CLI", function () {
  this.timeout(120_000);
  let srv: TestServer;
  let snap: string;
  let cwd: string;
  let env: Record<string, string>;

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer();
    await mintUsdc(srv.token, chainClients(PAYER).address, 100_000_000n);
    cwd = await fs.mkdtemp(path.join(os.tmpdir(), "channel-cli-"));
    env = { CHANNEL_PRIVATE_KEY: chainClients(PAYER).key, RPC_URL: srv.rpcUrl, CHANNEL_STATE_DIR: path.join(cwd, "state") };
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
    if (cwd) await fs.rm(cwd, { recursive: true, force: true });
  });

  it("prints usage for --help (exit 0)", async function () {
    const help = await run(["--help"], env, cwd);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/call <url>/).and.match(/top-up <channelId> <amount>/);
  });

  it("call -n 40 -c 8 --json: every call paid, one HTTP request each after the first, then status and close", async function () {
    const url = `${srv.url}/v1/echo?msg=cli`;
    const r = await run(["call", url, "-n", "40", "-c", "8", "--json", "--escrow", srv.escrow], env, cwd);
    expect(r.code, r.stderr).to.equal(0);
    const s = JSON.parse(r.stdout);
    expect(s.calls).to.equal(40);
    expect(s.paid).to.equal(40);
    expect(s.failures).to.equal(0);
    expect(s.amountPaid).to.equal("40000");
    expect(s.requests).to.be.at.most(40 + 8); // at most one 402 per worker before the route was known
    expect(s.latencyMs.p50).to.be.a("number");

    // A second process pays on the first attempt: the route terms and the channel were saved.
    const again = await run(["call", url, "-n", "10", "--json", "--escrow", srv.escrow], env, cwd);
    expect(again.code, again.stderr).to.equal(0);
    expect(JSON.parse(again.stdout).requests).to.equal(10);

    const st = await run(["status", "--json"], env, cwd);
    expect(st.code, st.stderr).to.equal(0);
    const status = JSON.parse(st.stdout);
    expect(status.channels).to.have.length(1);
    const ch = status.channels[0];
    expect(ch.spent).to.equal("50000");
    expect(ch.deposit).to.equal("1000000");
    expect(ch.remaining).to.equal("950000");
    expect(ch.status).to.equal("open");

    const close = await run(["close", ch.channelId.slice(0, 10), "--json"], env, cwd);
    expect(close.code, close.stderr).to.equal(0);
    expect(JSON.parse(close.stdout).mode).to.equal("cooperative");
  });

  it("refuses a price above --max-price with a typed error and exit 1", async function () {
    const r = await run(["call", `${srv.url}/v1/echo?msg=x`, "--max-price", "0.0001", "--escrow", srv.escrow], env, cwd);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/\[spending_limit\]/);
  });
});
