/**
 * Close requests with the real server: paid calls over HTTP, then the payer asks to close (cooperatively through
 * `POST /channel/close`, or on chain with `requestClose`); the settlement scheduler settles and closes the channel
 * with `ChannelEscrow.close` within one interval, so the payer is refunded at once and a withdraw at the deadline
 * finds the payee already paid.
 */
import hre from "hardhat";
import { expect } from "chai";
import { parseEther, toHex, type Hex } from "viem";
import { channelEscrowAbi, CLOSE_PATH, signCloseRequest } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { createSettlement, resolveSettlementConfig, SettlementRevertError, SettlementScheduler, type SettlementConfig, type SettlementRunReport } from "@paychan/server";
import { accountKey, revertTo, snapshot } from "../../helpers/chain";
import { DAY, openChannel, sessionKey, USDC, type OpenedChannel } from "../../helpers/escrow";
import { call, startTestServer, type TestServer } from "../../helpers/server";
import { advanceTime } from "../../helpers/settlement";
import { expectRevert } from "../../helpers/revert";
import { WAIT_MS } from "../../helpers/wait";

const PRICE = 1_000n; // /v1/echo: 0.001 USDC

describe("settlement: close requests with the real server", function () {
  this.timeout(120_000);
  let srv: TestServer;
  const operator = sessionKey();
  let snap: string;

  before(async () => {
    snap = await snapshot();
    srv = await startTestServer({ config: { metricsPerChannel: true } }); // the close-deadline gauge below names the channel
    await hre.network.provider.send("hardhat_setBalance", [operator.address, toHex(parseEther("10"))]);
    const h = await srv.env.wallets[0].writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "setOperator", args: [operator.address, true] });
    await srv.env.publicClient.waitForTransactionReceipt({ hash: h });
  });
  after(async () => {
    await srv?.close();
    await revertTo(snap); // the close deadline's advanceTime must not stay: later tests sign windows from the wall clock
  });

  function settlement(config: Partial<SettlementConfig> = {}) {
    return createSettlement({
      config: { ...resolveSettlementConfig({}, srv.chainId), closeGrace: 0, ...config },
      privateKey: operator.key,
      rpcUrl: srv.rpcUrl,
      chainId: srv.chainId,
      escrow: srv.escrow,
      token: srv.token,
      payee: srv.payee,
      decimals: srv.server.decimals,
      store: srv.store,
      reader: srv.server.reader,
      registry: srv.server.metrics.registry,
      onChannels: (snaps) => snaps.forEach((s) => srv.server.view.apply(s, Date.now())),
      chainNow: () => srv.server.view.chainNow(),
      pollInterval: 50,
      logger: srv.server.logger,
    });
  }

  const balance = (a: Hex) => srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] }) as Promise<bigint>;
  const onChain = async (ch: { id: Hex; signer: Hex }) =>
    (await srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [ch.id, ch.signer] })) as {
      settled: bigint;
      finalized: boolean;
      closeRequestedAt: bigint;
    };

  /** A channel with `calls` paid requests through the server (vouchers k × price). */
  async function paidCalls(payerIndex: number, calls: number): Promise<OpenedChannel> {
    const ch = await openChannel(srv.env, { payerIndex, deposit: USDC(5) });
    const terms = await srv.terms("/v1/echo?msg=hi");
    for (let k = 1; k <= calls; k++) {
      const a = await call(`${srv.url}/v1/echo?msg=hi`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, BigInt(k) * PRICE)) });
      expect(a.status, JSON.stringify(a.body)).to.equal(200);
    }
    expect((await srv.store.getChannel(ch.id))!.spent).to.equal(BigInt(calls) * PRICE);
    return ch;
  }

  async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it("settles and closes cooperatively within one interval of the payer's close request; the payer is refunded at once", async () => {
    const ch = await paidCalls(3, 7);
    const spent = 7n * PRICE;
    const { job } = settlement();
    await job.preflight();
    const interval = 1_500;
    const reports: SettlementRunReport[] = [];
    const scheduler = new SettlementScheduler(job, { intervalMs: interval, onReport: (r) => reports.push(r) });
    scheduler.start();
    try {
      await until(async () => scheduler.lastReport !== null, WAIT_MS); // the start-up cycle ran
      const payerBefore = await balance(ch.payer);
      const payeeBefore = await balance(srv.payee);
      const res = await call(`${srv.url}${CLOSE_PATH}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) }),
      });
      expect(res.status).to.equal(202);
      const t0 = Date.now();
      await until(async () => (await onChain(ch)).finalized, WAIT_MS);
      // "Within one interval", in what the scheduler did rather than in wall-clock time (the machine may be busy): the
      // cycle that sent the close is the first one that started after the request was taken (or one already running
      // then), and it started within one interval of it (the slack only absorbs a late timer; a close left to a later
      // cycle starts an interval later still).
      const closes = (r: SettlementRunReport) => r.txs.some((t) => t.kind === "close");
      await until(async () => reports.some(closes), WAIT_MS);
      const closing = reports.find(closes)!;
      const missed = reports.filter((r) => r.startedAt >= t0 && r.startedAt < closing.startedAt);
      expect(missed.length, "cycles that started after the close request without closing").to.equal(0);
      // The scheduler starts a cycle one interval after the previous one ends (which, on a busy machine, may end after t0).
      const previous = reports.filter((r) => r.startedAt < closing.startedAt).at(-1);
      const from = Math.max(t0, previous?.finishedAt ?? t0);
      expect(closing.startedAt - from, "the closing cycle started within one interval of the request").to.be.below(interval + 1_000);
      expect((await onChain(ch)).settled).to.equal(spent);
      expect((await balance(ch.payer)) - payerBefore).to.equal(ch.deposit - spent);
      expect((await balance(srv.payee)) - payeeBefore).to.equal(spent);
      await until(async () => (await srv.store.getChannel(ch.id))!.finalized, WAIT_MS);
      expect((await srv.store.getChannel(ch.id))!.settled).to.equal(spent);
      // Nothing more can be charged on it.
      const terms = await srv.terms("/v1/echo?msg=hi");
      const after = await call(`${srv.url}/v1/echo?msg=hi`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 8n * PRICE)) });
      expect(after.status).to.equal(402);
      expect(["channel_finalized", "channel_closing"]).to.include(after.code);
    } finally {
      await scheduler.stop();
    }
  });

  it("closes a channel whose close was requested on chain, so a withdraw at the deadline finds the payee already paid", async () => {
    const ch = await paidCalls(4, 3);
    const spent = 3n * PRICE;
    const payer = srv.env.wallets[4];
    const payerBefore = await balance(ch.payer);
    const payeeBefore = await balance(srv.payee);
    await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
    await srv.sync(); // the server's follower sees CloseRequested
    const stored = (await srv.store.getChannel(ch.id))!;
    expect(stored.closesAt).to.be.greaterThan(0);

    const { job } = settlement();
    // The urgency gauge: seconds to the most urgent close deadline.
    const gauge = await srv.server.metrics.registry.getSingleMetricAsString("channel_settlement_close_deadline_seconds");
    const left = Number(new RegExp(`^channel_settlement_close_deadline_seconds\\{channel="${ch.id}"\\} (\\S+)$`, "m").exec(gauge)?.[1]);
    expect(left).to.be.within(DAY - 120, DAY + 5);

    const report = await job.runOnce({ wait: true });
    expect(report.selected).to.deep.equal({ close_requested_on_chain: 1 });
    expect(report.channelsClosed).to.equal(1);
    expect(report.txs).to.have.length(1);
    expect(report.txs[0]).to.include({ kind: "close", status: "confirmed" });
    expect(report.amountSettled).to.equal(spent);

    await advanceTime(DAY); // the deadline
    await expectRevert(
      payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "withdraw", args: [ch.id, ch.signer] }),
      "ChannelFinalized",
    );
    expect((await onChain(ch)).settled).to.equal(spent);
    expect((await balance(srv.payee)) - payeeBefore).to.equal(spent);
    expect((await balance(ch.payer)) - payerBefore).to.equal(ch.deposit - spent);
  });

  it("stops charges as soon as it sees an on-chain close, and closes when the grace period ends (waking early)", async () => {
    const ch = await paidCalls(5, 2);
    const payer = srv.env.wallets[5];
    await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
    await srv.sync();
    const { job } = settlement({ closeGrace: 1 });
    const scheduler = new SettlementScheduler(job, { intervalMs: 60_000 });
    const first = await scheduler.runNow();
    expect(first.txs).to.have.length(0); // marked closing, waiting for in-flight requests
    expect(first.nextDueAt).to.be.a("number");
    expect((await srv.store.getChannel(ch.id))!.payerCloseRequestedAt).to.be.greaterThan(0);
    // The server's closing window would still allow a voucher (closesAt is a day away); the mark refuses it.
    const terms = await srv.terms("/v1/echo?msg=hi");
    const refused = await call(`${srv.url}/v1/echo?msg=hi`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 3n * PRICE)) });
    expect(refused.code).to.equal("channel_closing");
    scheduler.start(); // runs now (still in grace), then wakes at nextDueAt instead of 60 s later
    try {
      await until(async () => (await onChain(ch)).finalized, 30_000); // well before the 60 s interval: it woke early
      expect((await onChain(ch)).settled).to.equal(2n * PRICE);
    } finally {
      await scheduler.stop();
    }
  });

  it("an operator settler closes on the payer's request with the stored close request signature (the signer's or the payer's); without it the escrow refuses (CloseNotConsented)", async () => {
    const bySigner = await paidCalls(8, 2);
    const byPayer = await paidCalls(9, 3);
    const signatures = new Map<Hex, Hex>([
      [bySigner.id, signCloseRequest(srv.domain, bySigner.id, bySigner.signerKey)],
      [byPayer.id, signCloseRequest(srv.domain, byPayer.id, accountKey(9))], // the payer's own key
    ]);
    for (const [channelId, signature] of signatures) {
      const res = await call(`${srv.url}${CLOSE_PATH}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ channelId, signature }),
      });
      expect(res.status, JSON.stringify(res.body)).to.equal(202);
      expect((await srv.store.getChannel(channelId))!.closeRequestSignature).to.equal(signature.toLowerCase());
    }
    const { job, chain } = settlement();
    expect(chain.sender).to.equal(operator.address); // an operator, not the payee
    // The same close without the payer's consent: the escrow refuses an operator's refunding close.
    for (const ch of [bySigner, byPayer]) {
      const stored = (await srv.store.getChannel(ch.id))!;
      const claim = { channelId: ch.id, signer: ch.signer, cumulativeAmount: stored.accepted, amount: stored.spent, signature: stored.acceptedSignature!, closeRequestSignature: "0x" as Hex };
      const refused = await chain.estimate(chain.closeData(claim)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).to.be.instanceOf(SettlementRevertError);
      expect((refused as SettlementRevertError).errorName).to.equal("CloseNotConsented");
    }
    const before = await Promise.all([balance(srv.payee), balance(bySigner.payer), balance(byPayer.payer)]);
    const r = await job.runOnce({ wait: true });
    expect(r.selected).to.deep.equal({ close_requested_by_payer: 2 });
    expect(r.closeFallbacks).to.deep.equal([]);
    expect(r.failures).to.deep.equal([]);
    expect(r.txs.map((t) => [t.kind, t.status])).to.deep.equal([
      ["close", "confirmed"],
      ["close", "confirmed"],
    ]);
    expect(r.channelsClosed).to.equal(2);
    expect(r.amountSettled).to.equal(5n * PRICE);
    for (const [ch, spent] of [[bySigner, 2n * PRICE], [byPayer, 3n * PRICE]] as const) {
      expect(await onChain(ch)).to.include({ finalized: true, settled: spent });
    }
    const after = await Promise.all([balance(srv.payee), balance(bySigner.payer), balance(byPayer.payer)]);
    expect(after[0] - before[0]).to.equal(5n * PRICE);
    expect(after[1] - before[1]).to.equal(bySigner.deposit - 2n * PRICE);
    expect(after[2] - before[2]).to.equal(byPayer.deposit - 3n * PRICE);
  });

  it("refunds the whole deposit of an unused channel on a cooperative request, and leaves an on-chain close with nothing owed to the payer", async () => {
    const unused = await openChannel(srv.env, { payerIndex: 6, deposit: USDC(2) });
    const res = await call(`${srv.url}${CLOSE_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channelId: unused.id, signature: signCloseRequest(srv.domain, unused.id, unused.signerKey) }),
    });
    expect(res.status).to.equal(202);
    const payerBefore = await balance(unused.payer);
    const r = await settlement().job.runOnce({ wait: true });
    expect(r.txs.map((t) => [t.kind, t.status])).to.deep.equal([["close", "confirmed"]]);
    expect(r.amountSettled).to.equal(0n);
    expect((await balance(unused.payer)) - payerBefore).to.equal(unused.deposit);

    // Settled in full, then closing on chain: nothing to claim, nothing sent (the payer withdraws).
    const ch = await paidCalls(7, 2);
    expect((await settlement().job.runOnce({ wait: true, all: true })).channelsSettled).to.equal(1);
    await srv.env.wallets[7].writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
    await srv.sync();
    const r2 = await settlement().job.runOnce({ wait: true });
    expect(r2.txs).to.deep.equal([]);
  });
});
