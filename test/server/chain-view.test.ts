/**
 * The chain view over a real chain: pending closes against the safety margin (chain time), RPC outages (503, never
 * free), and restarts (accepted state, floor and event cursor survive; events missed while down are applied).
 */
import { expect } from "chai";
import hre from "hardhat";
import { channelEscrowAbi, type ChannelRequirements } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { DAY, deployEscrow, openChannel, USDC, type Env } from "../helpers/escrow";
import { call, rpcUrl, startRpcProxy, startTestServer, tempDatabaseUrl, type TestServer } from "../helpers/server";

const PRICE = 1000n;

async function withSnapshot<T>(f: () => Promise<T>): Promise<T> {
  const id = await hre.network.provider.send("evm_snapshot", []);
  try {
    return await f();
  } finally {
    await hre.network.provider.send("evm_revert", [id]);
  }
}

async function topUp(env: Env, ch: { id: `0x${string}`; signer: `0x${string}` }, payer: `0x${string}`, amount: bigint) {
  const w = env.wallets[1];
  await w.writeContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "mint", args: [payer, amount] });
  await w.writeContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "approve", args: [env.escrow.address, amount] });
  await w.writeContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "topUp", args: [ch.id, ch.signer, amount] });
}

describe("server: chain view", () => {
  let env: Env;
  before(async () => {
    env = await deployEscrow();
  });

  describe("a close request on chain", () => {
    let srv: TestServer;
    let terms: ChannelRequirements;
    before(async () => {
      srv = await startTestServer({ env, config: { closeSafetyMargin: 3600 } });
      terms = await srv.terms("/v1/echo");
    });
    after(async () => srv?.close());

    it("keeps accepting while settlement can land, refuses within the safety margin (chain time), and a top-up reopens", async () =>
      withSnapshot(async () => {
        const ch = await openChannel(env, { closeDelay: DAY });
        const pay = (v: bigint) => call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, v)) });
        expect((await pay(PRICE)).status).to.equal(200);
        await env.wallets[1].writeContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
        await srv.sync();
        const stored = (await srv.store.getChannel(ch.id))!;
        expect(stored.closesAt).to.be.greaterThan(0);
        // 24 h left, margin 1 h: settlement can land.
        expect((await pay(2n * PRICE)).status).to.equal(200);
        // Chain time moves to 30 min before the deadline (the local clock does not).
        await hre.network.provider.send("evm_increaseTime", [DAY - 1800]);
        await hre.network.provider.send("evm_mine", []);
        await srv.sync();
        const refused = await pay(3n * PRICE);
        expect(refused.code).to.equal("channel_closing");
        expect(refused.required!.accepts[0].extra.channel!.status).to.equal("closing");
        // A top-up cancels the pending close.
        await topUp(env, ch, ch.payer, USDC(1));
        await srv.sync();
        expect((await pay(3n * PRICE)).status).to.equal(200);
      }));

    it("a server whose margin exceeds the close delay refuses as soon as it sees the close request", async () => {
      const strict = await startTestServer({ env, config: { closeSafetyMargin: DAY + 60 } });
      try {
        const ch = await openChannel(env, { closeDelay: DAY });
        const pay = (v: bigint) => call(`${strict.url}/v1/echo`, { headers: strict.pay(terms, ch.voucher.sign(ch.id, v)) });
        expect((await pay(PRICE)).status).to.equal(200);
        await env.wallets[1].writeContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
        await strict.sync();
        expect((await pay(2n * PRICE)).code).to.equal("channel_closing");
      } finally {
        await strict.close();
      }
    });
  });

  describe("reorganisations", () => {
    for (const [name, extraBlocks] of [["the head falls below the cursor", 0], ["the cursor block is replaced by another", 12]] as const) {
      it(`rolls chain state back when ${name}`, async () => {
        const srv = await startTestServer({ env });
        try {
          const terms = await srv.terms("/v1/echo");
          const ch = await openChannel(env, { deposit: USDC(2) });
          expect((await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, PRICE)) })).status).to.equal(200);
          await srv.sync();
          const snap = await hre.network.provider.send("evm_snapshot", []);
          await topUp(env, ch, ch.payer, USDC(3));
          for (let i = 0; i < 3; i++) await hre.network.provider.send("evm_mine", []);
          await srv.sync();
          expect((await srv.store.getChannel(ch.id))!.deposit).to.equal(USDC(5));
          await hre.network.provider.send("evm_revert", [snap]); // the top-up never happened
          for (let i = 0; i < extraBlocks; i++) await hre.network.provider.send("evm_mine", []);
          await srv.sync();
          expect(srv.server.follower.reorgs).to.equal(1);
          expect((await srv.store.getChannel(ch.id))!.deposit).to.equal(USDC(2));
          expect(srv.server.view.cached(ch.id)?.deposit ?? USDC(2)).to.equal(USDC(2));
          expect((await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, USDC(4))) })).code).to.equal("exceeds_deposit");
          // and it keeps following afterwards
          await topUp(env, ch, ch.payer, USDC(1));
          await srv.sync();
          expect((await srv.store.getChannel(ch.id))!.deposit).to.equal(USDC(3));
        } finally {
          await srv.close();
        }
      });
    }
  });

  describe("RPC outage", () => {
    it("answers 503 upstream_unavailable whenever a chain read is needed, never a free response; recovers", async () => {
      const proxy = await startRpcProxy(await rpcUrl());
      const srv = await startTestServer({ env, rpcUrl: proxy.url, config: { rpcTimeout: 1000 } });
      try {
        const terms = await srv.terms("/v1/echo");
        const known = await openChannel(env, { deposit: USDC(1) });
        const fresh = await openChannel(env);
        const pay = (c: typeof known, v: bigint) => call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, c.voucher.sign(c.id, v)) });
        expect((await pay(known, PRICE)).status).to.equal(200);

        proxy.down();
        // A known, fresh channel needs no read: still served.
        expect((await pay(known, 2n * PRICE)).status).to.equal(200);
        // A channel never seen needs a read: 503.
        const a = await pay(fresh, PRICE);
        expect(a.status).to.equal(503);
        expect(a.code).to.equal("upstream_unavailable");
        expect(a.headers.get("retry-after")).to.equal("2");
        expect(a.headers.get("payment-response")).to.equal(null);
        // Above the known deposit needs the re-read: 503, not exceeds_deposit.
        expect((await pay(known, USDC(1) + 1n)).code).to.equal("upstream_unavailable");
        // Health says so.
        const h = await call(`${srv.url}/healthz`);
        expect(h.status).to.equal(503);
        expect(h.body.chain.reachable).to.equal(false);
        expect(await srv.store.getChannel(fresh.id)).to.equal(null);

        proxy.up();
        expect((await pay(fresh, PRICE)).status).to.equal(200);
        expect((await call(`${srv.url}/healthz`)).status).to.equal(200);
      } finally {
        await srv.close();
        await proxy.close();
      }
    });

    it("re-reads a known channel once the view is too old for an unseen close to be settled in time (503 while down)", async () => {
      const proxy = await startRpcProxy(await rpcUrl());
      // close delay 900 s, margin 898 s: the view may be at most ~2 s old.
      const srv = await startTestServer({ env, rpcUrl: proxy.url, config: { minCloseDelay: 900, closeSafetyMargin: 898, rpcTimeout: 1000, chainPollInterval: 60_000 } });
      try {
        const terms = await srv.terms("/v1/echo");
        const ch = await openChannel(env, { closeDelay: 900 });
        const pay = (v: bigint) => call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, v)) });
        expect((await pay(PRICE)).status).to.equal(200);
        proxy.down();
        await new Promise((r) => setTimeout(r, 3_100));
        expect((await pay(2n * PRICE)).code).to.equal("upstream_unavailable");
        proxy.up();
        expect((await pay(2n * PRICE)).status).to.equal(200);
      } finally {
        await srv.close();
        await proxy.close();
      }
    });

    it("does not start when the chain is unreachable, and says so", async () => {
      const proxy = await startRpcProxy(await rpcUrl());
      proxy.down();
      try {
        await startTestServer({ env, rpcUrl: proxy.url, config: { rpcTimeout: 1000 } }).then(
          () => expect.fail("started"),
          (e: Error) => expect(e.message).to.match(/cannot reach the chain/),
        );
      } finally {
        await proxy.close();
      }
    });
  });

  describe("restart", () => {
    it("keeps accepted vouchers, spent, the floor and the cursor, and applies events missed while down", async () => {
      const databaseUrl = tempDatabaseUrl();
      const a = await startTestServer({ env, databaseUrl, config: { logBlockRange: 3 } });
      const terms = await a.terms("/v1/echo");
      const ch = await openChannel(env, { deposit: USDC(2) });
      const used = ch.voucher.sign(ch.id, USDC(1));
      expect((await call(`${a.url}/v1/echo`, { headers: a.pay(terms, used) })).status).to.equal(200);
      const before = (await a.store.getChannel(ch.id))!;
      await a.sync();
      const cursor = (await a.store.getCursor())!.block;
      await a.close();

      // While the server is down: a top-up, and some unrelated blocks.
      await topUp(env, ch, ch.payer, USDC(3));
      for (let i = 0; i < 7; i++) await hre.network.provider.send("evm_mine", []);

      // Restart with a smaller window: the persisted floor still protects old vouchers.
      const b = await startTestServer({ env, databaseUrl, config: { maxInFlight: 1, logBlockRange: 3 } });
      try {
        const after = (await b.store.getChannel(ch.id))!;
        expect(after).to.deep.include({ accepted: before.accepted, spent: before.spent, floor: before.floor, acceptedSignature: used.signature });
        expect(after.deposit).to.equal(USDC(5));
        expect((await b.store.getCursor())!.block >= cursor).to.equal(true);
        const replay = await call(`${b.url}/v1/echo`, { headers: b.pay(terms, used) });
        expect(replay.code).to.equal("voucher_reused");
        expect(replay.required!.accepts[0].extra.channel).to.deep.include({ accepted: USDC(1), spent: 1000n });
        // 0.5 USDC is above the persisted floor (1 - 0.64) but below the new server's would-be floor (1 - 0.01).
        expect((await call(`${b.url}/v1/echo`, { headers: b.pay(terms, ch.voucher.sign(ch.id, 500_000n)) })).status).to.equal(200);
        // And a voucher above the old deposit is served thanks to the top-up applied at restart.
        expect((await call(`${b.url}/v1/echo`, { headers: b.pay(terms, ch.voucher.sign(ch.id, USDC(4))) })).status).to.equal(200);
      } finally {
        await b.close();
      }
    });

    it("refuses to open a store that belongs to another deployment", async () => {
      const databaseUrl = tempDatabaseUrl();
      const a = await startTestServer({ env, databaseUrl });
      await a.close({ keepDatabase: true });
      const other = await deployEscrow();
      await startTestServer({ env: other, databaseUrl }).then(
        (s) => s.close().then(() => expect.fail("started")),
        (e: Error) => expect(e.message).to.match(/belongs to another deployment/),
      );
    });
  });
});
