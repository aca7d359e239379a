/**
 * Batch settlement on the real chain: 50 channels in one `settle`, with bad items (a bad signature, a channel
 * settled and one withdrawn while the batch was being built); the rest settles, the payee receives exactly what was
 * spent, payers get deposit - spent back, and nothing is settled twice.
 */
import { expect } from "chai";
import type { Hex } from "viem";
import { channelEscrowAbi, encodeSettleItems } from "@paychan/protocol";
import hre from "hardhat";
import { DAY, sessionKey, USDC, type OpenedChannel } from "../../helpers/escrow";
import { advanceTime, settlementHarness, type SettlementHarness } from "../../helpers/settlement";
import { revertTo, snapshot } from "../../helpers/chain";

async function metricValue(registry: { getSingleMetricAsString(n: string): Promise<string> }, name: string, labels = ""): Promise<number> {
  const text = await registry.getSingleMetricAsString(name);
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `) || (labels === "" && l.startsWith(`${name} `)));
  return line ? Number(line.split(" ").pop()) : NaN;
}

describe("settlement: batches on the real chain", function () {
  this.timeout(120_000);
  let h: SettlementHarness;
  let snap: string;
  before(async () => {
    snap = await snapshot();
    h = await settlementHarness();
  });
  after(async () => {
    await h?.close();
    await revertTo(snap); // its days of advanceTime must not stay: later tests sign windows from the wall clock
  });

  it("settles 50 channels in one transaction, skipping a bad signature, an already settled and a withdrawn channel", async () => {
    const chans: Array<OpenedChannel & { spent: bigint }> = [];
    for (let i = 0; i < 50; i++) {
      chans.push(await h.paidChannel({ spent: 1_000n + BigInt(i) * 7_919n, payerIndex: 1 + (i % 9), badSignature: i === 5 }));
    }
    const bad = chans[5];
    const settledMeanwhile = chans[10];
    const withdrawn = chans[20];
    const payeeBefore = await h.tokenBalance(h.payee);
    const withdrawnPayerBefore = await h.tokenBalance(withdrawn.payer);

    const { job, registry } = h.settlement({}, {
      // The race the contract's skips exist for: while the batch is being built, the payee settles one channel
      // itself and a payer withdraws another.
      onStep: async (step) => {
        if (step !== "batch") return;
        const [payee, ...payers] = h.env.wallets;
        const v = settledMeanwhile.voucher.sign(settledMeanwhile.id, settledMeanwhile.spent);
        const items = encodeSettleItems([{ channelId: settledMeanwhile.id, cumulativeAmount: settledMeanwhile.spent, amount: settledMeanwhile.spent, signature: v.signature }]);
        await payee.writeContract({ address: h.env.escrow.address, abi: channelEscrowAbi, functionName: "settle", args: [h.payee, h.env.usdc.address, items] });
        const payer = payers.find((w) => w.account.address.toLowerCase() === withdrawn.payer.toLowerCase())!;
        await payer.writeContract({ address: h.env.escrow.address, abi: channelEscrowAbi, functionName: "requestClose", args: [withdrawn.id, withdrawn.signer] });
        await advanceTime(DAY);
        await payer.writeContract({ address: h.env.escrow.address, abi: channelEscrowAbi, functionName: "withdraw", args: [withdrawn.id, withdrawn.signer] });
      },
    });
    await job.preflight();
    const report = await job.runOnce({ wait: true });

    expect(report.leased).to.equal(true);
    expect(report.txs).to.have.length(1);
    const tx = report.txs[0];
    expect(tx).to.include({ kind: "settle", status: "confirmed", channels: 50, settled: 47 });
    const reasons = Object.fromEntries(tx.skipped.map((s) => [s.channelId, s.reason]));
    expect(reasons).to.deep.equal({ [bad.id]: "InvalidSignature", [settledMeanwhile.id]: "AmountNotAboveSettled", [withdrawn.id]: "Finalized" });
    // Only the bad signature is a failure: its money cannot be collected.
    expect(report.failures).to.have.length(1);
    expect(report.failures[0]).to.match(/InvalidSignature/);
    expect(report.skipped.filter((s) => s.permanent).map((s) => s.channelId)).to.deep.equal([bad.id]);

    const good = chans.filter((c) => c !== bad && c !== settledMeanwhile && c !== withdrawn);
    const expected = good.reduce((a, c) => a + c.spent, 0n);
    expect(report.channelsSettled).to.equal(47);
    expect(report.amountSettled).to.equal(expected);
    // The payee received the batch plus its own direct settlement: the sum of spent over settled channels.
    expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(expected + settledMeanwhile.spent);
    for (const c of good) {
      expect((await h.channelOnChain(c)).settled).to.equal(c.spent);
      expect((await h.stored(c.id)).settled).to.equal(c.spent);
    }
    // The withdrawn channel's payer got everything back (nothing had been settled on it).
    expect((await h.tokenBalance(withdrawn.payer)) - withdrawnPayerBefore).to.equal(withdrawn.deposit);
    expect((await h.stored(withdrawn.id)).finalized).to.equal(true);

    // Gas: ~54k per batch + ~12k per channel.
    const gas = Number(tx.gasUsed);
    console.log(`      settle of 50 channels (3 skipped): ${gas} gas, ${report.gasPerChannel} gas per settled channel`);
    expect(gas).to.be.below(54_000 + 50 * 14_000);

    // Metrics: amount, gas, outcomes.
    expect(await metricValue(registry, "channel_settlement_amount_atomic_total")).to.equal(Number(expected));
    expect(await metricValue(registry, "channel_settlement_gas_used_total")).to.equal(gas);
    expect(await metricValue(registry, "channel_settlement_transactions_total", '{kind="settle",outcome="confirmed"}')).to.equal(1);
    expect(await metricValue(registry, "channel_settlement_channels_total", '{outcome="skipped",reason="InvalidSignature"}')).to.equal(1);

    // Running again settles nothing: everything owed is on chain, and the bad voucher is not retried.
    const again = await h.settlement().job.runOnce({ wait: true, all: true });
    expect(again.txs).to.have.length(0);
    expect(again.failures).to.deep.equal([]);
    expect(again.selected).to.deep.equal({});
  });

  it("refunds each payer exactly deposit - spent after settlement", async () => {
    const chans: Array<OpenedChannel & { spent: bigint }> = [];
    for (let i = 0; i < 4; i++) chans.push(await h.paidChannel({ spent: 250_000n * BigInt(i + 1), deposit: USDC(2), payerIndex: 11 + i }));
    const report = await h.settlement().job.runOnce({ wait: true });
    expect(report.channelsSettled).to.equal(4);
    for (const c of chans) {
      const payer = h.env.wallets.find((w) => w.account.address.toLowerCase() === c.payer.toLowerCase())!;
      const before = await h.tokenBalance(c.payer);
      await payer.writeContract({ address: h.env.escrow.address, abi: channelEscrowAbi, functionName: "requestClose", args: [c.id, c.signer] });
      await advanceTime(DAY);
      await payer.writeContract({ address: h.env.escrow.address, abi: channelEscrowAbi, functionName: "withdraw", args: [c.id, c.signer] });
      expect((await h.tokenBalance(c.payer)) - before).to.equal(c.deposit - c.spent);
    }
  });

  it("splits claims into several transactions under the batch size and the gas budget", async () => {
    const chans: Hex[] = [];
    for (let i = 0; i < 7; i++) chans.push((await h.paidChannel({ spent: 10_000n + BigInt(i) })).id);
    const r1 = await h.settlement({ batchSize: 3 }).job.runOnce({ wait: true });
    expect(r1.txs.map((t) => t.channels)).to.deep.equal([3, 2, 2]); // 7 over batches of ≤ 3, evened out
    expect(r1.txs.every((t) => t.status === "confirmed")).to.equal(true);
    expect(r1.channelsSettled).to.equal(7);
    for (let i = 0; i < 4; i++) chans.push((await h.paidChannel({ spent: 20_000n + BigInt(i) })).id);
    // A budget of 100k gas fits one channel per transaction (54k + 12k, with the plan's margins).
    const r2 = await h.settlement({ gasBudget: 100_000 }).job.runOnce({ wait: true });
    expect(r2.txs.map((t) => t.channels)).to.deep.equal([1, 1, 1, 1]);
    expect(r2.txs.every((t) => t.gasUsed! <= 100_000n)).to.equal(true);
  });

  it("does not send a batch that would revert as a whole (a key the payee never approved) and reports why", async () => {
    const c = await h.paidChannel({ spent: 42_000n });
    const stranger = sessionKey();
    await hre.network.provider.send("hardhat_setBalance", [stranger.address, "0x56bc75e2d63100000"]);
    const { job, settlement } = h.settlement({}, { privateKey: stranger.key });
    const r = await job.runOnce({ wait: true, all: true });
    expect(r.failures.some((f) => /would revert \(NotPayeeOrOperator\)/.test(f))).to.equal(true);
    expect(r.txs).to.deep.equal([]);
    expect(await settlement.openTxs()).to.deep.equal([]);
    expect((await h.channelOnChain(c)).settled).to.equal(0n);
    await h.settlement().job.runOnce({ wait: true, all: true }); // the right key settles it
    expect((await h.channelOnChain(c)).settled).to.equal(42_000n);
  });
});

