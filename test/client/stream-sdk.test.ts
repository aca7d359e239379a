/**
 * Paid streams through the SDK (docs/protocol.md § 5.10, § 7.7) against the REAL demo server (`POST /v1/chat`, 10
 * atomic units per token, 10,000 reserved and asked per top-up) on the in-process chain: the body streams the handler's
 * events in order with the payment events removed, top-ups are answered by the SDK on the one stream, the final receipt
 * settles `paymentOf(res).stream.final`; streams and ordinary calls share one channel; an abort is charged what the
 * server wrote, and the client's records stay right.
 */
import { expect } from "chai";
import { erc20Abi, type Hex } from "viem";
import { SseParser, type SseFrame } from "@paychan/protocol";
import { chatToken } from "@paychan/demo";
import { ClientError, type ChannelClient, type ChannelPaymentInfo } from "@paychan/client";
import { startTestServer, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";

const PRICE = 10n; // per token
const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Reads a response body as SSE frames, calling `each` as they arrive. */
async function readFrames(res: Response, each?: (f: SseFrame, n: number) => boolean | void): Promise<SseFrame[]> {
  const parser = new SseParser();
  const frames: SseFrame[] = [];
  const reader = res.body!.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const f of parser.push(value)) {
      frames.push(f);
      if (each?.(f, frames.length) === false) {
        await reader.cancel().catch(() => undefined);
        return frames;
      }
    }
  }
  return frames;
}

