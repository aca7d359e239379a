/**
 * Demo (README): gas per paid call when N channels that each made 1,000 paid calls are settled in one batch, next
 * to x402 `exact` (one on-chain transferWithAuthorization per call: 85,704 gas).
 *
 * Every call is the server's real accounting transaction (`acceptVoucher`, with a voucher signed by the channel's
 * session key for `k × price`), and settlement is the real job sending one `settle`. Scale with
 * `DEMO_CHANNELS=100 npx hardhat test test/server/settlement/gas-demo.test.ts` (default 10 channels × 1,000 calls). The
 * settle gas does not depend on how many calls a channel made (one claim per channel), so
 * `DEMO_CHANNELS=1000 DEMO_CALLS=10` measures the largest batch quickly.
 */
import { expect } from "chai";
import { DAY, USDC, openChannel, type OpenedChannel } from "../../helpers/escrow";
import { settlementHarness, type SettlementHarness } from "../../helpers/settlement";
import gasSnapshot from "../../gas-snapshot.json";
import { TX_GAS_CAP } from "@paychan/server";

const X402_EXACT_GAS_PER_CALL = 85_704;
const PRICE = 1_000n; // 0.001 USDC per call

describe("settlement: gas per paid call (demo)", function () {
  this.timeout(600_000);
  let h: SettlementHarness;
  before(async () => {
    h = await settlementHarness();
  });
  after(async () => h?.close());

  it("settles N channels × 1,000 paid calls in one transaction at a tiny fraction of x402 exact's gas per call", async () => {
    // 10 channels keep the suite quick; the README figures use DEMO_CHANNELS=100 and 1000.
    const channels = Number(process.env.DEMO_CHANNELS ?? 10);
    const calls = Number(process.env.DEMO_CALLS ?? 1_000);
    const chans: OpenedChannel[] = [];
    for (let i = 0; i < channels; i++) chans.push(await openChannel(h.env, { payerIndex: 1 + (i % 19), deposit: USDC(2), closeDelay: DAY }));
    const t0 = Date.now();
    for (const ch of chans) {
      const chain = (await h.reader.readChannel(ch.id, ch.signer))!;
      for (let k = 1n; k <= BigInt(calls); k++) {
        const v = ch.voucher.sign(ch.id, k * PRICE);
        const r = await h.store.acceptVoucher({ chain, amount: v.cumulativeAmount, signature: v.signature, charge: PRICE, window: 64n * PRICE });
        if (!r.ok) throw new Error(`call refused: ${r.code}`);
      }
    }
    const acceptMs = Date.now() - t0;
    const before = await h.tokenBalance(h.payee);

    const report = await h.settlement({ batchSize: Math.max(channels, 1), gasBudget: TX_GAS_CAP }).job.runOnce({ all: true, wait: true });
    expect(report.failures).to.deep.equal([]);
    expect(report.txs).to.have.length(1);
    expect(report.channelsSettled).to.equal(channels);
    const total = BigInt(channels) * BigInt(calls) * PRICE;
    expect((await h.tokenBalance(h.payee)) - before).to.equal(total);

    const gas = Number(report.gasUsed);
    const paidCalls = channels * calls;
    const perChannel = gas / channels;
    const perCall = gas / paidCalls;
    // The whole life of a channel: open + its share of the batch + the payer's withdraw (close/withdraw), per call.
    const lifecycle = (gasSnapshot.open + perChannel + gasSnapshot.withdraw) / calls;
    const rows = [
      ["channels in the batch", channels.toLocaleString("en-US")],
      ["paid calls per channel", calls.toLocaleString("en-US")],
      ["paid calls settled", paidCalls.toLocaleString("en-US")],
      ["settle transaction gas", gas.toLocaleString("en-US")],
      ["gas per channel", Math.round(perChannel).toLocaleString("en-US")],
      ["gas per paid call (settlement)", perCall.toFixed(2)],
      ["gas per paid call (open + settle + withdraw)", lifecycle.toFixed(1)],
      ["x402 exact, gas per paid call", X402_EXACT_GAS_PER_CALL.toLocaleString("en-US")],
      ["x402 exact / channel (all-in)", `${Math.round(X402_EXACT_GAS_PER_CALL / lifecycle).toLocaleString("en-US")}×`],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`\n${rows.map(([k, v]) => `      ${k.padEnd(w)}  ${v}`).join("\n")}\n      (${paidCalls.toLocaleString("en-US")} accounting transactions in ${acceptMs} ms)\n`);
    expect(perChannel).to.be.below(14_000 + 60_000 / channels);
    expect(perCall).to.be.below(X402_EXACT_GAS_PER_CALL / calls);
  });
});
