/**
 * Issue 17, item 6: a metered reservation is never settled nor closed on. With the real server (Express app, payment
 * core, store) and the real escrow, a metered handler (`paywall.meter({ max: 10,000 })`, charging 1,000) is held open by
 * the test while (a) a settlement cycle runs, (b) the payer requests a close on chain and the close grace passes; the
 * amount settled or closed is what was charged, never the open reservation, and the payer's refund is
 * deposit − charged. The same on SQLite and on PostgreSQL.
 */
import hre from "hardhat";
import { expect } from "chai";
import { parseEther, toHex, type Hex } from "viem";
import { channelEscrowAbi, CLOSE_PATH, signCloseRequest } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { paymentOf, type ExpressPaywall } from "@paychan/express";
import { createSettlement, resolveSettlementConfig, SqliteStore, type ChannelStore, type SettlementConfig } from "@paychan/server";
import type { PostgresStore } from "@paychan/server/postgres";
import type { Express } from "express";
import { openChannel, sessionKey, USDC, type OpenedChannel } from "../../helpers/escrow";
import { describePostgres, newTestDatabase } from "../../helpers/postgres";
import { call, startTestServer, type TestServer } from "../../helpers/server";

const PRICE = 1_000n; // GET /v1/fixed
const MAX = 10_000n; // POST /v1/slow reserves this
const ACTUAL = 1_000n; // ... and charges this when the test lets it finish

