/**
 * Our provider accepts the x402 `exact` scheme (docs/protocol.md § 5.8): the STOCK x402 client (`@x402/fetch` +
 * `@x402/core/client` + the `@x402/evm` exact scheme, pinned) pays our real server on the local chain; every refusal
 * has its code and sends no transaction; an RPC failure while settling serves nothing and the payment is reconciled
 * when the RPC returns; SQLite and PostgreSQL both record and refuse replays; two replicas sharing PostgreSQL with one
 * sender key never take the same nonce.
 */
import { expect } from "chai";
import type { Express } from "express";
import { getAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount, signTypedData } from "viem/accounts";
import { x402Client } from "@x402/core/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import {
  decodeExactPaymentResponse,
  decodePaymentRequired,
  encodeExactPaymentSignature,
  EXACT_ERROR_CODES,
  exactTypedData,
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_RESPONSE,
  HEADER_PAYMENT_SIGNATURE,
  networkOf,
  X402_VERSION,
  type ExactAuthorization,
  type ExactRequirements,
} from "@paychan/protocol";
import { exactStoreFor, type ExactPayment } from "@paychan/server";
import type { ExpressPaywall } from "@paychan/express";
import { paymentOf } from "@paychan/express";
import { startTestServer, rpcUrl, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";
import { startRpcCounter, type RpcCounter } from "../helpers/rpc-counter";
import { describePostgres, newTestDatabase } from "../helpers/postgres";

const PRICE = 1_000n; // /v1/echo: 0.001 USDC
const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));
const PAYER = 15;
const OTHER = 16;
const EXACT_SENDER: Address = "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199"; // Hardhat #19, the demo's exact sender

/** Routes: the demo's fixed price and metered route, plus a counter of handlers run. */
function routes(counter: { served: number; schemes: string[] }) {
  return (app: Express, paywall: ExpressPaywall) => {
    app.get("/v1/echo", paywall.charge({ price: "0.001" }), (req, res) => {
      counter.served++;
      counter.schemes.push(paymentOf(res)!.scheme);
      res.json({ echo: req.query.msg ?? null });
    });
    app.post("/v1/infer", paywall.meter({ max: "0.01" }), (_req, res) => res.json({ ok: true }));
    app.get("/v1/other", paywall.charge({ price: "0.001" }), (_req, res) => res.json({ other: true })); // same price, another resource
    app.get("/v1/quote", paywall.charge({ price: (req) => (req.query.big ? "0.002" : "0.001"), max: "0.002" }), (_req, res) => res.json({ quote: true }));
  };
}

/** A base fetch that remembers the PAYMENT-SIGNATURE headers it sent. */
function recordingFetch() {
  const sent: string[] = [];
  const f: typeof fetch = async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    const p = req.headers.get(HEADER_PAYMENT_SIGNATURE);
    if (p) sent.push(p);
    return fetch(req);
  };
  return { fetch: f, sent };
}

/** The stock x402 paying fetch of Hardhat account `index`, allowed to pay `token` on the local chain. */
function stockFetch(index: number, chainId: number, token: Address, base: typeof fetch = fetch) {
  const network = networkOf(chainId);
  const client = new x402Client();
  registerExactEvmScheme(client, { signer: privateKeyToAccount(chainClients(index).key), networks: [network] });
  client.setSpendControls({ allowedAssets: [{ network, asset: token }] } as never);
  return wrapFetchWithPayment(base, client);
}

async function balanceOf(srv: TestServer, who: Address): Promise<bigint> {
  return (await srv.env.publicClient.readContract({ address: srv.token, abi: srv.env.usdc.abi, functionName: "balanceOf", args: [who] })) as bigint;
}

async function senderNonce(srv: TestServer): Promise<number> {
  return srv.env.publicClient.getTransactionCount({ address: EXACT_SENDER, blockTag: "pending" });
}

/** Our server's `exact` offer for a path (from a real 402). */
async function exactOffer(srv: TestServer, path: string): Promise<ExactRequirements> {
  const res = await fetch(`${srv.url}${path}`);
  await res.arrayBuffer();
  const offers = decodePaymentRequired(res.headers.get(HEADER_PAYMENT_REQUIRED));
  return offers.exact![0];
}

/** A PAYMENT-SIGNATURE for an authorization of `from` (signed with `key`), with `edit` applied to the defaults. */
async function authorization(srv: TestServer, offer: ExactRequirements, key: Hex, from: Address, edit: Partial<ExactAuthorization> = {}) {
  const now = BigInt(Math.floor(Date.now() / 1000));
  const nonce = `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}` as Hex;
  const a: ExactAuthorization = { from, to: offer.payTo, value: offer.amount, validAfter: now - 600n, validBefore: now + 300n, nonce, ...edit };
  const signature = await signTypedData({ privateKey: key, ...exactTypedData(offer, a) });
  return { [HEADER_PAYMENT_SIGNATURE]: encodeExactPaymentSignature({ x402Version: X402_VERSION, accepted: offer, payload: { signature, authorization: a } }) };
}

