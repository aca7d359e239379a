/**
 * Issue 17, item 9: what a stranger (no key of the channel's) can learn or make the provider pay, against the real
 * server and chain:
 * - (a) the `extra.channel` hint (accepted, spent, deposit, latest signature) goes only to requests signed by the
 *   channel's signer;
 * - (b) `POST /channel/close` does nothing on chain for a channel below the server's minimums with nothing owed
 *   (SQLite and PostgreSQL);
 * - (c) without PUBLIC_URL, a Host header naming a host that is not configured is refused (421), not reflected;
 * - (d) `/metrics` names no channel unless METRICS_PER_CHANNEL.
 */
import { expect } from "chai";
import http from "node:http";
import { CLOSE_PATH, decodePaymentRequired, HEADER_PAYMENT_REQUIRED, signCloseRequest, VoucherSigner } from "@paychan/protocol";
import { openChannel, sessionKey, USDC } from "../helpers/escrow";
import { describePostgres, newTestDatabase } from "../helpers/postgres";
import { call, startTestServer, type TestServer } from "../helpers/server";

/** GET with an explicit Host header (fetch does not let a caller set it). */
function getWithHost(port: number, path: string, host: string): Promise<{ status: number; body: any; required?: ReturnType<typeof decodePaymentRequired> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "GET", headers: { host }, agent: false }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        const h = res.headers[HEADER_PAYMENT_REQUIRED.toLowerCase()];
        resolve({ status: res.statusCode!, body: JSON.parse(text), required: typeof h === "string" ? decodePaymentRequired(h) : undefined });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("server: strangers learn nothing and cost nothing (issue 17, item 9)", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ settlement: true });
  });
  after(async () => srv?.close());

  it("(a) a stranger's voucher on a stored channel gets no hint; the signer's stale voucher gets it", async () => {
    const ch = await openChannel(srv.env);
    const terms = await srv.terms("/v1/echo");
    const paid = await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) });
    expect(paid.status).to.equal(200);

    const stranger = new VoucherSigner(sessionKey().key, srv.domain);
    for (const v of [0n, 1000n, 5000n]) {
      const a = await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, stranger.sign(ch.id, v)) });
      expect([a.status, a.code]).to.deep.equal([402, "invalid_signature"]);
      expect(a.required!.accepts[0].extra.channel, `no hint for a stranger's voucher of ${v}`).to.equal(undefined);
    }
    // The channel's signer, with a stale (already used) voucher: the hint lets it resynchronise.
    const stale = await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) });
    expect(stale.status).to.equal(402);
    expect(stale.required!.accepts[0].extra.channel).to.deep.include({ channelId: ch.id, accepted: 1000n, spent: 1000n });
  });

  it("(c) without PUBLIC_URL, an unconfigured Host is refused 421 host_not_allowed; loopback names are reflected", async () => {
    const evil = await getWithHost(srv.server.port, "/v1/echo", "evil.example:4021");
    expect([evil.status, evil.body.error]).to.deep.equal([421, "host_not_allowed"]);
    expect(evil.required).to.equal(undefined);
    const local = await getWithHost(srv.server.port, "/v1/echo?x=1", `localhost:${srv.server.port}`);
    expect(local.status).to.equal(402);
    expect(local.required!.resource.url).to.equal(`http://localhost:${srv.server.port}/v1/echo`);
    // Unpaid endpoints are not affected.
    expect((await getWithHost(srv.server.port, "/healthz", "evil.example")).status).to.equal(200);
  });

  it("(c) ALLOWED_HOSTS names more hosts; PUBLIC_URL ignores the Host header", async () => {
    const other = await startTestServer({ env: srv.env, config: { allowedHosts: ["api.example.com"] } });
    try {
      const ok = await getWithHost(other.server.port, "/v1/echo", "API.example.com");
      expect(ok.required!.resource.url).to.equal("http://api.example.com/v1/echo");
      expect((await getWithHost(other.server.port, "/v1/echo", "evil.example")).status).to.equal(421);
    } finally {
      await other.close();
    }
    const pub = await startTestServer({ env: srv.env, config: { publicUrl: "https://pay.example.com/" } });
    try {
      const a = await getWithHost(pub.server.port, "/v1/echo", "evil.example");
      expect(a.required!.resource.url).to.equal("https://pay.example.com/v1/echo");
    } finally {
      await pub.close();
    }
  });

  it("(d) /metrics names no channel by default; METRICS_PER_CHANNEL=true labels the settlement gauges by channel", async () => {
    const ch = await openChannel(srv.env);
    const terms = await srv.terms("/v1/echo");
    expect((await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) })).status).to.equal(200);
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    expect(text).to.match(/^channel_settlement_unsettled_exposure_total_atomic [1-9]/m);
    expect(text).not.to.match(/0x[0-9a-f]{64}/i);

    const per = await startTestServer({ env: srv.env, databaseUrl: undefined, settlement: true, config: { metricsPerChannel: true } });
    try {
      const ch2 = await openChannel(srv.env);
      const t2 = await per.terms("/v1/echo");
      expect((await call(`${per.url}/v1/echo`, { headers: per.pay(t2, ch2.voucher.sign(ch2.id, 1000n)) })).status).to.equal(200);
      const text2 = await (await fetch(`${per.url}/metrics`)).text();
      expect(text2).to.contain(`channel_settlement_unsettled_exposure_channel_atomic{channel="${ch2.id}"} 1000`);
    } finally {
      await per.close();
    }
  });
});

/** (b) on one store. */
function closeSuite(databaseUrl: () => Promise<string | undefined>) {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ databaseUrl: await databaseUrl() });
  });
  after(async () => srv?.close());
  const close = (body: unknown) => call(`${srv.url}${CLOSE_PATH}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  it("(b) a close request for a channel below the deposit minimum, nothing owed: 400 deposit_too_small, nothing recorded", async () => {
    const ch = await openChannel(srv.env, { deposit: 1n, closeDelay: 900 });
    const a = await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) });
    expect([a.status, a.code]).to.deep.equal([400, "deposit_too_small"]);
    expect(a.body.detail).to.contain("withdraw");
    expect(await srv.store.getChannel(ch.id)).to.equal(null);
  });

  it("(b) … below the close-delay minimum: 400 close_delay_too_short, nothing recorded; a channel meeting both is still closed", async () => {
    const ch = await openChannel(srv.env, { deposit: USDC(5), closeDelay: 900 });
    const a = await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) });
    expect([a.status, a.code]).to.deep.equal([400, "close_delay_too_short"]);
    expect(await srv.store.getChannel(ch.id)).to.equal(null);
    const good = await openChannel(srv.env);
    expect((await close({ channelId: good.id, signature: signCloseRequest(srv.domain, good.id, good.signerKey) })).status).to.equal(202);
    expect((await srv.store.getChannel(good.id))!.payerCloseRequestedAt).to.be.greaterThan(0);
  });
}

describe("server: close requests the provider would pay for nothing (issue 17, item 9b), SQLite", () => closeSuite(async () => undefined));
describePostgres("server: close requests the provider would pay for nothing (issue 17, item 9b), PostgreSQL", () => closeSuite(() => newTestDatabase("close9b")));
