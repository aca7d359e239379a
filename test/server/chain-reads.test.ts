/**
 * Issue 17, item 7: strangers cannot run up the provider's RPC. Requests with random channel ids, or with random
 * signer keys on a real channel the server has not stored, cause at most CHAIN_READS_PER_SOURCE `eth_call`s per
 * source (counted by a JSON-RPC proxy in front of the chain). Over the bound, the index of channels opened to the
 * payee answers: `unknown_channel` when it is complete and current, else 503 `overloaded` with Retry-After. A channel
 * opened after the server started is in the index, so it is served even to a source over its bound; another source
 * keeps its own budget. `/metrics` counts the refused reads (`channel_chain_reads_refused_total{scope}`), including
 * the global scope with a small CHAIN_READS_GLOBAL.
 */
import { expect } from "chai";
import http from "node:http";
import { randomBytes } from "node:crypto";
import { keccak256, toHex, type Hex } from "viem";
import { VoucherSigner, type ChannelRequirements } from "@paychan/protocol";
import { deployEscrow, openChannel, sessionKey, type Env } from "../helpers/escrow";
import { paymentHeaders, rpcUrl, startTestServer, type TestServer } from "../helpers/server";
import { startRpcCounter, type RpcCounter } from "../helpers/rpc-counter";

/** A GET from a chosen local address (another "source" on loopback). */
function getFrom(localAddress: string, port: number, path: string, headers: Record<string, string>): Promise<{ status: number; code?: string; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, headers, localAddress, agent: false }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        let code: string | undefined;
        try {
          code = JSON.parse(text).error;
        } catch {
          code = undefined;
        }
        resolve({ status: res.statusCode!, code, retryAfter: res.headers["retry-after"] as string | undefined });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** A counter's value on `/metrics` (read over HTTP from 127.0.0.9, a source of its own). */
function counter(port: number, series: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: "/metrics", localAddress: "127.0.0.9", agent: false }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        const line = text.split("\n").find((l) => l.startsWith(`${series} `));
        if (!line) reject(new Error(`no series ${series} on /metrics`));
        else resolve(Number(line.slice(series.length + 1)));
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** `channel_chain_reads_refused_total` by scope. */
async function refusedReads(port: number): Promise<{ source: number; global: number }> {
  return {
    source: await counter(port, 'channel_chain_reads_refused_total{scope="source"}'),
    global: await counter(port, 'channel_chain_reads_refused_total{scope="global"}'),
  };
}

const PER_SOURCE = 5;

type Opened = Awaited<ReturnType<typeof openChannel>>;

/** One server on a fresh escrow behind the counting proxy; `old` was opened before the server started. */
function setup(config: Record<string, unknown>) {
  const ctx = {} as { env: Env; rpc: RpcCounter; srv: TestServer; terms: ChannelRequirements; old: Opened };
  before(async () => {
    ctx.env = await deployEscrow();
    ctx.old = await openChannel(ctx.env);
    ctx.rpc = await startRpcCounter(await rpcUrl());
    ctx.srv = await startTestServer({ env: ctx.env, rpcUrl: ctx.rpc.url, config: { chainReadsPerSource: PER_SOURCE, chainReadsGlobal: 1_000, ...config } });
    ctx.terms = await ctx.srv.terms("/v1/echo");
  });
  after(async () => {
    await ctx.srv?.close();
    await ctx.rpc?.close();
  });
  return ctx;
}

/** 200 random ids, then 100 random signers on `old`, 20 at a time from 127.0.0.1: eth_calls caused and answers. */
async function strangers(ctx: ReturnType<typeof setup>): Promise<{ reads: number; codes: Map<string, number> }> {
  const from = (headers: Record<string, string>) => getFrom("127.0.0.1", ctx.srv.server.port, "/v1/echo?msg=x", headers);
  const stranger = () => new VoucherSigner(sessionKey().key, ctx.srv.domain);
  const before = ctx.rpc.count("eth_call");
  const codes = new Map<string, number>();
  const run = async (n: number, make: () => Record<string, string>) => {
    for (let i = 0; i < n; i += 20) {
      for (const a of await Promise.all(Array.from({ length: 20 }, () => from(make())))) codes.set(`${a.status} ${a.code}`, (codes.get(`${a.status} ${a.code}`) ?? 0) + 1);
    }
  };
  await run(200, () => paymentHeaders(ctx.terms, stranger().sign(keccak256(toHex(randomBytes(32))) as Hex, 1000n)));
  await run(100, () => paymentHeaders(ctx.terms, stranger().sign(ctx.old.id, 1000n)));
  const reads = ctx.rpc.count("eth_call") - before;
  console.log(`      200 random ids + 100 random signers from one source: ${reads} eth_calls; answers ${JSON.stringify(Object.fromEntries(codes))}`);
  return { reads, codes };
}