async function refusalCode(res: Response): Promise<{ status: number; code: string }> {
  const body = (await res.json()) as { error: string };
  return { status: res.status, code: body.error };
}

/** The store keeps the first transaction signed for a recorded payment (two processes reconciling it at once). */
async function firstSignedWins(srv: TestServer): Promise<void> {
  const store = exactStoreFor(srv.store);
  const rnd = () => `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}` as Hex;
  const rec = await store.recordExactPayment({
    payer: chainClients(OTHER).address,
    authNonce: rnd(),
    payTo: srv.payee,
    amount: PRICE,
    validAfter: 0n,
    validBefore: 1n,
    signature: `0x${"11".repeat(65)}`,
    resource: "/v1/echo",
    sender: chainClients(OTHER).address, // a sender no server uses: nothing reconciles this row on chain
    chainNonce: 7,
  });
  if (!rec.ok) throw new Error("not recorded");
  expect(rec.payment.senderNonce).to.be.at.least(7);
  const first = { txHash: rnd(), rawTx: "0x01" as Hex };
  expect(await store.setExactTransaction(rec.payment.id, first.txHash, first.rawTx)).to.deep.equal(first);
  expect(await store.setExactTransaction(rec.payment.id, rnd(), "0x02")).to.deep.equal(first);
  const again = await store.recordExactPayment({ ...rec.payment, chainNonce: 0 });
  expect(again.ok, "the same (payer, nonce) is recorded once").to.equal(false);
  await store.finishExactPayment(rec.payment.id, { status: "failed", error: "test row" });
}

/**
 * The stock x402 client signs its validity window with this machine's clock. Earlier test files may have moved the
 * shared local chain days ahead (evm_increaseTime without a revert), so inside these suites `Date.now` follows the
 * chain's clock (the token checks the window against block time, and so does our server). Restored after.
 */
function followChainClock(): void {
  const realNow = Date.now;
  before(async () => {
    const hre = (await import("hardhat")).default;
    const block = (await hre.network.provider.send("eth_getBlockByNumber", ["latest", false])) as { timestamp: string };
    const skewMs = Number(BigInt(block.timestamp)) * 1000 - realNow();
    if (skewMs > 30_000) Date.now = () => realNow() + skewMs;
  });
  after(() => {
    Date.now = realNow;
  });
}

