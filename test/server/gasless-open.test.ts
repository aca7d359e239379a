/**
 * Gasless opens (docs/protocol.md § 5.9) on the real server and the local chain: a payer holding only MockUSDC and no
 * ETH sends its first paid request with `payload.open` (its EIP-3009 ReceiveWithAuthorization for
 * `openWithAuthorization`, built here with @paychan/protocol's openTypedData and VoucherSigner, independent of the
 * client SDK); the provider's exact sender opens the channel, the request is served with a first charge of price +
 * fee, later requests are ordinary vouchers; every hostile open is refused with its code and no transaction; the same
 * open sent many times (one replica or two sharing PostgreSQL) is submitted once and served once; a crash between
 * broadcast and confirmation opens nothing twice.
 */
import { expect } from "chai";
import type { Express } from "express";
import { getAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount, signTypedData } from "viem/accounts";
import {
  decodePaymentRequired,
  decodePaymentResponse,
  encodePaymentSignature,
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_RESPONSE,
  HEADER_PAYMENT_SIGNATURE,
  OPEN_ERROR_CODES,
  authorizationNonce,
  openChannelId,
  openTypedData,
  VoucherSigner,
  X402_VERSION,
  type ChannelRequirements,
  type OpenAuthorization,
} from "@paychan/protocol";
import { ConfigError, GaslessOpenPlanError, gaslessOpenStoreFor, httpStatusOf, loadConfig, planExact, planGaslessOpen, supportsEip3009 } from "@paychan/server";
import type { ExpressPaywall } from "@paychan/express";
import { paymentOf } from "@paychan/express";
import { startTestServer, type TestServer } from "../helpers/server";
import { mintUsdc } from "../helpers/client";
import { latestTimestamp, revertTo, snapshot } from "../helpers/chain";
import { deployEscrow, nextSalt } from "../helpers/escrow";
import { signCancelAuthorization } from "../helpers/usdc";
import { describePostgres, newTestDatabase } from "../helpers/postgres";
import { startServerProcess } from "../helpers/process";
import { rpcUrl, tempDatabaseUrl } from "../helpers/server";
import { startRpcCounter, type RpcCounter } from "../helpers/rpc-counter";
import hre from "hardhat";
import { encodeExactPaymentSignature, exactTypedData, decodeExactPaymentResponse, type ExactAuthorization, type ExactRequirements } from "@paychan/protocol";

const PRICE = 1_000n; // /v1/echo: 0.001 USDC
const DEPOSIT = 2_000_000n; // 2 USDC
const DAY = 86_400;
const SENDER: Address = "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199"; // Hardhat #19: the exact sender, which opens

/** Routes: a fixed price and a metered route, counting handler runs. */
export function routes(counter: { served: number }) {
  return (app: Express, paywall: ExpressPaywall) => {
    app.get("/v1/echo", paywall.charge({ price: "0.001" }), (req, res) => {
      counter.served++;
      res.json({ echo: req.query.msg ?? null, paid: String(paymentOf(res)!.amount) });
    });
    app.get("/v1/fail", paywall.charge({ price: "0.001" }), (_req, res) => void res.status(500).json({ error: "handler failed" }));
    app.post("/v1/infer", paywall.meter({ max: "0.01" }), (_req, res) => {
      counter.served++;
      paymentOf(res)!.charge(2_500n);
      res.json({ ok: true });
    });
  };
}

/** A payer with no ETH and its session key. */
export function gaslessPayer(): { key: Hex; address: Address; session: Hex } {
  const key = generatePrivateKey();
  return { key, address: privateKeyToAccount(key).address, session: generatePrivateKey() };
}

/** The parameters of an open, signed by `signWith` (default the payer's key); `edit` changes fields before signing. */
export async function signedOpen(
  srv: TestServer,
  payer: { key: Hex; address: Address; session: Hex },
  edit: Partial<Omit<OpenAuthorization, "signature">> = {},
  signWith?: Hex,
): Promise<OpenAuthorization> {
  const now = await latestTimestamp();
  const unsigned: Omit<OpenAuthorization, "signature"> = {
    method: "eip3009",
    payer: payer.address,
    payee: srv.payee,
    token: srv.token,
    signer: privateKeyToAccount(payer.session).address,
    amount: DEPOSIT,
    closeDelay: DAY,
    salt: nextSalt(),
    validAfter: 0n,
    validBefore: now + 3_600n,
    ...edit,
  };
  const typed = openTypedData(unsigned, { chainId: srv.chainId, escrow: srv.escrow, domain: { name: "USD Coin", version: "2" } });
  const signature = await signTypedData({ privateKey: signWith ?? payer.key, ...typed });
  return { ...unsigned, signature };
}

/** `PAYMENT-SIGNATURE` headers for the first voucher `v` of the channel `open` creates, carrying `open`. */
export function openHeaders(srv: TestServer, terms: ChannelRequirements, open: OpenAuthorization, v: bigint, o: { session?: Hex; channelId?: Hex } = {}): Record<string, string> {
  const channelId = o.channelId ?? openChannelId(open, srv.chainId, srv.escrow);
  const voucher = new VoucherSigner(o.session ?? (null as never), srv.domain).sign(channelId, v);
  const accepted = { ...terms, extra: { ...terms.extra } };
  delete accepted.extra.channel;
  return {
    [HEADER_PAYMENT_SIGNATURE]: encodePaymentSignature({ x402Version: X402_VERSION, accepted, payload: { ...voucher, open } }),
  };
}

