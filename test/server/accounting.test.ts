/**
 * The accounting rules over real HTTP: replay, concurrency on one channel, release on handler failure, metered
 * charges, top-ups, the resynchronisation hint, and "402 challenges write nothing".
 */
import { expect } from "chai";
import type { Express } from "express";
import { channelEscrowAbi, decodePaymentResponse, type ChannelRequirements } from "@paychan/protocol";
import type { ExpressPaywall } from "@paychan/express";
import { paymentOf } from "@paychan/express";
import { demoRoutes, generate, mockUsdcAbi } from "@paychan/demo";
import type { SqliteStore } from "@paychan/server";
import { openChannel, USDC, type OpenedChannel } from "../helpers/escrow";
import { call, startTestServer, type TestServer } from "../helpers/server";
import { until } from "../helpers/wait";

const PRICE = 1000n; // 0.001 USDC

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Demo routes plus test routes whose handlers fail. */
function routes(app: Express, paywall: ExpressPaywall) {
  demoRoutes(app, paywall);
  app.get("/v1/fail", paywall.charge({ price: "0.001" }), (_req, res) => {
    res.status(503).json({ oops: true });
  });
  app.get("/v1/throw", paywall.charge({ price: "0.001" }), () => {
    throw new Error("handler bug with a secret stack");
  });
  app.get("/v1/slow", paywall.charge({ price: "0.001" }), () => {
    /* never answers */
  });
  app.get("/v1/quote", paywall.charge({ price: (req) => (req.query.big === "1" ? "0.005" : "0.002"), max: "0.005" }), (_req, res) => {
    res.json({ ok: true, charged: paymentOf(res)!.amount.toString() });
  });
}