async function until(cond: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("x402 interop: the stock exact client pays our server", function () {
  this.timeout(240_000);
  followChainClock();
  let snap: string;
  let srv: TestServer;
  const counter = { served: 0, schemes: [] as string[] };
  const refusalsSeen = new Set<string>();

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer({ routes: routes(counter), config: { maxTimeoutSeconds: 300 } });
    await mintUsdc(srv.token, chainClients(PAYER).address, USDC(10));
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  it("a fixed-price route's 402 lists channel first and exact second (EIP-3009, the token's EIP-712 name and version); a metered route offers channel only", async function () {
    const res = await fetch(`${srv.url}/v1/echo?msg=hi`);
    expect(res.status).to.equal(402);
    const raw = JSON.parse(Buffer.from(res.headers.get(HEADER_PAYMENT_REQUIRED)!, "base64").toString("utf8"));
    expect(raw.accepts.map((a: { scheme: string }) => a.scheme)).to.deep.equal(["channel", "exact"]);
    expect(raw.accepts[1]).to.deep.include({ network: networkOf(srv.chainId), amount: "1000", asset: srv.token, payTo: srv.payee });
    expect(raw.accepts[1].extra).to.deep.equal({ name: "USD Coin", version: "2", assetTransferMethod: "eip3009" });
    const metered = await fetch(`${srv.url}/v1/infer`, { method: "POST" });
    const m = JSON.parse(Buffer.from(metered.headers.get(HEADER_PAYMENT_REQUIRED)!, "base64").toString("utf8"));
    expect(m.accepts.map((a: { scheme: string }) => a.scheme)).to.deep.equal(["channel"]);
  });

  it("stock @x402/fetch + the stock exact client pays 5 times: the payee gains exactly 5 x price, each receipt names a mined transfer, each payment is recorded confirmed and served", async function () {
    const payer = chainClients(PAYER).address;
    const rec = recordingFetch();
    const pay = stockFetch(PAYER, srv.chainId, srv.token, rec.fetch);
    const before = await balanceOf(srv, srv.payee);
    const payerBefore = await balanceOf(srv, payer);
    const served0 = counter.served;
    const hashes: Hex[] = [];
    let firstMs = 0;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const res = await pay(`${srv.url}/v1/echo?msg=${i}`);
      if (i === 0) firstMs = performance.now() - t0;
      expect(res.status, await res.clone().text()).to.equal(200);
      expect(await res.json()).to.deep.equal({ echo: String(i) });
      const receipt = decodeExactPaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE));
      expect(receipt).to.deep.include({ success: true, network: networkOf(srv.chainId), payer: getAddress(payer), amount: PRICE });
      const mined = await srv.env.publicClient.getTransactionReceipt({ hash: receipt.transaction });
      expect(mined.status).to.equal("success");
      expect(getAddress(mined.to!)).to.equal(getAddress(srv.token));
      expect(getAddress(mined.from)).to.equal(EXACT_SENDER);
      hashes.push(receipt.transaction);
      if (i === 0) console.log(`      exact paid call (stock fetch: 402 + paid request, transfer mined): ${firstMs.toFixed(1)} ms; transferWithAuthorization gas ${mined.gasUsed}`);
    }
    expect(new Set(hashes).size).to.equal(5);
    expect((await balanceOf(srv, srv.payee)) - before).to.equal(5n * PRICE);
    expect(payerBefore - (await balanceOf(srv, payer))).to.equal(5n * PRICE);
    expect(counter.served - served0).to.equal(5);
    expect(counter.schemes.slice(-5)).to.deep.equal(["exact", "exact", "exact", "exact", "exact"]);

    const store = exactStoreFor(srv.store);
    expect(rec.sent).to.have.length(5);
    for (const header of rec.sent) {
      const p = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
      const row = (await store.getExactPayment(p.payload.authorization.from, p.payload.authorization.nonce))!;
      expect(row).to.deep.include({ status: "confirmed", served: true, amount: PRICE, resource: `http://127.0.0.1:${new URL(srv.url).port}/v1/echo` });
      expect(hashes).to.include(row.txHash);
    }
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).to.match(/^paid_requests_total\{scheme="exact"\} 5$/m);
    expect(metrics).to.match(/^exact_payments_total\{status="confirmed"\} 5$/m);
    expect(metrics).to.match(/^exact_payments\{status="confirmed"\} 5$/m);
    expect(metrics).to.match(/^exact_payments\{status="pending"\} 0$/m);
  });

  it("a computed-price route offers exact at the price computed for the request, and is paid exactly that", async function () {
    const offer = await exactOffer(srv, "/v1/quote?big=1");
    expect(offer.amount).to.equal(2n * PRICE);
    const before = await balanceOf(srv, srv.payee);
    const res = await stockFetch(PAYER, srv.chainId, srv.token)(`${srv.url}/v1/quote?big=1`);
    expect(res.status).to.equal(200);
    expect(decodeExactPaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE)).amount).to.equal(2n * PRICE);
    expect((await balanceOf(srv, srv.payee)) - before).to.equal(2n * PRICE);
  });

  it("the same authorization replayed is refused authorization_used, and no transaction is sent", async function () {
    const rec = recordingFetch();
    const res = await stockFetch(PAYER, srv.chainId, srv.token, rec.fetch)(`${srv.url}/v1/echo?msg=once`);
    expect(res.status).to.equal(200);
    const nonce = await senderNonce(srv);
    const paid = await balanceOf(srv, srv.payee);
    const served = counter.served;
    for (let i = 0; i < 2; i++) {
      const again = await fetch(`${srv.url}/v1/echo?msg=again`, { headers: { [HEADER_PAYMENT_SIGNATURE]: rec.sent[0] } });
      const r = await refusalCode(again);
      expect(r).to.deep.equal({ status: 402, code: "authorization_used" });
      expect(again.headers.get(HEADER_PAYMENT_REQUIRED)).to.be.a("string");
      refusalsSeen.add(r.code);
    }
    expect(await senderNonce(srv)).to.equal(nonce);
    expect(await balanceOf(srv, srv.payee)).to.equal(paid);
    expect(counter.served).to.equal(served);
  });

  it("wrong amount, wrong recipient, expired or not yet valid window, another key's signature, low balance, a blacklisted payer, a metered route: each refused with its code; no transaction sent, nothing served", async function () {
    const offer = await exactOffer(srv, "/v1/echo");
    const p = chainClients(PAYER);
    const other = chainClients(OTHER);
    const now = BigInt(Math.floor(Date.now() / 1000));
    const poor = chainClients(17); // holds no USDC
    const cases: Array<[string, Record<string, string>, string, string?]> = [
      ["wrong amount", await authorization(srv, offer, p.key, p.address, { value: PRICE + 1n }), "authorization_value_mismatch"],
      ["wrong recipient", await authorization(srv, offer, p.key, p.address, { to: other.address }), "authorization_recipient_mismatch"],
      ["expired window", await authorization(srv, offer, p.key, p.address, { validBefore: now - 1n }), "authorization_expired"],
      ["not yet valid", await authorization(srv, offer, p.key, p.address, { validAfter: now + 3_600n, validBefore: now + 7_200n }), "authorization_not_yet_valid"],
      ["another key's signature", await authorization(srv, offer, other.key, p.address), "authorization_signature_invalid"],
      ["balance below the price", await authorization(srv, offer, poor.key, poor.address), "insufficient_balance"],
      ["offer with another amount", await authorization(srv, { ...offer, amount: PRICE * 2n }, p.key, p.address, { value: PRICE * 2n }), "requirements_mismatch"],
      ["metered route", await authorization(srv, offer, p.key, p.address), "unsupported_scheme", "/v1/infer"],
    ];
    // (Set up before counting: the test helper's mintUsdc sends from Hardhat #19 too, the demo's exact sender.)
    const b = chainClients(18);
    await mintUsdc(srv.token, b.address, USDC(1));
    await srv.env.wallets[0].writeContract({ address: srv.token, abi: srv.env.usdc.abi, functionName: "blacklist", args: [b.address, true] });
    const nonce = await senderNonce(srv);
    const paid = await balanceOf(srv, srv.payee);
    const served = counter.served;
    for (const [what, headers, code, path] of cases) {
      const res = await fetch(`${srv.url}${path ?? "/v1/echo"}`, { method: path ? "POST" : "GET", headers });
      expect(await refusalCode(res), what).to.deep.equal({ status: 402, code });
      expect(res.headers.get(HEADER_PAYMENT_REQUIRED), what).to.be.a("string");
      refusalsSeen.add(code);
    }
    // Blacklisted at the token: the transfer would revert (simulated), so it is never sent.
    const blocked = await fetch(`${srv.url}/v1/echo`, { headers: await authorization(srv, offer, b.key, b.address) });
    expect(await refusalCode(blocked)).to.deep.equal({ status: 402, code: "transfer_failed" });
    refusalsSeen.add("transfer_failed");
    // Used on chain already (submitted by someone else): refused before any transaction of ours.
    const direct = await authorization(srv, offer, p.key, p.address);
    const payload = JSON.parse(Buffer.from(direct[HEADER_PAYMENT_SIGNATURE], "base64").toString("utf8"));
    const a = payload.payload.authorization;
    const { splitSignature } = await import("@paychan/server");
    const { v, r, s } = splitSignature(payload.payload.signature);
    await other.walletClient.writeContract({
      address: srv.token,
      abi: srv.env.usdc.abi,
      functionName: "transferWithAuthorization",
      args: [a.from, a.to, BigInt(a.value), BigInt(a.validAfter), BigInt(a.validBefore), a.nonce, v, r, s],
      chain: null,
      account: other.walletClient.account!,
    } as never);
    const usedOnChain = await fetch(`${srv.url}/v1/echo`, { headers: direct });
    expect(await refusalCode(usedOnChain)).to.deep.equal({ status: 402, code: "authorization_used" });

    expect(await senderNonce(srv), "no transaction of the exact sender").to.equal(nonce);
    expect((await balanceOf(srv, srv.payee)) - paid).to.equal(PRICE); // only the direct on-chain transfer
    expect(counter.served).to.equal(served);
  });

  it("covers every exact refusal code", function () {
    expect([...refusalsSeen].filter((c) => (EXACT_ERROR_CODES as readonly string[]).includes(c)).sort()).to.deep.equal([...EXACT_ERROR_CODES].sort());
  });
});