function chat(agent: ChannelClient, srv: TestServer, prompt: string, n: number, signal?: AbortSignal) {
  return agent.fetch(`${srv.url}/v1/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt, max_tokens: n }), signal });
}

describe("client: paid streams through the SDK (POST /v1/chat, real server and chain)", function () {
  this.timeout(300_000);
  let srv: TestServer;
  let snap: string;
  const limits = () => ({ maxPrice: "0.01", maxRequestSpend: "0.5", maxDeposit: "5", maxUnservedPerChannel: "1", escrows: [srv.escrow], payees: [srv.payee] });

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer({ settlement: { config: { interval: 1, threshold: "0.000001" }, pollInterval: 50 } });
    for (const i of [10, 11, 12, 13]) await mintUsdc(srv.token, chainClients(i).address, USDC(100));
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  const stored = async (id: Hex) => (await srv.store.getChannel(id))!;

  it("a 10,000-token stream: every token in order, payment events removed, ≥ 5 top-ups on the one stream, final receipt = tokens × price = store spent; settled to the payee", async function () {
    const { agent } = testClient(10, { limits: limits() });
    const before = await srv.env.publicClient.readContract({ address: srv.token, abi: erc20Abi, functionName: "balanceOf", args: [srv.payee] });
    const res = await chat(agent, srv, "a long answer", 10_000);
    expect(res.status).to.equal(200);
    expect(res.headers.get("content-type")).to.match(/^text\/event-stream/);
    const p = agent.paymentOf(res) as ChannelPaymentInfo;
    expect(p.stream!.state).to.equal("streaming");
    const frames = await readFrames(res);
    expect(frames.length).to.equal(10_000);
    frames.forEach((f, i) => {
      expect(f.event).to.equal("message");
      expect(JSON.parse(f.data)).to.deep.equal({ i, t: chatToken("a long answer", i) });
    });
    const receipt = await p.stream!.final;
    expect(p.stream!.state).to.equal("complete");
    expect(receipt.amount).to.equal(10_000n * PRICE);
    expect(p.receipt).to.equal(receipt);
    expect(p.stream!.topUps).to.be.at.least(5);
    expect(p.stream!.topUpsDeclined).to.equal(0);
    expect(p.requests).to.equal(2); // the 402 that taught the terms, then the one stream
    const [ch] = agent.channels();
    const row = await stored(ch.id);
    expect(row.spent).to.equal(10_000n * PRICE);
    expect(row.reserved).to.equal(0n);
    // The client's records: nothing in flight, what it knows = what it was charged.
    const f = agent.payingParts().book.flagsOf(ch);
    expect(f.reserved).to.equal(0n);
    expect(f.floor + f.charged).to.equal(10_000n * PRICE);
    await until(async () => (await stored(ch.id)).settled === 10_000n * PRICE, "the settlement of the stream's charge");
    const after = await srv.env.publicClient.readContract({ address: srv.token, abi: erc20Abi, functionName: "balanceOf", args: [srv.payee] });
    expect(after - before).to.equal(10_000n * PRICE);
  });

  it("8 concurrent streams and 16 ordinary paid calls on one channel: all served, charges exact", async function () {
    const { agent } = testClient(11, { limits: limits() });
    const first = await chat(agent, srv, "warm", 10); // opens the channel, learns the route
    await readFrames(first);
    await (agent.paymentOf(first) as ChannelPaymentInfo).stream!.final;
    const echo = await agent.fetch(`${srv.url}/v1/echo?msg=warm`);
    expect(echo.status).to.equal(200);
    const [ch] = agent.channels();
    const sizes = [3_000, 2_500, 1_200, 900, 4_000, 50, 1_000, 2_001];
    const streams = sizes.map(async (n, k) => {
      const res = await chat(agent, srv, `s${k}`, n);
      const frames = await readFrames(res);
      expect(frames.length).to.equal(n);
      frames.forEach((f, i) => expect(JSON.parse(f.data).i).to.equal(i));
      const r = await (agent.paymentOf(res) as ChannelPaymentInfo).stream!.final;
      expect(r.amount).to.equal(BigInt(n) * PRICE);
      return r.amount;
    });
    const calls = Array.from({ length: 16 }, async (_, i) => {
      const res = await agent.fetch(`${srv.url}/v1/echo?msg=c${i}`);
      expect(res.status).to.equal(200);
      return (agent.paymentOf(res) as ChannelPaymentInfo).receipt!.amount;
    });
    const amounts = await Promise.all([...streams, ...calls]);
    const total = amounts.reduce((a, b) => a + b, 0n);
    const row = await stored(ch.id);
    expect(row.reserved).to.equal(0n);
    expect(row.spent).to.equal(100n + 1_000n + total); // the warm-up stream (10 tokens) and echo, then these
    expect(agent.stats.retries).to.equal(0);
    expect(agent.payingParts().book.flagsOf(ch).reserved).to.equal(0n);
  });

  it("abort after N tokens (AbortController): the server charges what it wrote, the SDK reports stream_interrupted, the next calls pay right", async function () {
    const { agent } = testClient(12, { limits: limits() });
    const warm = await chat(agent, srv, "warm", 5);
    await readFrames(warm);
    const [ch] = agent.channels();
    const spentBefore = (await stored(ch.id)).spent;
    const ac = new AbortController();
    const N = 1_500;
    const res = await chat(agent, srv, "abort me", 20_000, ac.signal);
    const p = agent.paymentOf(res) as ChannelPaymentInfo;
    let got = 0;
    await readFrames(res, (_f, n) => {
      got = n;
      if (n === N) {
        ac.abort();
        return false;
      }
    }).catch(() => undefined);
    expect(got).to.equal(N);
    const err = await p.stream!.final.then(
      () => expect.fail("an aborted stream has no final receipt"),
      (e) => e,
    );
    expect(err).to.be.instanceOf(ClientError);
    expect((err as ClientError).code).to.equal("stream_interrupted");
    expect(p.stream!.state).to.equal("interrupted");
    // The server ends the stream when it sees the close: its reservation is released, the delivered units charged.
    await until(async () => (await stored(ch.id)).reserved === 0n, "the server to end the aborted stream");
    const charged = (await stored(ch.id)).spent - spentBefore;
    console.log(`      aborted after ${N} tokens read: charged ${charged / PRICE} tokens (written before the server saw the close)`);
    expect(charged >= BigInt(N) * PRICE).to.equal(true);
    expect(charged <= BigInt(p.stream!.reserved)).to.equal(true);
    expect(agent.payingParts().book.flagsOf(ch).reserved).to.equal(0n);
    // The outcome was unknown to the client: its floor covers it, so the next calls are not refused.
    const challenges = agent.stats.challenges;
    const again = await chat(agent, srv, "after", 100);
    expect((await readFrames(again)).length).to.equal(100);
    expect((await (agent.paymentOf(again) as ChannelPaymentInfo).stream!.final).amount).to.equal(100n * PRICE);
    expect(agent.stats.challenges).to.equal(challenges);
  });
});
