/**
 * Crash safety: the settler stopped at each step of a transaction's life (recorded but not sent; sent but not
 * recorded as sent; mined but the receipt not recorded), in process and as a child process killed with SIGKILL,
 * resumes without losing a voucher and without settling anything twice.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { expect } from "chai";
import { SimulatedStop, type SettlementStep } from "@paychan/server";
import { settlementStoreFor } from "@paychan/server";
import { SqliteStore } from "@paychan/server";
import type { OpenedChannel } from "../../helpers/escrow";
import { settlementHarness, type SettlementHarness } from "../../helpers/settlement";
import { startRpcProxy } from "../../helpers/server";
import { ChainReader } from "@paychan/server";
import { TS_NODE_ARGS } from "../../helpers/process";
import { until, WAIT_MS } from "../../helpers/wait";

/** The crashed settler's lease: long enough to check that nobody else runs meanwhile on a busy machine, short to wait out. */
const LEASE_MS = 3_000;

const REPO = path.resolve(__dirname, "..", "..", "..");

describe("settlement: crash safety", function () {
  this.timeout(120_000);
  let h: SettlementHarness;
  before(async () => {
    h = await settlementHarness();
  });
  after(async () => h?.close());

  async function channels(n: number): Promise<Array<OpenedChannel & { spent: bigint }>> {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await h.paidChannel({ spent: 31_000n + BigInt(i) * 1_000n }));
    return out;
  }

  /** After resuming: every channel settled exactly `spent` on chain, the payee got exactly the sum, nothing open. */
  async function expectSettledOnce(chans: Array<OpenedChannel & { spent: bigint }>, payeeBefore: bigint) {
    const sum = chans.reduce((a, c) => a + c.spent, 0n);
    expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(sum);
    for (const c of chans) {
      expect((await h.channelOnChain(c)).settled).to.equal(c.spent);
      expect((await h.stored(c.id)).settled).to.equal(c.spent);
    }
    expect(await settlementStoreFor(h.store).openTxs()).to.deep.equal([]);
    const again = await h.settlement().job.runOnce({ wait: true, all: true });
    expect(again.txs).to.deep.equal([]);
  }

  for (const step of ["built", "broadcast", "receipt"] as SettlementStep[]) {
    it(`resumes after a stop at "${step}" without loss or double count`, async () => {
      const chans = await channels(3);
      const payeeBefore = await h.tokenBalance(h.payee);
      const crashedAt = Date.now(); // before the crashing settler takes its lease: the lease lasts at least until crashedAt + LEASE_MS
      const crashing = h.settlement({}, {
        holder: "crashing",
        leaseTtlMs: LEASE_MS,
        onStep: (s) => {
          if (s === step) throw new SimulatedStop(`stopped at ${s}`);
        },
      });
      let stopped: unknown;
      try {
        await crashing.job.runOnce({ wait: true });
      } catch (e) {
        stopped = e;
      }
      expect(stopped).to.be.instanceOf(SimulatedStop);
      const [open] = await crashing.settlement.openTxs();
      // Recorded before sending; a stop after the broadcast leaves it recorded as "built" until the resume.
      expect(open.status).to.equal(step === "receipt" ? "sent" : "built");
      expect(open.items.map((i) => i.channelId).sort()).to.deep.equal(chans.map((c) => c.id).sort());
      const onChain = (await h.channelOnChain(chans[0])).settled;
      expect(onChain).to.equal(step === "built" ? 0n : chans[0].spent); // automine: a broadcast is mined at once

      // Another settler cannot run while the crashed one's lease lasts; then it takes over ("restart"). The check is
      // only asserted when it certainly ran inside the lease (a machine too busy to get here within LEASE_MS skips it).
      const restarted = h.settlement();
      let report = await restarted.job.runOnce({ wait: true });
      if (Date.now() - crashedAt < LEASE_MS) expect(report.leased, "a second settler ran while the crashed one's lease lasted").to.equal(false);
      await until(
        async () => report.leased || (report = await restarted.job.runOnce({ wait: true })).leased,
        "the crashed settler's lease to lapse",
        LEASE_MS + WAIT_MS,
        50,
      );
      expect(report.leased).to.equal(true);
      expect(report.failures).to.deep.equal([]);
      expect(report.txs.map((t) => [t.id, t.status])).to.deep.equal([[open.id, "confirmed"]]); // the same transaction, no new one
      const tx = (await restarted.settlement.getTx(open.id))!;
      expect(tx.hash).to.equal(open.hash);
      // "built": broadcast once, on resume; "broadcast": the node had it (mined), the resume only found the receipt.
      expect(tx.broadcasts).to.equal(step === "broadcast" ? 0 : 1);
      expect(report.amountSettled).to.equal(chans.reduce((a, c) => a + c.spent, 0n));
      await expectSettledOnce(chans, payeeBefore);
    });
  }

  for (const step of ["broadcast", "receipt"] as SettlementStep[]) {
    it(`resumes after the settler process is killed (SIGKILL) at "${step}"`, async () => {
      const chans = await channels(2);
      const payeeBefore = await h.tokenBalance(h.payee);
      const out = await runChild(step);
      expect(out.stdout).to.contain(`crashing at ${step}`);
      expect(out.signal).to.equal("SIGKILL");
      // A fresh connection, as a restarted process would open.
      const store = new SqliteStore({ url: h.databaseUrl });
      try {
        const open = await settlementStoreFor(store).openTxs();
        expect(open).to.have.length(1);
        expect(open[0].status).to.equal(step === "receipt" ? "sent" : "built");
      } finally {
        await store.close();
      }
      // The killed child held the lease under the name "child"; a settler restarted under that name resumes at once.
      const report = await h.settlement({}, { holder: "child" }).job.runOnce({ wait: true });
      expect(report.failures).to.deep.equal([]);
      expect(report.txs).to.have.length(1);
      expect(report.txs[0].status).to.equal("confirmed");
      await expectSettledOnce(chans, payeeBefore);
    });
  }

  it("survives an RPC outage between recording and broadcasting: reported, then sent when the node is back", async () => {
    const chans = await channels(2);
    const payeeBefore = await h.tokenBalance(h.payee);
    const proxy = await startRpcProxy(h.rpcUrl);
    try {
      const s = h.settlement({}, {
        rpcUrl: proxy.url,
        // Generous: only the outage (connections refused at once) may fail a call, never a slow busy machine.
        reader: new ChainReader({ rpcUrl: proxy.url, escrow: h.env.escrow.address, timeout: 15_000 }),
        rpcTimeout: 15_000,
        onStep: (step) => {
          if (step === "built") proxy.down();
        },
      });
      const r1 = await s.job.runOnce({ wait: true, waitTimeoutMs: 2_000 });
      expect(r1.failures.length).to.be.greaterThan(0); // the broadcast failed: reported, the cycle ended
      const [open] = await s.settlement.openTxs();
      expect(open.status).to.equal("built");
      expect((await h.channelOnChain(chans[0])).settled).to.equal(0n);
      const r2 = await s.job.runOnce({ wait: true, waitTimeoutMs: 2_000 }); // still down: nothing moves, nothing lost
      expect(r2.failures.length).to.be.greaterThan(0);
      expect((await s.settlement.getTx(open.id))!.status).to.equal("built");
      proxy.up();
      const r3 = await h.settlement().job.runOnce({ wait: true });
      expect(r3.failures).to.deep.equal([]);
      expect(r3.txs.map((t) => [t.id, t.status])).to.deep.equal([[open.id, "confirmed"]]);
      await expectSettledOnce(chans, payeeBefore);
    } finally {
      await proxy.close();
    }
  });

  function runChild(crashAt: SettlementStep): Promise<{ stdout: string; stderr: string; signal: NodeJS.Signals | null }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...TS_NODE_ARGS, path.join(REPO, "test/helpers/settlement-child.ts")], {
        cwd: REPO,
        env: {
          ...process.env,
          TS_NODE_TRANSPILE_ONLY: "true",
          DATABASE_URL: h.databaseUrl,
          RPC_URL: h.rpcUrl,
          CHAIN_ID: String(h.env.chainId),
          ESCROW: h.env.escrow.address,
          TOKEN: h.env.usdc.address,
          PAYEE: h.payee,
          SETTLER_KEY: h.operator.key,
          CRASH_AT: crashAt,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.on("error", reject);
      child.on("exit", (_code, signal) => {
        clearTimeout(timer);
        resolve({ stdout, stderr, signal });
      });
    });
  }
});