describe("x402 interop: exact payments when the RPC fails while settling", function () {
  this.timeout(240_000);
  followChainClock();
  let snap: string;
  let srv: TestServer;
  let rpc: RpcCounter;
  const counter = { served: 0, schemes: [] as string[] };

  before(async function () {
    snap = await snapshot();
    rpc = await startRpcCounter(await rpcUrl());
    srv = await startTestServer({
      routes: routes(counter),
      rpcUrl: rpc.url,
      config: { maxTimeoutSeconds: 300 },
      exact: { confirmTimeoutMs: 1_000, reconcileIntervalMs: 200 },
    });
    await mintUsdc(srv.token, chainClients(PAYER).address, USDC(10));
  });

  after(async function () {
    await srv?.close();
    await rpc?.close();
    if (snap) await revertTo(snap);
  });

  for (const method of ["eth_sendRawTransaction", "eth_getTransactionReceipt"]) {
    it(`${method} failing: 503 and nothing served; once the RPC is back the payment is reconciled (paid once) and the same authorization is served exactly once`, async function () {
      const rec = recordingFetch();
      const pay = stockFetch(PAYER, srv.chainId, srv.token, rec.fetch);
      const before = await balanceOf(srv, srv.payee);
      const served = counter.served;
      rpc.fail([method]);
      let res: Response;
      try {
        res = await pay(`${srv.url}/v1/echo?msg=down`);
      } finally {
        rpc.fail([]);
      }
      expect(res.status).to.equal(503);
      expect((await res.json()).error).to.equal("upstream_unavailable");
      expect(counter.served, "nothing served").to.equal(served);
      const p = JSON.parse(Buffer.from(rec.sent[0], "base64").toString("utf8")).payload.authorization;
      const store = exactStoreFor(srv.store);
      const row = (await store.getExactPayment(p.from, p.nonce))!;
      expect(row.status).to.be.oneOf(["pending", "submitted"]);
      expect(row.rawTx, "signed and recorded before the broadcast").to.be.a("string");

      // The periodic reconciler finishes it once the RPC answers again.
      let done: ExactPayment | null = null;
      await until(async () => (done = await store.getExactPayment(p.from, p.nonce))!.status === "confirmed", "the payment to be reconciled");
      expect(done!.served).to.equal(false);
      expect((await balanceOf(srv, srv.payee)) - before).to.equal(PRICE);

      // The payer retries the same authorization: not on another resource; served once on its own, then it is used.
      const elsewhere = await fetch(`${srv.url}/v1/other`, { headers: { [HEADER_PAYMENT_SIGNATURE]: rec.sent[0] } });
      expect(await refusalCode(elsewhere)).to.deep.equal({ status: 402, code: "authorization_used" });
      const again = await fetch(`${srv.url}/v1/echo?msg=retry`, { headers: { [HEADER_PAYMENT_SIGNATURE]: rec.sent[0] } });
      expect(again.status).to.equal(200);
      expect(decodeExactPaymentResponse(again.headers.get(HEADER_PAYMENT_RESPONSE)).transaction).to.equal(row.txHash);
      const third = await fetch(`${srv.url}/v1/echo?msg=retry`, { headers: { [HEADER_PAYMENT_SIGNATURE]: rec.sent[0] } });
      expect(await refusalCode(third)).to.deep.equal({ status: 402, code: "authorization_used" });
      expect(counter.served - served).to.equal(1);
      expect((await balanceOf(srv, srv.payee)) - before, "paid once").to.equal(PRICE);
    });
  }

  it("a payment whose broadcast failed does not block the next ones: the next payment fills the nonce gap at once", async function () {
    const rec = recordingFetch();
    const pay = stockFetch(PAYER, srv.chainId, srv.token, rec.fetch);
    const before = await balanceOf(srv, srv.payee);
    rpc.fail(["eth_sendRawTransaction"]);
    let res: Response;
    try {
      res = await pay(`${srv.url}/v1/echo?msg=gap`);
    } finally {
      rpc.fail([]);
    }
    expect(res.status).to.equal(503);
    // At once (the periodic pass takes only payments open for 2 s and more): the next payment has the next nonce.
    const next = await pay(`${srv.url}/v1/echo?msg=after-gap`);
    expect(next.status, await next.clone().text()).to.equal(200);
    const p = JSON.parse(Buffer.from(rec.sent[0], "base64").toString("utf8")).payload.authorization;
    expect((await exactStoreFor(srv.store).getExactPayment(p.from, p.nonce))!.status).to.equal("confirmed");
    expect((await balanceOf(srv, srv.payee)) - before).to.equal(2n * PRICE);
  });
});

