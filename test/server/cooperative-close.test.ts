/**
 * POST /channel/close (protocol/close.ts): the signer asks the provider to settle and close now.
 */
import { expect } from "chai";
import { keccak256, toHex, type Hex } from "viem";
import { CLOSE_PATH, signCloseRequest } from "@paychan/protocol";
import { openChannel, sessionKey } from "../helpers/escrow";
import { call, startTestServer, type TestServer } from "../helpers/server";
import { accountKey } from "../helpers/chain";

describe("server: cooperative close endpoint", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => srv?.close());

  const close = (body: unknown, raw = false) =>
    call(`${srv.url}${CLOSE_PATH}`, { method: "POST", headers: { "content-type": "application/json" }, body: raw ? (body as string) : JSON.stringify(body) });

  it("accepts the signer's request with 202, records it, and stops accepting vouchers for the channel", async () => {
    const ch = await openChannel(srv.env);
    const terms = await srv.terms("/v1/echo");
    expect((await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) })).status).to.equal(200);
    const a = await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) });
    expect(a.status).to.equal(202);
    expect(a.body).to.deep.equal({ channelId: ch.id, status: "closing" });
    const stored = (await srv.store.getChannel(ch.id))!;
    expect(stored.payerCloseRequestedAt).to.be.greaterThan(0);
    expect(stored.spent).to.equal(1000n); // what settlement will claim
    const refused = await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 2000n)) });
    expect(refused.code).to.equal("channel_closing");
    // idempotent
    expect((await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) })).status).to.equal(202);
  });

  it("records a close request for a channel that was never paid (settlement closes it for the refund)", async () => {
    const ch = await openChannel(srv.env);
    expect((await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) })).status).to.equal(202);
    expect((await srv.store.getChannel(ch.id))!).to.deep.include({ accepted: 0n, spent: 0n, acceptedSignature: null });
  });

  it("refuses a request signed by someone else (403 invalid_signature) and writes nothing", async () => {
    const ch = await openChannel(srv.env);
    const a = await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, sessionKey().key) });
    expect(a.status).to.equal(403);
    expect(a.body.error).to.equal("invalid_signature");
    expect(await srv.store.getChannel(ch.id)).to.equal(null);
  });

  it("for a channel it never saw, needs the channel's signer: the payer's own signature is refused (403) and writes nothing", async () => {
    // The escrow names a channel by (id, signer); the server cannot read this channel with the payer's address.
    const ch = await openChannel(srv.env, { payerIndex: 1 });
    const a = await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, accountKey(1)) });
    expect(a.status).to.equal(403);
    expect(a.body.error).to.equal("invalid_signature");
    expect(await srv.store.getChannel(ch.id)).to.equal(null);
    expect((await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) })).status).to.equal(202);
  });

  it("answers malformed bodies with 400 invalid_payload and unknown channels with 404", async () => {
    for (const body of [{}, { channelId: "0x12", signature: "0x" }, [], "null"]) {
      const a = await close(body);
      expect(a.status, JSON.stringify(body)).to.equal(400);
      expect(a.body.error).to.equal("invalid_payload");
    }
    const bad = await close("{not json", true);
    expect(bad.status).to.equal(400);
    expect(bad.body.error).to.equal("invalid_payload");
    const id = keccak256(toHex("nobody")) as Hex;
    const unknown = await close({ channelId: id, signature: signCloseRequest(srv.domain, id, sessionKey().key) });
    expect(unknown.status).to.equal(404);
    expect(unknown.body.error).to.equal("unknown_channel");
  });

  it("refuses channels of another payee (403)", async () => {
    const ch = await openChannel(srv.env, { payee: srv.env.wallets[8].account.address });
    const a = await close({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) });
    expect(a.status).to.equal(403);
    expect(a.body.error).to.equal("channel_payee_mismatch");
  });
});