/** Ordinary voucher headers on an existing channel. */
export function voucherHeaders(srv: TestServer, terms: ChannelRequirements, session: Hex, channelId: Hex, v: bigint): Record<string, string> {
  return srv.pay(terms, new VoucherSigner(session, srv.domain).sign(channelId, v));
}

export async function senderNonce(srv: TestServer): Promise<number> {
  return srv.env.publicClient.getTransactionCount({ address: SENDER, blockTag: "pending" });
}

export async function refusal(res: Response): Promise<{ status: number; code: string }> {
  const body = (await res.json()) as { error: string };
  return { status: res.status, code: body.error };
}

async function until(cond: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("gasless opens: a payer holding only the token opens a channel through its first paid request", function () {
  this.timeout(240_000);
  let snap: string;
  before(async () => (snap = await snapshot()));
  after(async () => {
    if (snap) await revertTo(snap);
  });

  for (const fee of [0n, 5_000n]) {
    it(`fee ${fee}: served after one open sent by the provider's sender; later calls are ordinary vouchers; the payer's ETH stays 0; receipt amount price + fee; settlement claims exactly what was charged`, async function () {
      const counter = { served: 0 };
      const settlement = { config: { interval: 1, threshold: "0.000001" }, pollInterval: 50 };
      const srv = await startTestServer({ routes: routes(counter), gaslessOpen: { fee }, settlement });
      try {
        const payer = gaslessPayer();
        await mintUsdc(srv.token, payer.address, 3_000_000n);
        const terms = await srv.terms("/v1/echo");
        expect(terms.extra.open).to.deep.equal({ method: "eip3009", fee });
        const raw = JSON.parse(Buffer.from((await fetch(`${srv.url}/v1/echo`)).headers.get(HEADER_PAYMENT_REQUIRED)!, "base64").toString("utf8"));
        expect(raw.accepts[0].extra.open).to.deep.equal({ method: "eip3009", fee: String(fee) });

        const nonce0 = await senderNonce(srv);
        const open = await signedOpen(srv, payer);
        const id = openChannelId(open, srv.chainId, srv.escrow);
        const first = PRICE + fee;
        const t0 = performance.now();
        const res = await fetch(`${srv.url}/v1/echo?msg=first`, { headers: openHeaders(srv, terms, open, first, { session: payer.session }) });
        const firstMs = performance.now() - t0;
        expect(res.status, await res.clone().text()).to.equal(200);
        expect(await res.json()).to.deep.equal({ echo: "first", paid: String(first) });
        const receipt = decodePaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE));
        expect(receipt.amount).to.equal(first);
        expect(receipt.payer).to.equal(getAddress(payer.address));
        expect(receipt.extra).to.deep.include({ channelId: id, accepted: first, spent: first, deposit: DEPOSIT });
        expect(await senderNonce(srv), "one transaction of the provider's sender").to.equal(nonce0 + 1);

        const row = (await gaslessOpenStoreFor(srv.store).getOpen(id))!;
        expect(row).to.deep.include({ status: "confirmed", payer: getAddress(payer.address), fee, senderNonce: nonce0 });
        const tx = await srv.env.publicClient.getTransaction({ hash: row.txHash! });
        expect(getAddress(tx.from)).to.equal(SENDER);
        expect(getAddress(tx.to!)).to.equal(getAddress(srv.escrow));
        const mined = await srv.env.publicClient.getTransactionReceipt({ hash: row.txHash! });
        expect(mined.status).to.equal("success");
        const chain = (await srv.env.publicClient.readContract({ address: srv.escrow, abi: srv.env.escrow.abi, functionName: "getChannel", args: [id, open.signer] })) as {
          payer: Address;
          deposit: bigint;
        };
        expect(getAddress(chain.payer)).to.equal(getAddress(payer.address));
        expect(chain.deposit).to.equal(DEPOSIT);

        // Later requests: ordinary vouchers, one round trip each, no transaction.
        let later = 0;
        let nonce0Bump = 0;
        for (let i = 1; i <= 5; i++) {
          const ti = performance.now();
          const r = await fetch(`${srv.url}/v1/echo?msg=${i}`, { headers: voucherHeaders(srv, terms, payer.session, id, first + BigInt(i) * PRICE) });
          if (i === 1) later = performance.now() - ti;
          expect(r.status, await r.clone().text()).to.equal(200);
          expect(decodePaymentResponse(r.headers.get(HEADER_PAYMENT_RESPONSE)).amount).to.equal(PRICE);
        }
        if (fee === 0n) {
          // Gas of a provider-submitted open once the escrow holds this payee/token pair (the first open registers it).
          const other = gaslessPayer();
          await mintUsdc(srv.token, other.address, 3_000_000n);
          const o2 = await signedOpen(srv, other);
          const t2 = performance.now();
          const r2 = await fetch(`${srv.url}/v1/echo?msg=second`, { headers: openHeaders(srv, terms, o2, PRICE, { session: other.session }) });
          const secondMs = performance.now() - t2;
          expect(r2.status).to.equal(200);
          const row2 = (await gaslessOpenStoreFor(srv.store).getOpen(openChannelId(o2, srv.chainId, srv.escrow)))!;
          const gas2 = (await srv.env.publicClient.getTransactionReceipt({ hash: row2.txHash! })).gasUsed;
          console.log(
            `      first paid call with a gasless open: ${firstMs.toFixed(1)} ms (another payer's: ${secondMs.toFixed(1)} ms); a later call: ${later.toFixed(1)} ms; ` +
              `openWithAuthorization gas ${mined.gasUsed} (first for the payee/token pair), ${gas2} (warm)`,
          );
          // Issue 16's target is 130,000 (the contract gas snapshot, measured on warmer state, is ~126,000); a fresh
          // payer's open measures ~130,700 here. Bound loosely so a regression shows, and report the figure.
          expect(gas2 <= 135_000n, `open gas ${gas2}`).to.equal(true);
          counter.served--;
          await senderNonce(srv).then((n) => expect(n).to.equal(nonce0 + 2 + 1)); // + the mint from #19 and the second open
          nonce0Bump = 2;
        }
        expect(await senderNonce(srv)).to.equal(nonce0 + 1 + nonce0Bump);
        expect(await srv.env.publicClient.getBalance({ address: payer.address }), "the payer's ETH").to.equal(0n);
        expect(counter.served).to.equal(6);

        // The settlement job claims exactly what was charged: price + fee, then 5 x price.
        const charged = first + 5n * PRICE;
        expect((await srv.store.getChannel(id))!.spent).to.equal(charged);
        await until(async () => (await srv.store.getChannel(id))!.settled === charged, "the settlement job to settle the channel", 60_000);
        const onChain = (await srv.env.publicClient.readContract({ address: srv.escrow, abi: srv.env.escrow.abi, functionName: "getChannel", args: [id, open.signer] })) as { settled: bigint };
        expect(onChain.settled).to.equal(charged);

        const metrics = await (await fetch(`${srv.url}/metrics`)).text();
        expect(metrics).to.match(fee === 0n ? /^gasless_opens_total\{status="confirmed"\} 2$/m : /^gasless_opens_total\{status="confirmed"\} 1$/m);
        expect(metrics).to.match(fee === 0n ? /^gasless_opens\{status="confirmed"\} 2$/m : /^gasless_opens\{status="confirmed"\} 1$/m);
      } finally {
        await srv.close();
      }
    });
  }
});


