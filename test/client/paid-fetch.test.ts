/**
 * The agent client against the REAL provider server (test/helpers/server.ts) on the in-process chain:
 * first call opens and pays, one round trip per call afterwards, 32 calls in flight on one channel, recovery after
 * the state file is lost or stale, forged hints (through a tampering proxy in front of the real server), metered
 * routes, top-up, cooperative and on-chain close, withdraw.
 */
import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import hre from "hardhat";
import type { Express } from "express";
import { getAddress, type Address, type Hex } from "viem";
import { generatePrivateKey } from "viem/accounts";
import {
  HEADER_PAYMENT_REQUIRED,
  VoucherSigner,
  channelEscrowAbi,
  decodePaymentRequired,
  encodePaymentRequired,
} from "@paychan/protocol";
import { ClientError, FileStore, MemoryStore, type ChannelClient, type ChannelPaymentInfo } from "@paychan/client";
import { demoRoutes, mockUsdcAbi } from "@paychan/demo";
import type { ExpressPaywall } from "@paychan/express";
import { startTestServer, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";

const PRICE = 1_000n; // /v1/echo: 0.001 USDC
const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));

/** A fetch that counts the requests it sends. */
function countingFetch(): { fetch: typeof fetch; count: () => number } {
  let n = 0;
  return {
    fetch: (input, init) => {
      n++;
      return fetch(input, init);
    },
    count: () => n,
  };
}

async function expectCode(p: Promise<unknown>, code: string): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(ClientError);
    expect((e as ClientError).code, (e as Error).message).to.equal(code);
    return e as ClientError;
  }
  expect.fail(`expected ${code}`);
}

async function echo(agent: ChannelClient, srv: TestServer, msg = "hi") {
  const res = await agent.fetch(`${srv.url}/v1/echo?msg=${msg}`);
  expect(res.status, await res.clone().text()).to.equal(200);
  expect(await res.json()).to.deep.equal({ echo: msg });
  return agent.paymentOf(res) as ChannelPaymentInfo;
}

/**
 * A proxy in front of the real server that rewrites the `extra.channel` hint of its 402s with `tamper`
 * (a provider lying about the channel's state).
 */
