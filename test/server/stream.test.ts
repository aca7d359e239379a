/**
 * Streamed responses paid per unit on the real server and chain (docs/protocol.md § 5.10): `POST /v1/chat` of the demo
 * app read by a minimal hand-written client (test/helpers/stream-client.ts) that answers top-ups with vouchers of the
 * channel's session key; the store and the escrow checked after each stream.
 */
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { expect } from "chai";
import type { Express } from "express";
import { erc20Abi, type Hex } from "viem";
import { decodeStreamReceiptTrailer, VoucherSigner, type ChannelRequirements, type NeedVoucherEvent } from "@paychan/protocol";
import { chatRoutes, chatToken, demoRoutes, STREAM_VOUCHER_ROUTE } from "@paychan/demo";
import type { ExpressPaywall } from "@paychan/express";
import { SqliteStore, STREAM_LEASE_MIN_MS, type PaidStream } from "@paychan/server";
import { openChannel, sessionKey, USDC } from "../helpers/escrow";
import { describePostgres, newTestDatabase } from "../helpers/postgres";
import { call, paymentHeaders, startTestServer, type TestServer } from "../helpers/server";
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

  describe("on one server with test routes next to the demo's", () => {
    let srv: TestServer;
    /** Streams the test routes opened, by the `tag` of their request body. */
    const opened = new Map<string, PaidStream>();
    let release: () => void = () => undefined;
    let gate: Promise<void> = Promise.resolve();

    function testRoutes(app: Express, paywall: ExpressPaywall): void {
      demoRoutes(app, paywall);
      chatRoutes(app, paywall);
      // Writes `n` events, then waits until the stream ends (the client goes away, or the server closes).
      app.post(
        "/t/hold",
        (req, _res, next) => {
          let body = "";
          req.on("data", (d) => (body += d));
          req.on("end", () => {
            req.body = JSON.parse(body || "{}");
            next();
          });
        },
        paywall.stream({ unitPrice: PRICE, reserve: 100_000n }, async (stream, req) => {
          opened.set(req.body.tag, stream);
          for (let i = 0; i < req.body.n; i++) await stream.send(`e${i}`);
          await new Promise<void>((r) => stream.signal.addEventListener("abort", () => r()));
        }),
      );
      // A small reservation (10 units, top-ups of 10): asks for a top-up at once; 6 events, then the test's gate, then 14 more.
      app.post(
        "/t/gate",
        (req, _res, next) => {
          req.body = {};
          next();
        },
        paywall.stream({ unitPrice: PRICE, reserve: 100n, topUp: 100n, deadlineMs: 30_000 }, async (stream) => {
          for (let i = 0; i < 6; i++) await stream.send(`g${i}`);
          await gate;
          for (let i = 6; i < 20; i++) await stream.send(`g${i}`);
        }),
      );
      const noBody = (req: { body?: unknown }, _res: unknown, next: () => void) => {
        req.body = {};
        next();
      };
      // Three events, then the handler throws; or it throws before any; or it answers a 400 itself.
      app.post(
        "/t/fail-after",
        noBody,
        paywall.stream({ unitPrice: PRICE, reserve: 1000n }, async (stream) => {
          for (let i = 0; i < 3; i++) await stream.send(`f${i}`);
          throw new Error("boom");
        }),
      );
      app.post(
        "/t/fail-before",
        noBody,
        paywall.stream({ unitPrice: PRICE, reserve: 1000n }, async () => {
          throw new Error("boom");
        }),
      );
      app.post(
        "/t/refuse",
        noBody,
        paywall.stream({ unitPrice: PRICE, reserve: 1000n }, async (_stream, _req, res) => {
          res.status(400).json({ error: "bad_request" });
        }),
      );
      // Ignores top-ups quickly: deadline 300 ms.
      app.post(
        "/t/short-deadline",
        (req, _res, next) => {
          req.body = {};
          next();
        },
        paywall.stream({ unitPrice: PRICE, reserve: 50n, topUp: 50n, deadlineMs: 300 }, async (stream) => {
          for (let i = 0; i < 100; i++) await stream.send(`s${i}`);
        }),
      );
    }

    before(async () => {
      srv = await startTestServer({ routes: testRoutes });
    });
    after(async () => {
      release();
      await srv?.close();
    });

    const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const termsOf = (path: string, body: unknown = {}): Promise<ChannelRequirements> => srv.terms(path, post(body));
    const stored = async (id: Hex) => (await srv.store.getChannel(id))!;

    it("a client that aborts after N events of a handler that wrote N and waits is charged exactly N × price (units written before the server saw the close)", async () => {
      const ch = await openChannel(srv.env);
      const payer = new TestPayer(srv.url, ch);
      const terms = await termsOf("/t/hold");
      const run = await payer.stream("/t/hold", { n: 37, tag: "abort" }, terms, { abortAfter: 37 });
      expect(run.frames.map((f) => f.data)).to.deep.equal(Array.from({ length: 37 }, (_, i) => `e${i}`));
      expect(run.receipt).to.equal(undefined);
      await until(async () => (await stored(ch.id)).reserved === 0n, "the stream's end after the client left");
      expect((await stored(ch.id)).spent).to.equal(37n * PRICE);
      const s = opened.get("abort")!;
      expect(s.ended).to.equal(true);
      expect(s.units).to.equal(37n);
    });

    it("the final receipt is also the PAYMENT-RESPONSE trailer (chunked response, Trailer header)", async () => {
      const ch = await openChannel(srv.env);
      const terms = await termsOf("/v1/chat", { prompt: "x", max_tokens: 5 });
      const headers = { "content-type": "application/json", ...paymentHeaders(terms, ch.voucher.sign(ch.id, terms.amount)) };
      const { body, trailers, head } = await new Promise<{ body: string; trailers: NodeJS.Dict<string>; head: http.IncomingHttpHeaders }>((resolve, reject) => {
        const req = http.request(`${srv.url}/v1/chat`, { method: "POST", headers }, (res) => {
          let b = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (b += d));
          res.on("end", () => resolve({ body: b, trailers: res.trailers, head: res.headers }));
        });
        req.on("error", reject);
        req.end(JSON.stringify({ prompt: "x", max_tokens: 5 }));
      });
      expect(head["content-type"]).to.match(/^text\/event-stream/);
      expect(head.trailer).to.match(/payment-response/i);
      expect(head["payment-response"]).to.equal(undefined);
      const receipt = decodeStreamReceiptTrailer(trailers["payment-response"]);
      expect(receipt.amount).to.equal(5n * PRICE);
      expect(receipt.extra.stream).to.deep.include({ units: 5n, reason: "complete" });
      expect(body.trimEnd().split("\n\n").pop()).to.equal(`event: payment-receipt\ndata: ${JSON.stringify({ success: true, transaction: "", network: receipt.network, payer: receipt.payer, amount: "50", extra: { channelId: receipt.extra.channelId, accepted: receipt.extra.accepted.toString(), spent: receipt.extra.spent.toString(), deposit: receipt.extra.deposit.toString(), remaining: receipt.extra.remaining.toString(), stream: { id: receipt.extra.stream.id, units: "5", reason: "complete" } } })}`);
    });

    it("a client that ignores top-ups gets at most the reservation, then a clean end with a receipt (top_up_timeout)", async () => {
      const ch = await openChannel(srv.env);
      const payer = new TestPayer(srv.url, ch);
      const terms = await termsOf("/t/short-deadline");
      const run = await payer.stream("/t/short-deadline", {}, terms, { topUp: false });
      expect(run.ended).to.equal(true);
      expect(run.frames.length).to.equal(5); // 50 / 10
      expect(run.needs.length).to.be.at.least(1);
      expect(run.receipt!.amount).to.equal(50n);
      expect(run.receipt!.extra.stream).to.deep.include({ units: 5n, reason: "top_up_timeout" });
      const c = await stored(ch.id);
      expect(c.spent).to.equal(50n);
      expect(c.reserved).to.equal(0n);
    });

    it("the demo chat: a client that never answers top-ups gets the 1,000 tokens of its reservation and a receipt of 0.01", async () => {
      const ch = await openChannel(srv.env);
      const payer = new TestPayer(srv.url, ch);
      const terms = await termsOf("/v1/chat", { prompt: "p", max_tokens: 3000 });
      const run = await payer.stream("/v1/chat", { prompt: "p", max_tokens: 3000 }, terms, { topUp: false });
      expect(run.frames.length).to.equal(1000);
      expect(run.receipt!.amount).to.equal(RESERVE);
      expect(run.receipt!.extra.stream.reason).to.equal("top_up_timeout");
      expect((await stored(ch.id)).spent).to.equal(RESERVE);
    });

    it("hostile top-ups (another channel, a lower amount, a replay, another key's signature, an unknown or finished stream) are refused with their codes; the stream goes on unaffected", async () => {
      let opening!: () => void;
      gate = new Promise<void>((r) => (opening = r));
      release = opening;
      const ch = await openChannel(srv.env);
      const other = await openChannel(srv.env);
      const payer = new TestPayer(srv.url, ch);
      const terms = await termsOf("/t/gate");
      const firstVoucher = payer.signed + terms.amount;
      let checked: Promise<void> | null = null;
      const refusals: Record<string, { status: number; code?: string }> = {};
      const run = await payer.stream("/t/gate", {}, terms, {
        topUp: false,
        onFrame: (f, r) => {
          if (f.data !== "g5" || checked) return;
          checked = (async () => {
            const need = r.needs[0];
            const at = (a: { status: number; code?: string }) => ({ status: a.status, code: a.code });
            refusals.otherChannel = at(await payer.topUp(terms, need, other.voucher.sign(other.id, 1_000_000n)));
            refusals.lower = at(await payer.topUp(terms, need, ch.voucher.sign(ch.id, firstVoucher + 1n)));
            refusals.replay = at(await payer.topUp(terms, need, ch.voucher.sign(ch.id, firstVoucher)));
            const stranger = new VoucherSigner(sessionKey().key, srv.domain);
            refusals.otherKey = at(await payer.topUp(terms, need, stranger.sign(ch.id, firstVoucher + 10_000n)));
            refusals.unknown = at(await payer.topUp(terms, { ...need, url: `/channel/streams/${"0".repeat(32)}/voucher` }, ch.voucher.sign(ch.id, firstVoucher + 20_000n)));
            const before = await stored(ch.id);
            expect(before.accepted).to.equal(firstVoucher);
            // then a good one: the stream goes on
            const good = await payer.topUp(terms, need, payer.next(need.amount));
            refusals.good = at(good);
            release();
          })();
        },
      });
      await checked;
      expect(refusals).to.deep.equal({
        otherChannel: { status: 400, code: "stream_channel_mismatch" },
        lower: { status: 400, code: "insufficient_voucher" },
        replay: { status: 409, code: "voucher_reused" },
        otherKey: { status: 403, code: "invalid_signature" },
        unknown: { status: 404, code: "stream_not_found" },
        good: { status: 200, code: undefined },
      });
      // 20 events: 10 in the first reservation, 10 in the good top-up's (asked again when low: not answered, not needed).
      expect(run.receipt!.extra.stream).to.deep.include({ units: 20n, reason: "complete" });
      const units = 20n;
      expect(run.frames.map((f) => f.data)).to.deep.equal(Array.from({ length: Number(units) }, (_, i) => `g${i}`));
      expect((await stored(ch.id)).spent).to.equal(units * PRICE);
      // the stream is over: a top-up for it is stream_not_found, and nothing is written
      const late = await payer.topUp(terms, run.needs[0], ch.voucher.sign(ch.id, payer.signed + 100n));
      expect({ status: late.status, code: late.code }).to.deep.equal({ status: 404, code: "stream_not_found" });
      expect((await stored(ch.id)).accepted).to.equal(payer.signed);
      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      expect(metrics).to.match(/^channel_stream_top_ups_total\{result="stream_channel_mismatch"\} 1$/m);
      expect(metrics).to.match(/^channel_stream_top_ups_total\{result="invalid_signature"\} 1$/m);
    });

    it("bad chat input (missing prompt, max_tokens out of range or not an integer, not JSON) is a 400 before any charge, with a valid voucher attached", async () => {
      const ch = await openChannel(srv.env);
      const terms = await termsOf("/v1/chat", { prompt: "p", max_tokens: 5 });
      const headers = { ...paymentHeaders(terms, ch.voucher.sign(ch.id, terms.amount)), "content-type": "application/json" };
      for (const body of [
        JSON.stringify({ max_tokens: 5 }),
        JSON.stringify({ prompt: "", max_tokens: 5 }),
        JSON.stringify({ prompt: "p" }),
        JSON.stringify({ prompt: "p", max_tokens: 0 }),
        JSON.stringify({ prompt: "p", max_tokens: 20_001 }),
        JSON.stringify({ prompt: "p", max_tokens: "5" }),
        JSON.stringify({ prompt: "p", max_tokens: 1.5 }),
        JSON.stringify([1]),
        "not json",
      ]) {
        const a = await call(`${srv.url}/v1/chat`, { method: "POST", headers, body });
        expect(a.status, body).to.equal(400);
        expect(a.headers.get("payment-required"), body).to.equal(null);
      }
      expect(await srv.store.getChannel(ch.id)).to.equal(null);
      // the same voucher then pays a good request
      const ok = await new TestPayer(srv.url, ch).stream("/v1/chat", { prompt: "p", max_tokens: 5 }, terms);
      expect(ok.receipt!.amount).to.equal(50n);
    });

    it("a handler failing after its first events: receipt handler_error, the delivered events charged; failing (or answering 400) before any: nothing charged", async () => {
      const ch = await openChannel(srv.env);
      const payer = new TestPayer(srv.url, ch);
      const after = await payer.stream("/t/fail-after", {}, await termsOf("/t/fail-after"));
      expect(after.frames.map((f) => f.data)).to.deep.equal(["f0", "f1", "f2"]);
      expect(after.receipt!.extra.stream).to.deep.include({ units: 3n, reason: "handler_error" });
      expect(after.receipt!.amount).to.equal(3n * PRICE);
      const before = await payer.stream("/t/fail-before", {}, await termsOf("/t/fail-before"));
      expect(before.status).to.equal(500);
      const refused = await payer.stream("/t/refuse", {}, await termsOf("/t/refuse"));
      expect(refused.status).to.equal(400);
      const c = await stored(ch.id);
      expect(c.spent).to.equal(3n * PRICE);
      expect(c.reserved).to.equal(0n);
      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      expect(metrics).to.match(/^channel_streams_total\{reason="handler_error"\} 1$/m);
    });

    it("eight concurrent streams on one channel plus ordinary paid calls: all served, charges exact", async () => {
      const ch = await openChannel(srv.env, { deposit: USDC(10) });
      const payer = new TestPayer(srv.url, ch);
      const chat = await termsOf("/v1/chat", { prompt: "c", max_tokens: 5 });
      const echo = await srv.terms("/v1/echo");
      const lengths = [2500, 1800, 3100, 900, 2200, 1500, 2700, 1200];
      const streams = lengths.map((n, k) => payer.stream("/v1/chat", { prompt: `c${k}`, max_tokens: n }, chat));
      const calls = Array.from({ length: 40 }, async () => {
        const a = await call(`${srv.url}/v1/echo?msg=x`, { headers: paymentHeaders(echo, payer.next(echo.amount)) });
        return a.status;
      });
      const runs = await Promise.all(streams);
      expect(await Promise.all(calls)).to.deep.equal(calls.map(() => 200));
      runs.forEach((r, k) => {
        expect(r.frames.length, `stream ${k}`).to.equal(lengths[k]);
        r.frames.forEach((f, i) => expect(JSON.parse(f.data).t).to.equal(chatToken(`c${k}`, i)));
        expect(r.receipt!.amount).to.equal(BigInt(lengths[k]) * PRICE);
        expect(r.topUps.every((a) => a.status === 200), `stream ${k} top-ups`).to.equal(true);
      });
      const c = await stored(ch.id);
      const total = lengths.reduce((a, b) => a + b, 0);
      expect(c.spent).to.equal(BigInt(total) * PRICE + 40n * echo.amount);
      expect(c.reserved).to.equal(0n);
      expect(c.accepted).to.equal(payer.signed);
    });
  });

  it("a server closing ends its live streams cleanly: the receipt (server_closing) as the last event, the delivered events charged", async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const srv = await startTestServer({
      routes: (app, paywall) =>
        app.post(
          "/t/forever",
          (req, _res, next) => {
            req.body = {};
            next();
          },
          paywall.stream({ unitPrice: PRICE, reserve: 100_000n }, async (stream) => {
            for (let i = 0; i < 7; i++) await stream.send(`x${i}`);
            started();
            await new Promise<void>((r) => stream.signal.addEventListener("abort", () => r()));
          }),
        ),
    });
    let closed = false;
    try {
      const ch = await openChannel(srv.env);
      const terms = await srv.terms("/t/forever", { method: "POST" });
      const payer = new TestPayer(srv.url, ch);
      const run = payer.stream("/t/forever", {}, terms);
      await running;
      const closing = srv.close({ keepDatabase: true });
      const r = await run;
      await closing;
      closed = true;
      expect(r.frames.length).to.equal(7);
      expect(r.receipt!.extra.stream).to.deep.include({ units: 7n, reason: "server_closing" });
      expect(r.receipt!.amount).to.equal(7n * PRICE);
      const store = new SqliteStore({ url: srv.databaseUrl });
      const c = (await store.getChannel(ch.id))!;
      await store.close();
      fs.rmSync(path.dirname(srv.databaseUrl), { recursive: true, force: true });
      expect(c.spent).to.equal(7n * PRICE);
      expect(c.reserved).to.equal(0n);
    } finally {
      if (!closed) await srv.close();
    }
  });

  describePostgres("on PostgreSQL", function () {
    it("two replicas on one database: a top-up sent to the replica not serving the stream is stream_not_found; an idle live stream renews its lease, so the other replica's sweeper never takes it; the charge stays exact", async () => {
      const databaseUrl = await newTestDatabase("replicas");
      const hold = (app: Express, paywall: ExpressPaywall) =>
        app.post(STREAM_VOUCHER_ROUTE, paywall.streamVoucherHandler()).post(
          "/t/hold",
          (req, _res, next) => {
            req.body = {};
            next();
          },
          paywall.stream({ unitPrice: PRICE, reserve: 100n, topUp: 100n, checkpointMs: 200 }, async (stream) => {
            for (let i = 0; i < 8; i++) await stream.send(`h${i}`); // 80 of 100: a top-up is asked
            await new Promise<void>((r) => stream.signal.addEventListener("abort", () => r()));
          }),
        );
      const a = await startTestServer({ databaseUrl, routes: hold });
      const b = await startTestServer({ env: a.env, databaseUrl, routes: hold });
      try {
        const ch = await openChannel(a.env);
        const terms = await a.terms("/t/hold", { method: "POST" });
        const payer = new TestPayer(a.url, ch);
        let seen!: (need: NeedVoucherEvent) => void;
        const eight = new Promise<NeedVoucherEvent>((r) => (seen = r));
        let leave!: () => void;
        const left = new Promise<void>((r) => (leave = r));
        const running = payer.stream("/t/hold", {}, terms, { topUp: false, abortWhen: left, onFrame: (_f, r) => r.frames.length === 8 && seen(r.needs[0]) });
        const need = await eight;
        const t0 = Date.now();
        expect((await a.store.getChannel(ch.id))!.reserved).to.equal(100n);
        const aside = new TestPayer(b.url, ch);
        aside.signed = payer.signed;
        const wrong = await aside.topUp(terms, need, aside.next(100n));
        expect({ status: wrong.status, code: wrong.code }).to.deep.equal({ status: 404, code: "stream_not_found" });
        // Past a whole lease without a new event: A renews the lease while idle (wait for a renewal later than the first
        // lease's end), so B's sweep finds nothing to take.
        await until(
          async () => (await b.server.provider.streams.streams.list()).some((r) => r.checkpointAt > t0 + STREAM_LEASE_MIN_MS),
          "A to renew the idle stream's lease past its first lease",
        );
        await b.server.provider.streams.sweep();
        const rows = await b.server.provider.streams.streams.list();
        expect(rows.map((r) => r.channelId)).to.deep.equal([ch.id.toLowerCase()]);
        expect(rows[0].charged).to.equal(80n);
        expect(Date.now() - rows[0].checkpointAt).to.be.below(STREAM_LEASE_MIN_MS);
        expect((await a.store.getChannel(ch.id))!.spent).to.equal(0n);
        // The client leaves: charged what A wrote, once.
        leave();
        const run = await running;
        expect(run.frames.length).to.equal(8);
        await until(async () => (await a.store.getChannel(ch.id))!.reserved === 0n, "the stream's end");
        expect((await a.store.getChannel(ch.id))!.spent).to.equal(80n);
      } finally {
        await b.close();
        await a.close();
      }
    });

    it("the demo chat with a PostgreSQL store: 3,500 tokens, top-ups on the one stream, receipt = tokens × price = spent; the need events' hint follows the top-ups", async () => {
      const srv = await startTestServer({ databaseUrl: await newTestDatabase("stream") });
      try {
        const ch = await openChannel(srv.env);
        const terms = await srv.terms("/v1/chat", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "pg", max_tokens: 5 }) });
        const run = await new TestPayer(srv.url, ch).stream("/v1/chat", { prompt: "pg", max_tokens: 3_500 }, terms);
        expect(run.frames.length).to.equal(3_500);
        expect(run.needs.length).to.be.at.least(3);
        expect(run.topUps.every((a) => a.status === 200)).to.equal(true);
        const hints = run.needs.map((n) => n.cumulativeAmount);
        expect(hints.every((h, i) => i === 0 || h > hints[i - 1]), "hints grow with the reservation").to.equal(true);
        expect(run.receipt!.amount).to.equal(3_500n * PRICE);
        const c = (await srv.store.getChannel(ch.id))!;
        expect(c.spent).to.equal(3_500n * PRICE);
        expect(c.reserved).to.equal(0n);
      } finally {
        await srv.close();
      }
    });
  });
});
