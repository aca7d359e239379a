/**
 * A provider already on the stock x402 SDK (`@x402/express`'s `paymentMiddleware` over `@x402/core`'s
 * `x402ResourceServer`, pinned) offering our `channel` scheme through our server plug-in (`@paychan/server/x402`):
 * our SDK pays it (one channel, one round trip per call once the route's terms are known), every voucher is charged
 * durably in our store (SQLite and PostgreSQL), our settlement job settles exactly what was charged, and refusals carry
 * our codes.
 */
import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { keccak256, toHex, type Hex } from "viem";
import { randomBytes } from "node:crypto";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { x402Facilitator } from "@x402/core/facilitator";
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import {
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_RESPONSE,
  HEADER_PAYMENT_SIGNATURE,
  VoucherSigner,
  channelEscrowAbi,
  decodePaymentRequired,
  decodePaymentResponse,
  networkOf,
} from "@paychan/protocol";
import { createProvider, defaultConfig, createLogger, type Provider } from "@paychan/server";
import { createChannelX402, type ChannelX402 } from "@paychan/server/x402";
import { ChannelSchemeClient } from "@paychan/client/x402";
import { mockUsdcAbi } from "@paychan/demo";
import { rpcUrl, tempDatabaseUrl, paymentHeaders } from "../helpers/server";
import { deployEscrow, openChannel, sessionKey, USDC, type Env } from "../helpers/escrow";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { accountKey, snapshot, revertTo } from "../helpers/chain";
import { startFaultProxy } from "../helpers/fault-proxy";
import { describePostgres, newTestDatabase } from "../helpers/postgres";

const PRICE = 1_000n;

/** The stock middleware app: `GET /paid` (price 1000 atomic), `GET /broken` (the handler fails with 500). */
async function stockApp(provider: Provider, channel: ChannelX402, viaFacilitator: boolean) {
  let server: x402ResourceServer;
  if (viaFacilitator) {
    // One in-process x402Facilitator (where `exact` would be registered too) as the resource server's facilitator.
    const f = new x402Facilitator().register(channel.network, channel.facilitator);
    server = new x402ResourceServer({ verify: (p, r) => f.verify(p, r), settle: (p, r) => f.settle(p, r), getSupported: async () => f.getSupported() as never });
  } else {
    server = new x402ResourceServer(channel.facilitatorClient);
  }
  server.register(channel.network, channel.server);
  const accepts = { scheme: "channel", network: channel.network, payTo: provider.payee, price: { amount: String(PRICE), asset: provider.token } };
  const app = express();
  app.use(
    paymentMiddleware(
      {
        "GET /paid": { accepts, description: "a paid echo", mimeType: "application/json" },
        "GET /broken": { accepts, description: "always fails" },
      },
      server,
    ),
  );
  let served = 0;
  app.get("/paid", (req, res) => {
    served++;
    res.json({ echo: req.query.msg ?? null });
  });
  app.get("/broken", (_req, res) => {
    res.status(500).json({ error: "broken" });
  });
  const s = http.createServer(app);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    served: () => served,
    close: () => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))),
  };
}

