/**
 * Operations: /healthz, /metrics, configuration validation, and logs that never carry signatures or payment headers.
 */
import { expect } from "chai";
import { Writable } from "node:stream";
import { signCloseRequest } from "@paychan/protocol";
import { startProviderServer, type ProviderServer } from "@paychan/demo";
import { ConfigError, defaultConfig, loadConfig } from "@paychan/server";
import { createLogger } from "@paychan/server";
import { deployEscrow, openChannel, sessionKey, type Env } from "../helpers/escrow";
import { call, paymentHeaders, rpcUrl, startTestServer, tempDatabaseUrl, type TestServer } from "../helpers/server";
import { VoucherSigner } from "@paychan/protocol";

describe("server: operations", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => srv?.close());

  it("GET /healthz reports chain reachability, cursor lag and a writable store", async () => {
    await srv.sync();
    const h = await call(`${srv.url}/healthz`);
    expect(h.status).to.equal(200);
    expect(h.body.status).to.equal("ok");
    expect(h.body.chain.reachable).to.equal(true);
    expect(h.body.chain.lag).to.be.a("number").and.to.be.at.most(1);
    expect(h.body.store).to.deep.equal({ kind: "sqlite", writable: true });
  });

  it("GET /metrics exposes paid requests, 402s by code, verification time, amounts and exposure", async () => {
    const ch = await openChannel(srv.env);
    const terms = await srv.terms("/v1/echo");
    expect((await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) })).status).to.equal(200);
    expect((await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) })).code).to.equal("voucher_reused");
    const res = await fetch(`${srv.url}/metrics`);
    const text = await res.text();
    expect(res.headers.get("content-type")).to.match(/text\/plain/);
    expect(text).to.match(/^channel_paid_requests_total 1$/m);
    expect(text).to.match(/^channel_payment_refusals_total\{code="voucher_reused",status="402"\} 1$/m);
    expect(text).to.match(/^channel_payment_refusals_total\{code="payment_required",status="402"\} 1$/m);
    expect(text).to.match(/^channel_voucher_verification_seconds_count 2$/m);
    expect(text).to.match(/^channel_accepted_atomic 1000$/m);
    expect(text).to.match(/^channel_spent_atomic 1000$/m);
    expect(text).to.match(/^channel_settled_atomic 0$/m);
    expect(text).to.match(/^channel_unsettled_exposure_atomic 1000$/m);
    expect(text).to.match(/^channel_chain_cursor_lag_blocks \d+$/m);
  });
});

describe("server: configuration", () => {
  it("has working defaults", () => {
    const c = loadConfig({});
    expect(c).to.deep.include({ port: 4021, host: "127.0.0.1", minCloseDelay: 86_400, minDeposit: "1", maxInFlight: 64, sqliteSynchronous: "FULL" });
  });

  it("reports every invalid variable at once, by name", () => {
    try {
      loadConfig({
        RPC_URL: "ftp://x",
        ESCROW_ADDRESS: "0x123",
        PORT: "99999",
        MIN_CLOSE_DELAY: "60",
        MIN_DEPOSIT: "-1",
        MAX_IN_FLIGHT: "zero",
        SQLITE_SYNCHRONOUS: "OFF",
        LOG_LEVEL: "loud",
        DATABASE_URL: "mysql://db",
      });
      expect.fail("accepted");
    } catch (e) {
      expect(e).to.be.instanceOf(ConfigError);
      const msg = (e as Error).message;
      for (const name of ["RPC_URL", "ESCROW_ADDRESS", "PORT", "MIN_CLOSE_DELAY", "MIN_DEPOSIT", "MAX_IN_FLIGHT", "SQLITE_SYNCHRONOUS", "LOG_LEVEL", "DATABASE_URL", "PAYEE_ADDRESS"]) {
        expect(msg, name).to.contain(name);
      }
    }
  });

  it("accepts a full valid environment", () => {
    const c = loadConfig({
      RPC_URL: "http://127.0.0.1:8545",
      ESCROW_ADDRESS: "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512",
      TOKEN_ADDRESS: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
      PAYEE_ADDRESS: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
      DATABASE_URL: "sqlite:.data/x.sqlite",
      PORT: "0",
      MIN_CLOSE_DELAY: "3600",
      MIN_DEPOSIT: "0.5",
      MAX_IN_FLIGHT: "8",
      SQLITE_SYNCHRONOUS: "normal",
    });
    expect(c).to.deep.include({ port: 0, minCloseDelay: 3600, minDeposit: "0.5", maxInFlight: 8, sqliteSynchronous: "NORMAL" });
    expect(c.escrow).to.equal("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
  });
});

describe("server: logs", () => {
  let env: Env;
  let server: ProviderServer;
  const lines: string[] = [];
  before(async () => {
    env = await deployEscrow();
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    server = await startProviderServer({
      config: defaultConfig({ rpcUrl: await rpcUrl(), escrow: env.escrow.address, token: env.usdc.address, payee: env.wallets[0].account.address, databaseUrl: tempDatabaseUrl(), port: 0, logLevel: "trace" }),
      logger: createLogger("trace", sink),
      routes: (app, paywall) => {
        app.get("/boom", paywall.charge({ price: "0.001" }), () => {
          throw new Error("boom");
        });
      },
    });
  });
  after(async () => server?.close());

  it("never contain voucher or close-request signatures, even at trace level", async () => {
    const ch = await openChannel(env);
    const res = await fetch(`${server.url}/boom`);
    const terms = (await import("@paychan/protocol")).decodePaymentRequired(res.headers.get("payment-required")).accepts[0];
    const voucher = ch.voucher.sign(ch.id, 1000n);
    const bad = new VoucherSigner(sessionKey().key, env.domain).sign(ch.id, 2000n);
    await call(`${server.url}/boom`, { headers: paymentHeaders(terms, voucher) });
    await call(`${server.url}/boom`, { headers: paymentHeaders(terms, bad) });
    const closeSig = signCloseRequest(env.domain, ch.id, ch.signerKey);
    await call(`${server.url}/channel/close`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ channelId: ch.id, signature: closeSig }) });
    await server.follower.sync();
    const all = lines.join("");
    expect(all.length).to.be.above(0);
    expect(all).to.contain("handler error");
    for (const secret of [voucher.signature, bad.signature, closeSig, ch.signerKey]) {
      expect(all.toLowerCase()).to.not.contain(secret.slice(2, 40).toLowerCase());
    }
    expect(all.toLowerCase()).to.not.contain("payment-signature");
  });
});
