/**
 * Our SDK and CLI pay the x402 `exact` scheme (issue 12, item 2) against a STOCK x402 provider: `@x402/express`'s
 * `paymentMiddleware` with the stock `exact` server scheme and an in-process stock facilitator that submits the
 * EIP-3009 transfers on the local chain (test/helpers/stock-x402.ts). Also: the limits and allow-lists before anything
 * is signed (maxPrice, maxSpend, the token allow-list and the USDC-only default unit, the token's own EIP-712 domain),
 * the choice between `channel` and `exact` when a 402 offers both (a front that lists our server's channel offer and
 * the stock server's exact offer, and forwards each payment to the server of its scheme), and the refusal rules
 * (a 402 answering an exact payment is a refused call; a new authorization only when the provider says the first was
 * not used).
 */
import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import hre from "hardhat";
import { erc20Abi, getAddress, verifyTypedData, type Address, type Hex } from "viem";
import {
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_RESPONSE,
  HEADER_PAYMENT_SIGNATURE,
  decodeExactPaymentSignature,
  encodeExactPaymentResponse,
  exactTypedData,
  paymentSignatureScheme,
  type ExactPaymentPayload,
} from "@paychan/protocol";
import { ClientError, MemoryStore, type ChannelClient, type ClientEvent, type ExactPaymentInfo } from "@paychan/client";
import { startTestServer, type TestServer } from "../helpers/server";
import { startStockServer, type StockServer } from "../helpers/stock-x402";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { accountKey, revertTo, snapshot } from "../helpers/chain";
import { compiledEnv } from "../helpers/process";

const PAYER = 11;
const FACILITATOR = 14;
const PRICE = 1_000n; // 0.001 USDC, as /v1/echo of our server
const CLIENT_DIR = path.resolve(__dirname, "..", "..", "client");
const BIN = path.join(CLIENT_DIR, "bin", "channel.js");

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

/** A fetch that records every request's `PAYMENT-SIGNATURE` (or undefined for an unpaid one). */
function recordingFetch(): { fetch: typeof fetch; sent: Array<string | undefined> } {
  const sent: Array<string | undefined> = [];
  return {
    sent,
    fetch: (input, init) => {
      sent.push(new Headers(init?.headers).get(HEADER_PAYMENT_SIGNATURE) ?? undefined);
      return fetch(input, init);
    },
  };
}