/** A metered handler the test holds open: `entered` resolves when it runs, `release()` lets it report and answer. */
class Gate {
  private waiters: Array<() => void> = [];
  private opened = false;
  entered = 0;
  wait(): Promise<void> {
    this.entered++;
    return this.opened ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
  release(): void {
    this.opened = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Used-voucher rows of a channel, read straight from the store's database (issue 17, item 9). */
async function usedVoucherRows(store: ChannelStore, id: Hex): Promise<number> {
  if (store instanceof SqliteStore) return (store.db.prepare("SELECT count(*) AS n FROM used_vouchers WHERE channel_id = ?").get(id.toLowerCase()) as { n: number }).n;
  const r = await (store as PostgresStore).pool.query<{ n: string }>("SELECT count(*) AS n FROM used_vouchers WHERE channel_id = $1", [id.toLowerCase()]);
  return Number(r.rows[0].n);
}

async function until(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function meteredReservationSuite(kind: "sqlite" | "postgres") {
  describe(`settlement never claims an open metered reservation (${kind})`, function () {
    this.timeout(120_000);
    let srv: TestServer;
    let gate: Gate;
    const operator = sessionKey();

    const routes = (app: Express, paywall: ExpressPaywall) => {
      app.get("/v1/fixed", paywall.charge({ price: PRICE }), (_req, res) => {
        res.json({ ok: true });
      });
      app.post("/v1/slow", paywall.meter({ max: MAX }), async (_req, res) => {
        await gate.wait();
        paymentOf(res)!.charge(ACTUAL);
        res.json({ charged: String(ACTUAL) });
      });
    };

    before(async () => {
      srv = await startTestServer({ routes, databaseUrl: kind === "postgres" ? await newTestDatabase("metered") : undefined });
      expect(srv.store.kind).to.equal(kind);
      await hre.network.provider.send("hardhat_setBalance", [operator.address, toHex(parseEther("10"))]);
      const h = await srv.env.wallets[0].writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "setOperator", args: [operator.address, true] });
      await srv.env.publicClient.waitForTransactionReceipt({ hash: h });
    });
    after(async () => srv?.close());
    beforeEach(() => {
      gate = new Gate();
    });
    afterEach(() => gate.release()); // never leave a handler hanging

    function settlement(config: Partial<SettlementConfig> = {}) {
      return createSettlement({
        config: { ...resolveSettlementConfig({}, srv.chainId), threshold: "0.000001", closeGrace: 0, ...config },
        privateKey: operator.key,
        rpcUrl: srv.rpcUrl,
        chainId: srv.chainId,
        escrow: srv.escrow,
        token: srv.token,
        payee: srv.payee,
        decimals: srv.server.decimals,
        store: srv.store,
        reader: srv.server.reader,
        onChannels: (snaps) => snaps.forEach((s) => srv.server.view.apply(s, Date.now())),
        chainNow: () => srv.server.view.chainNow(),
        pollInterval: 50,
        logger: srv.server.logger,
      }).job;
    }

    const balance = (a: Hex) => srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] }) as Promise<bigint>;
    const onChain = async (ch: OpenedChannel) =>
      (await srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [ch.id, ch.signer] })) as {
        settled: bigint;
        finalized: boolean;
      };
    const stored = async (ch: OpenedChannel) => (await srv.store.getChannel(ch.id))!;

    /** A channel with two fixed-price calls (charged 2 × PRICE), then a metered call held open by the gate. */
    async function channelWithHeldMeteredCall(payerIndex: number) {
      const ch = await openChannel(srv.env, { payerIndex, deposit: USDC(1) });
      const fixed = await srv.terms("/v1/fixed");
      for (const v of [PRICE, 2n * PRICE]) {
        const a = await call(`${srv.url}/v1/fixed`, { headers: srv.pay(fixed, ch.voucher.sign(ch.id, v)) });
        expect(a.status, JSON.stringify(a.body)).to.equal(200);
      }
      const slow = await srv.terms("/v1/slow", { method: "POST" });
      // The client's rule: the voucher covers what was counted (spent + reserved) plus the route's maximum.
      const answer = fetch(`${srv.url}/v1/slow`, { method: "POST", headers: srv.pay(slow, ch.voucher.sign(ch.id, 2n * PRICE + MAX)) });
      await until(() => gate.entered === 1, 60_000, "the metered handler to run");
      expect(await stored(ch)).to.include({ spent: 2n * PRICE, reserved: MAX, accepted: 2n * PRICE + MAX });
      return { ch, answer };
    }

    /** Lets the held handler finish and waits until its reservation became a charge (or was found closed). */
    async function finishHeld(ch: OpenedChannel, answer: Promise<Response>) {
      gate.release();
      const res = await answer;
      expect(res.status).to.equal(200);
      expect(await res.json()).to.deep.equal({ charged: String(ACTUAL) });
      await until(async () => (await stored(ch)).reserved === 0n, 60_000, "the reservation to end");
    }

    it("(a) a settlement cycle while the metered handler runs settles what was charged, not the reservation; the payer's refund is deposit − charged", async () => {
      const payerIndex = kind === "sqlite" ? 11 : 13;
      const { ch, answer } = await channelWithHeldMeteredCall(payerIndex);
      const job = settlement();

      const first = await job.runOnce({ wait: true });
      expect(first.failures).to.deep.equal([]);
      expect(first.channelsSettled).to.equal(1);
      expect((await onChain(ch)).settled).to.equal(2n * PRICE); // before the fix: 2 × PRICE + MAX
      expect(await stored(ch)).to.include({ settled: 2n * PRICE, spent: 2n * PRICE, reserved: MAX });

      await finishHeld(ch, answer);
      const charged = 2n * PRICE + ACTUAL;
      expect(await stored(ch)).to.include({ spent: charged, reserved: 0n });
      await job.runOnce({ wait: true });
      expect((await onChain(ch)).settled).to.equal(charged);

      // The payer closes: the refund is the deposit minus exactly what was charged.
      const payerBefore = await balance(ch.payer);
      const closed = await call(`${srv.url}${CLOSE_PATH}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ channelId: ch.id, signature: signCloseRequest(srv.domain, ch.id, ch.signerKey) }),
      });
      expect(closed.status).to.equal(202);
      const report = await job.runOnce({ wait: true });
      expect(report.channelsClosed).to.equal(1);
      expect(await onChain(ch)).to.include({ finalized: true, settled: charged });
      expect((await balance(ch.payer)) - payerBefore).to.equal(ch.deposit - charged);
      // Item 9: the closed channel keeps no used vouchers (3 before the close).
      expect(await stored(ch)).to.include({ finalized: true, floor: 2n * PRICE + MAX });
      expect(await usedVoucherRows(srv.store, ch.id)).to.equal(0);
    });

    it("(b) a close requested on chain with the metered handler slower than SETTLE_CLOSE_GRACE closes on what was charged; the payer's refund is deposit − charged", async () => {
      const payerIndex = kind === "sqlite" ? 12 : 14;
      const { ch, answer } = await channelWithHeldMeteredCall(payerIndex);
      const payerBefore = await balance(ch.payer);
      const payeeBefore = await balance(srv.payee);
      await srv.env.wallets[payerIndex].writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
      await srv.sync(); // the follower sees CloseRequested
      expect((await stored(ch)).closesAt).to.be.greaterThan(0);

      const job = settlement({ closeGrace: 1 });
      const marking = await job.runOnce({ wait: true });
      expect(marking.selected).to.deep.equal({ close_requested_on_chain: 1 });
      expect(marking.txs).to.have.length(0); // charges stopped; the close waits for the grace
      expect(marking.nextDueAt).to.be.a("number");
      await until(() => Date.now() >= marking.nextDueAt!, 60_000, "the close grace to pass");
      expect(gate.entered).to.equal(1); // the handler is still running: slower than the grace

      const closing = await job.runOnce({ wait: true });
      expect(closing.failures).to.deep.equal([]);
      expect(closing.channelsClosed).to.equal(1);
      const charged = 2n * PRICE; // the metered request has not reported: it is charged nothing yet
      expect(await usedVoucherRows(srv.store, ch.id)).to.equal(0); // item 9: pruned when the close was confirmed
      expect(await onChain(ch)).to.include({ finalized: true, settled: charged }); // before the fix: 2 × PRICE + MAX
      expect((await balance(ch.payer)) - payerBefore).to.equal(ch.deposit - charged);
      expect((await balance(srv.payee)) - payeeBefore).to.equal(charged);

      // The late handler still answers; its charge lands on a closed channel and moves no money.
      await finishHeld(ch, answer);
      expect((await onChain(ch)).settled).to.equal(charged);
      expect((await balance(ch.payer)) - payerBefore).to.equal(ch.deposit - charged);
    });

    it("a metered handler that reports within the close grace is closed on with its actual charge, not its maximum", async () => {
      const payerIndex = kind === "sqlite" ? 15 : 16;
      const { ch, answer } = await channelWithHeldMeteredCall(payerIndex);
      const payerBefore = await balance(ch.payer);
      await srv.env.wallets[payerIndex].writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
      await srv.sync();
      const job = settlement({ closeGrace: 1 });
      const marking = await job.runOnce({ wait: true });
      expect(marking.txs).to.have.length(0);
      await finishHeld(ch, answer); // within the grace
      await until(() => Date.now() >= marking.nextDueAt!, 60_000, "the close grace to pass");
      const closing = await job.runOnce({ wait: true });
      expect(closing.channelsClosed).to.equal(1);
      const charged = 2n * PRICE + ACTUAL;
      expect(await onChain(ch)).to.include({ finalized: true, settled: charged });
      expect((await balance(ch.payer)) - payerBefore).to.equal(ch.deposit - charged);
    });

    it("a reservation left by a crashed process is never claimed, never blocks settlement, and is dropped uncharged after SETTLE_RESERVATION_TTL", async () => {
      const payerIndex = kind === "sqlite" ? 17 : 18;
      const ch = await openChannel(srv.env, { payerIndex, deposit: USDC(1) });
      const fixed = await srv.terms("/v1/fixed");
      expect((await call(`${srv.url}/v1/fixed`, { headers: srv.pay(fixed, ch.voucher.sign(ch.id, PRICE)) })).status).to.equal(200);
      // What a process that crashed inside a metered handler leaves behind: the accept committed, no finish ever.
      const snap = (await srv.server.reader.readChannel(ch.id, ch.signer))!;
      const v = PRICE + MAX;
      const r = await srv.store.acceptVoucher({ chain: snap, amount: v, signature: ch.voucher.sign(ch.id, v).signature, charge: MAX, window: 1_000_000n, reserve: true });
      expect(r.ok).to.equal(true);
      const reservedAt = Date.now();
      expect(await stored(ch)).to.include({ spent: PRICE, reserved: MAX });

      const first = await settlement().runOnce({ wait: true }); // the default bound (3,600 s)
      expect(first.failures).to.deep.equal([]);
      expect((await onChain(ch)).settled).to.equal(PRICE); // settled while the reservation is open, without it
      expect(await stored(ch)).to.include({ reserved: MAX }); // younger than the bound: still open

      const ttl = 0.2;
      await until(() => Date.now() > reservedAt + ttl * 1000, 60_000, "the reservation to age past the bound");
      await settlement({ reservationTtl: ttl }).runOnce({ wait: true });
      expect(await stored(ch)).to.include({ spent: PRICE, reserved: 0n, settled: PRICE });
      // A report arriving after the expiry charges nothing.
      expect((await srv.store.finishReservation(ch.id, v, ACTUAL)).finished).to.equal(false);
      expect(await stored(ch)).to.include({ spent: PRICE, reserved: 0n });
      expect((await onChain(ch)).settled).to.equal(PRICE);
    });
  });
}

meteredReservationSuite("sqlite");
describePostgres("metered reservations on PostgreSQL", function () {
  meteredReservationSuite("postgres");
});