describe("x402 interop: exact payments across a restart, and the sender key rule", function () {
  this.timeout(240_000);
  followChainClock();
  let snap: string;

  before(async () => (snap = await snapshot()));
  after(async () => {
    if (snap) await revertTo(snap);
  });

  it("a payment recorded but never signed nor sent (a crash) is signed, sent and confirmed by the next process at start, then served once to its retry", async function () {
    const counter = { served: 0, schemes: [] as string[] };
    const first = await startTestServer({ routes: routes(counter), config: { maxTimeoutSeconds: 300 }, exact: { reconcileIntervalMs: 0 } });
    await mintUsdc(first.token, chainClients(PAYER).address, USDC(1));
    const offer = await exactOffer(first, "/v1/echo");
    const p = chainClients(PAYER);
    const headers = await authorization(first, offer, p.key, p.address);
    const wire = JSON.parse(Buffer.from(headers[HEADER_PAYMENT_SIGNATURE], "base64").toString("utf8")).payload;
    const a = wire.authorization;
    // What the request path writes first (payment + sender nonce, one transaction); the process dies right after.
    const rec = await exactStoreFor(first.store).recordExactPayment({
      payer: a.from,
      authNonce: a.nonce,
      payTo: a.to,
      amount: BigInt(a.value),
      validAfter: BigInt(a.validAfter),
      validBefore: BigInt(a.validBefore),
      signature: wire.signature,
      resource: `${first.url}/v1/echo`,
      sender: EXACT_SENDER,
      chainNonce: await senderNonce(first),
    });
    expect(rec.ok).to.equal(true);
    const before = await balanceOf(first, first.payee);
    await first.close({ keepDatabase: true });

    const second = await startTestServer({ env: first.env, routes: routes(counter), databaseUrl: first.databaseUrl, config: { maxTimeoutSeconds: 300 }, exact: { reconcileIntervalMs: 0 } });
    try {
      const store = exactStoreFor(second.store);
      await until(async () => (await store.getExactPayment(a.from, a.nonce))!.status === "confirmed", "the start pass to confirm the payment");
      expect((await balanceOf(second, second.payee)) - before).to.equal(PRICE);
      const res = await fetch(`${second.url}/v1/echo?msg=after-crash`, { headers });
      expect(res.status).to.equal(200);
      const again = await fetch(`${second.url}/v1/echo?msg=after-crash`, { headers });
      expect(await refusalCode(again)).to.deep.equal({ status: 402, code: "authorization_used" });
      expect(counter.served).to.equal(1);
    } finally {
      await second.close();
    }
  });

  it("SQLite: a payment is recorded once per (payer, nonce), and the first transaction signed for it is the one kept", async function () {
    const srv = await startTestServer({ exact: { reconcileIntervalMs: 0 } });
    try {
      await firstSignedWins(srv);
    } finally {
      await srv.close();
    }
  });

  it("refuses to start when the exact sender key is the settler key; EXACT=off offers channel only", async function () {
    const { planExact, ExactPlanError, loadConfig } = await import("@paychan/server");
    const key = chainClients(19).key;
    const env = loadConfig({ EXACT_PRIVATE_KEY: key }).exact;
    expect(() => planExact(env, 31337, undefined, key)).to.throw(ExactPlanError, /must not be the settler key/);
    expect(planExact(env, 31337, undefined, chainClients(0).key)).to.include({ address: EXACT_SENDER });
    expect(planExact(loadConfig({ EXACT: "off", EXACT_PRIVATE_KEY: key }).exact, 31337, undefined, undefined)).to.equal(null);
    expect(() => planExact(loadConfig({ EXACT: "on" }).exact, 1, undefined, undefined)).to.throw(ExactPlanError, /EXACT_PRIVATE_KEY/);
    let refused: Error | undefined;
    await startTestServer({ settlement: { privateKey: key } }).then((x) => x.close(), (e: Error) => (refused = e));
    expect(refused?.message).to.match(/refusing to start: EXACT_PRIVATE_KEY must not be the settler key/);
    const off = await startTestServer({ exact: false });
    try {
      const res = await fetch(`${off.url}/v1/echo`);
      const raw = JSON.parse(Buffer.from(res.headers.get(HEADER_PAYMENT_REQUIRED)!, "base64").toString("utf8"));
      expect(raw.accepts.map((x: { scheme: string }) => x.scheme)).to.deep.equal(["channel"]);
    } finally {
      await off.close();
    }
  });
});

