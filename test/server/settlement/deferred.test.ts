/**
 * A payout the token refuses (MockUSDC's blacklist on the payee) does not stop settlement: the escrow records the
 * claim and keeps the amount owed to the payee (`PaymentDeferred`, `owed`, `collect`). The job reports it as deferred
 * (not paid), counts it in a metric, and the store's `settled` rises all the same.
 */
import { expect } from "chai";
import { channelEscrowAbi } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { settlementHarness, type SettlementHarness } from "../../helpers/settlement";

describe("settlement: payouts the escrow keeps owed to the payee", function () {
  this.timeout(120_000);
  let h: SettlementHarness;

  before(async () => {
    h = await settlementHarness();
  });
  after(async () => h?.close());

  it("settles a channel whose payout the token refuses (payee blacklisted), reporting the amount as deferred and owed to the payee", async () => {
    const { env, payee } = h;
    const ch = await h.paidChannel({ spent: 5_000n, payerIndex: 2 });
    const owner = env.wallets[0]; // MockUSDC's owner: the deployer
    await owner.writeContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "blacklist", args: [payee, true] });
    const payeeBefore = await h.tokenBalance(payee);

    const { job, registry } = h.settlement();
    const r = await job.runOnce({ wait: true, all: true });
    expect(r.txs.map((t) => [t.kind, t.status])).to.deep.equal([["settle", "confirmed"]]);
    expect(r).to.include({ channelsSettled: 1, amountSettled: 0n, amountDeferred: 5_000n });
    expect(r.failures).to.deep.equal([]);
    expect(await h.channelOnChain(ch)).to.include({ settled: 5_000n });
    expect((await h.stored(ch.id)).settled).to.equal(5_000n);
    expect(await h.tokenBalance(payee)).to.equal(payeeBefore);
    const owed = (a: `0x${string}`) => env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "owed", args: [env.usdc.address, a] });
    expect(await owed(payee)).to.equal(5_000n);
    const metric = await registry.getSingleMetricAsString("channel_settlement_deferred_atomic_total");
    expect(metric).to.match(/^channel_settlement_deferred_atomic_total 5000$/m);

    // Nothing more to settle; the payee takes its money with collect, to an address the token accepts.
    expect((await h.settlement().job.runOnce({ wait: true, all: true })).txs).to.deep.equal([]);
    const to = env.wallets[9].account.address;
    const toBefore = await h.tokenBalance(to);
    await owner.writeContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "collect", args: [env.usdc.address, to] });
    expect((await h.tokenBalance(to)) - toBefore).to.equal(5_000n);
    expect(await owed(payee)).to.equal(0n);
  });
});
