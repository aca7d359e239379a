/**
 * The public provider API inside an app the provider owns: `createProvider` (`@paychan/server`) and `createPaywall`
 * (`@paychan/express`) mounted in a plain Express app with routes, a 404 and an error handler of its own, on the
 * in-process chain over JSON-RPC, with real HTTP on an ephemeral port. The paywall answers only what it owns.
 */
import { expect } from "chai";
import express from "express";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { decodePaymentRequired, decodePaymentResponse, HEADER_PAYMENT_REQUIRED, HEADER_PAYMENT_RESPONSE } from "@paychan/protocol";
import { ConfigError, createProvider, ProviderStartError, type Provider } from "@paychan/server";
import { createPaywall, paymentOf, type Paywall } from "@paychan/express";
import { accountKey } from "../helpers/chain";
import { deployEscrow, openChannel, USDC, type Env } from "../helpers/escrow";
import { paymentHeaders, rpcUrl, tempDatabaseUrl } from "../helpers/server";

describe("express: the paywall in an app the provider owns", function () {
  this.timeout(120_000);
  let env: Env;
  let chain: string;
  let provider: Provider;
  let paywall: Paywall;
  let server: http.Server;
  let url: string;
  let databaseUrl: string;

  before(async function () {
    env = await deployEscrow();
    chain = await rpcUrl();
    databaseUrl = tempDatabaseUrl();
    provider = await createProvider({
      env: {
        RPC_URL: chain,
        ESCROW_ADDRESS: env.escrow.address,
        TOKEN_ADDRESS: env.usdc.address,
        PAYEE_ADDRESS: env.wallets[0].account.address,
        DATABASE_URL: databaseUrl,
        LOG_LEVEL: "silent",
      },
      settlement: false,
    });
    paywall = createPaywall(provider);
    const app = express();
    app.use(paywall.closeRoute());
    app.get("/status", paywall.healthz());
    app.get("/ops/metrics", paywall.metrics());
    app.get("/weather", paywall.charge({ price: "0.002" }), (req, res) => res.json({ city: req.query.city, payer: paymentOf(res)?.payer }));
    app.get("/broken", paywall.charge({ price: "0.001" }), () => {
      throw new Error("handler bug");
    });
    app.all("/channel/close", (_req, res) => res.status(418).json({ mine: true })); // the app's own answer for what the paywall does not own
    app.use((_req, res) => res.status(404).json({ app404: true }));
    app.use(((_err, _req, res, _next) => res.status(500).json({ appError: true })) as express.ErrorRequestHandler);
    server = app.listen(0, "127.0.0.1");
    await new Promise<void>((r) => server.once("listening", () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async function () {
    if (server) await new Promise<void>((r) => server.close(() => r()));
    await provider?.close();
    fs.rmSync(path.dirname(databaseUrl), { recursive: true, force: true });
  });

  it("serves a paid route: 402 with terms, then the handler with a receipt for a good voucher", async function () {
    const unpaid = await fetch(`${url}/weather?city=lima`);
    expect(unpaid.status).to.equal(402);
    const terms = decodePaymentRequired(unpaid.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
    expect(terms.amount).to.equal(2_000n);
    expect(terms.payTo).to.equal(provider.payee);
    const ch = await openChannel(env, { payerIndex: 3, deposit: USDC(1) });
    const res = await fetch(`${url}/weather?city=lima`, { headers: paymentHeaders(terms, ch.voucher.sign(ch.id, 2_000n)) });
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.equal({ city: "lima", payer: ch.payer });
    expect(decodePaymentResponse(res.headers.get(HEADER_PAYMENT_RESPONSE)).extra.spent).to.equal(2_000n);
  });

  it("leaves the app's own routes, 404 and error handler alone (other methods on the close path fall through)", async function () {
    expect(await (await fetch(`${url}/nowhere`)).json()).to.deep.equal({ app404: true });
    for (const method of ["GET", "OPTIONS", "PUT"]) {
      const r = await fetch(`${url}/channel/close`, { method });
      expect(r.status, method).to.equal(418);
    }
    const broken = await fetch(`${url}/broken`);
    expect(broken.status).to.equal(402); // unpaid: the paywall answers before the handler
    // Paid: the handler throws, the app's own error handler answers, and the charge is released.
    const terms = decodePaymentRequired(broken.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
    const ch = await openChannel(env, { payerIndex: 5, deposit: USDC(1) });
    const paid = await fetch(`${url}/broken`, { headers: paymentHeaders(terms, ch.voucher.sign(ch.id, 1_000n)) });
    expect(paid.status).to.equal(500);
    expect(await paid.json()).to.deep.equal({ appError: true });
    expect((await provider.store.getChannel(ch.id))?.spent).to.equal(0n);
    // Paths match the close route as Express routes do: any case, an optional trailing slash.
    const trailing = await fetch(`${url}/Channel/Close/`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect((await trailing.json()).error).to.equal("invalid_payload");
  });

  it("answers the cooperative close route with typed errors: unreadable JSON, bad fields, a body over the limit", async function () {
    const post = (body: string) => fetch(`${url}/channel/close`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const notJson = await post("{nope");
    expect(notJson.status).to.equal(400);
    expect((await notJson.json()).error).to.equal("invalid_payload");
    const badId = await post(JSON.stringify({ channelId: "0x12", signature: `0x${"11".repeat(65)}` }));
    expect(badId.status).to.equal(400);
    expect(await badId.json()).to.include({ error: "invalid_payload", detail: "channelId must be 32 bytes of 0x-hex" });
    const tooLarge = await post(JSON.stringify({ channelId: `0x${"11".repeat(32)}`, signature: `0x${"11".repeat(65)}`, pad: "x".repeat(5_000) }));
    expect(tooLarge.status).to.equal(413);
    expect((await tooLarge.json()).error).to.equal("request_too_large");
  });

  it("mounts health and metrics where the app wants them", async function () {
    const h = await fetch(`${url}/status`);
    expect(h.status).to.equal(200);
    expect(await h.json()).to.deep.include({ status: "ok", chainId: provider.chainId, store: { kind: "sqlite", writable: true } });
    const m = await fetch(`${url}/ops/metrics`);
    expect(m.headers.get("content-type")).to.match(/^text\/plain/);
    expect(await m.text()).to.match(/^channel_paid_requests_total 2$/m); // /weather, and /broken (charged, then released)
  });
});

describe("server: createProvider refuses what cannot work, naming it", function () {
  this.timeout(60_000);
  let env: Env;
  let chain: string;

  before(async function () {
    env = await deployEscrow();
    chain = await rpcUrl();
  });

  const base = () => ({
    RPC_URL: chain,
    ESCROW_ADDRESS: env.escrow.address,
    TOKEN_ADDRESS: env.usdc.address,
    PAYEE_ADDRESS: env.wallets[0].account.address,
    DATABASE_URL: ":memory:",
    LOG_LEVEL: "silent",
  });

  it("invalid variables: one ConfigError listing each by name", async function () {
    const e = await createProvider({ env: { ...base(), MIN_CLOSE_DELAY: "5", PORT: "x", ESCROW_ADDRESS: "0x12" } }).catch((x) => x);
    expect(e).to.be.instanceOf(ConfigError);
    expect((e as ConfigError).problems.join("\n")).to.match(/MIN_CLOSE_DELAY/).and.match(/PORT/).and.match(/ESCROW_ADDRESS/);
  });

  it("invalid fields of an object configuration: the same rules, one ConfigError naming each field", async function () {
    const e = await createProvider({
      config: { rpcUrl: "ftp://x", payee: "0x12" as `0x${string}`, minDeposit: "1.2.3", minCloseDelay: 5, logLevel: "loud" as never },
    }).catch((x) => x);
    expect(e).to.be.instanceOf(ConfigError);
    const problems = (e as ConfigError).problems;
    for (const field of ["rpcUrl", "payee", "minDeposit", "minCloseDelay", "logLevel"]) expect(problems.some((p) => p.startsWith(`config.${field}: `)), field).to.equal(true);
  });

  it("no RPC_URL, no PAYEE_ADDRESS, no contract at the escrow: ProviderStartError saying what to set", async function () {
    const { RPC_URL: _r, PAYEE_ADDRESS: _p, ...rest } = base();
    expect((await createProvider({ env: rest }).catch((x) => x)).message).to.match(/RPC_URL is required/);
    expect(await createProvider({ env: rest, config: { rpcUrl: chain } }).catch((x) => x)).to.be.instanceOf(ProviderStartError).and.have.property("message").match(/PAYEE_ADDRESS is required/);
    const noEscrow = await createProvider({ env: { ...base(), ESCROW_ADDRESS: "0x00000000000000000000000000000000000000e5" }, settlement: false }).catch((x) => x);
    expect(noEscrow).to.be.instanceOf(ProviderStartError).and.have.property("message").match(/no contract at ESCROW_ADDRESS/);
  });

  it("settles in process by default, so it needs the settler key; with the key it starts and reports the scheduler", async function () {
    const e = await createProvider({ env: base() }).catch((x) => x);
    expect(e).to.be.instanceOf(ProviderStartError).and.have.property("message").match(/SETTLER_PRIVATE_KEY is required/);
    const p = await createProvider({ env: { ...base(), SETTLER_PRIVATE_KEY: accountKey(0) } });
    try {
      expect(p.settlement).to.not.equal(null);
    } finally {
      await p.close();
    }
  });

  it("takes the configuration as an object too, and reads escrow and token from DEPLOYMENTS_FILE", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "deployments-"));
    try {
      const file = path.join(dir, "local.json");
      fs.writeFileSync(file, JSON.stringify({ chainId: env.chainId, escrow: env.escrow.address, token: env.usdc.address, blockNumber: 1, deployer: env.escrow.address, deployedAt: "now" }));
      const p = await createProvider({
        config: { rpcUrl: chain, payee: env.wallets[0].account.address, databaseUrl: ":memory:", deploymentsFile: file, logLevel: "silent" },
        settlement: false,
      });
      try {
        expect([p.escrow, p.token].map((a) => a.toLowerCase())).to.deep.equal([env.escrow.address, env.usdc.address].map((a) => a.toLowerCase()));
      } finally {
        await p.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
