/**
 * Streamed responses paid per unit on the real server and chain (docs/protocol.md § 5.10): `POST /v1/chat` of the demo
 * app read by a minimal hand-written client (test/helpers/stream-client.ts) that answers top-ups with vouchers of the
 * channel's session key; the store and the escrow checked after each stream.
 */
import { expect } from "chai";
import type { Express } from "express";
import { erc20Abi } from "viem";
import { chatRoutes, chatToken } from "@paychan/demo";
import type { ExpressPaywall } from "@paychan/express";
import { openChannel, USDC } from "../helpers/escrow";
import { startTestServer, type TestServer } from "../helpers/server";
import { TestPayer } from "../helpers/stream-client";

const PRICE = 10n; // 0.00001 USDC per token
const RESERVE = 10_000n; // the demo's reservation and top-up: 1,000 tokens

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("paid streams: POST /v1/chat on the real server and chain", function () {
  this.timeout(240_000);

  it("a 10,000-token stream: every token in order, ≥ 5 top-ups on the one stream, receipt = tokens × price = store spent; settled to the payee", async () => {
    const settlement = { config: { interval: 1, threshold: "0.000001" }, pollInterval: 50 };
    const srv = await startTestServer({ settlement });
    try {
      const ch = await openChannel(srv.env);
      const terms = await srv.terms("/v1/chat", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "hi", max_tokens: 10_000 }) });
      expect(terms.amount).to.equal(RESERVE);
      expect(terms.extra.stream).to.deep.equal({ unitPrice: PRICE, topUp: RESERVE, deadlineMs: 10_000 });
      const payer = new TestPayer(srv.url, ch);
      const payee = srv.payee;
      const before = await srv.env.publicClient.readContract({ address: srv.token, abi: erc20Abi, functionName: "balanceOf", args: [payee] });
      const run = await payer.stream("/v1/chat", { prompt: "a long answer", max_tokens: 10_000 }, terms);
      expect(run.status).to.equal(200);
      expect(run.contentType).to.match(/^text\/event-stream/);
      expect(run.frames.length).to.equal(10_000);
      run.frames.forEach((f, i) => expect(JSON.parse(f.data)).to.deep.equal({ i, t: chatToken("a long answer", i) }));
      expect(run.needs.length).to.be.at.least(5);
      expect(run.topUps.map((a) => a.status)).to.deep.equal(run.needs.map(() => 200));
      expect(new Set(run.needs.map((n) => n.stream)).size).to.equal(1);
      expect(run.receipt).to.not.equal(undefined);
      const r = run.receipt!;
      expect(r.amount).to.equal(10_000n * PRICE);
      expect(r.extra.stream).to.deep.include({ units: 10_000n, reason: "complete" });
      const stored = (await srv.store.getChannel(ch.id))!;
      expect(stored.spent).to.equal(10_000n * PRICE);
      expect(stored.reserved).to.equal(0n);
      expect(r.extra.spent).to.equal(stored.spent);
      await until(async () => (await srv.store.getChannel(ch.id))!.settled === 10_000n * PRICE, "the settlement of the stream's charge");
      const after = await srv.env.publicClient.readContract({ address: srv.token, abi: erc20Abi, functionName: "balanceOf", args: [payee] });
      expect(after - before).to.equal(10_000n * PRICE);
    } finally {
      await srv.close();
    }
  });
});
