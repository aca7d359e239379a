/**
 * Refunds the escrow keeps owed to the payer (the token refused the transfer: payer blacklisted, token paused) on the
 * real escrow and MockUSDC (in-process chain): `withdraw` says the refund was deferred, `owed` shows it, `collect`
 * delivers it (to the payer or another address), and collect's refusals are typed. Also a cooperative close through
 * the real server whose refund the token refuses.
 */
import { expect } from "chai";
import hre from "hardhat";
import { getAddress, zeroAddress, type Address } from "viem";
import { channelEscrowAbi } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { ClientError, type ChannelClient, type ChannelPaymentInfo } from "@paychan/client";
import { collectTx } from "../../client/src/transactions";
import { deployEscrow, type Env } from "../helpers/escrow";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { isolateEachTest, revertTo, snapshot } from "../helpers/chain";
import { startTestServer, type TestServer } from "../helpers/server";

const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));

async function expectCode(p: Promise<unknown>, code: string): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(ClientError);
    expect((e as ClientError).code, (e as Error).message).to.equal(code);
    expect((e as ClientError).shortMessage).to.not.match(/\n\s+at /); // a message, not a stack trace
    return e as ClientError;
  }
  expect.fail(`expected ${code}`);
}

/** Polls `cond` until it holds (a condition, not a fixed sleep); fails after `timeoutMs`. */
async function until(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("client: refunds the escrow keeps owed (owed, collect)", function () {
  this.timeout(120_000);
  let env: Env;
  let payee: Address;
  let snap: string;

  before(async function () {
    snap = await snapshot();
    env = await deployEscrow();
    payee = env.wallets[0].account.address;
    for (const i of [11, 12]) await mintUsdc(env.usdc.address, chainClients(i).address, USDC(100));
  });

  after(async function () {
    if (snap) await revertTo(snap);
  });

  isolateEachTest();

  const balance = (a: Address) => env.publicClient.readContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] });
  const nonce = (a: Address) => env.publicClient.getTransactionCount({ address: a });
  /** MockUSDC's owner (the deployer, account #0) sets the blacklist and the pause. */
  const tokenOwner = async (functionName: "blacklist" | "setPaused", args: readonly [Address, boolean] | readonly [boolean]) => {
    const hash = await env.wallets[0].writeContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName, args } as never);
    await env.publicClient.waitForTransactionReceipt({ hash });
  };

  /** A client with a 1 USDC channel whose close delay has passed: ready to withdraw. */
  async function closedChannel(index: number): Promise<{ agent: ChannelClient; address: Address; id: `0x${string}` }> {
    const { agent, address } = testClient(index, { limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [env.escrow.address] } });
    const ch = await agent.openChannel({ payee, amount: "1", escrow: env.escrow.address, token: env.usdc.address, closeDelay: 3600 });
    await agent.closeChannel(ch.id, { mode: "on-chain" });
    await hre.network.provider.send("evm_increaseTime", [3600]);
    await hre.network.provider.send("evm_mine", []);
    return { agent, address, id: ch.id };
  }

  it("a blacklisted payer's withdraw says the refund is deferred; owed shows it; collect to another address delivers it", async function () {
    const { agent, address, id } = await closedChannel(11);
    await tokenOwner("blacklist", [address, true]);
    const before = await balance(address);

    const w = await agent.withdraw(id);
    expect(w.refund).to.equal(USDC(1));
    expect(w.deferred).to.equal(true);
    expect(await balance(address)).to.equal(before); // owed, not received
    expect(await agent.owed()).to.equal(USDC(1)); // default token and escrow: the client's own
    expect(await agent.owed(env.usdc.address, { escrow: env.escrow.address })).to.equal(USDC(1));
    const [s] = (await agent.status()).filter((x) => x.channelId === id);
    expect(s.status).to.equal("finalized");

    const to = chainClients(12).address;
    const toBefore = await balance(to);
    const c = await agent.collect({ to });
    expect(c).to.include({ escrow: getAddress(env.escrow.address), token: getAddress(env.usdc.address), to, amount: USDC(1) });
    expect(c.txHash).to.match(/^0x[0-9a-f]{64}$/);
    expect((await balance(to)) - toBefore).to.equal(USDC(1));
    expect(await agent.owed()).to.equal(0n);
    const onchain = await env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "owed", args: [env.usdc.address, address] });
    expect(onchain).to.equal(0n);

    // Collected once: nothing is owed any more, refused before any transaction.
    const n = await nonce(address);
    await expectCode(agent.collect({ to }), "nothing_owed");
    expect(await nonce(address)).to.equal(n);
  });

  it("a refund deferred while the token is paused is collected to the payer by default once it runs again", async function () {
    const { agent, address, id } = await closedChannel(12);
    await tokenOwner("setPaused", [true]);
    const w = await agent.withdraw(id);
    expect(w).to.include({ refund: USDC(1), deferred: true });
    await expectCode(agent.collect(), "chain_failure"); // still paused: the token refuses collect's transfer too
    expect(await agent.owed()).to.equal(USDC(1));
    await tokenOwner("setPaused", [false]);
    const before = await balance(address);
    const c = await agent.collect();
    expect(c).to.include({ to: address, amount: USDC(1) });
    expect((await balance(address)) - before).to.equal(USDC(1));
  });

  it("a withdraw the token accepts is not deferred, and leaves nothing owed", async function () {
    const { agent, address, id } = await closedChannel(11);
    const before = await balance(address);
    expect(await agent.withdraw(id)).to.include({ refund: USDC(1), deferred: false });
    expect((await balance(address)) - before).to.equal(USDC(1));
    expect(await agent.owed()).to.equal(0n);
  });

  it("collect with nothing owed, or to the zero address or the escrow, is a typed error and sends no transaction", async function () {
    const { agent, address } = testClient(11, { limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [env.escrow.address], assets: [env.usdc.address] } });
    const n = await nonce(address);
    const e = await expectCode(agent.collect(), "nothing_owed");
    expect(e.shortMessage).to.contain(address).and.contain(getAddress(env.usdc.address));
    await expectCode(agent.collect({ to: zeroAddress }), "invalid_recipient");
    await expectCode(agent.collect({ to: env.escrow.address }), "invalid_recipient");
    await expectCode(agent.collect({ to: "0x1234" as Address }), "invalid_argument");
    expect(await nonce(address)).to.equal(n);
  });

  it("maps the contract's own refusals (NothingOwed, InvalidRecipient) to the same codes", async function () {
    const { publicClient, walletClient } = chainClients(11);
    const ctx = { publicClient, walletClient, account: walletClient.account! };
    await expectCode(collectTx(ctx, env.escrow.address, env.usdc.address, chainClients(12).address), "nothing_owed");
    await expectCode(collectTx(ctx, env.escrow.address, env.usdc.address, env.escrow.address), "invalid_recipient");
  });

  it("without a token or escrow it can tell, owed and collect ask for one (invalid_argument)", async function () {
    const { agent } = testClient(12); // no allow-lists, no channels
    await expectCode(agent.owed(), "invalid_argument");
    await expectCode(agent.collect(), "invalid_argument");
    expect(await agent.owed(env.usdc.address, { escrow: env.escrow.address })).to.equal(0n);
    const trusted = testClient(12, { limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [env.escrow.address] } }).agent;
    await expectCode(trusted.owed(env.usdc.address, { escrow: env.usdc.address }), "invalid_argument"); // not a trusted escrow
  });
});