describe("server: chain reads strangers can cause are bounded (issue 17, item 7)", () => {
  describe("with a complete index (the escrow is younger than CHANNEL_INDEX_BLOCKS)", () => {
    const ctx = setup({});
    const from = (addr: string, headers: Record<string, string>) => getFrom(addr, ctx.srv.server.port, "/v1/echo?msg=x", headers);

    it("strangers get unknown_channel / invalid_signature for at most the per-source bound of eth_calls (+1 for the real channel)", async () => {
      const was = await refusedReads(ctx.srv.server.port);
      const { reads, codes } = await strangers(ctx);
      expect(reads).to.be.at.most(PER_SOURCE + 1);
      expect(Object.fromEntries(codes)).to.deep.equal({ "402 unknown_channel": 200, "402 invalid_signature": 100 });
      // Every random id not read was refused by the source's budget (the indexed channel takes no token; its one read,
      // if the follower had not read it yet, is among `reads`); the global budget (1,000) refused nothing.
      const now = await refusedReads(ctx.srv.server.port);
      expect(now.source - was.source).to.be.within(200 - reads, 201 - reads);
      expect(now.source - was.source).to.be.at.least(200 - PER_SOURCE - 1);
      expect(now.global - was.global).to.equal(0);
    });

    it("a channel opened after the start is served to a source over its bound, and a stranger's signer on it reads nothing", async () => {
      const fresh = await openChannel(ctx.env);
      expect((await from("127.0.0.1", paymentHeaders(ctx.terms, fresh.voucher.sign(fresh.id, 1000n)))).status).to.equal(200);
      expect((await from("127.0.0.1", paymentHeaders(ctx.terms, ctx.old.voucher.sign(ctx.old.id, 1000n)))).status).to.equal(200);
      const before = ctx.rpc.count("eth_call");
      for (let i = 0; i < 20; i++) {
        const b = await from("127.0.0.1", paymentHeaders(ctx.terms, new VoucherSigner(sessionKey().key, ctx.srv.domain).sign(fresh.id, 2000n)));
        expect(b.code).to.equal("invalid_signature");
      }
      expect(ctx.rpc.count("eth_call") - before).to.equal(0);
    });
  });

  describe("without the start scan (CHANNEL_INDEX_BLOCKS=0: the index cannot say a channel does not exist)", () => {
    const ctx = setup({ channelIndexBlocks: 0 });
    const from = (addr: string, headers: Record<string, string>) => getFrom(addr, ctx.srv.server.port, "/v1/echo?msg=x", headers);

    it("strangers cause at most the per-source bound of eth_calls; the rest get 503 overloaded with Retry-After", async () => {
      const was = await refusedReads(ctx.srv.server.port);
      const { reads, codes } = await strangers(ctx);
      expect(reads).to.be.at.most(PER_SOURCE);
      expect(codes.get("503 overloaded")).to.be.at.least(300 - PER_SOURCE);
      const over = await from("127.0.0.1", paymentHeaders(ctx.terms, new VoucherSigner(sessionKey().key, ctx.srv.domain).sign(keccak256(toHex("x")), 1000n)));
      expect([over.status, over.code, over.retryAfter]).to.deep.equal([503, "overloaded", "2"]);
      // Each of the 301 requests asked the budget once (nothing here is indexed or stored): every one not read was
      // refused, by the source's bucket.
      const now = await refusedReads(ctx.srv.server.port);
      expect(now.source - was.source).to.equal(301 - reads);
      expect(now.global - was.global).to.equal(0);
    });

    it("a channel opened after the start is still served to the source over its bound; another source keeps its own budget", async () => {
      const was = await refusedReads(ctx.srv.server.port);
      const fresh = await openChannel(ctx.env);
      expect((await from("127.0.0.1", paymentHeaders(ctx.terms, fresh.voucher.sign(fresh.id, 1000n)))).status).to.equal(200);
      expect((await from("127.0.0.1", paymentHeaders(ctx.terms, ctx.old.voucher.sign(ctx.old.id, 1000n)))).code).to.equal("overloaded");
      expect((await from("127.0.0.2", paymentHeaders(ctx.terms, ctx.old.voucher.sign(ctx.old.id, 1000n)))).status).to.equal(200);
      // `old` from 127.0.0.1 was refused; `fresh` too if the follower had not indexed it yet (it was then served from
      // the index after one pass); 127.0.0.2 had its own budget.
      const now = await refusedReads(ctx.srv.server.port);
      expect(now.source - was.source).to.be.within(1, 2);
      expect(now.global - was.global).to.equal(0);
    });
  });

  describe("with a small global bound (CHAIN_READS_GLOBAL=8)", () => {
    const ctx = setup({ chainReadsGlobal: 8 });
    const randomId = () => paymentHeaders(ctx.terms, new VoucherSigner(sessionKey().key, ctx.srv.domain).sign(keccak256(toHex(randomBytes(32))) as Hex, 1000n));

    it("a source over its own bound counts as scope=source; a second one over the shared bound as scope=global", async () => {
      const port = ctx.srv.server.port;
      /** 6 random ids from `addr`, one at a time: the eth_calls they caused. */
      const six = async (addr: string) => {
        const before = ctx.rpc.count("eth_call");
        for (let i = 0; i < 6; i++) expect((await getFrom(addr, port, "/v1/echo?msg=x", randomId())).code).to.equal("unknown_channel");
        return ctx.rpc.count("eth_call") - before;
      };
      const was = await refusedReads(port);
      const first = await six("127.0.0.1"); // 5 reads (its bucket), 1 refused by it
      const mid = await refusedReads(port);
      const second = await six("127.0.0.2"); // its bucket is full, the global one holds 8 - 5 = 3
      const now = await refusedReads(port);
      console.log(`      6 + 6 random ids from two sources: ${first} + ${second} eth_calls`);
      expect(first).to.equal(PER_SOURCE);
      expect(second).to.be.within(3, 4); // + a token refilled if the test ran past 7.5 s
      expect([mid.source - was.source, mid.global - was.global]).to.deep.equal([6 - first, 0]);
      expect([now.source - mid.source, now.global - mid.global]).to.deep.equal([0, 6 - second]);
    });
  });
});