async function tamperingProxy(target: string, tamper: (hint: any) => void) {
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host" && k !== "connection") headers[k] = v;
    const up = await fetch(`${target}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
    const out: Record<string, string> = {};
    up.headers.forEach((v, k) => {
      if (k !== "content-length" && k !== "transfer-encoding" && k !== "connection" && k !== "keep-alive") out[k] = v;
    });
    const h = up.headers.get(HEADER_PAYMENT_REQUIRED);
    if (up.status === 402 && h) {
      const p = decodePaymentRequired(h);
      for (const a of p.accepts) if (a.extra.channel) tamper(a.extra.channel);
      out[HEADER_PAYMENT_REQUIRED.toLowerCase()] = encodePaymentRequired(p);
    }
    res.writeHead(up.status, out);
    res.end(Buffer.from(await up.arrayBuffer()));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

describe("client: paying the real server", function () {
  this.timeout(120_000);
  let srv: TestServer;
  let snap: string;
  const payers = [10, 11, 12, 13, 14, 15, 16];

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer({
      routes: (app: Express, paywall: ExpressPaywall) => {
        demoRoutes(app, paywall);
        app.get("/v1/pricey", paywall.charge({ price: "0.25" }), (_req, res) => {
          res.json({ ok: true });
        });
      },
    });
    for (const i of payers) await mintUsdc(srv.token, chainClients(i).address, USDC(100));
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap); // leave the chain (and its clock) as other suites expect it
  });

  const onchain = (id: Hex, signer: Address) => srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [id, signer] });
  const balance = (a: Address) => srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] });

  describe("steady state", function () {
    let agent: ChannelClient;
    const counter = countingFetch();

    before(function () {
      ({ agent } = testClient(10, { fetch: counter.fetch, limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [srv.escrow], payees: [srv.payee] } }));
    });

    it("the first call opens a channel (session key as signer) and pays", async function () {
      const p = await echo(agent, srv);
      expect(agent.stats.channelsOpened).to.equal(1);
      expect(p.requests).to.equal(2); // the 402 that taught the terms, then the paid request
      expect(p.cumulativeAmount).to.equal(PRICE);
      expect(p.receipt!.amount).to.equal(PRICE);
      expect(p.receipt!.extra.spent).to.equal(PRICE);
      const c = await onchain(p.channelId, agent.signerAddress);
      expect(c.signer).to.equal(agent.signerAddress);
      expect(c.payer).to.equal(chainClients(10).address);
      expect(c.payee).to.equal(getAddress(srv.payee));
      expect(c.deposit).to.equal(USDC(1)); // max(minDeposit 1, min(maxDeposit, 1000 × 0.001))
    });

    it("the next 100 calls take exactly one HTTP request each, paying exactly the price", async function () {
      const before = counter.count();
      let last;
      for (let i = 0; i < 100; i++) {
        last = await echo(agent, srv, `m${i}`);
        expect(last.requests).to.equal(1);
      }
      expect(counter.count() - before).to.equal(100);
      expect(agent.stats.challenges).to.equal(1);
      expect(last!.receipt!.extra.spent).to.equal(101n * PRICE);
      expect(last!.receipt!.extra.accepted).to.equal(101n * PRICE);
    });

    it("32 concurrent calls on one channel all succeed with one request each", async function () {
      const before = counter.count();
      const signedBefore = agent.stats.vouchersSigned;
      const ps = await Promise.all(Array.from({ length: 32 }, (_, i) => echo(agent, srv, `c${i}`)));
      expect(counter.count() - before).to.equal(32);
      expect(agent.stats.vouchersSigned - signedBefore).to.equal(32);
      expect(new Set(ps.map((p) => p.channelId)).size).to.equal(1);
      const amounts = ps.map((p) => p.cumulativeAmount).sort((a, b) => (a < b ? -1 : 1));
      expect(amounts).to.deep.equal(Array.from({ length: 32 }, (_, k) => 101n * PRICE + BigInt(k + 1) * PRICE));
      const maxSpent = ps.reduce((m, p) => (p.receipt!.extra.spent > m ? p.receipt!.extra.spent : m), 0n);
      expect(maxSpent).to.equal(133n * PRICE);
    });

    it("a metered route signs its maximum and is charged the actual amount", async function () {
      const res = await agent.fetch(`${srv.url}/v1/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "hello" }) });
      expect(res.status).to.equal(200);
      const body = (await res.json()) as { charged: string };
      const p = agent.paymentOf(res) as ChannelPaymentInfo;
      expect(p.price).to.equal(10_000n);
      expect(p.receipt!.amount).to.equal(BigInt(body.charged));
      expect(p.receipt!.amount <= 10_000n).to.equal(true);
      // The next call on the route pays on its first attempt.
      const again = await agent.fetch(`${srv.url}/v1/infer`, { method: "POST", body: JSON.stringify({ prompt: "again" }), headers: { "content-type": "application/json" } });
      expect(again.status).to.equal(200);
      expect(agent.paymentOf(again)!.requests).to.equal(1);
    });
  });

  describe("recovery", function () {
    let dir: string;
    let made: ChannelClient[];
    /** A client for account `index` keeping its state in this test's folder; flushed before the folder goes. */
    const fileClient = (index: number): ChannelClient => {
      const { agent } = testClient(index, { store: new FileStore(dir) as unknown as MemoryStore });
      made.push(agent);
      return agent;
    };
    beforeEach(async function () {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), "channel-client-"));
      made = [];
    });
    afterEach(async function () {
      // A client saves its state in the background; removing the folder under a write in flight fails (ENOTEMPTY).
      await Promise.allSettled(made.map((c) => c.flush()));
      await fs.rm(dir, { recursive: true, force: true });
    });

    it("state file deleted (session key kept): finds its channel on chain, resyncs from the signed hint, pays without overpaying", async function () {
      const a = fileClient(11);
      for (let i = 0; i < 10; i++) await echo(a, srv);
      await a.flush();
      const [ch] = a.channels();
      await fs.rm(path.join(dir, "state.json"));

      const b = fileClient(11);
      const p = await echo(b, srv);
      expect(b.stats.channelsOpened).to.equal(0);
      expect(p.channelId).to.equal(ch.id);
      expect(p.receipt!.extra.spent).to.equal(11n * PRICE); // exactly one more price
      expect(p.receipt!.extra.accepted).to.equal(11n * PRICE);
      expect(p.cumulativeAmount).to.equal(11n * PRICE);
      for (let i = 0; i < 5; i++) expect((await echo(b, srv)).requests).to.equal(1);
      const last = await echo(b, srv);
      expect(last.receipt!.extra.spent).to.equal(17n * PRICE);
      expect(last.receipt!.extra.accepted).to.equal(17n * PRICE);
    });

    it("stale state (a crash lost the last amounts): the refused voucher is retried once from the provider's signed view", async function () {
      const a = fileClient(12);
      for (let i = 0; i < 5; i++) await echo(a, srv);
      await a.flush();
      const stale = await fs.readFile(path.join(dir, "state.json"));
      for (let i = 0; i < 7; i++) await echo(a, srv);
      await a.flush();
      await fs.writeFile(path.join(dir, "state.json"), stale);

      const b = fileClient(12);
      const p = await echo(b, srv);
      expect(p.requests).to.equal(2); // stale voucher (route terms were remembered), then the fresh one
      expect(b.stats.retries).to.equal(1);
      expect(p.cumulativeAmount).to.equal(13n * PRICE);
      expect(p.receipt!.extra.spent).to.equal(13n * PRICE);
    });

    it("a forged hint (signature not its own) from a lying provider is rejected; nothing is signed on its account", async function () {
      const stranger = new VoucherSigner(generatePrivateKey(), srv.domain);
      const a = fileClient(13);
      for (let i = 0; i < 3; i++) await echo(a, srv);
      await a.flush();
      await fs.rm(path.join(dir, "state.json"));
      const proxy = await tamperingProxy(srv.url, (hint) => {
        hint.accepted = hint.deposit - PRICE; // would make the client sign the whole deposit away
        hint.spent = hint.accepted;
        hint.signature = stranger.sign(hint.channelId, hint.accepted).signature;
      });
      try {
        const b = fileClient(13);
        const e = await expectCode(b.fetch(`${proxy.url}/v1/echo?msg=x`), "untrusted_hint");
        expect(e.details).to.match(/Nothing was signed/);
        expect(b.stats.vouchersSigned).to.equal(1); // the stale first attempt only
        expect(b.channels()[0].signed < USDC(0.5)).to.equal(true);
      } finally {
        await proxy.close();
      }
    });

    it("a hint with its own genuine signature but spent beyond the deposit is rejected", async function () {
      const a = fileClient(13);
      for (let i = 0; i < 2; i++) await echo(a, srv);
      await a.flush();
      await fs.rm(path.join(dir, "state.json"));
      const proxy = await tamperingProxy(srv.url, (hint) => {
        hint.spent = hint.deposit + 1n;
      });
      try {
        const b = fileClient(13);
        await expectCode(b.fetch(`${proxy.url}/v1/echo?msg=x`), "untrusted_hint");
        expect(b.stats.vouchersSigned).to.equal(1);
      } finally {
        await proxy.close();
      }
    });
  });

  describe("funding and closing", function () {
    it("tops up automatically when the deposit runs low; the server accepts vouchers above the old deposit", async function () {
      const { agent } = testClient(14, { policy: { deposit: "1", topUpAmount: "1" }, limits: { maxPrice: "0.25", maxDeposit: "2" } });
      const amounts: bigint[] = [];
      for (let i = 0; i < 8; i++) {
        const res = await agent.fetch(`${srv.url}/v1/pricey`);
        expect(res.status, await res.clone().text()).to.equal(200);
        amounts.push((agent.paymentOf(res) as ChannelPaymentInfo).cumulativeAmount);
      }
      expect(agent.stats.channelsOpened).to.equal(1);
      expect(agent.stats.topUps).to.be.greaterThan(0);
      expect(amounts.at(-1)).to.equal(USDC(2));
      const c = await onchain(agent.channels()[0].id, agent.signerAddress);
      expect(c.deposit >= USDC(2)).to.equal(true);
    });

    it("cooperative close: the provider accepts the signed close request; the next call opens a new channel", async function () {
      const { agent, store } = testClient(15);
      const first = await echo(agent, srv);
      const r = await agent.closeChannel(first.channelId);
      expect(r.mode).to.equal("cooperative");
      const [s] = (await agent.status()).filter((x) => x.channelId === first.channelId);
      expect(s.status).to.equal("closing");
      const next = await echo(agent, srv);
      expect(next.channelId).to.not.equal(first.channelId);
      expect(agent.stats.channelsOpened).to.equal(2);
      // The provider no longer takes vouchers on the closed channel.
      const key = (await store.loadSessionKey())!.privateKey;
      const voucher = new VoucherSigner(key, srv.domain).sign(first.channelId, 2n * PRICE);
      const res = await fetch(`${srv.url}/v1/echo?msg=x`, { headers: srv.pay(await srv.terms("/v1/echo"), voucher) });
      expect(res.status).to.equal(402);
      expect(decodePaymentRequired(res.headers.get(HEADER_PAYMENT_REQUIRED)).error).to.equal("channel_closing");
    });

    it("on-chain close: requestClose, then withdraw after the delay refunds deposit − settled", async function () {
      const { agent, address } = testClient(16);
      const p = await echo(agent, srv);
      const r = await agent.closeChannel(p.channelId, { mode: "on-chain" });
      expect(r.mode).to.equal("on-chain");
      await expectCode(agent.withdraw(p.channelId), "close_pending");
      const c = await onchain(p.channelId, agent.signerAddress);
      await hre.network.provider.send("evm_increaseTime", [Number(c.closeDelay)]);
      await hre.network.provider.send("evm_mine", []);
      const before = await balance(address);
      const { refund } = await agent.withdraw(p.channelId);
      const after = await onchain(p.channelId, agent.signerAddress);
      expect(after.finalized).to.equal(true);
      expect(refund).to.equal(c.deposit - after.settled);
      expect((await balance(address)) - before).to.equal(refund);
      const [s] = (await agent.status()).filter((x) => x.channelId === p.channelId);
      expect(s.status).to.equal("finalized");
    });
  });
});
