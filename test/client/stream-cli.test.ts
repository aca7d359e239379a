/**
 * `channel call` of a paid stream (docs/protocol.md § 7.7) against the REAL demo server (`POST /v1/chat`) on the
 * in-process chain: the handler's events on stdout (one data line per event), the charge on stderr from the final
 * receipt. Runs client/dist (build first: `node scripts/build.js`).
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chatToken } from "@paychan/demo";
import { startTestServer, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";
import { compiledEnv } from "../helpers/process";

const BIN = path.resolve(__dirname, "..", "..", "client", "bin", "channel.js");
const PAYER = 16;

function run(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...compiledEnv(), ...env }, cwd, timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("client: channel call of a paid stream (POST /v1/chat)", function () {
  this.timeout(240_000);
  let srv: TestServer;
  let snap: string;
  let cwd: string;
  let env: Record<string, string>;

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer();
    await mintUsdc(srv.token, chainClients(PAYER).address, 100_000_000n);
    cwd = await fs.mkdtemp(path.join(os.tmpdir(), "channel-stream-cli-"));
    env = { CHANNEL_PRIVATE_KEY: chainClients(PAYER).key, RPC_URL: srv.rpcUrl, CHANNEL_STATE_DIR: path.join(cwd, "state") };
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
    if (cwd) await fs.rm(cwd, { recursive: true, force: true });
  });

  it("10,000 tokens printed in order on stdout, the charge (0.1 USDC, the receipt's spent) and the top-ups on stderr", async function () {
    const body = JSON.stringify({ prompt: "from the cli", max_tokens: 10_000 });
    const r = await run(["call", `${srv.url}/v1/chat`, "-d", body, "--max-request-spend", "0.2"], env, cwd);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.split("\n").filter((l) => l.length > 0);
    expect(lines.length).to.equal(10_000);
    lines.forEach((l, i) => expect(JSON.parse(l)).to.deep.equal({ i, t: chatToken("from the cli", i) }));
    expect(r.stderr).to.match(/paid 0\.1 USDC on 0x[0-9a-f]+…?[0-9a-f]*: spent 0\.1 USDC/);
    const m = /stream: complete, (\d+) top-ups/.exec(r.stderr);
    expect(m, r.stderr).to.not.equal(null);
    expect(Number(m![1])).to.be.at.least(5);
  });

  it("without --max-request-spend (default max-price 0.01 = the initial reservation) the stream ends cleanly at the reservation, the charge printed", async function () {
    const body = JSON.stringify({ prompt: "capped", max_tokens: 3_000 });
    const r = await run(["call", `${srv.url}/v1/chat`, "-d", body], env, cwd);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.split("\n").filter((l) => l.length > 0);
    expect(lines.length).to.equal(1_000); // 0.01 USDC / 0.00001 per token
    expect(r.stderr).to.match(/paid 0\.01 USDC/);
    expect(r.stderr).to.match(/stream: top_up_timeout, 0 top-ups, \d+ declined/);
  });
});