/** A loopback server answering `respond(payment, index)`; records each request's decoded exact payment. */
async function startExactResponder(respond: (payment: ExactPaymentPayload | undefined, i: number) => { status: number; headers?: Record<string, string> }) {
  const payments: Array<ExactPaymentPayload | undefined> = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const h = req.headers[HEADER_PAYMENT_SIGNATURE.toLowerCase()];
      const p = typeof h === "string" ? decodeExactPaymentSignature(h) : undefined;
      payments.push(p);
      const r = respond(p, payments.length - 1);
      res.writeHead(r.status, { "content-type": "application/json", ...(r.headers ?? {}) });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    payments,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/** A stock-style 402 offering `exact` only, with the stock server's free-text `error`. */
function exactChallenge(p: { asset: Address; payTo: Address; amount: bigint; error?: string; version?: string }): Record<string, string> {
  const body = {
    x402Version: 2,
    error: p.error ?? "Payment required",
    resource: { url: "http://127.0.0.1/x", mimeType: "" },
    accepts: [
      { scheme: "exact", network: "eip155:31337", amount: p.amount.toString(), asset: p.asset, payTo: p.payTo, maxTimeoutSeconds: 60, extra: { name: "USD Coin", version: p.version ?? "2" } },
    ],
  };
  return { [HEADER_PAYMENT_REQUIRED]: Buffer.from(JSON.stringify(body)).toString("base64") };
}

/**
 * A provider offering both schemes, built from two real ones: its 402 lists our server's `channel` offer first and
 * the stock server's `exact` offer second; a paid request goes to the server of its payment's scheme.
 */
async function startBothFront(channelUrl: string, exactUrl: string) {
  const decode = (h: string | null) => (h ? JSON.parse(Buffer.from(h, "base64").toString()) : { accepts: [] });
  const server = http.createServer(async (req, res) => {
    req.resume();
    const paid = req.headers[HEADER_PAYMENT_SIGNATURE.toLowerCase()];
    const forward = async (base: string) => {
      const up = await fetch(`${base}${req.url}`, { headers: typeof paid === "string" ? { [HEADER_PAYMENT_SIGNATURE]: paid } : {} });
      const body = Buffer.from(await up.arrayBuffer());
      const headers: Record<string, string> = { "content-type": up.headers.get("content-type") ?? "application/json" };
      for (const h of [HEADER_PAYMENT_REQUIRED, HEADER_PAYMENT_RESPONSE]) if (up.headers.get(h)) headers[h] = up.headers.get(h)!;
      return { status: up.status, headers, body };
    };
    let out;
    if (typeof paid === "string") out = await forward(paymentSignatureScheme(paid) === "exact" ? exactUrl : channelUrl);
    else {
      const [c, x] = await Promise.all([forward(channelUrl), forward(exactUrl)]);
      const cj = decode(c.headers[HEADER_PAYMENT_REQUIRED]);
      const xj = decode(x.headers[HEADER_PAYMENT_REQUIRED]);
      cj.accepts = [...cj.accepts.filter((a: { scheme: string }) => a.scheme === "channel"), ...xj.accepts];
      out = { status: 402, headers: { ...c.headers, [HEADER_PAYMENT_REQUIRED]: Buffer.from(JSON.stringify(cj)).toString("base64") }, body: c.body };
    }
    res.writeHead(out.status, out.headers);
    res.end(out.body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

function runCli(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...compiledEnv(), ...env }, cwd, timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("client: pays the x402 exact scheme (stock @x402/express provider)", function () {
  this.timeout(180_000);
  let snap: string;
  let srv: TestServer; // ours: the channel offers, and the deployment (MockUSDC)
  let stock: StockServer;
  let payee: Address;
  let token: Address;
  const publicClient = () => chainClients(PAYER).publicClient;
  const balanceOf = (a: Address) => publicClient().readContract({ address: token, abi: erc20Abi, functionName: "balanceOf", args: [a] });

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer();
    token = srv.token;
    payee = chainClients(15).address;
    await mintUsdc(token, chainClients(PAYER).address, 50_000_000n);
    const route = { asset: token, payTo: payee, name: "USD Coin", version: "2" };
    stock = await startStockServer(
      [
        { route: "GET /v1/echo", amount: PRICE, ...route },
        { route: "GET /pricey", amount: 20_000n, ...route }, // 0.02: above the default maxPrice 0.01
        { route: "GET /wrong-version", amount: PRICE, ...route, version: "1" },
        { route: "GET /wrong-name", amount: PRICE, ...route, name: "USDC" },
      ],
      accountKey(FACILITATOR),
    );
  });

  after(async function () {
    await stock?.close();
    await srv?.close();
    await revertTo(snap);
  });

  it("pays a stock exact-only server: N calls move exactly N × price to the payee, each receipt a mined transfer", async function () {
    const events: ClientEvent[] = [];
    const rec = recordingFetch();
    const store = new MemoryStore();
    const { agent, address } = testClient(PAYER, { store, fetch: rec.fetch, onEvent: (e) => events.push(e) });
    const N = 5;
    const [payeeBefore, payerBefore] = [await balanceOf(payee), await balanceOf(address)];
    const latencies: number[] = [];
    const infos: ExactPaymentInfo[] = [];
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      const res = await agent.fetch(`${stock.url}/v1/echo?i=${i}`);
      expect(res.status, await res.clone().text()).to.equal(200);
      expect(await res.json()).to.deep.equal({ ok: true, path: "/v1/echo" });
      latencies.push(performance.now() - t0);
      const p = agent.paymentOf(res);
      expect(p?.scheme).to.equal("exact");
      infos.push(p as ExactPaymentInfo);
    }
    expect(await balanceOf(payee)).to.equal(payeeBefore + BigInt(N) * PRICE);
    expect(await balanceOf(address)).to.equal(payerBefore - BigInt(N) * PRICE);
    expect(stock.served()).to.be.at.least(N);
    const nonces = new Set<Hex>();
    for (const p of infos) {
      expect(p.price).to.equal(PRICE);
      expect(getAddress(p.payTo)).to.equal(payee);
      expect(p.requests).to.equal(2); // the 402, then the paid request
      expect(p.authorization.from).to.equal(address); // the wallet's key, not the session key
      expect(p.authorization.value).to.equal(PRICE);
      expect(p.transaction).to.match(/^0x[0-9a-f]{64}$/);
      const r = await publicClient().getTransactionReceipt({ hash: p.transaction! });
      expect(r.status).to.equal("success");
      nonces.add(p.authorization.nonce);
    }
    expect(nonces.size).to.equal(N);
    const k = token.toLowerCase();
    expect(agent.stats.amountPaid[k]).to.equal(BigInt(N) * PRICE);
    expect(agent.stats.amountSigned[k]).to.equal(BigInt(N) * PRICE);
    expect(agent.stats.paidCalls).to.equal(N);
    expect(agent.channels()).to.have.length(0); // no channel was opened
    expect(rec.sent.filter((h) => h !== undefined)).to.have.length(N); // N paid requests, none re-sent
    expect(events.filter((e) => e.type === "exact_paid").map((e) => (e as { txHash?: Hex }).txHash)).to.deep.equal(infos.map((p) => p.transaction));
    // The totals are in the saved state (maxSpend counts them in the next process too).
    await agent.flush();
    const saved = (await store.load())!;
    const totals = Object.values(saved.exact ?? {});
    expect(totals).to.have.length(1);
    expect(totals[0].signed).to.equal(BigInt(N) * PRICE);
    expect(totals[0].paid).to.equal(BigInt(N) * PRICE);
    latencies.sort((a, b) => a - b);
    console.log(`      exact paid call against the stock server (2 round trips + on-chain transfer): p50 ${latencies[N >> 1].toFixed(1)} ms, max ${latencies[N - 1].toFixed(1)} ms over ${N}`);
  });

  it("refuses a price above maxPrice before signing anything", async function () {
    const rec = recordingFetch();
    const { agent } = testClient(PAYER, { fetch: rec.fetch });
    const before = await balanceOf(payee);
    await expectCode(agent.fetch(`${stock.url}/pricey`), "spending_limit");
    expect(rec.sent).to.deep.equal([undefined]); // only the unpaid request
    expect(agent.stats.amountSigned).to.deep.equal({});
    expect(await balanceOf(payee)).to.equal(before);
  });

  it("maxSpend bounds the total signed with exact", async function () {
    const rec = recordingFetch();
    const { agent } = testClient(PAYER, { fetch: rec.fetch, limits: { maxDeposit: "5", maxPrice: "0.01", maxSpend: "0.0025" } });
    const before = await balanceOf(payee);
    for (let i = 0; i < 2; i++) expect((await agent.fetch(`${stock.url}/v1/echo`)).status).to.equal(200);
    await expectCode(agent.fetch(`${stock.url}/v1/echo`), "spending_limit");
    expect(rec.sent.filter((h) => h !== undefined)).to.have.length(2);
    expect(await balanceOf(payee)).to.equal(before + 2n * PRICE);
    expect(agent.stats.amountSigned[token.toLowerCase()]).to.equal(2n * PRICE);
    // Concurrent calls cannot pass the budget together: it is reserved before each signature. (A provider that
    // answers every authorization with a receipt: the stock facilitator sends concurrent transfers from one key.)
    const { address } = chainClients(PAYER);
    const tx = ("0x" + "cd".repeat(32)) as Hex;
    const responder = await startExactResponder((p) =>
      p
        ? { status: 200, headers: { [HEADER_PAYMENT_RESPONSE]: encodeExactPaymentResponse({ success: true, transaction: tx, network: "eip155:31337", payer: address }) } }
        : { status: 402, headers: exactChallenge({ asset: token, payTo: payee, amount: PRICE }) },
    );
    try {
      const { agent: burst } = testClient(PAYER, { limits: { maxDeposit: "5", maxPrice: "0.01", maxSpend: "0.003" } });
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => burst.fetch(`${responder.url}/x`)));
      const ok = results.filter((r) => r.status === "fulfilled" && r.value.status === 200).length;
      const refused = results.filter((r) => r.status === "rejected" && (r.reason as ClientError).code === "spending_limit").length;
      expect([ok, refused]).to.deep.equal([3, 5]);
      expect(responder.payments.filter((x) => x !== undefined)).to.have.length(3);
      expect(burst.stats.amountSigned[token.toLowerCase()]).to.equal(3n * PRICE);
    } finally {
      await responder.close();
    }
  });

  it("refuses a token outside limits.assets, and without limits.assets a token that is not USDC", async function () {
    const rec = recordingFetch();
    const other = getAddress("0x" + "42".repeat(20));
    const { agent } = testClient(PAYER, { fetch: rec.fetch, limits: { maxDeposit: "5", maxPrice: "0.01", assets: [other] } });
    await expectCode(agent.fetch(`${stock.url}/v1/echo`), "untrusted_terms");
    // A token named FEE (18 decimals), offered by a provider: the limits are USDC amounts, so nothing is paid in it.
    const fee = await hre.viem.deployContract("FeeOnTransferToken");
    const responder = await startExactResponder(() => ({ status: 402, headers: exactChallenge({ asset: fee.address, payTo: payee, amount: 1n }) }));
    try {
      const { agent: plain } = testClient(PAYER, { fetch: rec.fetch });
      await expectCode(plain.fetch(`${responder.url}/x`), "untrusted_terms");
      expect(responder.payments).to.deep.equal([undefined]);
    } finally {
      await responder.close();
    }
    expect(rec.sent.filter((h) => h !== undefined)).to.have.length(0);
  });

  it("refuses an offer naming another EIP-712 name or version than the token's own", async function () {
    const rec = recordingFetch();
    const { agent } = testClient(PAYER, { fetch: rec.fetch });
    const e1 = await expectCode(agent.fetch(`${stock.url}/wrong-version`), "untrusted_terms");
    expect(e1.message).to.match(/"USD Coin" version "2"/);
    await expectCode(agent.fetch(`${stock.url}/wrong-name`), "untrusted_terms");
    expect(rec.sent.filter((h) => h !== undefined)).to.have.length(0);
    // The right domain still pays (the token's domain was read once and kept).
    expect((await agent.fetch(`${stock.url}/v1/echo`)).status).to.equal(200);
  });

  it("checks the domain of a token without eip712Domain() against its DOMAIN_SEPARATOR() (as FiatToken USDC)", async function () {
    const fiatLike = (await hre.viem.deployContract("SeparatorOnlyToken")).address;
    const { address } = chainClients(PAYER);
    const tx = ("0x" + "ef".repeat(32)) as Hex;
    let version = "2";
    const responder = await startExactResponder((p) =>
      p
        ? { status: 200, headers: { [HEADER_PAYMENT_RESPONSE]: encodeExactPaymentResponse({ success: true, transaction: tx, network: "eip155:31337", payer: address }) } }
        : { status: 402, headers: exactChallenge({ asset: fiatLike, payTo: payee, amount: PRICE, version }) },
    );
    try {
      const { agent } = testClient(PAYER);
      const res = await agent.fetch(`${responder.url}/x`);
      expect(res.status).to.equal(200);
      const [paid] = responder.payments.filter((x) => x !== undefined);
      const ok = await verifyTypedData({ address, ...exactTypedData(paid!.accepted, paid!.payload.authorization), signature: paid!.payload.signature });
      expect(ok).to.equal(true);
      version = "1";
      const e = await expectCode(agent.fetch(`${responder.url}/y`), "untrusted_terms");
      expect(e.message).to.match(/DOMAIN_SEPARATOR/);
      expect(responder.payments.filter((x) => x !== undefined)).to.have.length(1);
    } finally {
      await responder.close();
    }
  });

  it("pays our own provider's exact offer with prefer: \"exact\" (its 402 lists channel, then exact)", async function () {
    const { agent, address } = testClient(PAYER, { prefer: "exact" });
    const before = await balanceOf(srv.payee);
    const payerBefore = await balanceOf(address);
    for (let i = 0; i < 3; i++) {
      const res = await agent.fetch(`${srv.url}/v1/echo?msg=e${i}`);
      expect(res.status, await res.clone().text()).to.equal(200);
      expect(await res.json()).to.deep.equal({ echo: `e${i}` });
      const p = agent.paymentOf(res) as ExactPaymentInfo;
      expect(p.scheme).to.equal("exact");
      expect(p.receipt?.amount).to.equal(PRICE);
      expect((await publicClient().getTransactionReceipt({ hash: p.transaction! })).status).to.equal("success");
    }
    expect(agent.channels()).to.have.length(0);
    expect(await balanceOf(srv.payee)).to.equal(before + 3n * PRICE);
    expect(await balanceOf(address)).to.equal(payerBefore - 3n * PRICE);
  });

  describe("when a 402 offers both channel and exact", function () {
    let front: Awaited<ReturnType<typeof startBothFront>>;
    before(async function () {
      front = await startBothFront(srv.url, stock.url);
    });
    after(async function () {
      await front?.close();
    });

    it("pays channel by default, exact with prefer: \"exact\"", async function () {
      const { agent } = testClient(PAYER, { limits: { maxDeposit: "5", maxPrice: "0.01", escrows: [srv.escrow] } });
      const res = await agent.fetch(`${front.url}/v1/echo?msg=hi`);
      expect(res.status, await res.clone().text()).to.equal(200);
      const p = agent.paymentOf(res)!;
      expect(p.scheme ?? "channel").to.equal("channel");
      expect(agent.channels()).to.have.length(1);

      const payeeBefore = await balanceOf(payee);
      const { agent: exact } = testClient(PAYER, { prefer: "exact" });
      const r2 = await exact.fetch(`${front.url}/v1/echo?msg=hi`);
      expect(r2.status, await r2.clone().text()).to.equal(200);
      const q = exact.paymentOf(r2)!;
      expect(q.scheme).to.equal("exact");
      expect((q as ExactPaymentInfo).transaction).to.match(/^0x[0-9a-f]{64}$/);
      expect(exact.channels()).to.have.length(0);
      expect(await balanceOf(payee)).to.equal(payeeBefore + PRICE);
    });

    it("pays exact when the channel offer fails the limits (escrow not allow-listed, minimum deposit above maxDeposit), and never with schemes: [\"channel\"]", async function () {
      const events: ClientEvent[] = [];
      const { agent } = testClient(PAYER, { onEvent: (e) => events.push(e), limits: { maxDeposit: "5", maxPrice: "0.01", escrows: [getAddress("0x" + "11".repeat(20))] } });
      const res = await agent.fetch(`${front.url}/v1/echo?msg=hi`);
      expect(res.status, await res.clone().text()).to.equal(200);
      expect(agent.paymentOf(res)!.scheme).to.equal("exact");
      const passed = events.filter((e) => e.type === "scheme_passed_over") as Array<{ scheme: string; error: ClientError }>;
      expect(passed.map((e) => [e.scheme, e.error.code])).to.deep.equal([["channel", "untrusted_terms"]]); // the owner hears why
      expect(agent.channels()).to.have.length(0);
      // The channel's minimum deposit above maxDeposit, the price within maxPrice: exact.
      const { agent: small } = testClient(PAYER, { limits: { maxDeposit: "0.002", maxPrice: "0.01", escrows: [srv.escrow] } });
      const r2 = await small.fetch(`${front.url}/v1/echo?msg=hi`);
      expect(r2.status, await r2.clone().text()).to.equal(200);
      expect(small.paymentOf(r2)!.scheme).to.equal("exact");
      expect(small.channels()).to.have.length(0);
      // Exact switched off: the channel offer is refused, and exact is not a fallback.
      const { agent: channelOnly } = testClient(PAYER, { schemes: ["channel"], limits: { maxDeposit: "5", maxPrice: "0.01", escrows: [getAddress("0x" + "11".repeat(20))] } });
      await expectCode(channelOnly.fetch(`${front.url}/v1/echo?msg=hi`), "untrusted_terms");
      // Against the exact-only stock server, a channel-only client hands the 402 back untouched.
      const r3 = await channelOnly.fetch(`${stock.url}/v1/echo`);
      expect(r3.status).to.equal(402);
      expect(channelOnly.paymentOf(r3)).to.equal(undefined);
    });

    it("rejects contradictory or unknown scheme options", function () {
      expect(() => testClient(PAYER, { schemes: [] })).to.throw(/schemes/);
      expect(() => testClient(PAYER, { schemes: ["exact", "exact"] })).to.throw(/schemes/);
      expect(() => testClient(PAYER, { schemes: ["channel"], prefer: "exact" })).to.throw(/contradicts/);
      expect(() => testClient(PAYER, { prefer: "upto" as never })).to.throw(/prefer/);
    });
  });

  describe("refusals of an exact payment", function () {
    it("a 402 answering an exact payment ends the call, counts as a refused call, and the provider is cut off after 3", async function () {
      const { address } = chainClients(PAYER);
      const responder = await startExactResponder(() => ({ status: 402, headers: exactChallenge({ asset: token, payTo: payee, amount: PRICE, error: "invalid_exact_evm_payload_signature" }) }));
      try {
        const { agent } = testClient(PAYER);
        for (let i = 0; i < 3; i++) {
          const e = await expectCode(agent.fetch(`${responder.url}/x`), "payment_refused");
          expect(e.message).to.match(/invalid_exact_evm_payload_signature/);
        }
        await expectCode(agent.fetch(`${responder.url}/x`), "provider_refusing");
        const paid = responder.payments.filter((p) => p !== undefined);
        expect(paid).to.have.length(3); // one authorization per call, never a second one
        expect(new Set(paid.map((p) => p!.payload.authorization.nonce)).size).to.equal(3);
        expect(paid.every((p) => p!.payload.authorization.from === address)).to.equal(true);
        // Each may still be submitted until it expires: counted as signed, not as paid.
        expect(agent.stats.amountSigned[token.toLowerCase()]).to.equal(3n * PRICE);
        expect(agent.stats.amountPaid[token.toLowerCase()] ?? 0n).to.equal(0n);
      } finally {
        await responder.close();
      }
    });

    it("retries once with a new authorization when the provider says the first was not used (requirements_mismatch)", async function () {
      const tx = ("0x" + "ab".repeat(32)) as Hex;
      const { address } = chainClients(PAYER);
      const responder = await startExactResponder((p, i) => {
        if (!p) return { status: 402, headers: exactChallenge({ asset: token, payTo: payee, amount: PRICE }) };
        if (i === 1) return { status: 402, headers: exactChallenge({ asset: token, payTo: payee, amount: PRICE, error: "requirements_mismatch" }) };
        return { status: 200, headers: { [HEADER_PAYMENT_RESPONSE]: encodeExactPaymentResponse({ success: true, transaction: tx, network: "eip155:31337", payer: address }) } };
      });
      try {
        const { agent } = testClient(PAYER);
        const res = await agent.fetch(`${responder.url}/x`);
        expect(res.status).to.equal(200);
        const p = agent.paymentOf(res) as ExactPaymentInfo;
        expect(p.transaction).to.equal(tx);
        expect(p.requests).to.equal(3);
        const [first, second] = responder.payments.filter((x) => x !== undefined);
        expect(first!.payload.authorization.nonce).to.not.equal(second!.payload.authorization.nonce);
        expect(first!.payload.signature).to.not.equal(second!.payload.signature);
      } finally {
        await responder.close();
      }
    });
  });

  it("the CLI pays the stock server with exact: `channel call` says the scheme and the transaction", async function () {
    const cwd = await fs.mkdtemp(path.join(os.tmpdir(), "channel-exact-cli-"));
    const env = { CHANNEL_PRIVATE_KEY: chainClients(PAYER).key, RPC_URL: srv.rpcUrl, CHANNEL_STATE_DIR: path.join(cwd, "state") };
    try {
      const before = await balanceOf(payee);
      const one = await runCli(["call", `${stock.url}/v1/echo`, "--json"], env, cwd);
      expect(one.code, one.stderr).to.equal(0);
      const j = JSON.parse(one.stdout);
      expect(j.status).to.equal(200);
      expect(j.payment.scheme).to.equal("exact");
      expect(j.payment.transaction).to.match(/^0x[0-9a-f]{64}$/);
      const text = await runCli(["call", `${stock.url}/v1/echo`], env, cwd);
      expect(text.code, text.stderr).to.equal(0);
      expect(text.stderr).to.match(/paid 0\.001 USDC with exact to 0x[0-9a-fA-F]{40}: transaction 0x[0-9a-f]{64}/);
      const many = await runCli(["call", `${stock.url}/v1/echo`, "-n", "3", "--json"], env, cwd);
      expect(many.code, many.stderr).to.equal(0);
      const s = JSON.parse(many.stdout);
      expect(s.paidByScheme).to.deep.equal({ channel: 0, exact: 3 });
      expect(s.lastExact.transaction).to.match(/^0x[0-9a-f]{64}$/);
      expect(await balanceOf(payee)).to.equal(before + 5n * PRICE);
      // `channel status` shows what exact signed and paid (kept in the state directory).
      const st = await runCli(["status", "--json"], env, cwd);
      expect(st.code, st.stderr).to.equal(0);
      const sj = JSON.parse(st.stdout);
      expect(sj.exact).to.have.length(1);
      expect([sj.exact[0].signed, sj.exact[0].paid]).to.deep.equal([(5n * PRICE).toString(), (5n * PRICE).toString()]);
      expect(sj.exact[0].lastTransaction).to.equal(s.lastExact.transaction);
      const stText = await runCli(["status"], env, cwd);
      expect(stText.stdout).to.match(/exact \(one transfer per call\): signed 0\.005 USDC, paid 0\.005 USDC, last transaction 0x[0-9a-f]{64}/);
      // --scheme channel: exact switched off, the 402 is the caller's.
      const off = await runCli(["call", `${stock.url}/v1/echo`, "--scheme", "channel"], env, cwd);
      expect(off.code).to.equal(1);
      expect(off.stderr).to.match(/HTTP 402/);
      const bad = await runCli(["call", `${stock.url}/v1/echo`, "--scheme", "upto"], env, cwd);
      expect(bad.code).to.equal(2);
      expect(await balanceOf(payee)).to.equal(before + 5n * PRICE);
    } finally {
      await fs.rm(cwd, { recursive: true, force: true });
    }
  });

  // Last: it moves the chain's clock ahead and back (a real chain never goes back; a provider that saw the future block
  // would judge later windows by it).
  describe("when the chain's clock runs ahead", function () {
    it("signs a window valid on the chain's clock too when the chain runs ahead of this machine (a local chain moved a day on)", async function () {
      const s = await snapshot();
      try {
        await hre.network.provider.send("evm_increaseTime", [86_400]);
        await hre.network.provider.send("evm_mine", []);
        const { agent } = testClient(PAYER);
        const before = await balanceOf(payee);
        const res = await agent.fetch(`${stock.url}/v1/echo`);
        expect(res.status, await res.clone().text()).to.equal(200);
        const p = agent.paymentOf(res) as ExactPaymentInfo;
        const block = await publicClient().getBlock({ blockTag: "latest" });
        expect(p.authorization.validBefore > block.timestamp).to.equal(true);
        expect(Number(p.authorization.validBefore) - Date.now() / 1000).to.be.greaterThan(86_000);
        expect(await balanceOf(payee)).to.equal(before + PRICE);
      } finally {
        await revertTo(s);
      }
    });
  });
});
