/**
 * `channel call` of a paid stream (docs/protocol.md § 7.7) against the REAL demo server (`POST /v1/chat`) on the
 * in-process chain: the handler's events on stdout (one data line per event), the charge on stderr from the final
 * receipt. Runs client/dist (build first: `node scripts/build.js`).
 */
import { expect } from "chai";
import path from "node:path";
import { chatToken } from "@paychan/demo";
import type { TestServer } from "../helpers/server";
import { closeCliFixture, openCliFixture, runChannel, type CliFixture } from "../helpers/cli";

const PAYER = 16;

describe("client: channel call of a paid stream (POST /v1/chat)", function () {
  this.timeout(240_000);
  let fx: CliFixture | undefined;
  let srv: TestServer;
  let cwd: string;
  let env: Record<string, string>;

  before(async function () {
    fx = await openCliFixture({ payer: PAYER, mint: 100_000_000n, prefix: "channel-stream-cli-", env: (dir) => ({ CHANNEL_STATE_DIR: path.join(dir, "state") }) });
    ({ srv, cwd, env } = fx);
  });

  after(async function () {
    await closeCliFixture(fx);
  });

  it("10,000 tokens printed in order on stdout, the charge (0.1 USDC, the receipt's spent) and the top-ups on stderr", async function () {
    const body = JSON.stringify({ prompt: "from the cli", max_tokens: 10_000 });
    const r = await runChannel(["call", `${srv.url}/v1/chat`, "-d", body, "--max-request-spend", "0.2"], env, cwd);
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
    const r = await runChannel(["call", `${srv.url}/v1/chat`, "-d", body], env, cwd);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.split("\n").filter((l) => l.length > 0);
    expect(lines.length).to.equal(1_000); // 0.01 USDC / 0.00001 per token
    expect(r.stderr).to.match(/paid 0\.01 USDC/);
    expect(r.stderr).to.match(/stream: top_up_timeout, 0 top-ups, \d+ declined/);
  });
});