/** The suite on one store: SQLite (a temporary file) or PostgreSQL (a fresh schema). */
function interop(store: string, describeOn: (title: string, fn: (this: Mocha.Suite) => void) => void, newDatabase: () => Promise<string>) {
  describeOn(`x402 interop: a stock @x402/express server offers channel through our server plug-in (${store})`, function () {
    this.timeout(180_000);
    let snap: string;
    let env: Env;
    let provider: Provider;
    let channel: ChannelX402;
    let app: Awaited<ReturnType<typeof stockApp>>;
    const PAYER = 16;

    before(async function () {
      snap = await snapshot();
      env = await deployEscrow();
      const payee = env.wallets[0].account.address;
      provider = await createProvider({
        config: defaultConfig({ rpcUrl: await rpcUrl(), escrow: env.escrow.address, token: env.usdc.address, payee, databaseUrl: await newDatabase(), chainPollInterval: 250, logLevel: "silent" }),
        logger: createLogger("silent"),
        // Our batch settler with the payee's key, run by the test (not on a timer).
        settlement: { privateKey: accountKey(0), start: false, config: { threshold: "0.000001" }, pollInterval: 50 },
      });
      channel = createChannelX402(provider);
      app = await stockApp(provider, channel, true);
      await mintUsdc(provider.token, chainClients(PAYER).address, USDC(50));
    });

    after(async function () {
      await app?.close();
      await provider?.close();
      if (snap) await revertTo(snap);
    });

    const balance = (a: Hex) => env.publicClient.readContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] }) as Promise<bigint>;

    it("the stock 402 offering channel speaks our wire format: our decoder reads it, error payment_required", async function () {
      const res = await fetch(`${app.url}/paid?msg=hi`);
      await res.arrayBuffer();
      expect(res.status).to.equal(402);
      const required = decodePaymentRequired(res.headers.get(HEADER_PAYMENT_REQUIRED));
      expect(required.error).to.equal("payment_required");
      expect(required.accepts).to.have.length(1);
      const offer = required.accepts[0];
      expect(offer.amount).to.equal(PRICE);
      expect(offer.asset.toLowerCase()).to.equal(provider.token.toLowerCase());
      expect(offer.payTo.toLowerCase()).to.equal(provider.payee.toLowerCase());
      expect(offer.extra.escrow.toLowerCase()).to.equal(provider.escrow.toLowerCase());
    });

    it("our SDK pays a stock @x402/express server that offers channel through our server plug-in, and our settlement job settles what it charged", async function () {
      const { agent } = testClient(PAYER, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
      const N = 12;
      const servedBefore = app.served();
      for (let i = 0; i < N; i++) {
        const res = await agent.fetch(`${app.url}/paid?msg=m${i}`);
        expect(res.status, await res.clone().text()).to.equal(200);
        expect(await res.json()).to.deep.equal({ echo: `m${i}` });
        const info = agent.paymentOf(res)!;
        expect(info.requests).to.equal(i === 0 ? 2 : 1); // the route's terms are learnt once, then one round trip
        const receipt = decodePaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE));
        expect(receipt.transaction).to.equal(""); // nothing on chain per call
        expect(receipt.amount).to.equal(PRICE);
        expect(receipt.extra.spent).to.equal(BigInt(i + 1) * PRICE);
      }
      expect(app.served() - servedBefore).to.equal(N);
      const [ch] = agent.channels();
      expect(agent.channels()).to.have.length(1);
      const stored = await provider.store.getChannel(ch.id as Hex);
      expect(stored!.spent).to.equal(BigInt(N) * PRICE);

      // Our batch settler claims exactly what was charged: the payee's token balance grows by N × price.
      const before = await balance(provider.payee);
      const report = await provider.settlement!.runNow({ all: true });
      expect(report.failures, JSON.stringify(report.failures)).to.deep.equal([]);
      expect((await balance(provider.payee)) - before).to.equal(BigInt(N) * PRICE);
      const onchain = await env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [ch.id as Hex, agent.signerAddress] });
      expect((onchain as { settled: bigint }).settled).to.equal(BigInt(N) * PRICE);
      await agent.close();
    });

    it("16 concurrent calls of our SDK on one channel through the stock middleware: each served once and charged once", async function () {
      const { agent } = testClient(PAYER + 2, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
      await mintUsdc(provider.token, chainClients(PAYER + 2).address, USDC(10));
      expect((await agent.fetch(`${app.url}/paid?msg=open`)).status).to.equal(200);
      const servedBefore = app.served();
      const all = await Promise.all(Array.from({ length: 16 }, (_, i) => agent.fetch(`${app.url}/paid?msg=c${i}`)));
      expect(all.map((r) => r.status)).to.deep.equal(Array(16).fill(200));
      expect(app.served() - servedBefore).to.equal(16);
      const [ch] = agent.channels();
      expect((await provider.store.getChannel(ch.id as Hex))!.spent).to.equal(17n * PRICE);
      expect(ch.spent).to.equal(17n * PRICE);
      await agent.close();
    });

    it("stock @x402/fetch with our client plug-in pays the stock server too (both ends stock, our scheme in between)", async function () {
      const { agent } = testClient(PAYER + 1, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
      await mintUsdc(provider.token, chainClients(PAYER + 1).address, USDC(10));
      const c = new ChannelSchemeClient(agent);
      const network = networkOf(provider.chainId);
      const client = new x402Client().register(network, c).setSpendControls({ allowedAssets: [{ network, asset: provider.token }] });
      const pay = wrapFetchWithPayment(fetch, c.attach(new x402HTTPClient(client)));
      for (let i = 0; i < 5; i++) {
        const res = await pay(`${app.url}/paid?msg=s${i}`);
        expect(res.status, await res.clone().text()).to.equal(200);
      }
      const [ch] = agent.channels();
      expect(ch.spent).to.equal(5n * PRICE); // the receipts reached our client's state
      expect((await provider.store.getChannel(ch.id as Hex))!.spent).to.equal(5n * PRICE);
      await agent.close();
    });

    describe("refusals through the stock middleware carry our codes", function () {
      let ch: Awaited<ReturnType<typeof openChannel>>;
      let terms: ReturnType<typeof decodePaymentRequired>["accepts"][number];
      const paid = (voucher: ReturnType<VoucherSigner["sign"]>) => fetch(`${app.url}/paid?msg=r`, { headers: paymentHeaders(terms, voucher) });
      const codeOf = async (res: Response) => {
        await res.arrayBuffer();
        const h = res.headers.get(HEADER_PAYMENT_REQUIRED);
        return { status: res.status, required: h ? decodePaymentRequired(h) : undefined };
      };

      before(async function () {
        ch = await openChannel(env, { payerIndex: 3, deposit: USDC(2) });
        const res = await fetch(`${app.url}/paid?msg=r`);
        terms = (await codeOf(res)).required!.accepts[0];
      });

      it("a replayed voucher: 402 voucher_reused, with the channel hint; the handler does not run", async function () {
        const v = ch.voucher.sign(ch.id, PRICE);
        expect((await paid(v)).status).to.equal(200);
        const served = app.served();
        const again = await codeOf(await paid(v));
        expect(again.status).to.equal(402);
        expect(again.required!.error).to.equal("voucher_reused");
        const hint = again.required!.accepts[0].extra.channel!;
        expect(hint.channelId).to.equal(ch.id.toLowerCase());
        expect(hint.accepted).to.equal(PRICE);
        expect(hint.spent).to.equal(PRICE);
        expect(app.served()).to.equal(served);
      });

      it("a voucher signed by another key: 402 invalid_signature, no hint; a voucher above the deposit: exceeds_deposit", async function () {
        const stranger = new VoucherSigner(`0x${"11".repeat(32)}`, env.domain);
        const bad = await codeOf(await paid(stranger.sign(ch.id, 2n * PRICE)));
        expect(bad.status).to.equal(402);
        expect(bad.required!.error).to.equal("invalid_signature");
        expect(bad.required!.accepts[0].extra.channel).to.equal(undefined);
        const above = await codeOf(await paid(ch.voucher.sign(ch.id, USDC(3))));
        expect(above.required!.error).to.equal("exceeds_deposit");
      });

      it("a payment echoing other terms: 402 requirements_mismatch (the stock matcher), nothing charged", async function () {
        const before = (await provider.store.getChannel(ch.id))!.spent;
        const other = { ...terms, amount: 1n };
        const res = await fetch(`${app.url}/paid?msg=r`, { headers: paymentHeaders(other, ch.voucher.sign(ch.id, 5n * PRICE)) });
        const r = await codeOf(res);
        expect(r.status).to.equal(402);
        expect(r.required!.error).to.equal("requirements_mismatch");
        expect((await provider.store.getChannel(ch.id))!.spent).to.equal(before);
      });

      it("a handler failing with 500 is not paid: the charge is released (the voucher stays used)", async function () {
        const before = (await provider.store.getChannel(ch.id))!.spent;
        const v = ch.voucher.sign(ch.id, 10n * PRICE);
        const res = await fetch(`${app.url}/broken`, { headers: paymentHeaders({ ...terms }, v) });
        await res.arrayBuffer();
        expect(res.status).to.equal(500);
        expect(res.headers.get(HEADER_PAYMENT_RESPONSE)).to.equal(null);
        expect((await provider.store.getChannel(ch.id))!.spent).to.equal(before);
        const again = await codeOf(await paid(v));
        expect(again.required!.error).to.equal("voucher_reused");
      });
    });

    it("route prices: money is read in units of the provider's token; another asset, network or payee is refused", async function () {
      const s = channel.server;
      expect(await s.parsePrice("$0.001", channel.network)).to.deep.equal({ amount: "1000", asset: provider.token });
      expect(await s.parsePrice({ amount: "2500", asset: provider.token.toLowerCase() }, channel.network)).to.deep.equal({ amount: "2500", asset: provider.token });
      const refused = async (p: Promise<unknown>) => {
        try {
          await p;
        } catch (e) {
          return (e as Error).message;
        }
        return "accepted";
      };
      expect(await refused(s.parsePrice({ amount: "1000", asset: env.escrow.address }, channel.network))).to.match(/is paid in/);
      expect(await refused(s.parsePrice("$0.001", "eip155:1"))).to.match(/is on eip155:/);
      const base = { scheme: "channel", network: channel.network, asset: provider.token, amount: "1000", maxTimeoutSeconds: 60, extra: {} };
      expect(await refused(s.enhancePaymentRequirements({ ...base, payTo: env.wallets[5].account.address }, { x402Version: 2, scheme: "channel", network: channel.network }, []))).to.match(/must pay the provider's payee/);
    });

    it("the chain unreachable while a voucher is checked: the stock middleware answers 502, the handler does not run, nothing is charged", async function () {
      const proxy = await startFaultProxy(await rpcUrl());
      const p2 = await createProvider({
        config: defaultConfig({ rpcUrl: proxy.url, escrow: env.escrow.address, token: env.usdc.address, payee: env.wallets[0].account.address, databaseUrl: await newDatabase(), chainPollInterval: 250, logLevel: "silent" }),
        logger: createLogger("silent"),
        settlement: false,
      });
      const down = await stockApp(p2, createChannelX402(p2), true);
      try {
        const ch = await openChannel(env, { payerIndex: 5, deposit: USDC(2) }); // a channel this provider has not read yet
        const first = await fetch(`${down.url}/paid`);
        await first.arrayBuffer();
        const terms = decodePaymentRequired(first.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
        const v = ch.voucher.sign(ch.id, PRICE);
        proxy.down();
        const res = await fetch(`${down.url}/paid`, { headers: paymentHeaders(terms, v) });
        const body = (await res.json()) as { error: string };
        expect(res.status).to.equal(502);
        expect(body.error).to.match(/^upstream_unavailable: /);
        expect(res.headers.get(HEADER_PAYMENT_RESPONSE)).to.equal(null);
        expect(down.served()).to.equal(0);
        expect(await p2.store.getChannel(ch.id)).to.equal(null);
        proxy.up();
        const again = await fetch(`${down.url}/paid`, { headers: paymentHeaders(terms, v) }); // the same voucher was never used
        expect(again.status, await again.clone().text()).to.equal(200);
        expect(down.served()).to.equal(1);
      } finally {
        proxy.up();
        await down.close();
        await p2.close();
        await proxy.close();
      }
    });

    it("with the plain facilitator client (no x402Facilitator), the same route pays and refuses", async function () {
      const plain = await stockApp(provider, createChannelX402(provider), false);
      try {
        const ch = await openChannel(env, { payerIndex: 4, deposit: USDC(2) });
        const first = await fetch(`${plain.url}/paid`);
        await first.arrayBuffer();
        const terms = decodePaymentRequired(first.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
        const v = ch.voucher.sign(ch.id, PRICE);
        const ok = await fetch(`${plain.url}/paid`, { headers: paymentHeaders(terms, v) });
        expect(ok.status, await ok.clone().text()).to.equal(200);
        const receipt = decodePaymentResponse(ok.headers.get(HEADER_PAYMENT_RESPONSE));
        expect(receipt.extra.channelId).to.equal(ch.id.toLowerCase());
        const replay = await fetch(`${plain.url}/paid`, { headers: { [HEADER_PAYMENT_SIGNATURE]: paymentHeaders(terms, v)[HEADER_PAYMENT_SIGNATURE] } });
        await replay.arrayBuffer();
        expect(decodePaymentRequired(replay.headers.get(HEADER_PAYMENT_REQUIRED)).error).to.equal("voucher_reused");
      } finally {
        await plain.close();
      }
    });
  });
}

interop("SQLite", describe, async () => tempDatabaseUrl());
interop("PostgreSQL", describePostgres, () => newTestDatabase("x402"));

/** A GET from a chosen loopback address (another client "source"). */
function getFrom(localAddress: string, url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, headers, localAddress, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("x402 interop: the server plug-in passes the client's address to the per-source chain-read budget", function () {
  this.timeout(120_000);
  let snap: string;
  let provider: Provider;
  let app: Awaited<ReturnType<typeof stockApp>>;
  let env: Env;

  before(async function () {
    snap = await snapshot();
    env = await deployEscrow();
    provider = await createProvider({
      config: defaultConfig({
        rpcUrl: await rpcUrl(),
        escrow: env.escrow.address,
        token: env.usdc.address,
        payee: env.wallets[0].account.address,
        databaseUrl: tempDatabaseUrl(),
        chainPollInterval: 250,
        logLevel: "silent",
        chainReadsPerSource: 3,
        chainReadsGlobal: 1_000,
      }),
      logger: createLogger("silent"),
      settlement: false,
    });
    app = await stockApp(provider, createChannelX402(provider), true);
  });

  after(async function () {
    await app?.close();
    await provider?.close();
    if (snap) await revertTo(snap);
  });

  const refusedBySource = async () => {
    const text = await provider.metrics.registry.getSingleMetricAsString("channel_chain_reads_refused_total");
    const line = text.split("\n").find((l) => l.startsWith('channel_chain_reads_refused_total{scope="source"}'));
    return line ? Number(line.split(" ").pop()) : 0;
  };

  it("vouchers for unknown channels from one address exhaust its budget only; another address keeps its own", async function () {
    const first = await fetch(`${app.url}/paid`);
    await first.arrayBuffer();
    const terms = decodePaymentRequired(first.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
    const stranger = () => paymentHeaders(terms, new VoucherSigner(sessionKey().key, env.domain).sign(keccak256(toHex(randomBytes(32))) as Hex, PRICE));
    const before = await refusedBySource();
    for (let i = 0; i < 10; i++) expect(await getFrom("127.0.0.1", `${app.url}/paid`, stranger())).to.be.oneOf([402, 502]);
    const afterOne = await refusedBySource();
    expect(afterOne - before).to.be.at.least(10 - 3);
    for (let i = 0; i < 3; i++) expect(await getFrom("127.0.0.2", `${app.url}/paid`, stranger())).to.be.oneOf([402, 502]);
    expect(await refusedBySource()).to.equal(afterOne); // its own budget: not the first address's, not a shared one
  });
});
