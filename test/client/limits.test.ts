/**
 * The client refuses terms outside its owner's limits before signing or depositing anything.
 * The 402s come from a tiny responder that replays hand-made protocol headers (the real server never asks for
 * more than its configuration, so these cases need a hostile provider).
 */
import { expect } from "chai";
import { getAddress, type Address } from "viem";
import { mockUsdcAbi } from "@paychan/demo";
import { ClientError, type SpendingLimits } from "@paychan/client";
import { deployEscrow, type Env } from "../helpers/escrow";
import { chainClients, reply402, startResponder, terms, testClient } from "../helpers/client";

async function expectClientError(p: Promise<unknown>, code: string): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(ClientError);
    expect((e as ClientError).code).to.equal(code);
    expect((e as ClientError).shortMessage).to.be.a("string").and.not.equal("");
    return e as ClientError;
  }
  expect.fail(`expected a ${code} error`);
}

describe("client: spending limits and trusted terms", function () {
  let env: Env;
  let payee: Address;
  const PAYER = 3;

  before(async function () {
    env = await deployEscrow();
    payee = getAddress(env.wallets[0].account.address);
  });

  async function balanceOfPayer(): Promise<bigint> {
    return env.publicClient.readContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "balanceOf", args: [chainClients(PAYER).address] });
  }

  /** Runs one refused call and checks nothing was signed, sent with a voucher, deposited or stored. */
  async function expectRefused(t: ReturnType<typeof terms>, limits: SpendingLimits, code: string) {
    const responder = await startResponder(() => reply402(t));
    const { agent, store } = testClient(PAYER, { limits });
    const before = await balanceOfPayer();
    try {
      await expectClientError(agent.fetch(`${responder.url}/v1/echo?msg=hi`), code);
      expect(agent.stats.vouchersSigned).to.equal(0);
      expect(agent.stats.channelsOpened).to.equal(0);
      expect(responder.payments()).to.have.length(0);
      expect(responder.seen).to.have.length(1);
      expect(await balanceOfPayer()).to.equal(before);
      await agent.flush();
      const saved = await store.load();
      expect(Object.keys(saved?.channels ?? {})).to.have.length(0);
    } finally {
      await responder.close();
    }
  }

  const base = () => ({ escrow: env.escrow.address, token: env.usdc.address, payee, price: 1_000n });

  it("refuses a price above maxPrice without signing", async function () {
    await expectRefused(terms({ ...base(), price: 10_001n }), { maxPrice: "0.01", maxDeposit: "5" }, "spending_limit");
  });

  it("accepts limits in atomic units too (bigint)", async function () {
    await expectRefused(terms({ ...base(), price: 1_001n }), { maxPrice: 1_000n, maxDeposit: 5_000_000n }, "spending_limit");
  });

  it("refuses an escrow outside the allow-list without signing", async function () {
    const other = getAddress("0x00000000000000000000000000000000000e5c40");
    await expectRefused(terms({ ...base(), escrow: other }), { maxPrice: "0.01", maxDeposit: "5", escrows: [env.escrow.address] }, "untrusted_terms");
  });

  it("refuses a payee outside the allow-list without signing", async function () {
    await expectRefused(terms(base()), { maxPrice: "0.01", maxDeposit: "5", payees: [getAddress(env.wallets[9].account.address)] }, "untrusted_terms");
  });

  it("refuses an asset outside the allow-list without signing", async function () {
    await expectRefused(terms(base()), { maxPrice: "0.01", maxDeposit: "5", assets: [getAddress(env.escrow.address)] }, "untrusted_terms");
  });

  it("refuses a network other than the client's chain", async function () {
    await expectRefused(terms({ ...base(), chainId: 1 }), { maxPrice: "0.01", maxDeposit: "5" }, "untrusted_terms");
  });

  it("refuses a provider whose minimum deposit is above maxDeposit", async function () {
    await expectRefused(terms({ ...base(), minDeposit: 6_000_000n }), { maxPrice: "0.01", maxDeposit: "5" }, "spending_limit");
  });

  it("refuses a provider whose minimum close delay is above maxCloseDelay", async function () {
    await expectRefused(terms({ ...base(), minCloseDelay: 7 * 86_400 }), { maxPrice: "0.01", maxDeposit: "5", maxCloseDelay: 86_400 }, "spending_limit");
  });

  it("refuses a malformed PAYMENT-REQUIRED as untrusted terms", async function () {
    const responder = await startResponder(() => ({ status: 402, headers: { "PAYMENT-REQUIRED": "e30=" } }));
    const { agent } = testClient(PAYER);
    try {
      await expectClientError(agent.fetch(`${responder.url}/x`), "untrusted_terms");
      expect(agent.stats.vouchersSigned).to.equal(0);
    } finally {
      await responder.close();
    }
  });

  it("hands a 402 of another scheme (or without PAYMENT-REQUIRED) back to the caller unchanged", async function () {
    const responder = await startResponder(() => ({ status: 402, body: '{"error":"pay elsewhere"}' }));
    const { agent } = testClient(PAYER);
    try {
      const res = await agent.fetch(`${responder.url}/x`);
      expect(res.status).to.equal(402);
      expect(await res.json()).to.deep.equal({ error: "pay elsewhere" });
      expect(agent.stats.vouchersSigned).to.equal(0);
    } finally {
      await responder.close();
    }
  });

  it("rejects malformed limits at construction", function () {
    expect(() => testClient(PAYER, { limits: { maxPrice: "-1", maxDeposit: "5" } })).to.throw(ClientError);
    expect(() => testClient(PAYER, { limits: { maxPrice: "0.01", maxDeposit: "5", escrows: ["0x1234"] } })).to.throw(ClientError);
    // The per-provider caps (issue 17).
    for (const bad of [
      { maxChannelsPerProvider: 0 },
      { maxChannelsPerProvider: 1.5 },
      { maxConsecutiveRefusals: -1 },
      { maxCloseDelay: -1 },
      { maxDepositPerProvider: "ten" },
      { maxUnservedPerChannel: "-0.1" },
    ]) {
      expect(() => testClient(PAYER, { limits: { maxPrice: "0.01", maxDeposit: "5", ...bad } }), JSON.stringify(bad)).to.throw(ClientError);
    }
  });
});
