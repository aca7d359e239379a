/**
 * The stock x402 client SDK (`@x402/fetch` + `@x402/core`, pinned) paying OUR provider server (the real server of
 * test/helpers/server.ts, demo routes) through our `channel` plug-in (`@paychan/client/x402`): the plug-in signs with
 * the agent's session key on the agent's channels, under its limits, and the receipts reach the agent's state.
 */
import { expect } from "chai";
import type { Hex } from "viem";
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { validatePaymentRequired } from "@x402/core/schemas";
import { decodePaymentResponseHeader, wrapFetchWithPayment } from "@x402/fetch";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";
import { HEADER_PAYMENT_REQUIRED, HEADER_PAYMENT_RESPONSE, HEADER_PAYMENT_SIGNATURE, channelEscrowAbi, networkOf } from "@paychan/protocol";
import type { Express } from "express";
import type { ChannelClient } from "@paychan/client";
import { demoRoutes } from "@paychan/demo";
import type { ExpressPaywall } from "@paychan/express";
import { ChannelSchemeClient } from "@paychan/client/x402";
import { startTestServer, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";

const PRICE = 1_000n; // /v1/echo: 0.001 USDC
const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));

/** A fetch that records the requests it sends (and their PAYMENT-SIGNATURE). */
function recordingFetch() {
  const sent: { url: string; payment: string | null }[] = [];
  const f: typeof fetch = async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    sent.push({ url: req.url, payment: req.headers.get(HEADER_PAYMENT_SIGNATURE) });
    return fetch(req);
  };
  return { fetch: f, sent };
}

/** The stock paying fetch over our plug-in for `agent`. */
function stockFetch(agent: ChannelClient, srv: TestServer, base: typeof fetch) {
  const channel = new ChannelSchemeClient(agent);
  const network = networkOf(srv.chainId);
  // The stock client pays only its default assets unless told; our own limits (maxPrice, maxDeposit...) apply on top.
  const client = new x402Client().register(network, channel).setSpendControls({ allowedAssets: [{ network, asset: srv.token }] });
  return wrapFetchWithPayment(base, channel.attach(new x402HTTPClient(client)));
}

