/**
 * Re-submission: a settlement removed by a reorg (evm_snapshot / evm_revert), dropped from the mempool, stuck
 * under low fees, or whose nonce another transaction took, still lands exactly once.
 */
import hre from "hardhat";
import { expect } from "chai";
import { parseEther, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { OpenedChannel } from "../../helpers/escrow";
import { mine, settlementHarness, type SettlementHarness } from "../../helpers/settlement";
import { revertTo, snapshot } from "../../helpers/chain";

const send = (method: string, params: unknown[] = []) => hre.network.provider.send(method, params);

describe("settlement: re-submission after reorgs and drops", function () {
  this.timeout(120_000);
  let h: SettlementHarness;
  before(async () => {
    h = await settlementHarness();
  });
  after(async () => h?.close());
  afterEach(async () => {
    await send("evm_setAutomine", [true]);
  });

  async function channels(n: number): Promise<Array<OpenedChannel & { spent: bigint }>> {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await h.paidChannel({ spent: 77_000n + BigInt(i) }));
    return out;
  }
  const sum = (cs: Array<{ spent: bigint }>) => cs.reduce((a, c) => a + c.spent, 0n);

  it("re-sends a mined settlement that a reorg removed, and confirms it once", async () => {
    const chans = await channels(3);
    const payeeBefore = await h.tokenBalance(h.payee);
    const s = h.settlement({ confirmations: 3 });
    const snap = await snapshot();
    const first = await s.job.runOnce(); // sends; automine mines it
    expect(first.txs).to.have.length(1);
    await s.job.runOnce(); // sees the receipt: mined, 1 of 3 confirmations
    let [tx] = await s.settlement.openTxs();
    expect(tx.status).to.equal("mined");
    expect((await h.channelOnChain(chans[0])).settled).to.equal(chans[0].spent);

    await revertTo(snap); // the block holding the settlement is gone
    expect((await h.channelOnChain(chans[0])).settled).to.equal(0n);
    const second = await s.job.runOnce(); // the receipt disappeared: back to sent, re-broadcast (same bytes, same nonce)
    expect(second.failures).to.deep.equal([]);
    [tx] = await s.settlement.openTxs();
    expect(tx).to.include({ reorgs: 1, broadcasts: 2 });
    expect((await h.channelOnChain(chans[0])).settled).to.equal(chans[0].spent);

    await mine(2);
    const third = await s.job.runOnce({ wait: true });
    expect(third.txs.map((t) => t.status)).to.deep.equal(["confirmed"]);
    expect(third.amountSettled).to.equal(sum(chans));
    expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(sum(chans));
    for (const c of chans) expect((await h.stored(c.id)).settled).to.equal(c.spent);
    expect(await s.registry.getSingleMetricAsString("channel_settlement_reorgs_total")).to.match(/channel_settlement_reorgs_total 1$/m);
    expect((await h.settlement().job.runOnce({ wait: true, all: true })).txs).to.deep.equal([]);
  });

  it("re-broadcasts a transaction that fell out of the mempool", async () => {
    const chans = await channels(2);
    const payeeBefore = await h.tokenBalance(h.payee);
    await send("evm_setAutomine", [false]);
    const s = h.settlement();
    const r1 = await s.job.runOnce();
    const hash = r1.txs[0].hash;
    expect(await send("hardhat_dropTransaction", [hash])).to.equal(true);
    await s.job.runOnce(); // not in the pool, nonce still free: the same bytes again
    expect(((await send("eth_getTransactionByHash", [hash])) as { hash: Hex } | null)?.hash).to.equal(hash);
    await mine(1);
    const r3 = await s.job.runOnce({ wait: true });
    expect(r3.txs.map((t) => [t.hash, t.status])).to.deep.equal([[hash, "confirmed"]]);
    expect((await s.settlement.getTx(r1.txs[0].id))!.broadcasts).to.equal(2);
    expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(sum(chans));
  });

  it("replaces a stuck transaction with higher fees; only one of the two lands", async () => {
    const chans = await channels(2);
    const payeeBefore = await h.tokenBalance(h.payee);
    await send("evm_setAutomine", [false]);
    const s = h.settlement({ resubmitAfter: 0 });
    const r1 = await s.job.runOnce();
    const old = (await s.settlement.getTx(r1.txs[0].id))!;
    await s.job.runOnce(); // still pending after resubmitAfter: a replacement, same nonce and calldata, fees × 1.125
    const open = await s.settlement.openTxs();
    expect(open).to.have.length(2);
    const repl = open.find((t) => t.id !== old.id)!;
    expect(repl).to.include({ replaces: old.id, nonce: old.nonce });
    expect(repl.maxFeePerGas > old.maxFeePerGas).to.equal(true);
    expect(repl.maxPriorityFeePerGas >= (old.maxPriorityFeePerGas * 9n) / 8n).to.equal(true);
    await mine(1);
    const r3 = await s.job.runOnce({ wait: true });
    expect(r3.failures).to.deep.equal([]);
    const final = Object.fromEntries(r3.txs.map((t) => [t.id, t.status]));
    expect(final).to.deep.equal({ [old.id]: "dropped", [repl.id]: "confirmed" });
    expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(sum(chans));
    for (const c of chans) expect((await h.stored(c.id)).settled).to.equal(c.spent);
  });

  it("bumps fees again and again while stuck; older replacements are superseded; one lands", async () => {
    const chans = await channels(2);
    const payeeBefore = await h.tokenBalance(h.payee);
    await send("evm_setAutomine", [false]);
    const s = h.settlement({ resubmitAfter: 0 });
    const first = (await s.job.runOnce()).txs[0];
    await s.job.runOnce(); // bump 1
    await s.job.runOnce(); // the first is out of the pool (superseded); bump 2
    const all = await s.settlement.recentTxs(10);
    const group = all.filter((t) => t.nonce === first.nonce).sort((a, b) => a.id - b.id);
    expect(group.map((t) => t.status)).to.deep.equal(["dropped", "sent", "sent"]);
    expect(group[0].error).to.match(/superseded by replacement/);
    expect(group[2].maxFeePerGas > group[1].maxFeePerGas && group[1].maxFeePerGas > group[0].maxFeePerGas).to.equal(true);
    await mine(1);
    const r = await s.job.runOnce({ wait: true });
    expect(r.failures).to.deep.equal([]);
    const final = (await s.settlement.recentTxs(10)).filter((t) => t.nonce === first.nonce).sort((a, b) => a.id - b.id);
    expect(final.map((t) => t.status)).to.deep.equal(["dropped", "dropped", "confirmed"]);
    expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(sum(chans));
  });

  it("drops a transaction whose nonce another transaction used, and settles its channels with a fresh one", async () => {
    const chans = await channels(2);
    const payeeBefore = await h.tokenBalance(h.payee);
    await send("evm_setAutomine", [false]);
    const s = h.settlement();
    const r1 = await s.job.runOnce();
    const lost = r1.txs[0];
    // The settlement leaves the pool and the same key sends something else with that nonce (another tool, a human).
    await send("hardhat_dropTransaction", [lost.hash]);
    const operator = privateKeyToAccount(h.operator.key);
    const other = await operator.signTransaction({
      chainId: h.env.chainId,
      type: "eip1559",
      to: operator.address,
      value: parseEther("0.001"),
      nonce: lost.nonce,
      gas: 21_000n,
      maxFeePerGas: 100_000_000_000n,
      maxPriorityFeePerGas: 2_000_000_000n,
    });
    await send("eth_sendRawTransaction", [other]);
    await mine(1);
    await send("evm_setAutomine", [true]);
    const r2 = await s.job.runOnce({ wait: true });
    const byId = Object.fromEntries(r2.txs.map((t) => [t.id, t]));
    expect(byId[lost.id].status).to.equal("dropped");
    const fresh = r2.txs.find((t) => t.id !== lost.id)!;
    expect(fresh).to.include({ status: "confirmed", channels: 2 });
    expect(fresh.nonce).to.be.greaterThan(lost.nonce);
    // The dropped transaction is reported (the cron should know), but nothing is lost:
    expect(r2.failures.some((f) => f.includes("dropped"))).to.equal(true);
    expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(sum(chans));
  });
});
