/**
 * The client's channels on the real escrow (in-process chain): opening with a permit or approve, the session key as
 * signer, top-ups, close and withdraw, deposit policy, and the amounts it signs under concurrency. Provider answers
 * come from a tiny responder replaying hand-made headers (the integration suite uses the real server).
 */
import { expect } from "chai";
import hre from "hardhat";
import { getAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAddress } from "viem/accounts";
import { channelEscrowAbi, VoucherSigner, VoucherVerifier, type ChannelHint } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { ClientError, type ClientEvent } from "@paychan/client";
import { deployEscrow, type Env } from "../helpers/escrow";
import { chainClients, mintUsdc, reply402, startResponder, terms, testClient } from "../helpers/client";
import { revertTo, snapshot } from "../helpers/chain";

const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));

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

describe("client: channels on chain", function () {
  let env: Env;
  let payee: Address;
  let snap: string;

  before(async function () {
    snap = await snapshot();
    env = await deployEscrow();
    payee = getAddress(env.wallets[0].account.address);
    for (const i of [4, 5, 6, 7, 8]) await mintUsdc(env.usdc.address, chainClients(i).address, USDC(100));
  });

  after(async function () {
    if (snap) await revertTo(snap); // leave the chain's clock as other suites expect it
  });

  const onchain = (id: Hex, signer: Address) => env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [id, signer] });
  const base = (price = 1_000n) => terms({ escrow: env.escrow.address, token: env.usdc.address, payee, price });

  describe("opening", function () {
    it("opens with one openWithPermit transaction when the token supports EIP-2612, signer = session key", async function () {
      const events: ClientEvent[] = [];
      const { agent, address } = testClient(4, { onEvent: (e) => events.push(e) });
      const nonceBefore = await env.publicClient.getTransactionCount({ address });
      const ch = await agent.openChannel({ payee, amount: "2.5", escrow: env.escrow.address, token: env.usdc.address });
      expect(await env.publicClient.getTransactionCount({ address })).to.equal(nonceBefore + 1);
      expect(events.find((e) => e.type === "channel_opened")).to.include({ method: "permit" });
      const c = await onchain(ch.id, ch.signer);
      expect(c.payer).to.equal(address);
      expect(c.payee).to.equal(payee);
      expect(c.signer).to.equal(agent.signerAddress);
      expect(c.signer).to.not.equal(address);
      expect(c.deposit).to.equal(USDC(2.5));
      expect(c.closeDelay).to.equal(86_400);
    });

    it("opens with approve + open when permits are off", async function () {
      const events: ClientEvent[] = [];
      const { agent } = testClient(4, { policy: { permit: "never" }, onEvent: (e) => events.push(e) });
      const ch = await agent.openChannel({ payee, amount: "1", escrow: env.escrow.address, token: env.usdc.address, closeDelay: 3600 });
      expect(events.find((e) => e.type === "channel_opened")).to.include({ method: "approve" });
      expect((await onchain(ch.id, ch.signer)).closeDelay).to.equal(3600);
    });

    it("refuses to open with more than the payer holds (insufficient_funds), without a transaction", async function () {
      const { agent, address } = testClient(9);
      const nonce = await env.publicClient.getTransactionCount({ address });
      await expectCode(agent.openChannel({ payee, amount: "1", escrow: env.escrow.address, token: env.usdc.address }), "insufficient_funds");
      expect(await env.publicClient.getTransactionCount({ address })).to.equal(nonce);
      expect(agent.channels()).to.have.length(0);
    });

    it("on a 402, opens one channel for many concurrent first calls, sized by the policy and the provider's minimums", async function () {
      const t = { ...base(2_000n), extra: { ...base().extra, minDeposit: USDC(1.5), minCloseDelay: 2 * 86_400 } };
      const responder = await startResponder((r) => (r.payment ? { status: 200, body: "{}" } : reply402(t)));
      const { agent } = testClient(5, { limits: { maxPrice: "0.01", maxDeposit: "5" } });
      try {
        const rs = await Promise.all(Array.from({ length: 8 }, () => agent.fetch(`${responder.url}/v1/echo`)));
        expect(rs.map((r) => r.status)).to.deep.equal(Array(8).fill(200));
        expect(agent.stats.channelsOpened).to.equal(1);
        const [ch] = agent.channels();
        const c = await onchain(ch.id, ch.signer);
        // min(maxDeposit, 1000 × price) = 2, above minDeposit 1.5
        expect(c.deposit).to.equal(USDC(2));
        expect(c.closeDelay).to.equal(2 * 86_400);
      } finally {
        await responder.close();
      }
    });
  });

  describe("paying", function () {
    it("pays on the first attempt once it knows a route: one HTTP request per call", async function () {
      const responder = await startResponder((r) => (r.payment ? { status: 200 } : reply402(base())));
      const { agent } = testClient(6);
      try {
        await agent.fetch(`${responder.url}/v1/echo?msg=0`);
        const before = responder.seen.length;
        for (let i = 1; i <= 20; i++) {
          const res = await agent.fetch(`${responder.url}/v1/echo?msg=${i}`);
          expect(agent.paymentOf(res)?.requests).to.equal(1);
        }
        expect(responder.seen.length - before).to.equal(20);
        const amounts = responder.payments().map((p) => p.payload.cumulativeAmount);
        expect(amounts).to.deep.equal(Array.from({ length: 21 }, (_, i) => BigInt(i + 1) * 1_000n));
      } finally {
        await responder.close();
      }
    });

    it("k concurrent calls on one channel sign base + 1..k × price, all distinct, none waiting for another", async function () {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let arrived = 0;
      const responder = await startResponder(async (r) => {
        if (!r.payment) return reply402(base());
        if (r.payment.payload.cumulativeAmount > 1_000n) {
          arrived++;
          if (arrived === 16) release();
          await gate; // held until all 16 are in flight: no call waits for another
        }
        return { status: 200 };
      });
      const { agent } = testClient(6);
      try {
        await agent.fetch(`${responder.url}/v1/echo`); // learn the route, open, pay 1000
        const rs = await Promise.all(Array.from({ length: 16 }, () => agent.fetch(`${responder.url}/v1/echo`)));
        expect(rs.every((r) => r.status === 200)).to.equal(true);
        const amounts = responder.payments().slice(1).map((p) => p.payload.cumulativeAmount).sort((a, b) => (a < b ? -1 : 1));
        expect(amounts).to.deep.equal(Array.from({ length: 16 }, (_, k) => 1_000n + BigInt(k + 1) * 1_000n));
        const verifier = new VoucherVerifier(env.domain);
        for (const p of responder.payments()) expect(verifier.verify(p.payload, agent.signerAddress)).to.equal(true);
      } finally {
        await responder.close();
      }
    });

    it("tops up in the background when the remaining deposit falls below the threshold; never signs above the deposit", async function () {
      const price = USDC(0.01);
      const responder = await startResponder((r) => (r.payment ? { status: 200 } : reply402(base(price))));
      const { agent } = testClient(7, { policy: { deposit: "1", topUpAmount: "1" }, limits: { maxPrice: "0.01", maxDeposit: "2" } });
      try {
        for (let i = 0; i < 150; i++) expect((await agent.fetch(`${responder.url}/v1/echo`)).status).to.equal(200);
        expect(agent.stats.topUps).to.be.greaterThan(0);
        expect(agent.stats.channelsOpened).to.equal(1);
        const [ch] = agent.channels();
        const c = await onchain(ch.id, ch.signer);
        expect(c.deposit >= USDC(1.5), `deposit ${c.deposit}`).to.equal(true);
        const top = responder.payments().reduce((m, p) => (p.payload.cumulativeAmount > m ? p.payload.cumulativeAmount : m), 0n);
        expect(top).to.equal(150n * price);
        expect(top <= c.deposit).to.equal(true);
      } finally {
        await responder.close();
      }
    });

    it("with automatic top-up off, stops at the deposit with insufficient_funds and never signs beyond it", async function () {
      const price = USDC(0.25);
      const t = { ...base(price), extra: { ...base().extra, minDeposit: USDC(1) } };
      const responder = await startResponder((r) => (r.payment ? { status: 200 } : reply402(t)));
      const { agent } = testClient(7, { policy: { deposit: "1", autoTopUp: false }, limits: { maxPrice: "1", maxDeposit: "5" } });
      try {
        for (let i = 0; i < 4; i++) expect((await agent.fetch(`${responder.url}/v1/echo`)).status).to.equal(200);
        await expectCode(agent.fetch(`${responder.url}/v1/echo`), "insufficient_funds");
        expect(responder.payments().map((p) => p.payload.cumulativeAmount)).to.deep.equal([1n, 2n, 3n, 4n].map((k) => k * price));
      } finally {
        await responder.close();
      }
    });

    it("stops at maxSpend, the lifetime budget per token", async function () {
      const responder = await startResponder((r) => (r.payment ? { status: 200 } : reply402(base(USDC(0.01)))));
      const { agent } = testClient(8, { limits: { maxPrice: "0.01", maxDeposit: "5", maxSpend: "0.05" } });
      try {
        for (let i = 0; i < 5; i++) await agent.fetch(`${responder.url}/v1/echo`);
        await expectCode(agent.fetch(`${responder.url}/v1/echo`), "spending_limit");
        expect(responder.payments()).to.have.length(5);
      } finally {
        await responder.close();
      }
    });
  });

  describe("the provider's channel hint", function () {
    /** A client with an open channel and a known route, and a responder whose answer to paid calls the test sets. */
    async function setup(onPaid: (p: NonNullable<Parameters<Parameters<typeof startResponder>[0]>[0]["payment"]>, n: number) => ReturnType<typeof reply402> | { status: number }) {
      let paid = 0;
      const responder = await startResponder((r) => (r.payment ? onPaid(r.payment, paid++) : reply402(base())));
      const { agent, store } = testClient(8, { policy: { deposit: "1" } });
      const key = (await (async () => (await agent.ready(), store.loadSessionKey()))())!.privateKey;
      return { responder, agent, key };
    }

    const hint = (p: Partial<ChannelHint> & { channelId: Hex }): ChannelHint => ({ deposit: USDC(1), settled: 0n, accepted: 0n, spent: 0n, status: "open", ...p });

    it("rejects a hint whose signature is not the session key's, and signs nothing because of it", async function () {
      const stranger = new VoucherSigner(generatePrivateKey(), env.domain);
      const { responder, agent } = await setup((p) => {
        const forged = stranger.sign(p.payload.channelId, 900_000n);
        return reply402(base(), "voucher_reused", hint({ channelId: p.payload.channelId, accepted: 900_000n, spent: 900_000n, signature: forged.signature }));
      });
      try {
        const e = await expectCode(agent.fetch(`${responder.url}/v1/echo`), "untrusted_hint");
        expect(e.message).to.match(/not this client's session key/);
        expect(agent.stats.vouchersSigned).to.equal(1);
        expect(responder.payments()).to.have.length(1);
        expect(agent.channels()[0].signed).to.equal(1_000n);
      } finally {
        await responder.close();
      }
    });

    it("rejects a hint claiming an accepted amount without a signature", async function () {
      const { responder, agent } = await setup((p) => reply402(base(), "insufficient_voucher", hint({ channelId: p.payload.channelId, accepted: 500_000n, spent: 500_000n })));
      try {
        await expectCode(agent.fetch(`${responder.url}/v1/echo`), "untrusted_hint");
        expect(agent.stats.vouchersSigned).to.equal(1);
      } finally {
        await responder.close();
      }
    });

    it("rejects a hint whose spent is above its (genuine) accepted amount", async function () {
      const { responder, agent } = await setup((p) =>
        reply402(base(), "insufficient_voucher", hint({ channelId: p.payload.channelId, accepted: p.payload.cumulativeAmount, signature: p.payload.signature, spent: USDC(5) })),
      );
      try {
        await expectCode(agent.fetch(`${responder.url}/v1/echo`), "untrusted_hint");
        expect(agent.stats.vouchersSigned).to.equal(1);
      } finally {
        await responder.close();
      }
    });

    it("rejects a hint with a genuine-key signature above the on-chain deposit (it would make it sign beyond the deposit)", async function () {
      let key: Hex | undefined;
      const { responder, agent, key: k } = await setup((p) => {
        const above = new VoucherSigner(key!, env.domain).sign(p.payload.channelId, USDC(1) + 1_000n);
        return reply402(base(), "voucher_too_low", hint({ channelId: p.payload.channelId, accepted: above.cumulativeAmount, spent: above.cumulativeAmount, signature: above.signature, deposit: USDC(10) }));
      });
      key = k;
      try {
        await expectCode(agent.fetch(`${responder.url}/v1/echo`), "untrusted_hint");
        expect(agent.stats.vouchersSigned).to.equal(1);
        expect(responder.payments().every((p) => p.payload.cumulativeAmount <= USDC(1))).to.equal(true);
      } finally {
        await responder.close();
      }
    });

    it("resynchronises from a genuine hint and retries once with accepted + price", async function () {
      let key: Hex | undefined;
      const { responder, agent, key: k } = await setup((p, n) => {
        if (n > 0) return { status: 200 };
        const v = new VoucherSigner(key!, env.domain).sign(p.payload.channelId, 400_000n);
        return reply402(base(), "voucher_reused", hint({ channelId: p.payload.channelId, accepted: 400_000n, spent: 399_000n, signature: v.signature }));
      });
      key = k;
      try {
        const res = await agent.fetch(`${responder.url}/v1/echo`);
        expect(res.status).to.equal(200);
        expect(responder.payments().map((p) => p.payload.cumulativeAmount)).to.deep.equal([1_000n, 401_000n]);
        expect(agent.paymentOf(res)?.requests).to.equal(3); // probe, stale voucher, fresh voucher
        expect(agent.stats.retries).to.equal(1);
      } finally {
        await responder.close();
      }
    });

    it("gives up after one retry when the provider keeps refusing (payment_refused with the server's code)", async function () {
      const { responder, agent } = await setup(() => reply402(base(), "voucher_reused"));
      try {
        const e = await expectCode(agent.fetch(`${responder.url}/v1/echo`), "payment_refused");
        expect(e.serverCode).to.equal("voucher_reused");
        expect(responder.payments()).to.have.length(2);
      } finally {
        await responder.close();
      }
    });
  });

  describe("closing", function () {
    it("requestClose, then withdraw after the close delay refunds the unspent deposit", async function () {
      const { agent, address } = testClient(5);
      const ch = await agent.openChannel({ payee, amount: "1", escrow: env.escrow.address, token: env.usdc.address, closeDelay: 3600 });
      await expectCode(agent.withdraw(ch.id), "close_not_requested");
      const { closesAt } = await agent.closeChannel(ch.id); // no provider URL known: on chain
      expect((await onchain(ch.id, ch.signer)).closeRequestedAt > 0n).to.equal(true);
      await expectCode(agent.withdraw(ch.id), "close_pending");
      await hre.network.provider.send("evm_increaseTime", [3600]);
      await hre.network.provider.send("evm_mine", []);
      const before = await env.publicClient.readContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "balanceOf", args: [address] });
      const { refund } = await agent.withdraw(ch.id);
      expect(refund).to.equal(USDC(1));
      const after = await env.publicClient.readContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "balanceOf", args: [address] });
      expect(after - before).to.equal(USDC(1));
      expect(closesAt).to.be.greaterThan(0);
      const [s] = (await agent.status()).filter((x) => x.channelId === ch.id);
      expect(s.status).to.equal("finalized");
      await expectCode(agent.withdraw(ch.id), "channel_closed");
    });

    it("a top-up cancels a pending close and the channel is usable again", async function () {
      const { agent } = testClient(5);
      const ch = await agent.openChannel({ payee, amount: "1", escrow: env.escrow.address, token: env.usdc.address });
      await agent.requestClose(ch.id);
      await agent.topUp(ch.id, "0.5");
      const c = await onchain(ch.id, ch.signer);
      expect(c.deposit).to.equal(USDC(1.5));
      expect(c.closeRequestedAt).to.equal(0n);
      const [s] = (await agent.status()).filter((x) => x.channelId === ch.id);
      expect(s.status).to.equal("open");
      expect(s.remaining).to.equal(USDC(1.5));
    });

    it("unknown channel ids are a typed error", async function () {
      const { agent } = testClient(5);
      await expectCode(agent.topUp(`0x${"ab".repeat(32)}`, "1"), "unknown_channel");
    });

    it("a session key that is not stored is generated once and kept", async function () {
      const { agent, store } = testClient(5);
      await agent.ready();
      const saved = await store.loadSessionKey();
      expect(privateKeyToAddress(saved!.privateKey)).to.equal(agent.signerAddress);
      const { agent: again } = testClient(5, { store });
      await again.ready();
      expect(again.signerAddress).to.equal(agent.signerAddress);
    });
  });
});