/** A stock x402 facilitator (`x402Facilitator` + the stock exact EVM scheme) behind POST /verify and /settle. */
async function startHttpFacilitator(key: Hex): Promise<{ url: string; calls: string[]; down: boolean; dropAfterSettle: boolean; close(): Promise<void> }> {
  const { createWalletClient, custom, publicActions } = await import("viem");
  const { hardhat } = await import("viem/chains");
  const hre = (await import("hardhat")).default;
  const express = (await import("express")).default;
  const { x402Facilitator } = await import("@x402/core/facilitator");
  const { registerExactEvmScheme: registerFacilitator } = await import("@x402/evm/exact/facilitator");
  const { toFacilitatorEvmSigner } = await import("@x402/evm");
  const account = privateKeyToAccount(key);
  const wallet = createWalletClient({ account, chain: hardhat, transport: custom(hre.network.provider) }).extend(publicActions);
  const signer = toFacilitatorEvmSigner(Object.assign(wallet, { address: account.address }) as never, { confirmationTimeoutMs: 30_000 } as never);
  const facilitator = new x402Facilitator();
  registerFacilitator(facilitator, { signer, networks: "eip155:31337" } as never);
  const state = { calls: [] as string[], down: false, dropAfterSettle: false };
  const app = express();
  app.use(express.json());
  for (const path of ["verify", "settle"] as const) {
    app.post(`/${path}`, async (req, res) => {
      state.calls.push(path);
      if (state.down) return void res.socket?.destroy();
      const out = await facilitator[path](req.body.paymentPayload, req.body.paymentRequirements);
      if (path === "settle" && state.dropAfterSettle) return void res.socket?.destroy(); // settled, then the answer is lost
      res.json(out);
    });
  }
  const server = await new Promise<import("node:http").Server>((r) => {
    const s = app.listen(0, "127.0.0.1", () => r(s));
  });
  const { port } = server.address() as import("node:net").AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}