describe("x402 interop: stock @x402/fetch with our channel plug-in pays our server", function () {
  this.timeout(180_000);
  let srv: TestServer;
  let snap: string;
  const PAYER = 13;

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer({
      routes: (app: Express, paywall: ExpressPaywall) => {
        demoRoutes(app, paywall);
        app.get("/v1/pricey", paywall.charge({ price: "0.25" }), (_req, res) => {
          res.json({ ok: true });
        });
        // Charges, then fails: a 500 releases the charge and carries no receipt (a refused paid call for the agent).
        app.get("/v1/broken", paywall.charge({ price: "0.001" }), (_req, res) => {
          res.status(500).json({ error: "internal_error" });
        });
      },
    });
    await mintUsdc(srv.token, chainClients(PAYER).address, USDC(100));
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  it("our server's 402 (PAYMENT-REQUIRED) decodes with the stock x402HTTPClient and passes the stock v2 schema", async function () {
    const res = await fetch(`${srv.url}/v1/echo?msg=hi`);
    await res.arrayBuffer();
    expect(res.status).to.equal(402);
    const http = new x402HTTPClient(new x402Client());
    const required = http.getPaymentRequiredResponse((n) => res.headers.get(n));
    validatePaymentRequired(required); // throws on a field the stock SDK does not accept
    expect(required.x402Version).to.equal(2);
    expect(required.error).to.equal("payment_required");
    expect(required.accepts[0]).to.include({ scheme: "channel", network: networkOf(srv.chainId), amount: String(PRICE) });
    expect(required.accepts[0].asset.toLowerCase()).to.equal(srv.token.toLowerCase());
  });

  it("stock @x402/fetch with our channel client plug-in pays our server many times on one channel", async function () {
    const { agent } = testClient(PAYER, { limits: { maxPrice: "0.01", maxDeposit: "5" } }); // escrow verified by its code
    const rec = recordingFetch();
    const pay = stockFetch(agent, srv, rec.fetch);
    const N = 20;
    let last: Response | undefined;
    for (let i = 0; i < N; i++) {
      const res = await pay(`${srv.url}/v1/echo?msg=m${i}`);
      expect(res.status, await res.clone().text()).to.equal(200);
      expect(await res.json()).to.deep.equal({ echo: `m${i}` });
      const receipt = decodePaymentResponseHeader(res.headers.get(HEADER_PAYMENT_RESPONSE)!);
      expect(receipt).to.include({ success: true, transaction: "", amount: String(PRICE) });
      last = res;
    }
    // Two round trips per call through the stock wrapper: the unpaid request, then the paid one.
    expect(rec.sent.length).to.equal(2 * N);
    expect(rec.sent.filter((s) => s.payment).length).to.equal(N);

    // One channel, on chain and in the agent's state; the agent's state took the receipts.
    const channels = agent.channels();
    expect(channels).to.have.length(1);
    const ch = channels[0];
    expect(ch.signed).to.equal(BigInt(N) * PRICE);
    expect(ch.spent).to.equal(BigInt(N) * PRICE);
    expect(ch.served).to.equal(BigInt(N) * PRICE);
    expect(ch.lastReceipt?.extra.spent).to.equal(BigInt(N) * PRICE);
    expect(agent.stats.channelsOpened).to.equal(1);
    expect(agent.stats.paidCalls).to.equal(N);
    const logs = await srv.env.publicClient.getContractEvents({
      address: srv.escrow,
      abi: channelEscrowAbi,
      eventName: "ChannelOpened",
      args: { payer: chainClients(PAYER).address },
      fromBlock: 0n,
    });
    expect(logs.map((l) => l.args.channelId)).to.deep.equal([ch.id]);

    // The payee's accounting: N × price on that channel.
    const stored = await srv.store.getChannel(ch.id as Hex);
    expect(stored!.spent).to.equal(BigInt(N) * PRICE);
    expect(stored!.accepted).to.equal(BigInt(N) * PRICE);
    expect(last).to.not.equal(undefined);
    await agent.close();
  });

  it("a voucher refused because the agent's state fell behind is resynchronised from the hint and paid on the stock wrapper's one retry", async function () {
    const { agent } = testClient(PAYER + 1, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    await mintUsdc(srv.token, chainClients(PAYER + 1).address, USDC(10));
    const rec = recordingFetch();
    const pay = stockFetch(agent, srv, rec.fetch);
    for (let i = 0; i < 3; i++) expect((await pay(`${srv.url}/v1/echo?msg=a${i}`)).status).to.equal(200);
    // The state forgets the last two vouchers (as after a crash before saving): the next voucher repeats a used amount.
    const ch = agent.channels()[0];
    ch.signed = PRICE;
    ch.accepted = PRICE;
    ch.spent = PRICE;
    ch.served = PRICE;
    // ... and so does what this process counted for the channel (a new process starts from the stored state, § 7.1).
    Object.assign(agent.payingParts().book.flagsOf(ch), { floor: PRICE, charged: 0n });
    const before = rec.sent.length;
    const res = await pay(`${srv.url}/v1/echo?msg=again`);
    expect(res.status, await res.clone().text()).to.equal(200);
    expect(rec.sent.length - before).to.equal(3); // unpaid, refused paid, retried paid
    expect(agent.stats.retries).to.equal(1);
    expect(ch.spent).to.equal(4n * PRICE);
    expect((await srv.store.getChannel(ch.id as Hex))!.spent).to.equal(4n * PRICE);
    await agent.close();
  });

  it("a replayed PAYMENT-SIGNATURE sent by the stock wrapper is refused by our server with voucher_reused, readable by the stock client", async function () {
    const { agent } = testClient(PAYER + 2, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    await mintUsdc(srv.token, chainClients(PAYER + 2).address, USDC(10));
    const rec = recordingFetch();
    const pay = stockFetch(agent, srv, rec.fetch);
    expect((await pay(`${srv.url}/v1/echo?msg=x`)).status).to.equal(200);
    const header = rec.sent.find((s) => s.payment)!.payment!;
    const replay = await fetch(`${srv.url}/v1/echo?msg=x`, { headers: { [HEADER_PAYMENT_SIGNATURE]: header } });
    await replay.arrayBuffer();
    expect(replay.status).to.equal(402);
    const required = new x402HTTPClient(new x402Client()).getPaymentRequiredResponse((n) => replay.headers.get(n));
    expect(required.error).to.equal("voucher_reused");
    expect(replay.headers.get(HEADER_PAYMENT_REQUIRED)).to.be.a("string");
    await agent.close();
  });

  it("a stock client holding both the stock exact scheme and our plug-in pays channel on our server (listed first): no transfer per call", async function () {
    const idx = PAYER + 5;
    const { agent } = testClient(idx, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    await mintUsdc(srv.token, chainClients(idx).address, USDC(10));
    const network = networkOf(srv.chainId);
    const channel = new ChannelSchemeClient(agent);
    const client = new x402Client().register(network, channel).setSpendControls({ allowedAssets: [{ network, asset: srv.token }] });
    registerExactEvmScheme(client, { signer: privateKeyToAccount(chainClients(idx).key), networks: [network] });
    const pay = wrapFetchWithPayment(fetch, channel.attach(new x402HTTPClient(client)));
    const offered = await fetch(`${srv.url}/v1/echo?msg=o`);
    await offered.arrayBuffer();
    const schemes = new x402HTTPClient(client).getPaymentRequiredResponse((n) => offered.headers.get(n)).accepts.map((a) => a.scheme);
    expect(schemes).to.deep.equal(["channel", "exact"]);
    const balance = () => srv.env.publicClient.readContract({ address: srv.token, abi: srv.env.usdc.abi, functionName: "balanceOf", args: [chainClients(idx).address] }) as Promise<bigint>;
    for (let i = 0; i < 3; i++) {
      const res = await pay(`${srv.url}/v1/echo?msg=b${i}`);
      expect(res.status, await res.clone().text()).to.equal(200);
      expect(decodePaymentResponseHeader(res.headers.get(HEADER_PAYMENT_RESPONSE)!).transaction).to.equal("");
    }
    const [ch] = agent.channels();
    expect(ch.spent).to.equal(3n * PRICE);
    const afterOpen = await balance();
    expect((await pay(`${srv.url}/v1/echo?msg=more`)).status).to.equal(200);
    expect(await balance()).to.equal(afterOpen); // the deposit pays; nothing moves on chain per call
    await agent.close();
  });

  it("16 concurrent calls through the stock wrapper share one channel, each paying with its own voucher", async function () {
    const { agent } = testClient(PAYER + 3, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    await mintUsdc(srv.token, chainClients(PAYER + 3).address, USDC(10));
    const pay = stockFetch(agent, srv, fetch);
    expect((await pay(`${srv.url}/v1/echo?msg=first`)).status).to.equal(200); // opens the channel
    const all = await Promise.all(Array.from({ length: 16 }, (_, i) => pay(`${srv.url}/v1/echo?msg=c${i}`)));
    expect(all.map((r) => r.status)).to.deep.equal(Array(16).fill(200));
    const amounts = all.map((r) => decodePaymentResponseHeader(r.headers.get(HEADER_PAYMENT_RESPONSE)!).amount);
    expect(amounts).to.deep.equal(Array(16).fill(String(PRICE)));
    expect(agent.channels()).to.have.length(1);
    expect(agent.stats.vouchersSigned).to.equal(17);
    expect((await srv.store.getChannel(agent.channels()[0].id as Hex))!.spent).to.equal(17n * PRICE);
    await agent.close();
  });

  it("the plug-in keeps the agent's limits: a price above maxPrice is refused before anything is signed or deposited", async function () {
    const { agent } = testClient(PAYER + 4, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    const pay = stockFetch(agent, srv, fetch);
    let err: Error | undefined;
    try {
      await pay(`${srv.url}/v1/pricey`);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/\[spending_limit\] the price 250000 is above maxPrice 10000/);
    expect(agent.stats.vouchersSigned).to.equal(0);
    expect(agent.channels()).to.have.length(0);
    await agent.close();
  });

  it("a provider failing every paid call (500, no receipt) stops being paid after maxConsecutiveRefusals: provider_refusing", async function () {
    const { agent } = testClient(PAYER + 4, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    await mintUsdc(srv.token, chainClients(PAYER + 4).address, USDC(10));
    const pay = stockFetch(agent, srv, fetch);
    for (let i = 0; i < 3; i++) expect((await pay(`${srv.url}/v1/broken`)).status).to.equal(500);
    const signed = agent.stats.vouchersSigned;
    let err: Error | undefined;
    try {
      await pay(`${srv.url}/v1/broken`);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/\[provider_refusing\]/);
    expect(agent.stats.vouchersSigned).to.equal(signed);
    await agent.close();
  });

  it("without attach() the plug-in signs nothing (it cannot tell which provider asked): the stock wrapper throws with our code", async function () {
    const { agent } = testClient(PAYER + 2, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    const network = networkOf(srv.chainId);
    const client = new x402Client().register(network, new ChannelSchemeClient(agent)).setSpendControls({ allowedAssets: [{ network, asset: srv.token }] });
    const pay = wrapFetchWithPayment(fetch, client);
    let err: Error | undefined;
    try {
      await pay(`${srv.url}/v1/echo?msg=y`);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/\[invalid_argument\]/);
    expect(agent.stats.vouchersSigned).to.equal(0);
    await agent.close();
  });
});
