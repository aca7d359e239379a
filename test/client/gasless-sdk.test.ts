/**
 * The agent side of gasless opens (docs/protocol.md § 5.9, § 7.6), against the real escrow and token on Hardhat's
 * in-process chain. The provider here is a test responder: it decodes what the SDK sends and, as a provider would,
 * submits the payer's `payload.open` through the real `ChannelEscrow.openWithAuthorization`, so the SDK's payload is
 * proven accepted by the contract. (The end-to-end tests with our real server are in test/client/gasless-e2e.test.ts.)
 */
import { expect } from "chai";
import hre from "hardhat";
import { createPublicClient, createWalletClient, custom, type Address, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import {
  HEADER_PAYMENT_RESPONSE,
  authorizationNonce,
  channelEscrowAbi,
  encodePaymentResponse,
  openChannelId,
  type ChannelRequirements,
  type PaymentPayload,
} from "@paychan/protocol";
import { createChannelClient, isClientError, MemoryStore, type ChannelClient, type ClientEvent } from "@paychan/client";
import { deployEscrow, USDC, type Env } from "../helpers/escrow";
import { mintUsdc, reply402, startResponder, terms as makeTerms, testClient, type Reply } from "../helpers/client";

const PRICE = 1_000n;

/** A client for a fresh key (0 ETH), with `usdc` minted to it. */
async function freshClient(env: Env, opts: { usdc?: bigint; gaslessOpen?: "auto" | "always" | "never"; maxOpenFee?: string; store?: MemoryStore; key?: Hex } = {}) {
  const key = opts.key ?? generatePrivateKey();
  const account = privateKeyToAccount(key);
  const transport = custom(hre.network.provider);
  const publicClient = createPublicClient({ chain: hardhat, transport, pollingInterval: 20 }) as PublicClient;
  const walletClient = createWalletClient({ chain: hardhat, transport, account });
  if (opts.usdc) await mintUsdc(env.usdc.address, account.address, opts.usdc);
  const events: ClientEvent[] = [];
  const store = opts.store ?? new MemoryStore();
  const agent = createChannelClient({
    account,
    publicClient,
    walletClient,
    store,
    limits: { maxPrice: "0.01", maxDeposit: "5", maxOpenFee: opts.maxOpenFee, escrows: [env.escrow.address], assets: [env.usdc.address] },
    policy: { deposit: "2", gaslessOpen: opts.gaslessOpen },
    discoverFromBlock: false,
    onEvent: (e) => events.push(e),
  });
  return { agent, address: account.address, key, events, store, publicClient };
}

/** What a provider does with a payment carrying `open`: submits openWithAuthorization (from Hardhat account #7). */
async function submitOpen(env: Env, p: PaymentPayload): Promise<Hex> {
  const o = p.payload.open!;
  const wallet = env.wallets[7];
  const hash = await wallet.writeContract({
    address: env.escrow.address,
    abi: channelEscrowAbi,
    functionName: "openWithAuthorization",
    args: [o.payer, o.payee, o.token, o.signer, o.amount, o.closeDelay, o.salt, o.validAfter, o.validBefore, o.signature],
  });
  const r = await env.publicClient.waitForTransactionReceipt({ hash });
  expect(r.status).to.equal("success");
  return hash;
}

/** A served answer with a receipt for `p`, the provider charging `charge` on a channel of `deposit`, `spent` in all. */
function served(p: PaymentPayload, charge: bigint, spent: bigint, deposit: bigint): Reply {
  const receipt = encodePaymentResponse({
    success: true,
    transaction: "",
    network: "eip155:31337",
    payer: p.payload.open?.payer ?? "0x0000000000000000000000000000000000000001",
    amount: charge,
    extra: { channelId: p.payload.channelId, accepted: p.payload.cumulativeAmount, spent, deposit, remaining: deposit - spent },
  });
  return { status: 200, headers: { [HEADER_PAYMENT_RESPONSE]: receipt }, body: '{"ok":true}' };
}

describe("client: gasless opens (the SDK's payload against the real escrow)", function () {
  this.timeout(120_000);
  let env: Env;
  let base: ChannelRequirements;
  const payee = "0x00000000000000000000000000000000000a11ce" as Address;

  before(async () => {
    env = await deployEscrow();
    base = makeTerms({ escrow: env.escrow.address, token: env.usdc.address, payee, price: PRICE });
  });

  const withOpen = (fee: bigint): ChannelRequirements => ({ ...base, extra: { ...base.extra, open: { method: "eip3009", fee } } });

  it("a key holding only MockUSDC signs an open the escrow accepts, pays price + fee first, then ordinary vouchers; ETH stays 0", async () => {
    const fee = 500n;
    const t = withOpen(fee);
    const { agent, address, events, publicClient } = await freshClient(env, { usdc: USDC(3) });
    let spent = 0n;
    let openTx: Hex | undefined;
    const srv = await startResponder(async (req) => {
      if (!req.payment) return reply402(t);
      const p = req.payment;
      if (p.payload.open) {
        openTx = await submitOpen(env, p);
        spent += PRICE + fee;
      } else spent += PRICE;
      return served(p, p.payload.open ? PRICE + fee : PRICE, spent, USDC(2));
    });
    try {
      const r1 = await agent.fetch(`${srv.url}/v1/echo`);
      expect(r1.status).to.equal(200);
      const first = srv.payments()[0];
      const o = first.payload.open!;
      expect(o.payer).to.equal(address);
      expect(o.signer).to.equal(agent.signerAddress);
      expect(o.amount).to.equal(USDC(2));
      expect(o.closeDelay).to.equal(86_400);
      expect(openChannelId(o, 31337, env.escrow.address)).to.equal(first.payload.channelId);
      expect(first.payload.cumulativeAmount).to.equal(PRICE + fee);
      // The token's authorization state: used, under the nonce bound to this channel and close delay.
      const used = await publicClient.readContract({
        address: env.usdc.address,
        abi: [{ type: "function", name: "authorizationState", stateMutability: "view", inputs: [{ type: "address" }, { type: "bytes32" }], outputs: [{ type: "bool" }] }],
        functionName: "authorizationState",
        args: [address, authorizationNonce(first.payload.channelId, o.closeDelay)],
      });
      expect(used).to.equal(true);
      const info = agent.paymentOf(r1)!;
      expect(info.scheme ?? "channel").to.equal("channel");
      expect((info as { open?: { fee: bigint; openedBy: string } }).open).to.deep.include({ fee, openedBy: "provider" });
      expect(events.some((e) => e.type === "gasless_open_signing" && e.fee === fee && e.reason === "no_gas")).to.equal(true);

      for (let i = 0; i < 5; i++) expect((await agent.fetch(`${srv.url}/v1/echo`)).status).to.equal(200);
      const later = srv.payments().slice(1);
      expect(later.every((p) => p.payload.open === undefined)).to.equal(true);
      expect(later.map((p) => p.payload.cumulativeAmount)).to.deep.equal([2n, 3n, 4n, 5n, 6n].map((k) => fee + k * PRICE));
      expect(srv.seen.length).to.equal(7); // one 402, then one request per call
      expect(await publicClient.getBalance({ address })).to.equal(0n);
      expect(agent.stats.gaslessOpens).to.equal(1);
      expect(agent.stats.openFees[env.usdc.address.toLowerCase()]).to.equal(fee);

      const [st] = await agent.status();
      expect(st.openedBy).to.equal("provider");
      expect(st.openFee).to.equal(fee);
      expect(st.status).to.equal("open");
      expect(st.deposit).to.equal(USDC(2));
      expect(st.openTx).to.equal(openTx);
    } finally {
      await srv.close();
    }
  });

  it("the open is durable before it is sent; a 503 leaves it opening, and the next call resends the same open", async () => {
    const t = withOpen(0n);
    const store = new MemoryStore();
    const { agent } = await freshClient(env, { usdc: USDC(3), store });
    let n = 0;
    let spent = 0n;
    const srv = await startResponder(async (req) => {
      if (!req.payment) return reply402(t);
      n++;
      if (n === 1) {
        // The state saved before the request: the channel, "opening", with the signed open.
        const saved = Object.values((await store.load())!.channels);
        expect(saved).to.have.length(1);
        expect(saved[0].status).to.equal("opening");
        expect(saved[0].openAuthorization?.signature).to.equal(req.payment.payload.open!.signature);
        return { status: 503, body: '{"error":"upstream_unavailable"}' };
      }
      if (req.payment.payload.open) await submitOpen(env, req.payment);
      spent += PRICE;
      return served(req.payment, PRICE, spent, USDC(2));
    });
    try {
      expect((await agent.fetch(`${srv.url}/v1/echo`)).status).to.equal(503);
      expect(agent.channels()[0].status).to.equal("opening");
      expect((await agent.fetch(`${srv.url}/v1/echo`)).status).to.equal(200);
      const [a, b] = srv.payments();
      expect(b.payload.open).to.deep.equal(a.payload.open); // same salt, same signature
      expect(b.payload.channelId).to.equal(a.payload.channelId);
      expect(agent.channels()[0].status).to.equal("open");
    } finally {
      await srv.close();
    }
  });

  it("a new process with the same store finds the channel opened on chain and pays on it without an open", async () => {
    const t = withOpen(0n);
    const store = new MemoryStore();
    const key = generatePrivateKey();
    const first = await freshClient(env, { usdc: USDC(3), store, key });
    let spent = 0n;
    // The provider opens the channel, then the answer is lost (503).
    const srv = await startResponder(async (req) => {
      if (!req.payment) return reply402(t);
      if (req.payment.payload.open) {
        await submitOpen(env, req.payment);
        return { status: 503, body: "{}" };
      }
      spent += PRICE;
      return served(req.payment, PRICE, spent, USDC(2));
    });
    try {
      expect((await first.agent.fetch(`${srv.url}/v1/echo`)).status).to.equal(503);
      await first.agent.flush();
      const second = await freshClient(env, { store, key });
      expect((await second.agent.fetch(`${srv.url}/v1/echo`)).status).to.equal(200);
      const ps = srv.payments();
      expect(ps[1].payload.open).to.equal(undefined);
      expect(ps[1].payload.channelId).to.equal(ps[0].payload.channelId);
      expect(second.agent.channels()[0].status).to.equal("open");
    } finally {
      await srv.close();
    }
  });

  it("gaslessOpen never without gas: insufficient_gas, nothing signed", async () => {
    const { agent } = await freshClient(env, { usdc: USDC(3), gaslessOpen: "never" });
    const srv = await startResponder(() => reply402(withOpen(0n)));
    try {
      const e = await agent.fetch(`${srv.url}/v1/echo`).catch((x) => x);
      expect(isClientError(e, "insufficient_gas"), String(e)).to.equal(true);
      expect(srv.payments()).to.have.length(0);
    } finally {
      await srv.close();
    }
  });

  it("auto without gas and no extra.open: insufficient_gas; always and no extra.open: gasless_unavailable", async () => {
    const srv = await startResponder(() => reply402(base));
    try {
      const a = await freshClient(env, { usdc: USDC(3) });
      const e1 = await a.agent.fetch(`${srv.url}/v1/echo`).catch((x) => x);
      expect(isClientError(e1, "insufficient_gas"), String(e1)).to.equal(true);
      const b = await freshClient(env, { usdc: USDC(3), gaslessOpen: "always" });
      const e2 = await b.agent.fetch(`${srv.url}/v1/echo`).catch((x) => x);
      expect(isClientError(e2, "gasless_unavailable"), String(e2)).to.equal(true);
      expect(srv.payments()).to.have.length(0);
    } finally {
      await srv.close();
    }
  });

  it("auto with gas: an ordinary open by the payer (no payload.open)", async () => {
    const { agent } = testClient(9, { limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [env.escrow.address], assets: [env.usdc.address] }, policy: { deposit: "2" }, discoverFromBlock: false });
    await mintUsdc(env.usdc.address, agent.payerAddress, USDC(3));
    const t = withOpen(0n);
    let spent = 0n;
    const srv = await startResponder((req) => {
      if (!req.payment) return reply402(t);
      spent += PRICE;
      return served(req.payment, PRICE, spent, USDC(2));
    });
    try {
      expect((await agent.fetch(`${srv.url}/v1/echo`)).status).to.equal(200);
      expect(srv.payments()[0].payload.open).to.equal(undefined);
      expect(agent.channels()[0].openedBy).to.equal(undefined);
      expect(agent.stats.gaslessOpens).to.equal(0);
    } finally {
      await srv.close();
    }
  });

  it("an open fee above maxOpenFee is refused before anything is signed", async () => {
    const { agent, events } = await freshClient(env, { usdc: USDC(3), maxOpenFee: "0.001" });
    const srv = await startResponder(() => reply402(withOpen(1_001n)));
    try {
      const e = await agent.fetch(`${srv.url}/v1/echo`).catch((x) => x);
      expect(isClientError(e, "spending_limit"), String(e)).to.equal(true);
      expect(String(e.shortMessage)).to.match(/open fee 1001 is above maxOpenFee 1000/);
      expect(srv.payments()).to.have.length(0);
      expect(events.some((x) => x.type === "gasless_open_signing")).to.equal(false);
      expect(agent.channels()).to.have.length(0);
    } finally {
      await srv.close();
    }
  });

  it("a refused open (open_failed) is a typed open_refused with the provider's code; the signed open is kept", async () => {
    const t = withOpen(0n);
    const { agent } = await freshClient(env, { usdc: USDC(3) });
    const srv = await startResponder((req) => (req.payment ? reply402(t, "open_failed") : reply402(t)));
    try {
      const e = await agent.fetch(`${srv.url}/v1/echo`).catch((x) => x);
      expect(isClientError(e, "open_refused"), String(e)).to.equal(true);
      expect(e.serverCode).to.equal("open_failed");
      expect(srv.payments()).to.have.length(1);
      expect(agent.channels()[0].status).to.equal("opening");
    } finally {
      await srv.close();
    }
  });

  it("open_unsupported without gas: a typed error, no second open signed", async () => {
    const { agent } = await freshClient(env, { usdc: USDC(3) });
    const srv = await startResponder((req) => (req.payment ? reply402(base, "open_unsupported") : reply402(withOpen(0n))));
    try {
      const e = await agent.fetch(`${srv.url}/v1/echo`).catch((x) => x);
      expect(isClientError(e, "insufficient_gas"), String(e)).to.equal(true);
      expect(srv.payments()).to.have.length(1);
    } finally {
      await srv.close();
    }
  });

  it("a payer without the tokens signs nothing (insufficient_funds)", async () => {
    const { agent } = await freshClient(env, {});
    const srv = await startResponder(() => reply402(withOpen(0n)));
    try {
      const e = await agent.fetch(`${srv.url}/v1/echo`).catch((x) => x);
      expect(isClientError(e, "insufficient_funds"), String(e)).to.equal(true);
      expect(srv.payments()).to.have.length(0);
      expect(agent.channels()).to.have.length(0);
    } finally {
      await srv.close();
    }
  });

  it("concurrent first calls: one carries the open, the others wait and pay ordinary vouchers", async () => {
    const t = withOpen(0n);
    const { agent }: { agent: ChannelClient } = await freshClient(env, { usdc: USDC(3) });
    let spent = 0n;
    // Learn the terms first (one 402), so the 8 calls below all pay on their first attempt.
    const srv = await startResponder(async (req) => {
      if (!req.payment) return reply402(t);
      if (req.payment.payload.open) await submitOpen(env, req.payment);
      spent += PRICE;
      return served(req.payment, PRICE, spent, USDC(2));
    });
    try {
      const res = await Promise.all(Array.from({ length: 8 }, () => agent.fetch(`${srv.url}/v1/echo`)));
      const bodies = await Promise.all(res.map((r) => r.text()));
      expect(res.map((r) => r.status), bodies.join("\n")).to.deep.equal(Array(8).fill(200));
      const ps = srv.payments();
      expect(ps.filter((p) => p.payload.open)).to.have.length(1);
      expect(new Set(ps.map((p) => p.payload.cumulativeAmount)).size).to.equal(8);
    } finally {
      await srv.close();
    }
  });
});