describe("gasless opens: hostile opens are refused with their code, and no transaction is sent", function () {
  this.timeout(240_000);
  const FEE = 1_000n;
  const FIRST = PRICE + FEE;
  let snap: string;
  let srv: TestServer;
  let terms: ChannelRequirements;
  const counter = { served: 0 };
  const seen = new Set<string>();

  before(async () => {
    snap = await snapshot();
    srv = await startTestServer({ routes: routes(counter), gaslessOpen: { fee: FEE, opensPerPayer: 3 } });
    terms = await srv.terms("/v1/echo");
  });
  after(async () => {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  /** Sends `headers` and checks the refusal (402 with PAYMENT-REQUIRED unless said otherwise). */
  async function expectRefused(what: string, headers: Record<string, string>, code: string, status = 402, path = "/v1/echo"): Promise<void> {
    const res = await fetch(`${srv.url}${path}`, { method: path === "/v1/echo" ? "GET" : "POST", headers });
    expect(await refusal(res), what).to.deep.equal({ status, code });
    if (status === 402) expect(res.headers.get(HEADER_PAYMENT_REQUIRED), what).to.be.a("string");
    seen.add(code);
  }

  it("each bad field of an open, and each bad chain state, is refused with its code before any transaction of the provider's sender", async function () {
    const p = gaslessPayer();
    const poor = gaslessPayer(); // holds no token
    const blocked = gaslessPayer();
    const cancelled = gaslessPayer();
    const stranger = gaslessPayer();
    // Set up before counting (mintUsdc sends from Hardhat #19, the exact sender).
    for (const x of [p, blocked, cancelled]) await mintUsdc(srv.token, x.address, 5_000_000n);
    await srv.env.wallets[0].writeContract({ address: srv.token, abi: srv.env.usdc.abi, functionName: "blacklist", args: [blocked.address, true] });
    const now = await latestTimestamp();
    // An authorization the payer cancelled at the token (EIP-3009 cancelAuthorization): its nonce is used.
    const gone = await signedOpen(srv, cancelled);
    const goneId = openChannelId(gone, srv.chainId, srv.escrow);
    const nonceOfGone = authorizationNonce(goneId, gone.closeDelay);
    const cancel = await signCancelAuthorization(cancelled.key, srv.chainId, srv.token, nonceOfGone);
    await srv.env.wallets[2].writeContract({ address: srv.token, abi: srv.env.usdc.abi, functionName: "cancelAuthorization", args: [cancelled.address, nonceOfGone, cancel] });

    const ok = await signedOpen(srv, p);
    const otherSalt = await signedOpen(srv, p);
    const withOffer = (extra: Partial<ChannelRequirements["extra"]>) => ({ ...terms, extra: { ...terms.extra, ...extra } });
    const cases: Array<[string, Record<string, string>, string, number?]> = [
      ["another open fee in accepted", openHeaders(srv, withOffer({ open: { method: "eip3009", fee: 0n } }), ok, FIRST, { session: p.session }), "requirements_mismatch"],
      ["no extra.open in accepted", openHeaders(srv, withOffer({ open: undefined }), ok, FIRST, { session: p.session }), "requirements_mismatch"],
      ["wrong payee", openHeaders(srv, terms, await signedOpen(srv, p, { payee: srv.env.wallets[3].account.address }), FIRST, { session: p.session }), "channel_payee_mismatch"],
      ["wrong token", openHeaders(srv, terms, await signedOpen(srv, p, { token: srv.escrow }), FIRST, { session: p.session }), "channel_token_mismatch"],
      ["channel id of other parameters", openHeaders(srv, terms, ok, FIRST, { session: p.session, channelId: openChannelId(otherSalt, srv.chainId, srv.escrow) }), "open_channel_mismatch"],
      ["deposit below the minimum", openHeaders(srv, terms, await signedOpen(srv, p, { amount: 999_999n }), FIRST, { session: p.session }), "deposit_too_small"],
      ["close delay below the server's minimum", openHeaders(srv, terms, await signedOpen(srv, p, { closeDelay: 3_600 }), FIRST, { session: p.session }), "close_delay_too_short"],
      ["not yet valid", openHeaders(srv, terms, await signedOpen(srv, p, { validAfter: now + 3_600n, validBefore: now + 7_200n }), FIRST, { session: p.session }), "authorization_not_yet_valid"],
      ["expired window", openHeaders(srv, terms, await signedOpen(srv, p, { validBefore: now - 1n }), FIRST, { session: p.session }), "authorization_expired"],
      ["signed by another key", openHeaders(srv, terms, await signedOpen(srv, p, {}, stranger.key), FIRST, { session: p.session }), "authorization_signature_invalid"],
      ["voucher by another session key", openHeaders(srv, terms, ok, FIRST, { session: stranger.session }), "invalid_signature"],
      ["voucher below price + fee", openHeaders(srv, terms, ok, FIRST - 1n, { session: p.session }), "insufficient_voucher"],
      ["voucher above the deposit", openHeaders(srv, terms, ok, DEPOSIT + 1n, { session: p.session }), "exceeds_deposit"],
      ["authorization cancelled (used) at the token", openHeaders(srv, terms, gone, FIRST, { session: cancelled.session }), "authorization_used"],
      ["payer's balance below the deposit", openHeaders(srv, terms, await signedOpen(srv, poor), FIRST, { session: poor.session }), "insufficient_balance"],
      ["a payer the token blacklists (the open would revert)", openHeaders(srv, terms, await signedOpen(srv, blocked), FIRST, { session: blocked.session }), "open_failed"],
    ];
    const nonce = await senderNonce(srv);
    const served = counter.served;
    for (const [what, headers, code, status] of cases) await expectRefused(what, headers, code, status);
    expect(await senderNonce(srv), "no transaction of the provider's sender").to.equal(nonce);
    expect(counter.served, "nothing served").to.equal(served);
    expect((await gaslessOpenStoreFor(srv.store).openCounts()).pending, "nothing recorded").to.equal(0);

    // The good open still works afterwards (nothing above spent its authorization).
    const res = await fetch(`${srv.url}/v1/echo`, { headers: openHeaders(srv, terms, ok, FIRST, { session: p.session }) });
    expect(res.status, await res.clone().text()).to.equal(200);
    expect(decodePaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE)).amount).to.equal(FIRST);
    expect(await senderNonce(srv)).to.equal(nonce + 1);
    // The same open again: the channel exists, the voucher was used.
    await expectRefused("the same open again", openHeaders(srv, terms, ok, FIRST, { session: p.session }), "voucher_reused");
    expect(await senderNonce(srv)).to.equal(nonce + 1);
  });

  it("a flood of opens by one payer: OPENS_PER_PAYER (3) opened, the next refused open_limit (429 outside a paid route's 402) with no transaction", async function () {
    const p = gaslessPayer();
    await mintUsdc(srv.token, p.address, 20_000_000n);
    const opens = [];
    for (let i = 0; i < 5; i++) opens.push(await signedOpen(srv, p));
    const nonce = await senderNonce(srv);
    // One opened already by the test above belongs to another payer: this payer starts at 0.
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${srv.url}/v1/echo`, { headers: openHeaders(srv, terms, opens[i], FIRST, { session: p.session }) });
      expect(r.status, await r.clone().text()).to.equal(200);
    }
    expect(await senderNonce(srv)).to.equal(nonce + 3);
    await expectRefused("a fourth open within the hour", openHeaders(srv, terms, opens[3], FIRST, { session: p.session }), "open_limit");
    await expectRefused("a fifth", openHeaders(srv, terms, opens[4], FIRST, { session: p.session }), "open_limit");
    expect(await senderNonce(srv)).to.equal(nonce + 3);
    expect(httpStatusOf("open_limit", "endpoint")).to.equal(429);
  });

  it("a provider with gasless opens off: no extra.open in its offers, and an open is refused open_unsupported with no transaction", async function () {
    const off = await startTestServer({ env: srv.env, routes: routes(counter), gaslessOpen: false });
    try {
      const t = await off.terms("/v1/echo");
      expect(t.extra.open).to.equal(undefined);
      const p = gaslessPayer();
      await mintUsdc(off.token, p.address, 5_000_000n);
      const nonce = await senderNonce(off);
      const res = await fetch(`${off.url}/v1/echo`, { headers: openHeaders(off, { ...t, extra: { ...t.extra, open: { method: "eip3009", fee: 0n } } }, await signedOpen(off, p), PRICE, { session: p.session }) });
      expect(await refusal(res)).to.deep.equal({ status: 402, code: "open_unsupported" });
      seen.add("open_unsupported");
      expect(await senderNonce(off)).to.equal(nonce);
    } finally {
      await off.close();
    }
  });

  it("covers every open refusal code", function () {
    expect([...seen].filter((c) => (OPEN_ERROR_CODES as readonly string[]).includes(c)).sort()).to.deep.equal([...OPEN_ERROR_CODES].sort());
  });
});

/** Sends the same open `n` times at once, spread over `servers`; returns the answers. */
async function sameOpenAtOnce(servers: TestServer[], n: number, fee: bigint) {
  const srv = servers[0];
  const payer = gaslessPayer();
  await mintUsdc(srv.token, payer.address, 5_000_000n);
  const terms = await srv.terms("/v1/echo");
  const open = await signedOpen(srv, payer);
  const headers = openHeaders(srv, terms, open, PRICE + fee, { session: payer.session });
  const nonce = await senderNonce(srv);
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => fetch(`${servers[i % servers.length].url}/v1/echo?msg=${i}`, { headers })));
  const statuses = await Promise.all(answers.map(async (r) => (r.status === 200 ? "served" : (await refusal(r)).code)));
  const id = openChannelId(open, srv.chainId, srv.escrow);
  return { statuses, id, open, payer, nonce, receipts: answers.filter((r) => r.status === 200).map((r) => decodePaymentResponse(r.headers.get(HEADER_PAYMENT_RESPONSE))) };
}

describe("gasless opens: the same open many times at once", function () {
  this.timeout(240_000);
  let snap: string;
  before(async () => (snap = await snapshot()));
  after(async () => {
    if (snap) await revertTo(snap);
  });

  it("20 copies of one open on one server: one transaction sent, exactly one request served (price + fee), the others voucher_reused", async function () {
    const counter = { served: 0 };
    const srv = await startTestServer({ routes: routes(counter), gaslessOpen: { fee: 2_000n } });
    try {
      const r = await sameOpenAtOnce([srv], 20, 2_000n);
      expect(r.statuses.filter((x) => x === "served")).to.have.length(1);
      expect(r.statuses.filter((x) => x !== "served")).to.deep.equal(Array(19).fill("voucher_reused"));
      expect(r.receipts[0].amount).to.equal(PRICE + 2_000n);
      expect(await senderNonce(srv), "one open transaction").to.equal(r.nonce + 1);
      expect(counter.served).to.equal(1);
      expect((await srv.store.getChannel(r.id))!.spent).to.equal(PRICE + 2_000n);
      expect(await gaslessOpenStoreFor(srv.store).openCounts()).to.deep.equal({ pending: 0, submitted: 0, confirmed: 1, failed: 0 });
    } finally {
      await srv.close();
    }
  });

  it("exact transfers and gasless opens at once from the one sender key: every transaction takes its own nonce, all mined, all served", async function () {
    const counter = { served: 0 };
    const srv = await startTestServer({ routes: routes(counter), config: { maxTimeoutSeconds: 300 } });
    try {
      const terms = await srv.terms("/v1/echo");
      const res402 = await fetch(`${srv.url}/v1/echo`);
      const offer = decodePaymentRequired(res402.headers.get(HEADER_PAYMENT_REQUIRED)).exact![0] as ExactRequirements;
      const exactPayer = gaslessPayer();
      const openers = Array.from({ length: 4 }, () => gaslessPayer());
      await mintUsdc(srv.token, exactPayer.address, 1_000_000n);
      for (const o of openers) await mintUsdc(srv.token, o.address, 3_000_000n);
      const now = await latestTimestamp();
      const exactHeaders = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const nonce = `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}` as Hex;
          const a: ExactAuthorization = { from: exactPayer.address, to: offer.payTo, value: offer.amount, validAfter: 0n, validBefore: now + 3_600n, nonce };
          const signature = await signTypedData({ privateKey: exactPayer.key, ...exactTypedData(offer, a) });
          return { [HEADER_PAYMENT_SIGNATURE]: encodeExactPaymentSignature({ x402Version: X402_VERSION, accepted: offer, payload: { signature, authorization: a } }) };
        }),
      );
      const openHs = await Promise.all(openers.map(async (o) => openHeaders(srv, terms, await signedOpen(srv, o), PRICE, { session: o.session })));
      const nonce = await senderNonce(srv);
      const all = [...exactHeaders.map((h) => ({ kind: "exact", h })), ...openHs.map((h) => ({ kind: "open", h }))].sort(() => Math.random() - 0.5);
      const answers = await Promise.all(all.map((x) => fetch(`${srv.url}/v1/echo`, { headers: x.h })));
      for (const a of answers) expect(a.status, await a.clone().text()).to.equal(200);
      const hashes: Hex[] = [];
      answers.forEach((a, i) => {
        if (all[i].kind === "exact") hashes.push(decodeExactPaymentResponse(a.headers.get(HEADER_PAYMENT_RESPONSE)).transaction);
      });
      for (const o of openHs) {
        const p = JSON.parse(Buffer.from(o[HEADER_PAYMENT_SIGNATURE], "base64").toString("utf8")).payload;
        hashes.push((await gaslessOpenStoreFor(srv.store).getOpen(p.channelId))!.txHash!);
      }
      const txs = await Promise.all(hashes.map((hash) => srv.env.publicClient.getTransaction({ hash })));
      expect(new Set(txs.map((t) => t.nonce)).size, "12 distinct nonces").to.equal(12);
      for (const t of txs) expect(getAddress(t.from)).to.equal(SENDER);
      for (const h of hashes) expect((await srv.env.publicClient.getTransactionReceipt({ hash: h })).status).to.equal("success");
      expect(await senderNonce(srv)).to.equal(nonce + 12);
      expect(counter.served).to.equal(12);
    } finally {
      await srv.close();
    }
  });
});

describePostgres("gasless opens: two replicas sharing PostgreSQL", function () {
  this.timeout(240_000);
  let snap: string;
  before(async () => (snap = await snapshot()));
  after(async () => {
    if (snap) await revertTo(snap);
  });

  it("20 copies of one open over two replicas: one transaction, one request served, the others voucher_reused; the open recorded once", async function () {
    const databaseUrl = await newTestDatabase("gasless");
    const counter = { served: 0 };
    const a = await startTestServer({ routes: routes(counter), databaseUrl, gaslessOpen: { fee: 1_000n } });
    const b = await startTestServer({ env: a.env, routes: routes(counter), databaseUrl, gaslessOpen: { fee: 1_000n } });
    try {
      const r = await sameOpenAtOnce([a, b], 20, 1_000n);
      expect(r.statuses.filter((x) => x === "served")).to.have.length(1);
      expect(r.statuses.filter((x) => x !== "served")).to.deep.equal(Array(19).fill("voucher_reused"));
      expect(await senderNonce(a), "one open transaction").to.equal(r.nonce + 1);
      expect(counter.served).to.equal(1);
      expect(await gaslessOpenStoreFor(b.store).openCounts()).to.deep.equal({ pending: 0, submitted: 0, confirmed: 1, failed: 0 });
      expect((await b.store.getChannel(r.id))!.spent).to.equal(PRICE + 1_000n);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

describe("gasless opens: SIGKILL of the server between broadcast and confirmation", function () {
  this.timeout(240_000);
  let snap: string;
  before(async () => (snap = await snapshot()));
  after(async () => {
    await hre.network.provider.send("evm_setAutomine", [true]);
    if (snap) await revertTo(snap);
  });

  it("after a restart the open is finished once (one transaction), the channel exists once, and the retried request is served once", async function () {
    const env = await deployEscrow();
    const databaseUrl = tempDatabaseUrl();
    const child = await startServerProcess({
      RPC_URL: await rpcUrl(),
      ESCROW_ADDRESS: env.escrow.address,
      TOKEN_ADDRESS: env.usdc.address,
      PAYEE_ADDRESS: env.wallets[0].account.address,
      DATABASE_URL: databaseUrl,
      GASLESS_OPEN: "on",
      OPEN_FEE: "0.001",
      CHAIN_POLL_INTERVAL: "250",
    });
    const payer = gaslessPayer();
    const fake = { chainId: 31337, escrow: env.escrow.address, token: env.usdc.address, payee: env.wallets[0].account.address, domain: env.domain, env } as unknown as TestServer;
    await mintUsdc(env.usdc.address, payer.address, 5_000_000n);
    const first = await fetch(`${child.url}/v1/echo`);
    const terms = decodePaymentRequired(first.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
    expect(terms.extra.open).to.deep.equal({ method: "eip3009", fee: 1_000n });
    const open = await signedOpen(fake, payer);
    const id = openChannelId(open, 31337, env.escrow.address);
    const headers = openHeaders(fake, terms, open, 2n * PRICE, { session: payer.session });
    const nonce = await senderNonce(fake);

    // Blocks stop being mined: the open is broadcast and waits in the node's pool; the server is killed meanwhile.
    await hre.network.provider.send("evm_setAutomine", [false]);
    let srv: TestServer | null = null;
    try {
      const pending = fetch(`${child.url}/v1/echo?msg=crash`, { headers }).then((r) => r.status, () => "killed");
      await until(async () => (await senderNonce(fake)) === nonce + 1, "the open to be broadcast");
      child.kill("SIGKILL");
      await child.exited;
      expect(await pending).to.equal("killed");
      const mid = (await env.publicClient.readContract({ address: env.escrow.address, abi: env.escrow.abi, functionName: "getChannel", args: [id, open.signer] })) as { payer: Address };
      expect(BigInt(mid.payer), "not opened yet").to.equal(0n);

      // A new process on the same database: its start pass finds the recorded open and broadcasts it again (known).
      const counter = { served: 0 };
      srv = await startTestServer({ env, databaseUrl, routes: routes(counter), gaslessOpen: { fee: 1_000n } });
      const opens = gaslessOpenStoreFor(srv.store);
      expect((await opens.getOpen(id))!.status).to.be.oneOf(["pending", "submitted"]);
      await hre.network.provider.send("evm_setAutomine", [true]);
      await hre.network.provider.send("evm_mine", []);

      const again = await fetch(`${srv.url}/v1/echo?msg=retry`, { headers });
      expect(again.status, await again.clone().text()).to.equal(200);
      expect(decodePaymentResponse(again.headers.get(HEADER_PAYMENT_RESPONSE)).amount).to.equal(2n * PRICE);
      const third = await fetch(`${srv.url}/v1/echo?msg=retry`, { headers });
      expect(await refusal(third)).to.deep.equal({ status: 402, code: "voucher_reused" });
      expect(counter.served).to.equal(1);
      expect(await senderNonce(fake), "the open was sent once").to.equal(nonce + 1);
      expect((await opens.getOpen(id))!.status).to.equal("confirmed");
      const ch = (await env.publicClient.readContract({ address: env.escrow.address, abi: env.escrow.abi, functionName: "getChannel", args: [id, open.signer] })) as { payer: Address; deposit: bigint };
      expect(getAddress(ch.payer)).to.equal(getAddress(payer.address));
      expect(ch.deposit).to.equal(DEPOSIT);
    } finally {
      await hre.network.provider.send("evm_setAutomine", [true]);
      child.kill("SIGKILL");
      await srv?.close();
    }
  });
});

describe("gasless opens: the chain failing or the open reverting while it is submitted", function () {
  this.timeout(240_000);
  let snap: string;
  let rpc: RpcCounter;
  let srv: TestServer;
  let terms: ChannelRequirements;
  const counter = { served: 0 };

  before(async () => {
    snap = await snapshot();
    rpc = await startRpcCounter(await rpcUrl());
    srv = await startTestServer({ routes: routes(counter), rpcUrl: rpc.url, gaslessOpen: { fee: 1_000n }, exact: { confirmTimeoutMs: 1_000, reconcileIntervalMs: 200 } });
    terms = await srv.terms("/v1/echo");
  });
  after(async () => {
    await hre.network.provider.send("evm_setAutomine", [true]);
    await srv?.close();
    await rpc?.close();
    if (snap) await revertTo(snap);
  });

  for (const method of ["eth_sendRawTransaction", "eth_getTransactionReceipt"]) {
    it(`${method} failing: 503 upstream_unavailable and nothing served; the reconciler finishes the open once the RPC is back; the same request is then served once`, async function () {
      const payer = gaslessPayer();
      await mintUsdc(srv.token, payer.address, 5_000_000n);
      const open = await signedOpen(srv, payer);
      const id = openChannelId(open, srv.chainId, srv.escrow);
      const headers = openHeaders(srv, terms, open, 2n * PRICE, { session: payer.session });
      const nonce = await senderNonce(srv);
      const served = counter.served;
      rpc.fail([method]);
      let res: Response;
      try {
        res = await fetch(`${srv.url}/v1/echo?msg=down`, { headers });
      } finally {
        rpc.fail([]);
      }
      expect(await refusal(res)).to.deep.equal({ status: 503, code: "upstream_unavailable" });
      expect(counter.served, "nothing served").to.equal(served);
      const store = gaslessOpenStoreFor(srv.store);
      const row = (await store.getOpen(id))!;
      expect(row.status).to.be.oneOf(["pending", "submitted"]);
      expect(row.rawTx, "signed and recorded before the broadcast").to.be.a("string");
      await until(async () => (await store.getOpen(id))!.status === "confirmed", "the reconciler to finish the open");
      const again = await fetch(`${srv.url}/v1/echo?msg=retry`, { headers });
      expect(again.status, await again.clone().text()).to.equal(200);
      expect(decodePaymentResponse(again.headers.get(HEADER_PAYMENT_RESPONSE)).amount).to.equal(PRICE + 1_000n);
      const third = await fetch(`${srv.url}/v1/echo?msg=retry`, { headers });
      expect(await refusal(third)).to.deep.equal({ status: 402, code: "voucher_reused" });
      expect(counter.served - served).to.equal(1);
      expect(await senderNonce(srv), "one open transaction").to.equal(nonce + 1);
    });
  }

  it("an open that reverts when mined (the payer blacklisted after the simulation): open_failed, nothing opened, served or charged", async function () {
    const payer = gaslessPayer();
    await mintUsdc(srv.token, payer.address, 5_000_000n);
    const open = await signedOpen(srv, payer);
    const id = openChannelId(open, srv.chainId, srv.escrow);
    const headers = openHeaders(srv, terms, open, 2n * PRICE, { session: payer.session });
    const nonce = await senderNonce(srv);
    const served = counter.served;
    await hre.network.provider.send("evm_setAutomine", [false]);
    try {
      const answer = fetch(`${srv.url}/v1/echo?msg=revert`, { headers });
      await until(async () => (await senderNonce(srv)) === nonce + 1, "the open to be broadcast");
      // The token's owner blacklists the payer in the same block, ahead of the open (a higher tip).
      await srv.env.wallets[0].writeContract({
        address: srv.token,
        abi: srv.env.usdc.abi,
        functionName: "blacklist",
        args: [payer.address, true],
        maxPriorityFeePerGas: 50_000_000_000n,
        maxFeePerGas: 100_000_000_000n,
      } as never);
      await hre.network.provider.send("evm_mine", []);
      await hre.network.provider.send("evm_setAutomine", [true]);
      expect(await refusal(await answer)).to.deep.equal({ status: 402, code: "open_failed" });
    } finally {
      await hre.network.provider.send("evm_setAutomine", [true]);
    }
    expect((await gaslessOpenStoreFor(srv.store).getOpen(id))!.status).to.equal("failed");
    expect(counter.served).to.equal(served);
    expect(await srv.store.getChannel(id)).to.equal(null);
    const ch = (await srv.env.publicClient.readContract({ address: srv.escrow, abi: srv.env.escrow.abi, functionName: "getChannel", args: [id, open.signer] })) as { payer: Address };
    expect(BigInt(ch.payer)).to.equal(0n);
    // Sent again: the open is known failed (never re-submitted).
    const again = await fetch(`${srv.url}/v1/echo`, { headers });
    expect(await refusal(again)).to.deep.equal({ status: 402, code: "open_failed" });
    expect(await senderNonce(srv)).to.equal(nonce + 1);
  });

  it("a metered route opened gaslessly: the first charge is the reported amount + fee; a handler failing keeps the fee only", async function () {
    const payer = gaslessPayer();
    await mintUsdc(srv.token, payer.address, 5_000_000n);
    const mterms = await srv.terms("/v1/infer", { method: "POST" });
    expect(mterms.extra.open).to.deep.equal({ method: "eip3009", fee: 1_000n });
    const open = await signedOpen(srv, payer);
    const id = openChannelId(open, srv.chainId, srv.escrow);
    const res = await fetch(`${srv.url}/v1/infer`, { method: "POST", headers: openHeaders(srv, mterms, open, 10_000n + 1_000n, { session: payer.session }) });
    expect(res.status, await res.clone().text()).to.equal(200);
    expect(decodePaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE)).amount).to.equal(2_500n + 1_000n);
    await until(async () => (await srv.store.getChannel(id))!.reserved === 0n, "the reservation to finish");
    expect((await srv.store.getChannel(id))!.spent).to.equal(3_500n);

    // A handler failing (500) on the first request: the price is released, the fee (the open happened) stays charged.
    const other = gaslessPayer();
    await mintUsdc(srv.token, other.address, 5_000_000n);
    const o2 = await signedOpen(srv, other);
    const id2 = openChannelId(o2, srv.chainId, srv.escrow);
    const fterms = await srv.terms("/v1/fail");
    const failed = await fetch(`${srv.url}/v1/fail`, { headers: openHeaders(srv, fterms, o2, PRICE + 1_000n, { session: other.session }) });
    expect(failed.status).to.equal(500);
    await until(async () => (await srv.store.getChannel(id2))!.spent === 1_000n, "the price to be released");
  });
});

describe("gasless opens: configuration", function () {
  this.timeout(60_000);

  it("GASLESS_OPEN, OPEN_FEE, OPENS_PER_PAYER are read and checked; on without the provider's own sender key refuses to start; auto stays off; a token without EIP-3009 is told apart", async function () {
    expect(loadConfig({}).gaslessOpen).to.deep.equal({ mode: "auto", fee: "0", opensPerPayer: 3 });
    expect(loadConfig({ GASLESS_OPEN: "on", OPEN_FEE: "0.01", OPENS_PER_PAYER: "5" }).gaslessOpen).to.deep.equal({ mode: "on", fee: "0.01", opensPerPayer: 5 });
    expect(() => loadConfig({ GASLESS_OPEN: "maybe", OPEN_FEE: "-1", OPENS_PER_PAYER: "0" })).to.throw(ConfigError, /GASLESS_OPEN[\s\S]*OPEN_FEE[\s\S]*OPENS_PER_PAYER/);
    const key = generatePrivateKey();
    const exact = planExact(loadConfig({ EXACT_PRIVATE_KEY: key }).exact, 31337, undefined, undefined);
    expect(planGaslessOpen(loadConfig({}).gaslessOpen, undefined, exact)).to.deep.equal({ mode: "auto", fee: "0", opensPerPayer: 3 });
    expect(planGaslessOpen(loadConfig({ GASLESS_OPEN: "off" }).gaslessOpen, undefined, exact)).to.equal(null);
    expect(planGaslessOpen(loadConfig({}).gaslessOpen, undefined, null), "auto without a sender key").to.equal(null);
    expect(() => planGaslessOpen(loadConfig({ GASLESS_OPEN: "on" }).gaslessOpen, undefined, null)).to.throw(GaslessOpenPlanError, /EXACT_PRIVATE_KEY/);
    const facilitated = planExact(loadConfig({ FACILITATOR_URL: "http://127.0.0.1:1" }).exact, 31337, undefined, undefined);
    expect(() => planGaslessOpen(undefined, true, facilitated), "a facilitator's exact scheme has no key of ours").to.throw(GaslessOpenPlanError);

    const env = await deployEscrow();
    const fee = await hre.viem.deployContract("FeeOnTransferToken");
    expect(await supportsEip3009(env.publicClient as never, env.usdc.address)).to.equal(true);
    expect(await supportsEip3009(env.publicClient as never, fee.address)).to.equal(false);
  });
});