describe("x402 interop: exact payments settled through a facilitator (FACILITATOR_URL)", function () {
  this.timeout(240_000);
  followChainClock();
  let snap: string;
  const FACILITATOR = 14;

  before(async () => (snap = await snapshot()));
  after(async () => {
    if (snap) await revertTo(snap);
  });

  it("the stock client pays; the facilitator verifies and submits the transfer; the payment is recorded, replays are refused; a facilitator that does not answer serves nothing; one whose settle answer is lost is reconciled from the token's authorization state", async function () {
    const f = await startHttpFacilitator(chainClients(FACILITATOR).key);
    const counter = { served: 0, schemes: [] as string[] };
    const srv = await startTestServer({ routes: routes(counter), config: { maxTimeoutSeconds: 300 }, exact: { facilitatorUrl: f.url, reconcileIntervalMs: 0 } });
    try {
      await mintUsdc(srv.token, chainClients(PAYER).address, USDC(1));
      const before = await balanceOf(srv, srv.payee);
      const exactNonce = await senderNonce(srv);
      const rec = recordingFetch();
      const res = await stockFetch(PAYER, srv.chainId, srv.token, rec.fetch)(`${srv.url}/v1/echo?msg=f`);
      expect(res.status, await res.clone().text()).to.equal(200);
      const receipt = decodeExactPaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE));
      const tx = await srv.env.publicClient.getTransaction({ hash: receipt.transaction });
      expect(getAddress(tx.from)).to.equal(chainClients(FACILITATOR).address);
      expect(f.calls).to.deep.equal(["verify", "settle"]);
      expect((await balanceOf(srv, srv.payee)) - before).to.equal(PRICE);
      expect(await senderNonce(srv), "our own sender sent nothing").to.equal(exactNonce);
      const p = JSON.parse(Buffer.from(rec.sent[0], "base64").toString("utf8")).payload.authorization;
      const store = exactStoreFor(srv.store);
      expect(await store.getExactPayment(p.from, p.nonce)).to.deep.include({ status: "confirmed", served: true, txHash: receipt.transaction });
      const replay = await fetch(`${srv.url}/v1/echo`, { headers: { [HEADER_PAYMENT_SIGNATURE]: rec.sent[0] } });
      expect(await refusalCode(replay)).to.deep.equal({ status: 402, code: "authorization_used" });
      expect(f.calls).to.have.length(2);

      f.down = true;
      const rec2 = recordingFetch();
      const down = await stockFetch(PAYER, srv.chainId, srv.token, rec2.fetch)(`${srv.url}/v1/echo?msg=down`);
      expect(down.status).to.equal(503);
      expect(counter.served).to.equal(1);

      // The facilitator settles but its answer is lost: 503, nothing served; the token's authorization state confirms it.
      f.down = false;
      f.dropAfterSettle = true;
      const rec3 = recordingFetch();
      const lost = await stockFetch(PAYER, srv.chainId, srv.token, rec3.fetch)(`${srv.url}/v1/echo?msg=lost`);
      expect(lost.status).to.equal(503);
      expect(counter.served).to.equal(1);
      const q = JSON.parse(Buffer.from(rec3.sent[0], "base64").toString("utf8")).payload.authorization;
      expect((await store.getExactPayment(q.from, q.nonce))!.status).to.equal("pending");
      await srv.server.exact!.payments.reconcile(0);
      expect((await store.getExactPayment(q.from, q.nonce))!.status).to.equal("confirmed");
      expect((await balanceOf(srv, srv.payee)) - before).to.equal(2n * PRICE);
    } finally {
      await srv.close();
      await f.close();
    }
  });
});