describe("server: accounting over HTTP", () => {
  let srv: TestServer;
  let terms: ChannelRequirements;
  let db: SqliteStore["db"];

  before(async () => {
    srv = await startTestServer({ routes, config: { handlerTimeout: 300 } });
    terms = await srv.terms("/v1/echo");
    db = (srv.store as SqliteStore).db;
  });
  after(async () => srv?.close());

  const echo = (headers: Record<string, string>) => call(`${srv.url}/v1/echo?msg=hi`, { headers });

  it("serves a paid request with a receipt, and refuses the same voucher again (replay)", async () => {
    const ch = await openChannel(srv.env);
    const v = ch.voucher.sign(ch.id, PRICE);
    const ok = await echo(srv.pay(terms, v));
    expect(ok.status).to.equal(200);
    expect(ok.body).to.deep.equal({ echo: "hi" });
    const r = decodePaymentResponse(ok.headers.get("payment-response"));
    expect(r).to.deep.include({ success: true, amount: PRICE, payer: ch.payer });
    expect(r.extra).to.deep.equal({ channelId: ch.id, accepted: PRICE, spent: PRICE, deposit: ch.deposit, remaining: ch.deposit - PRICE });
    const again = await echo(srv.pay(terms, v));
    expect(again.code).to.equal("voucher_reused");
    const stored = await srv.store.getChannel(ch.id);
    expect(stored).to.deep.include({ accepted: PRICE, spent: PRICE, acceptedSignature: v.signature });
  });

  it("50 concurrent requests with the same voucher: exactly one is served", async () => {
    const ch = await openChannel(srv.env);
    const headers = srv.pay(terms, ch.voucher.sign(ch.id, PRICE));
    const answers = await Promise.all(Array.from({ length: 50 }, () => echo(headers)));
    const served = answers.filter((a) => a.status === 200);
    expect(served).to.have.length(1);
    expect(answers.filter((a) => a.code === "voucher_reused")).to.have.length(49);
    expect(await srv.store.getChannel(ch.id)).to.deep.include({ accepted: PRICE, spent: PRICE });
  });

  it("32 concurrent distinct vouchers base + k x price, shuffled: all served, spent == 32 x price <= accepted", async () => {
    const ch = await openChannel(srv.env);
    // base = max(accepted, spent) as the client knows it: make it non-zero first.
    expect((await echo(srv.pay(terms, ch.voucher.sign(ch.id, 5n * PRICE)))).status).to.equal(200);
    const base = 5n * PRICE;
    const ks = shuffle(Array.from({ length: 32 }, (_, i) => BigInt(i + 1)));
    const answers = await Promise.all(ks.map((k) => echo(srv.pay(terms, ch.voucher.sign(ch.id, base + k * PRICE)))));
    expect(answers.map((a) => a.status)).to.deep.equal(Array(32).fill(200));
    const c = (await srv.store.getChannel(ch.id))!;
    expect(c.spent).to.equal(PRICE + 32n * PRICE);
    expect(c.accepted).to.equal(base + 32n * PRICE);
    expect(c.spent <= c.accepted).to.equal(true);
  });

  it("a handler answering >= 500 releases the charge; the voucher stays used", async () => {
    const ch = await openChannel(srv.env);
    const v = ch.voucher.sign(ch.id, PRICE);
    const fail = await call(`${srv.url}/v1/fail`, { headers: srv.pay(terms, v) });
    expect(fail.status).to.equal(503);
    expect(fail.headers.get("payment-response")).to.equal(null);
    expect((await srv.store.getChannel(ch.id))!.spent).to.equal(0n);
    expect((await call(`${srv.url}/v1/fail`, { headers: srv.pay(terms, v) })).code).to.equal("voucher_reused");
  });

  it("a handler that throws gives 500 internal_error without a stack, and releases the charge", async () => {
    const ch = await openChannel(srv.env);
    const a = await call(`${srv.url}/v1/throw`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, PRICE)) });
    expect(a.status).to.equal(500);
    expect(a.body).to.deep.include({ error: "internal_error", detail: "internal error" });
    expect(JSON.stringify(a.body)).to.not.contain("secret");
    expect((await srv.store.getChannel(ch.id))!).to.deep.include({ spent: 0n, accepted: PRICE });
  });

  it("a handler that never answers gets 504 handler_timeout and its charge released", async () => {
    const ch = await openChannel(srv.env);
    const a = await call(`${srv.url}/v1/slow`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, PRICE)) });
    expect([a.status, a.code]).to.deep.equal([504, "handler_timeout"]);
    expect((await srv.store.getChannel(ch.id))!).to.deep.include({ spent: 0n, accepted: PRICE });
  });

  it("a metered route reserves the maximum and charges the reported amount", async () => {
    const ch = await openChannel(srv.env);
    const inferTerms = await srv.terms("/v1/infer", { method: "POST", headers: { "content-type": "application/json" }, body: '{"prompt":"x"}' });
    expect(inferTerms.amount).to.equal(10_000n); // 100 tokens x 0.0001
    const prompt = "tell me about channels";
    const expectedTokens = generate(prompt, 100).length;
    expect(expectedTokens).to.be.below(100);
    const a = await call(`${srv.url}/v1/infer`, {
      method: "POST",
      headers: { "content-type": "application/json", ...srv.pay(inferTerms, ch.voucher.sign(ch.id, 10_000n)) },
      body: JSON.stringify({ prompt }),
    });
    expect(a.status, JSON.stringify(a.body)).to.equal(200);
    expect(a.body.tokens).to.equal(expectedTokens);
    const charged = BigInt(expectedTokens) * 100n;
    expect(a.body.charged).to.equal(charged.toString());
    const r = decodePaymentResponse(a.headers.get("payment-response"));
    expect(r.amount).to.equal(charged);
    expect(r.extra.spent).to.equal(charged);
    // the release of max - actual is committed when the response finishes (after the client has the body)
    await until(async () => (await srv.store.getChannel(ch.id))!.reserved === 0n, "the reservation to be finished");
    expect((await srv.store.getChannel(ch.id))!).to.deep.include({ spent: charged, reserved: 0n, accepted: 10_000n });
  });

  it("a computed price is charged per request and echoed as the offer's amount", async () => {
    const ch = await openChannel(srv.env);
    const t = await srv.terms("/v1/quote?big=1");
    expect(t.amount).to.equal(5000n);
    const a = await call(`${srv.url}/v1/quote?big=1`, { headers: srv.pay(t, ch.voucher.sign(ch.id, 5000n)) });
    expect(a.status).to.equal(200);
    expect(a.body.charged).to.equal("5000");
    const small = await call(`${srv.url}/v1/quote`, { headers: srv.pay(t, ch.voucher.sign(ch.id, 7000n)) });
    expect(small.status).to.equal(200);
    expect((await srv.store.getChannel(ch.id))!.spent).to.equal(7000n);
  });

  it("a top-up is usable at once, without a restart (exceeds_deposit re-reads the chain)", async () => {
    const ch = await openChannel(srv.env, { deposit: USDC(1) });
    const big = ch.voucher.sign(ch.id, USDC(1) + PRICE);
    expect((await echo(srv.pay(terms, big))).code).to.equal("exceeds_deposit");
    const payer = srv.env.wallets[1];
    await payer.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "mint", args: [ch.payer, USDC(1)] });
    await payer.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "approve", args: [srv.escrow, USDC(1)] });
    await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "topUp", args: [ch.id, ch.signer, USDC(1)] });
    const a = await echo(srv.pay(terms, big));
    expect(a.status).to.equal(200);
    expect(decodePaymentResponse(a.headers.get("payment-response")).extra.deposit).to.equal(USDC(2));
  });

  it("the event follower applies a top-up to a known channel", async () => {
    const ch = await openChannel(srv.env, { deposit: USDC(1) });
    expect((await echo(srv.pay(terms, ch.voucher.sign(ch.id, PRICE)))).status).to.equal(200);
    const payer = srv.env.wallets[1];
    await payer.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "mint", args: [ch.payer, USDC(3)] });
    await payer.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "approve", args: [srv.escrow, USDC(3)] });
    await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "topUp", args: [ch.id, ch.signer, USDC(3)] });
    await srv.sync();
    expect((await srv.store.getChannel(ch.id))!.deposit).to.equal(USDC(4));
    expect(srv.server.view.cached(ch.id)!.deposit).to.equal(USDC(4));
  });

  it("402 challenges and bad input write nothing to the store", async () => {
    const known: OpenedChannel = await openChannel(srv.env);
    expect((await echo(srv.pay(terms, known.voucher.sign(known.id, PRICE)))).status).to.equal(200);
    const fresh = await openChannel(srv.env);
    const dump = () => ({
      channels: db.prepare("SELECT * FROM channels ORDER BY channel_id").all(),
      used: db.prepare("SELECT * FROM used_vouchers ORDER BY channel_id, amount").all(),
    });
    await srv.sync(); // the follower has applied every block so far; the attempts below mine none
    const before = dump();
    const attempts = [
      {},
      { "payment-signature": "garbage" },
      srv.pay(terms, fresh.voucher.sign(fresh.id, PRICE - 1n)), // insufficient, new channel
      srv.pay(terms, fresh.voucher.sign(fresh.id, USDC(1000))), // exceeds deposit, new channel
      srv.pay(terms, known.voucher.sign(known.id, PRICE)), // reused
      srv.pay(terms, known.voucher.sign(known.id, PRICE + 1n)), // insufficient (spent 1000 + 1000 > 1001)
      srv.pay(terms, fresh.voucher.sign(known.id, 5n * PRICE)), // wrong signer
    ];
    for (const h of attempts) expect((await echo(h)).status).to.equal(402);
    expect(dump()).to.deep.equal(before);
  });
});