describe("client: a cooperative close whose refund the token refuses (real server and settlement)", function () {
  this.timeout(120_000);
  let srv: TestServer;
  let snap: string;

  before(async function () {
    snap = await snapshot();
    // Payee (and so the local settler key) is account #3: account #0, the token's owner, stays free for the blacklist.
    srv = await startTestServer({ payeeIndex: 3, settlement: { config: { interval: 1, threshold: "0.000001", closeGrace: 0 }, pollInterval: 50 } });
    await mintUsdc(srv.token, chainClients(13).address, USDC(100));
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  it("the provider closes; the refund stays owed to the blacklisted payer; owed shows it and collect delivers it elsewhere", async function () {
    const { agent, address } = testClient(13, { limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [srv.escrow] } });
    const res = await agent.fetch(`${srv.url}/v1/echo?msg=owed`);
    expect(res.status, await res.clone().text()).to.equal(200);
    const paid = agent.paymentOf(res) as ChannelPaymentInfo;
    const [ch] = agent.channels();
    const hash = await srv.env.wallets[0].writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "blacklist", args: [address, true] });
    await srv.env.publicClient.waitForTransactionReceipt({ hash });

    expect((await agent.closeChannel(ch.id)).mode).to.equal("cooperative");
    await until(async () => (await agent.owed()) > 0n, 30_000, "the provider's close");
    const refund = ch.deposit - paid.cumulativeAmount;
    expect(await agent.owed()).to.equal(refund);
    const [s] = (await agent.status()).filter((x) => x.channelId === ch.id);
    expect(s.status).to.equal("finalized");

    const to = chainClients(12).address;
    const before = (await srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [to] })) as bigint;
    expect(await agent.collect({ to })).to.include({ amount: refund, to });
    const after = (await srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [to] })) as bigint;
    expect(after - before).to.equal(refund);
    expect(await agent.owed()).to.equal(0n);
  });
});