describePostgres("x402 interop: exact payments on PostgreSQL", function () {
  this.timeout(240_000);
  followChainClock();
  let snap: string;
  let a: TestServer;
  let b: TestServer;
  const counter = { served: 0, schemes: [] as string[] };

  before(async function () {
    snap = await snapshot();
    const databaseUrl = await newTestDatabase("exact");
    a = await startTestServer({ routes: routes(counter), databaseUrl, config: { maxTimeoutSeconds: 300 } });
    b = await startTestServer({ env: a.env, routes: routes(counter), databaseUrl, config: { maxTimeoutSeconds: 300 } });
    await mintUsdc(a.token, chainClients(PAYER).address, USDC(10));
  });

  after(async function () {
    await b?.close();
    await a?.close();
    if (snap) await revertTo(snap);
  });

  it("records each payment and refuses a replay on the other replica (authorization_used)", async function () {
    const rec = recordingFetch();
    const res = await stockFetch(PAYER, a.chainId, a.token, rec.fetch)(`${a.url}/v1/echo?msg=pg`);
    expect(res.status).to.equal(200);
    const p = JSON.parse(Buffer.from(rec.sent[0], "base64").toString("utf8")).payload.authorization;
    expect(await exactStoreFor(b.store).getExactPayment(p.from, p.nonce)).to.deep.include({ status: "confirmed", served: true });
    const replay = await fetch(`${b.url}/v1/echo`, { headers: { [HEADER_PAYMENT_SIGNATURE]: rec.sent[0] } });
    expect(await refusalCode(replay)).to.deep.equal({ status: 402, code: "authorization_used" });
  });

  it("PostgreSQL: a payment is recorded once per (payer, nonce), and the first transaction signed for it is the one kept", async function () {
    await firstSignedWins(a);
  });

  it("two replicas sharing PostgreSQL and one exact sender key: 12 concurrent payments take 12 distinct nonces, all mined, the payee gains exactly 12 x price", async function () {
    const before = await balanceOf(a, a.payee);
    const served = counter.served;
    const payA = stockFetch(PAYER, a.chainId, a.token);
    const payB = stockFetch(PAYER, b.chainId, b.token);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? payA(`${a.url}/v1/echo?msg=${i}`) : payB(`${b.url}/v1/echo?msg=${i}`))));
    const hashes = results.map((r) => {
      expect(r.status).to.equal(200);
      return decodeExactPaymentResponse(r.headers.get(HEADER_PAYMENT_RESPONSE)).transaction;
    });
    expect(new Set(hashes).size).to.equal(12);
    const nonces = await Promise.all(hashes.map(async (h) => (await a.env.publicClient.getTransaction({ hash: h })).nonce));
    expect(new Set(nonces).size).to.equal(12);
    expect((await balanceOf(a, a.payee)) - before).to.equal(12n * PRICE);
    expect(counter.served - served).to.equal(12);
  });

  it("exact (stock client) and channel (our SDK) payments at once on two replicas sharing PostgreSQL, the settlement job running on both: no nonce collision, every payment accounted once", async function () {
    const databaseUrl = await newTestDatabase("mixed");
    const seen = { served: 0, schemes: [] as string[] };
    const settlement = { config: { interval: 1, threshold: "0.000001" }, pollInterval: 50 };
    const c = await startTestServer({ env: a.env, routes: routes(seen), databaseUrl, config: { maxTimeoutSeconds: 300 }, settlement });
    const d = await startTestServer({ env: a.env, routes: routes(seen), databaseUrl, config: { maxTimeoutSeconds: 300 }, settlement });
    const { agent } = testClient(12, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
    try {
      await mintUsdc(c.token, chainClients(12).address, USDC(10));
      const before = await balanceOf(c, c.payee);
      const payC = stockFetch(PAYER, c.chainId, c.token);
      const payD = stockFetch(PAYER, d.chainId, d.token);
      const N = 10;
      // The first channel call opens the channel; then exact and channel calls run side by side on both replicas.
      expect((await agent.fetch(`${c.url}/v1/echo?msg=open`)).status).to.equal(200);
      const exact = Array.from({ length: N }, (_, i) => (i % 2 ? payC : payD)(`${(i % 2 ? c : d).url}/v1/echo?msg=x${i}`));
      const channel = (async () => {
        const out: Response[] = [];
        for (let i = 0; i < N; i++) out.push(await agent.fetch(`${(i % 2 ? d : c).url}/v1/echo?msg=c${i}`));
        return out;
      })();
      const [x, ch] = await Promise.all([Promise.all(exact), channel]);
      for (const r of [...x, ...ch]) expect(r.status, await r.clone().text()).to.equal(200);
      const hashes = x.map((r) => decodeExactPaymentResponse(r.headers.get(HEADER_PAYMENT_RESPONSE)).transaction);
      const nonces = await Promise.all(hashes.map(async (h) => (await c.env.publicClient.getTransaction({ hash: h })).nonce));
      expect(new Set(nonces).size, "one nonce per exact transfer").to.equal(N);

      // Settlement claims the channel's charges (N + 1 calls); the exact transfers are already the payee's.
      const [record] = agent.channels();
      await until(async () => {
        const row = await c.store.getChannel(record.id as Hex);
        return row !== null && row.settled === BigInt(N + 1) * PRICE;
      }, "the settlement job to settle the channel", 60_000);
      expect((await c.store.getChannel(record.id as Hex))!.spent).to.equal(BigInt(N + 1) * PRICE);
      expect((await balanceOf(c, c.payee)) - before).to.equal(BigInt(2 * N + 1) * PRICE);
      expect(seen.served).to.equal(2 * N + 1);
      expect(seen.schemes.filter((s) => s === "exact")).to.have.length(N);
      const counts = await exactStoreFor(c.store).exactCounts();
      expect(counts).to.deep.equal({ pending: 0, submitted: 0, confirmed: N, failed: 0 });
    } finally {
      await agent.close();
      await d.close();
      await c.close();
    }
  });
});
