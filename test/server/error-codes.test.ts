/**
 * Every payment error code of the spec, each produced by a real request that triggers it, against the real server
 * and chain. Every 402 carries a decodable PAYMENT-REQUIRED whose `error` equals the body's.
 */
import { expect } from "chai";
import hre from "hardhat";
import { keccak256, toHex } from "viem";
import { channelEscrowAbi, EXACT_ERROR_CODES, OPEN_ERROR_CODES, PAYMENT_ERROR_CODES, STREAM_ERROR_CODES, VoucherSigner, type ChannelRequirements } from "@paychan/protocol";
import { DAY, openChannel, sessionKey, USDC, type OpenedChannel } from "../helpers/escrow";
import { call, paymentJson, rawHeader, startTestServer, type Answer, type TestServer } from "../helpers/server";

describe("server: every payment error code is produced by a request that triggers it", () => {
  let srv: TestServer;
  let terms: ChannelRequirements;
  let ch: OpenedChannel;
  const seen = new Set<string>();
  const echo = () => `${srv.url}/v1/echo?msg=x`;

  async function expectCode(a: Answer, code: string) {
    expect(a.code, JSON.stringify(a.body)).to.equal(code);
    expect(a.status).to.equal(402);
    expect(a.required, "PAYMENT-REQUIRED header").to.not.equal(undefined);
    expect(a.required!.error).to.equal(code);
    expect(a.headers.get("content-type")).to.match(/application\/problem\+json/);
    expect(a.body.detail).to.be.a("string");
    expect(JSON.stringify(a.body)).to.not.match(/at .*\.ts:\d+/); // no stack trace
    seen.add(code);
  }

  before(async () => {
    srv = await startTestServer();
    terms = await srv.terms("/v1/echo?msg=x");
    ch = await openChannel(srv.env, { deposit: USDC(5) });
  });
  after(async () => {
    await srv?.close();
  });

  it("payment_required: no PAYMENT-SIGNATURE", async () => {
    const a = await call(echo());
    await expectCode(a, "payment_required");
    expect(a.required!.accepts[0].amount).to.equal(1000n);
    expect(a.required!.accepts[0].extra.channel).to.equal(undefined);
  });

  it("invalid_payload: not base64 JSON, and a malformed voucher field", async () => {
    await expectCode(await call(echo(), { headers: { "payment-signature": "%%%not-base64%%%" } }), "invalid_payload");
    const p = paymentJson(terms, ch.voucher.sign(ch.id, 1000n)) as any;
    p.payload.cumulativeAmount = "-1";
    await expectCode(await call(echo(), { headers: { "payment-signature": rawHeader(p) } }), "invalid_payload");
  });

  it("unsupported_scheme: the echoed offer is of another scheme", async () => {
    const p = paymentJson(terms, ch.voucher.sign(ch.id, 1000n)) as any;
    p.accepted.scheme = "upto"; // ("exact" is a scheme this server speaks too: test/x402/exact-server.test.ts)
    await expectCode(await call(echo(), { headers: { "payment-signature": rawHeader(p) } }), "unsupported_scheme");
  });

  it("network_mismatch: the payment names another chain", async () => {
    const p = paymentJson(terms, ch.voucher.sign(ch.id, 1000n)) as any;
    p.accepted.network = "eip155:8453";
    await expectCode(await call(echo(), { headers: { "payment-signature": rawHeader(p) } }), "network_mismatch");
  });

  it("requirements_mismatch: another payTo, or an amount below the price", async () => {
    const p = paymentJson(terms, ch.voucher.sign(ch.id, 1000n)) as any;
    p.accepted.payTo = "0x000000000000000000000000000000000000dEaD";
    await expectCode(await call(echo(), { headers: { "payment-signature": rawHeader(p) } }), "requirements_mismatch");
    const low = paymentJson({ ...terms, amount: 999n }, ch.voucher.sign(ch.id, 1000n));
    await expectCode(await call(echo(), { headers: { "payment-signature": rawHeader(low) } }), "requirements_mismatch");
  });

  it("unknown_channel: no such channel in the escrow", async () => {
    const id = keccak256(toHex("no such channel"));
    const v = new VoucherSigner(sessionKey().key, srv.domain).sign(id, 1000n);
    await expectCode(await call(echo(), { headers: srv.pay(terms, v) }), "unknown_channel");
  });

  it("invalid_signature: signed by another key (checked before anything else)", async () => {
    const other = new VoucherSigner(sessionKey().key, srv.domain);
    const a = await call(echo(), { headers: srv.pay(terms, other.sign(ch.id, 1000n)) });
    await expectCode(a, "invalid_signature");
    // Even a stale-looking voucher (0) is signature-checked first.
    await expectCode(await call(echo(), { headers: srv.pay(terms, other.sign(ch.id, 0n)) }), "invalid_signature");
  });

  it("invalid_signature for a channel the server never saw: the escrow read with the voucher's signer finds no balance", async () => {
    // The escrow names a channel by (id, signer): the server reads a new channel with the signer it recovers.
    const fresh = await openChannel(srv.env, { deposit: USDC(1) });
    const other = new VoucherSigner(sessionKey().key, srv.domain);
    const a = await call(echo(), { headers: srv.pay(terms, other.sign(fresh.id, 1000n)) });
    await expectCode(a, "invalid_signature");
    expect(a.required!.accepts[0].extra.channel, "no hint from a wrong-signer read").to.equal(undefined);
    expect(await srv.store.getChannel(fresh.id)).to.equal(null);
    // The refusal is not remembered against the channel: its own signer is served at once.
    const ok = await call(echo(), { headers: srv.pay(terms, fresh.voucher.sign(fresh.id, 1000n)) });
    expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
  });

  it("channel_payee_mismatch: the channel pays someone else", async () => {
    const c = await openChannel(srv.env, { payee: srv.env.wallets[7].account.address });
    await expectCode(await call(echo(), { headers: srv.pay(terms, c.voucher.sign(c.id, 1000n)) }), "channel_payee_mismatch");
  });

  it("channel_token_mismatch: the channel holds another token", async () => {
    const other = await hre.viem.deployContract("MockUSDC");
    const c = await openChannel(srv.env, { token: other.address });
    await expectCode(await call(echo(), { headers: srv.pay(terms, c.voucher.sign(c.id, 1000n)) }), "channel_token_mismatch");
  });

  it("close_delay_too_short: the channel's close delay is below the server's minimum", async () => {
    const c = await openChannel(srv.env, { closeDelay: DAY / 2 });
    await expectCode(await call(echo(), { headers: srv.pay(terms, c.voucher.sign(c.id, 1000n)) }), "close_delay_too_short");
  });

  it("deposit_too_small: the deposit is below the server's minimum", async () => {
    const c = await openChannel(srv.env, { deposit: USDC(1) - 1n });
    await expectCode(await call(echo(), { headers: srv.pay(terms, c.voucher.sign(c.id, 1000n)) }), "deposit_too_small");
  });

  it("insufficient_voucher: the voucher does not cover spent + price", async () => {
    await expectCode(await call(echo(), { headers: srv.pay(terms, ch.voucher.sign(ch.id, 999n)) }), "insufficient_voucher");
  });

  it("voucher_reused: the same voucher twice", async () => {
    const v = ch.voucher.sign(ch.id, 1000n);
    expect((await call(echo(), { headers: srv.pay(terms, v) })).status).to.equal(200);
    const a = await call(echo(), { headers: srv.pay(terms, v) });
    await expectCode(a, "voucher_reused");
    // The hint is the server's view: the voucher it holds (the client's own), and what was spent.
    const hint = a.required!.accepts[0].extra.channel!;
    expect(hint).to.include({ channelId: ch.id, accepted: 1000n, spent: 1000n, deposit: USDC(5), status: "open" });
    expect(hint.signature).to.equal(v.signature);
  });

  it("voucher_too_low: at or below the floor (accepted - window)", async () => {
    // window = MAX_IN_FLIGHT (64) x highest route price (0.01) = 0.64 USDC; accept 1 USDC, then try 0.3.
    expect((await call(echo(), { headers: srv.pay(terms, ch.voucher.sign(ch.id, USDC(1))) })).status).to.equal(200);
    await expectCode(await call(echo(), { headers: srv.pay(terms, ch.voucher.sign(ch.id, 300_000n)) }), "voucher_too_low");
  });

  it("exceeds_deposit: a voucher above the deposit (after one chain re-read)", async () => {
    await expectCode(await call(echo(), { headers: srv.pay(terms, ch.voucher.sign(ch.id, USDC(5) + 1n)) }), "exceeds_deposit");
  });

  it("channel_closing: the payer asked for a cooperative close", async () => {
    const c = await openChannel(srv.env);
    const { signCloseRequest } = await import("@paychan/protocol");
    const res = await fetch(`${srv.url}/channel/close`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channelId: c.id, signature: signCloseRequest(srv.domain, c.id, c.signerKey) }),
    });
    expect(res.status).to.equal(202);
    await expectCode(await call(echo(), { headers: srv.pay(terms, c.voucher.sign(c.id, 1000n)) }), "channel_closing");
  });

  it("channel_finalized: the channel was withdrawn", async () => {
    const snap = await hre.network.provider.send("evm_snapshot", []); // keep the time jump to this test
    try {
      const c = await openChannel(srv.env);
      const payer = srv.env.wallets[1];
      await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [c.id, c.signer] });
      await hre.network.provider.send("evm_increaseTime", [DAY + 1]);
      await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "withdraw", args: [c.id, c.signer] });
      await expectCode(await call(echo(), { headers: srv.pay(terms, c.voucher.sign(c.id, 1000n)) }), "channel_finalized");
    } finally {
      await hre.network.provider.send("evm_revert", [snap]);
    }
  });

  it("covers the whole list of the spec's payment error codes (the exact scheme's: test/x402/exact-server.test.ts; gasless opens': test/server/gasless-open.test.ts; streams': test/server/stream.test.ts)", () => {
    const elsewhere: readonly string[] = [...EXACT_ERROR_CODES, ...OPEN_ERROR_CODES, ...STREAM_ERROR_CODES];
    expect([...seen].sort()).to.deep.equal(PAYMENT_ERROR_CODES.filter((c) => !elsewhere.includes(c)).sort());
  });
});
