/**
 * Issue 17, item 2 (follow-up): automatic top-ups stay within `maxDepositPerProvider`. A provider (the real server)
 * prices its route so high that the agent's channel keeps running low, and the SDK keeps topping it up. The provider
 * then gets the payer's channel closed (cooperatively: it stays "closing", its unspent deposit still at stake), so
 * the next call opens a second channel there. Over every top-up, the unspent deposit (`deposit − signed`) summed over
 * the provider's channels that are not finalized never exceeds the cap, on the SDK's records and on chain; a call
 * that would need more is refused `channel_limit` (client/README.md, "Channels and deposits per provider") with
 * nothing signed or sent. Without the per-provider bound in client/src/channels/top-ups.ts this test fails: the
 * second channel is topped up to `maxDeposit`.
 */
import { expect } from "chai";
import type { Express } from "express";
import { channelEscrowAbi, toOnchainChannel } from "@paychan/protocol";
import { ClientError, type ChannelClient, type ChannelRecord, type ClientEvent } from "@paychan/client";
import type { ExpressPaywall } from "@paychan/express";
import { demoRoutes } from "@paychan/demo";
import { startTestServer, type TestServer } from "../helpers/server";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";

const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));
const f = (v: bigint) => `${Number(v) / 1e6} USDC`;
const PAYER = 17;
const CAP = USDC(3); // maxDepositPerProvider, below 2 channels × maxDeposit (2): the bound that binds here

/** Resolves once `cond()` holds (checked every few ms), failing after `ms`. */
async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What the SDK holds unspent at the provider: `deposit − signed` over its channels that are not finalized. */
function unspentAt(channels: ChannelRecord[]): bigint {
  let sum = 0n;
  for (const c of channels) {
    if (c.status !== "open" && c.status !== "opening" && c.status !== "closing") continue;
    const deposit = c.status === "opening" ? c.openAmount : c.deposit;
    if (deposit > c.signed) sum += deposit - c.signed;
  }
  return sum;
}

describe("client: automatic top-ups stay within maxDepositPerProvider (issue 17)", function () {
  this.timeout(120_000);
  let srv: TestServer;
  let snap: string;

  before(async function () {
    snap = await snapshot();
    srv = await startTestServer({
      routes: (app: Express, paywall: ExpressPaywall) => {
        demoRoutes(app, paywall);
        app.get("/v1/pricey", paywall.charge({ price: "0.25" }), (_req, res) => {
          res.json({ ok: true });
        });
        app.get("/v1/big", paywall.charge({ price: "1.5" }), (_req, res) => {
          res.json({ ok: true });
        });
      },
    });
    await mintUsdc(srv.token, chainClients(PAYER).address, USDC(100));
  });

  after(async function () {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  it("a channel that keeps running low is topped up, never above the cap over the provider's channels; then channel_limit", async function () {
    const events: ClientEvent[] = [];
    /** The unspent total at the provider each time a top-up landed. */
    const atTopUps: bigint[] = [];
    let agent: ChannelClient;
    ({ agent } = testClient(PAYER, {
      policy: { deposit: "1", topUpAmount: "1" },
      limits: { maxPrice: "2", maxDeposit: "2", maxDepositPerProvider: "3" },
      onEvent: (e) => {
        events.push(e);
        if (e.type === "topped_up") atTopUps.push(unspentAt(agent.channels()));
      },
    }));
    const toppedUp = () => events.filter((e) => e.type === "topped_up").length;
    const failed = () => events.filter((e) => e.type === "top_up_failed");
    /** `n` calls, each followed by the background top-up it started (one at a time, so none is skipped). */
    const calls = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const seen = events.length;
        const res = await agent.fetch(`${srv.url}/v1/pricey?i=${i}`);
        expect(res.status, await res.clone().text()).to.equal(200);
        atMost(unspentAt(agent.channels()), CAP, "after a call");
        await until(() => events.slice(seen).some((e) => e.type === "topped_up" || e.type === "top_up_failed"), `the top-up after call ${i}`);
      }
    };
    const onchainUnspent = async () => {
      let sum = 0n;
      for (const c of agent.channels()) {
        const raw = await srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [c.id, c.signer] });
        const o = toOnchainChannel(c.id, raw);
        if (o && !o.finalized && o.deposit > c.signed) sum += o.deposit - c.signed;
      }
      return sum;
    };

    // One channel: opened with 1, topped up in the background as it runs low, up to maxDeposit (2) unspent.
    await calls(4);
    const [a] = agent.channels();
    expect(a.deposit - a.signed).to.equal(USDC(2));
    expect(toppedUp()).to.equal(4);

    // The provider closes it (cooperative close requested by the SDK): A is closing, its 2 USDC unspent still at stake.
    expect((await agent.closeChannel(a.id)).mode).to.equal("cooperative");
    expect(agent.channels().find((c) => c.id === a.id)!.status).to.equal("closing");

    // The next calls open B (1 USDC: 2 + 1 = the cap); B keeps running low and is topped up by what the cap leaves.
    const before = toppedUp();
    await calls(8);
    const b = agent.channels().find((c) => c.id !== a.id)!;
    expect(b, "a second channel").to.not.equal(undefined);
    expect(toppedUp() - before, "B was topped up after every call").to.equal(8);
    expect(b.deposit - b.signed).to.equal(CAP - USDC(2));
    expect(unspentAt(agent.channels())).to.equal(CAP);
    for (const u of atTopUps) atMost(u, CAP, "when a top-up landed");
    atMost(await onchainUnspent(), CAP, "on chain");
    expect(failed(), "no background top-up was refused so far").to.deep.equal([]);

    // A call B cannot pay (1.5 > its 1 unspent) needs a top-up the cap does not leave room for: channel_limit, typed,
    // with nothing signed and no transaction.
    const signed = agent.stats.vouchersSigned;
    const nonce = await srv.env.publicClient.getTransactionCount({ address: chainClients(PAYER).address });
    let refused: unknown;
    try {
      await agent.fetch(`${srv.url}/v1/big`);
    } catch (e) {
      refused = e;
    }
    expect(refused, String(refused)).to.be.instanceOf(ClientError);
    expect((refused as ClientError).code, (refused as Error).message).to.equal("channel_limit");
    expect((refused as Error).message).to.match(/maxDepositPerProvider/);
    expect(agent.stats.vouchersSigned).to.equal(signed);
    expect(await srv.env.publicClient.getTransactionCount({ address: chainClients(PAYER).address })).to.equal(nonce);
    expect(agent.channels()).to.have.length(2);
    atMost(await onchainUnspent(), CAP, "on chain, at the end");
    console.log(
      `      top-ups ${toppedUp()}, highest unspent at the provider ${f(atTopUps.reduce((m, u) => (u > m ? u : m), 0n))} (cap ${f(CAP)}), ` +
        `on chain ${f(await onchainUnspent())}, channels ${agent.channels().length}`,
    );
  });
});

/** Asserts `a ≤ b` (amounts). */
function atMost(a: bigint, b: bigint, what: string): void {
  expect(a <= b, `${what}: ${f(a)} > ${f(b)}`).to.equal(true);
}
