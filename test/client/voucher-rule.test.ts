/**
 * The client's voucher rule (docs/protocol.md § 7.1) against the REAL provider server on the in-process chain: what a
 * client signs tracks what it is charged plus what is in flight. 1,000 metered calls keep `signed / spent` ≤ 1.05;
 * fixed and metered calls mixed, many in flight on one channel, are all served on their first attempt; a call whose
 * outcome the client cannot know (the connection dropped after the provider charged it) is covered by the next
 * vouchers; a new process starts from the base its predecessor left when idle, and from `signed` when it may have
 * left calls unfinished.
 */
import { expect } from "chai";
import type { Hex } from "viem";
import { MemoryStore, type ChannelClient, type ChannelPaymentInfo } from "@paychan/client";
import { startTestServer, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";

const ECHO = 1_000n; // /v1/echo: 0.001 USDC
const INFER_MAX = 10_000n; // /v1/infer: at most 0.01 USDC
const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));
const limits = (srv: TestServer) => ({ maxPrice: "0.01", maxDeposit: "5", escrows: [srv.escrow], payees: [srv.payee] });

/** Runs `n` tasks, at most `width` at a time. */
async function pool<T>(n: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < n; i = next++) out[i] = await task(i);
    }),
  );
  return out;
}

async function infer(agent: ChannelClient, srv: TestServer, prompt: string): Promise<ChannelPaymentInfo> {
  const res = await agent.fetch(`${srv.url}/v1/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt }) });
  expect(res.status, await res.clone().text()).to.equal(200);
  const body = (await res.json()) as { charged: string };
  const p = agent.paymentOf(res) as ChannelPaymentInfo;
  expect(p.receipt!.amount).to.equal(BigInt(body.charged));
  return p;
}

async function echo(agent: ChannelClient, srv: TestServer, msg: string): Promise<ChannelPaymentInfo> {
  const res = await agent.fetch(`${srv.url}/v1/echo?msg=${msg}`);
  expect(res.status, await res.clone().text()).to.equal(200);
  return agent.paymentOf(res) as ChannelPaymentInfo;
}

describe("client voucher rule: signed tracks spent plus what is in flight (protocol § 7.1)", function () {
  this.timeout(300_000);
  let srv: TestServer;
  let snap: string;
  const payers = [10, 11, 12, 13];

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer();
    for (const i of payers) await mintUsdc(srv.token, chainClients(i).address, USDC(100));
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  const stored = async (id: Hex) => (await srv.store.getChannel(id))!;

  it("1,000 metered calls, 4 in flight at a time: signed / spent ≤ 1.05 (it was the route's maximum per call)", async function () {
    const { agent } = testClient(10, { limits: limits(srv) });
    const first = await infer(agent, srv, "prompt"); // opens the channel and learns the route's terms
    const ps = [first, ...(await pool(999, 4, (i) => infer(agent, srv, `prompt ${i}`)))];
    const [ch] = agent.channels();
    const row = await stored(ch.id);
    const charged = ps.reduce((s, p) => s + p.receipt!.amount, 0n);
    expect(row.spent).to.equal(charged);
    expect(row.reserved).to.equal(0n);
    expect(row.accepted).to.equal(ch.signed); // the last voucher signed is the highest the provider holds
    const ratio = Number(ch.signed) / Number(row.spent);
    console.log(`      signed / spent after 1,000 metered calls (4 in flight): ${ratio.toFixed(4)} (signed ${ch.signed}, spent ${row.spent}; the old rule: ${(Number(1000n * INFER_MAX) / Number(row.spent)).toFixed(2)})`);
    expect(ratio).to.be.at.most(1.05);
    expect(agent.stats.challenges).to.equal(1); // the first call's 402 only: no voucher was ever refused
    expect(agent.stats.retries).to.equal(0);
  });

  it("64 calls in flight on one channel, fixed and metered mixed: all served on the first attempt with distinct vouchers; charges exact", async function () {
    // 64 in flight may leave 32 maxima and 32 prices unserved at once: above the default 32 × maxPrice.
    const { agent } = testClient(11, { limits: { ...limits(srv), maxUnservedPerChannel: "1" } });
    await echo(agent, srv, "first"); // opens the channel and learns the route
    await infer(agent, srv, "first"); // learns the metered route
    const [ch] = agent.channels();
    const challenges = agent.stats.challenges;
    for (let round = 0; round < 3; round++) {
      const ps = await Promise.all(Array.from({ length: 64 }, (_, i) => (i % 2 ? echo(agent, srv, `r${round}c${i}`) : infer(agent, srv, `r${round}c${i}`))));
      expect(new Set(ps.map((p) => p.cumulativeAmount)).size).to.equal(64);
      for (const p of ps) expect(p.requests).to.equal(1);
      const row = await stored(ch.id);
      expect(row.reserved).to.equal(0n);
      expect(row.accepted).to.equal(ch.signed);
      expect(row.spent <= row.accepted).to.equal(true);
      // What is signed above what is charged is at most what was in flight: 32 prices and 32 maxima.
      expect(ch.signed - row.spent <= 32n * ECHO + 32n * INFER_MAX, `signed ${ch.signed}, spent ${row.spent}`).to.equal(true);
    }
    // Every charge the provider made is one the client was told of in a receipt, and nothing more.
    expect((await stored(ch.id)).spent).to.equal(agent.stats.amountPaid[srv.token.toLowerCase()]);
    expect(agent.stats.challenges).to.equal(challenges);
  });

  it("a call whose connection drops after the provider charged it (outcome unknown) is covered by the next vouchers: no refusal", async function () {
    let drop = false;
    const dropping: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!drop) return res;
      drop = false;
      await res.arrayBuffer(); // the provider answered (and charged); the client never sees it
      throw new TypeError("fetch failed", { cause: Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }) });
    };
    const { agent } = testClient(12, { fetch: dropping, limits: limits(srv) });
    await echo(agent, srv, "first");
    const [ch] = agent.channels();
    const challenges = agent.stats.challenges;
    drop = true;
    await agent.fetch(`${srv.url}/v1/echo?msg=lost`).then(
      () => expect.fail("the dropped call should fail"),
      (e) => expect(e.code).to.equal("http_failure"),
    );
    expect((await stored(ch.id)).spent).to.equal(2n * ECHO); // charged, though the client saw no receipt
    expect(ch.spent).to.equal(ECHO);
    // Without the floor the next voucher would be spent + price = 2 prices, below the provider's spent + price.
    const p = await echo(agent, srv, "after");
    expect(p.requests).to.equal(1);
    expect(agent.stats.challenges).to.equal(challenges);
    expect(p.receipt!.extra.spent).to.equal(3n * ECHO);
    // Concurrent calls after it pass as well, and the ratio comes back down as the charges grow.
    const ps = await Promise.all(Array.from({ length: 16 }, (_, i) => echo(agent, srv, `n${i}`)));
    for (const q of ps) expect(q.requests).to.equal(1);
    expect(agent.stats.challenges).to.equal(challenges);
  });

  it("a new process starts from the base an idle predecessor left, and from `signed` when the predecessor had a call in flight", async function () {
    const store = new MemoryStore();
    // Process 1: metered calls, then idle and closed: it leaves restartBase = what it was charged, not its last voucher.
    const one = testClient(13, { store, limits: limits(srv) }).agent;
    for (let i = 0; i < 5; i++) await infer(one, srv, `one ${i}`);
    await one.close();
    const [ch1] = one.channels();
    const row1 = await stored(ch1.id);
    expect(ch1.restartBase).to.equal(row1.spent);
    // Process 2: pays from spent + its own reservation, not from its predecessor's highest voucher.
    let hang = false;
    let reached!: () => void;
    const arrived = new Promise<void>((r) => (reached = r));
    const hanging: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!hang) return res;
      reached();
      return new Promise<Response>(() => {}); // the provider served and charged it; this process never learns it
    };
    const two = testClient(13, { store, fetch: hanging, limits: limits(srv) }).agent;
    const p = await infer(two, srv, "two");
    expect(p.cumulativeAmount).to.equal(row1.spent + INFER_MAX);
    expect(p.requests).to.equal(1);
    await echo(two, srv, "learn"); // learns the route's terms: the next call pays on its first request
    // Process 2 "crashes" with a fixed-price call in flight (charged by the provider, outcome unknown).
    hang = true;
    void two.fetch(`${srv.url}/v1/echo?msg=hung`);
    await arrived;
    await two.flush();
    const [ch2] = two.channels();
    const signedAtCrash = ch2.signed;
    // Process 3 cannot know the outcome: it counts the predecessor's vouchers (`signed`) as possibly charged.
    const three = testClient(13, { store, limits: limits(srv) }).agent;
    const q = await echo(three, srv, "three");
    expect(q.cumulativeAmount).to.equal(signedAtCrash + ECHO);
    expect(q.requests).to.equal(1);
  });
});
