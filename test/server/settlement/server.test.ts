/**
 * Settlement inside the server (`startProviderServer({ settlement })`, what `npm start` runs): settles paid calls on
 * its interval with the payee's local key, reports on `/metrics`, refuses to start on an unsafe MIN_CLOSE_DELAY or an
 * unauthorised key, and a restarted server finishes what a crashed one left half-done.
 */
import { expect } from "chai";
import { channelEscrowAbi } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { parseSettlementEnv, SimulatedStop } from "@paychan/server";
import { settlementStoreFor } from "@paychan/server";
import { deployEscrow, openChannel, sessionKey, USDC } from "../../helpers/escrow";
import { call, startTestServer, type TestServer } from "../../helpers/server";
import type { Hex } from "viem";

const PRICE = 1_000n;

async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function pay(srv: TestServer, payerIndex: number, calls: number) {
  const ch = await openChannel(srv.env, { payerIndex, deposit: USDC(3) });
  const terms = await srv.terms("/v1/echo?msg=x");
  for (let k = 1; k <= calls; k++) {
    const a = await call(`${srv.url}/v1/echo?msg=x`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, BigInt(k) * PRICE)) });
    expect(a.status).to.equal(200);
  }
  return ch;
}

const settledOnChain = async (srv: TestServer, ch: { id: Hex; signer: Hex }) =>
  ((await srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [ch.id, ch.signer] })) as { settled: bigint }).settled;
const balance = (srv: TestServer, a: Hex) =>
  srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] }) as Promise<bigint>;

describe("settlement: inside the server", function () {
  this.timeout(120_000);

  it("settles paid calls every interval with the payee's local key and reports it on /metrics", async () => {
    const srv = await startTestServer({ settlement: { config: { interval: 1, threshold: "0.000001" }, pollInterval: 50 } });
    try {
      expect(srv.server.settlement).to.not.equal(null);
      const before = await balance(srv, srv.payee);
      const ch = await pay(srv, 2, 12);
      await until(async () => (await settledOnChain(srv, ch)) === 12n * PRICE, 30_000); // about one 1 s interval; generous for a busy machine
      await until(async () => (await srv.store.getChannel(ch.id))!.settled === 12n * PRICE, 30_000);
      expect((await balance(srv, srv.payee)) - before).to.equal(12n * PRICE);
      const text = await (await fetch(`${srv.url}/metrics`)).text();
      expect(text).to.match(/^channel_settlement_amount_atomic_total 12000$/m);
      expect(text).to.match(/^channel_settlement_transactions_total\{kind="settle",outcome="confirmed"\} 1$/m);
      expect(text).to.match(/^channel_settlement_gas_used_total [1-9]\d+$/m);
      expect(text).to.match(/^channel_settlement_unsettled_exposure_total_atomic 0$/m);
      expect(text).to.match(/^channel_settlement_cycles_total\{result="ok"\} [1-9]/m);
      expect(text).to.match(/^channel_settled_atomic 12000$/m); // the server's own total agrees
    } finally {
      await srv.close();
    }
  });

  it("refuses to start when MIN_CLOSE_DELAY is not comfortably longer than settlement needs", async () => {
    let err: unknown;
    try {
      await startTestServer({ config: { minCloseDelay: 3_600 }, settlement: true });
    } catch (e) {
      err = e;
    }
    expect((err as Error)?.message).to.match(/^refusing to start: MIN_CLOSE_DELAY is 3600 s, but settlement needs at least/);
  });

  it("refuses to start with a settler key the payee has not approved", async () => {
    const stranger = sessionKey();
    let err: unknown;
    try {
      await startTestServer({ settlement: { privateKey: stranger.key } });
    } catch (e) {
      err = e;
    }
    expect((err as Error)?.message).to.contain(`the settler ${stranger.address} is neither the payee`);
    expect((err as Error)?.message).not.to.contain(stranger.key.slice(2));
  });

  it("runs no job with SETTLE_IN_SERVER=false (cron mode)", async () => {
    const srv = await startTestServer({ config: { settlement: parseSettlementEnv({ SETTLE_IN_SERVER: "false" }, []) }, settlement: true });
    try {
      expect(srv.server.settlement).to.equal(null);
    } finally {
      await srv.close();
    }
  });

  it("a server restarted after a crash between broadcast and recording finishes the settlement exactly once", async () => {
    const env = await deployEscrow();
    const crashing = await startTestServer({
      env,
      settlement: {
        config: { interval: 3_600, threshold: "0.000001" },
        leaseTtlMs: 300,
        onStep: (step) => {
          if (step === "broadcast") throw new SimulatedStop("crash after broadcast");
        },
      },
    });
    const ch = await pay(crashing, 3, 5);
    const before = await balance(crashing, crashing.payee);
    const first = crashing.server.settlement!.runNow();
    let stopped: unknown;
    try {
      await first;
    } catch (e) {
      stopped = e;
    }
    expect(stopped).to.be.instanceOf(SimulatedStop);
    const [open] = await settlementStoreFor(crashing.store).openTxs();
    expect(open.status).to.equal("built");
    await crashing.close({ keepDatabase: true });
    await new Promise((r) => setTimeout(r, 350)); // the crashed settler's lease lapses

    const restarted = await startTestServer({ env, databaseUrl: crashing.databaseUrl, settlement: { config: { interval: 3_600 }, pollInterval: 50 } });
    try {
      await until(async () => (await settlementStoreFor(restarted.store).openTxs()).length === 0, 60_000);
      const tx = (await settlementStoreFor(restarted.store).getTx(open.id))!;
      expect(tx.status).to.equal("confirmed");
      expect((await settlementStoreFor(restarted.store).recentTxs(10)).map((t) => t.id)).to.deep.equal([open.id]);
      expect(await settledOnChain(restarted, ch)).to.equal(5n * PRICE);
      expect((await balance(restarted, restarted.payee)) - before).to.equal(5n * PRICE);
      expect((await restarted.store.getChannel(ch.id))!.settled).to.equal(5n * PRICE);
    } finally {
      await restarted.close();
    }
  });
});
