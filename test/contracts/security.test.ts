/**
 * The contract part of the security checklist (shared/reference/security-checklist.md), one test per protection,
 * each written so that it fails if the protection is removed.
 *
 * Covered elsewhere:
 * - EIP-2612 permit front-run and EIP-3009 `nonce == channelId` binding: open.test.ts (openWithPermit /
 *   openWithAuthorization "front-runner" and "cannot redirect" tests).
 * - Invariants after every step of random action sequences: model.test.ts.
 */
import hre from "hardhat";
import { expect } from "chai";
import { encodeFunctionData, getAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  channelEscrowAbi,
  encodeSettleItems,
  escrowDomain,
  MAX_DEPOSIT,
  MAX_UINT128,
  SECP256K1_HALF_N,
  VoucherSigner,
  type SettleClaim,
} from "@paychan/protocol";
import { deployEscrow, DAY, USDC, type Env } from "../helpers/escrow";
import { balanceOf, channelOf, claim, escrowEvents, fund, openWith, receipt, SKIP, transfers, type Opened, type Wallet } from "../helpers/escrow-tx";
import { decodeRevertData, expectRevert } from "../helpers/revert";
import { accountKey, isolateEachTest, latestTimestamp, setNextTimestamp, underCoverage } from "../helpers/chain";
import { flipS, joinSignature, splitSignature, withV } from "../helpers/signatures";

describe("ChannelEscrow: security checklist (contract)", () => {
  let env: Env;
  let payeeW: Wallet, payer: Wallet, stranger: Wallet, payee2W: Wallet;
  let payee: Address, payee2: Address, usdc: Address, escrow: Address;
  let c: Opened;
  let v: VoucherSigner;

  async function openKeyed(opts: { payee?: Address; token?: Address; amount?: bigint; salt?: Hex; key?: Hex; payer?: Wallet } = {}) {
    const key = opts.key ?? generatePrivateKey();
    const signer = new VoucherSigner(key, env.domain);
    const ch = await openWith(env, { payer: opts.payer ?? payer, signer: privateKeyToAccount(key).address, amount: opts.amount ?? USDC(10), payee: opts.payee, token: opts.token, salt: opts.salt });
    return { c: ch, v: signer, key };
  }

  before(async () => {
    env = await deployEscrow();
    [payeeW, payer, stranger] = env.wallets;
    payee2W = env.wallets[4];
    payee = getAddress(payeeW.account.address);
    payee2 = getAddress(payee2W.account.address);
    usdc = getAddress(env.usdc.address);
    escrow = getAddress(env.escrow.address);
    ({ c, v } = await openKeyed());
  });
  isolateEachTest();

  const settle = (items: readonly SettleClaim[], as: Wallet = payeeW, p: Address = payee, token: Address = usdc) =>
    env.escrow.write.settle([p, token, encodeSettleItems(items)], { account: as.account });
  const outcome = async (hash: Hex) => {
    const r = await receipt(env, hash);
    return { events: escrowEvents(r).map((e) => [e.eventName, e.args] as const), transfers: transfers(r), gasUsed: r.gasUsed };
  };
  const skipped = (id: Hex, reason: number) => [["SettleSkipped", { channelId: id, reason }]];
  const closeWith = (ch: { id: Hex; signer: Address }, cum: bigint, amount: bigint, sig: Hex) =>
    env.escrow.write.close([ch.id, ch.signer, cum, amount, sig, "0x"], { account: payeeW.account });

  describe("replay", () => {
    it("a voucher signed for another chain id is rejected (settle skips, close reverts)", async () => {
      const ch = await openKeyed();
      const foreign = new VoucherSigner(ch.key, escrowDomain(env.chainId + 1, escrow));
      expect((await outcome(await settle([claim(foreign, ch.c.id, 1n)]))).events).to.deep.equal(skipped(ch.c.id, SKIP.InvalidSignature));
      await expectRevert(closeWith(ch.c, 1n, 1n, foreign.sign(ch.c.id, 1n).signature), "InvalidSignature", [ch.c.id]);
      // the same key in the right domain works
      expect((await outcome(await settle([claim(ch.v, ch.c.id, 1n)]))).events).to.deep.equal([["Settled", { channelId: ch.c.id, amount: 1n }]]);
    });

    it("a voucher signed for another escrow contract is rejected", async () => {
      const ch = await openKeyed();
      const otherEscrow = await hre.viem.deployContract("ChannelEscrow");
      const foreign = new VoucherSigner(ch.key, escrowDomain(env.chainId, getAddress(otherEscrow.address)));
      expect((await outcome(await settle([claim(foreign, ch.c.id, 1n)]))).events).to.deep.equal(skipped(ch.c.id, SKIP.InvalidSignature));
      await expectRevert(closeWith(ch.c, 1n, 1n, foreign.sign(ch.c.id, 1n).signature), "InvalidSignature", [ch.c.id]);
      // and the channel does not exist on the other escrow
      const r = await outcome(
        await otherEscrow.write.settle([payee, usdc, encodeSettleItems([claim(ch.v, ch.c.id, 1n)])], { account: payeeW.account }),
      );
      expect(r.events).to.deep.equal(skipped(ch.c.id, SKIP.UnknownChannel));
    });

    it("a voucher for one channel cannot be claimed on another channel with the same signer and payee", async () => {
      const key = generatePrivateKey();
      const a = await openKeyed({ key });
      const b = await openKeyed({ key });
      const forA = a.v.sign(a.c.id, USDC(1)).signature;
      const item: SettleClaim = { channelId: b.c.id, cumulativeAmount: USDC(1), amount: USDC(1), signature: forA };
      expect((await outcome(await settle([item]))).events).to.deep.equal(skipped(b.c.id, SKIP.InvalidSignature));
      await expectRevert(closeWith(b.c, USDC(1), USDC(1), forA), "InvalidSignature", [b.c.id]);
    });

    it("a finalized channel's id is never reused, and its old vouchers pay nothing on a new channel", async () => {
      const key = generatePrivateKey();
      const old = await openKeyed({ key });
      const oldVoucher = claim(old.v, old.c.id, USDC(5));
      await closeWith(old.c, 0n, 0n, "0x"); // finalized, nothing settled
      // reopening with the very same parameters is refused
      await fund(env, payer, USDC(10));
      await expectRevert(
        env.escrow.write.open([old.c.payee, old.c.token, old.c.signer, USDC(10), DAY, old.c.salt], { account: payer.account }),
        "ChannelExists",
        [old.c.id],
      );
      // the old voucher on the old id: Finalized; re-targeted at a new channel of the same key: InvalidSignature
      expect((await outcome(await settle([oldVoucher]))).events).to.deep.equal(skipped(old.c.id, SKIP.Finalized));
      const fresh = await openKeyed({ key });
      expect((await outcome(await settle([{ ...oldVoucher, channelId: fresh.c.id }]))).events).to.deep.equal(
        skipped(fresh.c.id, SKIP.InvalidSignature),
      );
      expect((await channelOf(env, fresh.c.id, fresh.c.signer)).settled).to.equal(0n);
    });

    for (const how of ["withdraw", "close"] as const) {
      it(`finalized is sticky after ${how}: topUp, requestClose, withdraw, close revert ChannelFinalized; settle skips Finalized`, async () => {
        if (how === "withdraw") {
          await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
          await hre.network.provider.send("evm_increaseTime", [DAY]);
          await env.escrow.write.withdraw([c.id, c.signer]);
        } else {
          await closeWith(c, USDC(1), USDC(1), v.sign(c.id, USDC(1)).signature);
        }
        const before = await channelOf(env, c.id, c.signer);
        await fund(env, payer, 1n);
        await expectRevert(env.escrow.write.topUp([c.id, c.signer, 1n], { account: payer.account }), "ChannelFinalized", [c.id]);
        await expectRevert(env.escrow.write.requestClose([c.id, c.signer], { account: payer.account }), "ChannelFinalized", [c.id]);
        await expectRevert(env.escrow.write.withdraw([c.id, c.signer]), "ChannelFinalized", [c.id]);
        await expectRevert(closeWith(c, USDC(2), USDC(2), v.sign(c.id, USDC(2)).signature), "ChannelFinalized", [c.id]);
        expect((await outcome(await settle([claim(v, c.id, USDC(3))]))).events).to.deep.equal(skipped(c.id, SKIP.Finalized));
        expect(await channelOf(env, c.id, c.signer)).to.deep.equal(before);
        expect(await balanceOf(env, usdc, escrow)).to.equal(0n);
      });
    }
  });

  describe("malleable and malformed signatures", () => {
    it("close rejects the high-s twin of a valid signature (plain ecrecover would accept it)", async () => {
      const good = v.sign(c.id, USDC(1)).signature;
      const twin = flipS(good);
      expect(splitSignature(twin).s > SECP256K1_HALF_N).to.equal(true);
      await expectRevert(closeWith(c, USDC(1), USDC(1), twin), "InvalidSignature", [c.id]);
      await closeWith(c, USDC(1), USDC(1), good); // the canonical one works
    });

    it("settle rejects a compact signature whose s is above n/2", async () => {
      const { r } = splitSignature(v.sign(c.id, 1n).signature);
      const highS = joinSignature(r, SECP256K1_HALF_N + 1n, 27);
      expect((await outcome(await settle([{ channelId: c.id, cumulativeAmount: 1n, amount: 1n, signature: highS }]))).events).to.deep.equal(
        skipped(c.id, SKIP.InvalidSignature),
      );
    });

    it("close rejects v outside {27, 28}, 64-byte (compact), 66-byte and empty signatures", async () => {
      const good = v.sign(c.id, USDC(1)).signature;
      const { v: vv } = splitSignature(good);
      const bad: Hex[] = [
        withV(good, vv - 27), // 0 / 1 (the raw recovery id)
        withV(good, vv + 2), // 29 / 30
        withV(good, 0xff),
        `0x${good.slice(2, 130)}`, // 64 bytes
        `${good}00`, // 66 bytes
        "0x",
      ];
      for (const sig of bad) await expectRevert(closeWith(c, USDC(1), USDC(1), sig), "InvalidSignature", [c.id]);
    });

    it("a signature that recovers to no one (zero address) is rejected in settle and close", async () => {
      const zero = joinSignature(0n, 0n, 27);
      expect((await outcome(await settle([{ channelId: c.id, cumulativeAmount: 1n, amount: 1n, signature: zero }]))).events).to.deep.equal(
        skipped(c.id, SKIP.InvalidSignature),
      );
      await expectRevert(closeWith(c, 1n, 1n, zero), "InvalidSignature", [c.id]);
      const { s } = splitSignature(v.sign(c.id, 1n).signature);
      await expectRevert(closeWith(c, 1n, 1n, joinSignature(0n, s, 27)), "InvalidSignature", [c.id]);
    });

    it("a voucher signed by anyone but the channel's signer (payer, payee, stranger) is rejected", async () => {
      for (const idx of [1, 0, 2]) {
        const s = new VoucherSigner(accountKey(idx), env.domain);
        expect((await outcome(await settle([claim(s, c.id, 1n)]))).events).to.deep.equal(skipped(c.id, SKIP.InvalidSignature));
        await expectRevert(closeWith(c, 1n, 1n, s.sign(c.id, 1n).signature), "InvalidSignature", [c.id]);
      }
      expect((await channelOf(env, c.id, c.signer)).settled).to.equal(0n);
    });
  });

  describe("amount rules", () => {
    it("settling at or below settled is skipped and settled never decreases (settle and close)", async () => {
      await settle([claim(v, c.id, USDC(5))]);
      for (const a of [USDC(5), USDC(3), 1n]) {
        expect((await outcome(await settle([claim(v, c.id, a)]))).events).to.deep.equal(skipped(c.id, SKIP.AmountNotAboveSettled));
        expect((await channelOf(env, c.id, c.signer)).settled).to.equal(USDC(5));
      }
      // a cooperative close with a lower voucher keeps what was settled and refunds only the rest
      const out = await outcome(await closeWith(c, USDC(3), USDC(3), v.sign(c.id, USDC(3)).signature));
      expect(out.events).to.deep.equal([["Closed", { channelId: c.id, settled: USDC(5), refund: USDC(5) }]]);
      expect((await channelOf(env, c.id, c.signer)).settled).to.equal(USDC(5));
    });

    it("settling above the deposit is skipped, even with a valid voucher for more", async () => {
      expect((await outcome(await settle([claim(v, c.id, USDC(10) + 1n)]))).events).to.deep.equal(skipped(c.id, SKIP.AmountAboveDeposit));
      expect((await outcome(await settle([claim(v, c.id, USDC(10), USDC(20))]))).events).to.deep.equal([
        ["Settled", { channelId: c.id, amount: USDC(10) }],
      ]);
    });

    it("an amount above the voucher is skipped (settle) and reverts (close)", async () => {
      expect((await outcome(await settle([claim(v, c.id, 2n, 1n)]))).events).to.deep.equal(skipped(c.id, SKIP.AmountAboveVoucher));
      await expectRevert(closeWith(c, 1n, 2n, v.sign(c.id, 1n).signature), "AmountAboveVoucher", [c.id, 2n, 1n]);
    });
  });

  describe("close delay", () => {
    it("withdraw 1 s before the delay ends reverts CloseDelayNotElapsed; at the end it pays deposit - settled", async () => {
      await settle([claim(v, c.id, USDC(3))]);
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      const closesAt = (await latestTimestamp()) + BigInt(DAY);
      await setNextTimestamp(closesAt - 1n);
      await expectRevert(env.escrow.write.withdraw([c.id, c.signer], { account: payer.account }), "CloseDelayNotElapsed", [c.id, closesAt, closesAt - 1n]);
      expect((await channelOf(env, c.id, c.signer)).finalized).to.equal(false);
      await setNextTimestamp(closesAt);
      const w = await outcome(await env.escrow.write.withdraw([c.id, c.signer], { account: payer.account }));
      expect(w.events).to.deep.equal([["Withdrawn", { channelId: c.id, refund: USDC(7) }]]);
      expect(w.transfers).to.deep.equal([{ token: usdc, from: escrow, to: c.payer, value: USDC(7) }]);
    });

    it("the payee settles at closesAt - 1; withdraw at closesAt refunds exactly deposit - settled", async () => {
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      const closesAt = (await latestTimestamp()) + BigInt(DAY);
      await setNextTimestamp(closesAt - 1n);
      const s = await outcome(await settle([claim(v, c.id, USDC(4))]));
      expect(s.events).to.deep.equal([["Settled", { channelId: c.id, amount: USDC(4) }]]);
      expect(await latestTimestamp()).to.equal(closesAt - 1n);
      await setNextTimestamp(closesAt);
      const w = await outcome(await env.escrow.write.withdraw([c.id, c.signer], { account: stranger.account }));
      expect(w.events).to.deep.equal([["Withdrawn", { channelId: c.id, refund: USDC(6) }]]);
      expect(w.transfers).to.deep.equal([{ token: usdc, from: escrow, to: c.payer, value: USDC(6) }]);
    });

    it("the payee can still settle after closesAt as long as nobody has withdrawn", async () => {
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      await hre.network.provider.send("evm_increaseTime", [10 * DAY]);
      expect((await outcome(await settle([claim(v, c.id, USDC(2))]))).events).to.deep.equal([["Settled", { channelId: c.id, amount: USDC(2) }]]);
    });
  });

  describe("one bad item never reverts a batch", () => {
    it("bad signature, stale amount, finalized channel, wrong payee and wrong token are skipped; the good items settle", async () => {
      const good1 = await openKeyed();
      const good2 = await openKeyed();
      const stale = await openKeyed();
      await settle([claim(stale.v, stale.c.id, USDC(3))]);
      const fin = await openKeyed();
      await closeWith(fin.c, 0n, 0n, "0x");
      const otherPayee = await openKeyed({ payee: payee2 });
      const usdc2 = await hre.viem.deployContract("MockUSDC");
      const otherToken = await openKeyed({ token: usdc2.address });
      const items: SettleClaim[] = [
        claim(good1.v, good1.c.id, 100n),
        claim(stale.v, good2.c.id, 1n), // signed by the wrong key
        claim(stale.v, stale.c.id, USDC(2)), // below settled
        claim(fin.v, fin.c.id, 1n),
        claim(otherPayee.v, otherPayee.c.id, 1n),
        claim(otherToken.v, otherToken.c.id, 1n),
        claim(good2.v, good2.c.id, 200n),
      ];
      const out = await outcome(await settle(items));
      expect(out.events).to.deep.equal([
        ["Settled", { channelId: good1.c.id, amount: 100n }],
        ["SettleSkipped", { channelId: good2.c.id, reason: SKIP.InvalidSignature }],
        ["SettleSkipped", { channelId: stale.c.id, reason: SKIP.AmountNotAboveSettled }],
        ["SettleSkipped", { channelId: fin.c.id, reason: SKIP.Finalized }],
        ["SettleSkipped", { channelId: otherPayee.c.id, reason: SKIP.PayeeMismatch }],
        ["SettleSkipped", { channelId: otherToken.c.id, reason: SKIP.TokenMismatch }],
        ["Settled", { channelId: good2.c.id, amount: 200n }],
      ]);
      expect(out.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: 300n }]);
    });

    it("an unauthorized caller is refused as a whole (NotPayeeOrOperator) and settles nothing", async () => {
      await expectRevert(settle([claim(v, c.id, 1n)], stranger), "NotPayeeOrOperator", [payee, stranger.account.address]);
      expect((await channelOf(env, c.id, c.signer)).settled).to.equal(0n);
    });
  });

  describe("USDC blacklist and pause", () => {
    it("a blacklisted payee's payouts are recorded and owed: settle and close succeed, the payee collects to an address of its choosing; others are unaffected", async () => {
      const mine = await openKeyed({ payee: payee2 });
      await env.escrow.write.settle([payee2, usdc, encodeSettleItems([claim(mine.v, mine.c.id, USDC(1))])], { account: payee2W.account });
      await env.usdc.write.blacklist([payee2, true]);
      const s = await outcome(await env.escrow.write.settle([payee2, usdc, encodeSettleItems([claim(mine.v, mine.c.id, USDC(2))])], { account: payee2W.account }));
      expect(s.events).to.deep.equal([
        ["Settled", { channelId: mine.c.id, amount: USDC(2) }],
        ["PaymentDeferred", { token: usdc, account: payee2, amount: USDC(1) }],
      ]);
      expect(s.transfers).to.deep.equal([]);
      expect(await env.escrow.read.owed([usdc, payee2])).to.equal(USDC(1));
      // another payee is unaffected
      expect((await outcome(await settle([claim(v, c.id, USDC(1))]))).transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(1) }]);
      // the payee's cooperative close records its claim too, and the payer's refund goes out at once
      const cl = await outcome(
        await env.escrow.write.close([mine.c.id, mine.c.signer, USDC(3), USDC(3), mine.v.sign(mine.c.id, USDC(3)).signature, "0x"], { account: payee2W.account }),
      );
      expect(cl.events.map((e) => e[0])).to.deep.equal(["Settled", "Closed", "PaymentDeferred"]);
      expect(cl.transfers).to.deep.equal([{ token: usdc, from: escrow, to: mine.c.payer, value: USDC(7) }]);
      expect(await env.escrow.read.owed([usdc, payee2])).to.equal(USDC(2));
      // collecting to itself still fails (and changes nothing); to another address it works, once
      await expectRevert(env.escrow.write.collect([usdc, payee2], { account: payee2W.account }), "AccountBlacklisted", [payee2]);
      expect(await env.escrow.read.owed([usdc, payee2])).to.equal(USDC(2));
      const elsewhere = getAddress(stranger.account.address);
      const before = await balanceOf(env, usdc, elsewhere);
      const col = await outcome(await env.escrow.write.collect([usdc, elsewhere], { account: payee2W.account }));
      expect(col.events).to.deep.equal([["Collected", { token: usdc, account: payee2, to: elsewhere, amount: USDC(2) }]]);
      expect((await balanceOf(env, usdc, elsewhere)) - before).to.equal(USDC(2));
      expect(await env.escrow.read.owed([usdc, payee2])).to.equal(0n);
      await expectRevert(env.escrow.write.collect([usdc, elsewhere], { account: payee2W.account }), "NothingOwed", [usdc, payee2]);
      expect(await balanceOf(env, usdc, escrow)).to.equal(USDC(10) - USDC(1)); // only the first channel's rest is left
    });

    it("a blacklisted payer's refund is owed and never blocks the payee: withdraw and close finalize, the payer collects later", async () => {
      const payer3 = env.wallets[7];
      const p3 = getAddress(payer3.account.address);
      const theirs = await openKeyed({ payer: payer3 });
      await env.usdc.write.blacklist([p3, true]);
      // the payee's close pays the payee and keeps the refund owed to the payer
      const cl = await outcome(
        await env.escrow.write.close([theirs.c.id, theirs.c.signer, USDC(2), USDC(2), theirs.v.sign(theirs.c.id, USDC(2)).signature, "0x"], { account: payeeW.account }),
      );
      expect(cl.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(2) }]);
      expect(cl.events.at(-1)).to.deep.equal(["PaymentDeferred", { token: usdc, account: p3, amount: USDC(8) }]);
      // a withdraw (anyone may send it) finalizes another channel of the same payer and owes its refund too
      await env.usdc.write.blacklist([p3, false]);
      const second = await openKeyed({ payer: payer3 });
      await env.escrow.write.requestClose([second.c.id, second.c.signer], { account: payer3.account });
      await hre.network.provider.send("evm_increaseTime", [DAY]);
      await env.usdc.write.blacklist([p3, true]);
      const w = await outcome(await env.escrow.write.withdraw([second.c.id, second.c.signer], { account: stranger.account }));
      expect(w.events).to.deep.equal([
        ["Withdrawn", { channelId: second.c.id, refund: USDC(10) }],
        ["PaymentDeferred", { token: usdc, account: p3, amount: USDC(10) }],
      ]);
      expect((await channelOf(env, second.c.id, second.c.signer)).finalized).to.equal(true);
      expect(await env.escrow.read.owed([usdc, p3])).to.equal(USDC(18));
      await env.usdc.write.blacklist([p3, false]);
      const col = await outcome(await env.escrow.write.collect([usdc, p3], { account: payer3.account }));
      expect(col.transfers).to.deep.equal([{ token: usdc, from: escrow, to: p3, value: USDC(18) }]);
    });

    it("a pause longer than the close delay cannot make the payee lose its claim: settle during the pause is recorded, the payer's withdraw after it refunds only the rest", async () => {
      // The review's scenario: 10 deposited, a 9 voucher held by the payee, 1-day delay, a 2-day pause.
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      await fund(env, payer, USDC(1));
      await env.usdc.write.setPaused([true]);
      await expectRevert(env.escrow.write.open([payee, usdc, payer.account.address, USDC(1), DAY, `0x${"77".repeat(32)}`], { account: payer.account }), "Paused", []);
      await expectRevert(env.escrow.write.topUp([c.id, c.signer, USDC(1)], { account: payer.account }), "Paused", []);
      const s = await outcome(await settle([claim(v, c.id, USDC(9))]));
      expect(s.events).to.deep.equal([
        ["Settled", { channelId: c.id, amount: USDC(9) }],
        ["PaymentDeferred", { token: usdc, account: payee, amount: USDC(9) }],
      ]);
      await hre.network.provider.send("evm_increaseTime", [2 * DAY]);
      await expectRevert(env.escrow.write.collect([usdc, payee], { account: payeeW.account }), "Paused", []);
      await env.usdc.write.setPaused([false]);
      // the payer's withdraw lands first after the unpause: it gets the rest, not the payee's 9
      const w = await outcome(await env.escrow.write.withdraw([c.id, c.signer], { account: payer.account }));
      expect(w.events).to.deep.equal([["Withdrawn", { channelId: c.id, refund: USDC(1) }]]);
      expect(w.transfers).to.deep.equal([{ token: usdc, from: escrow, to: c.payer, value: USDC(1) }]);
      const col = await outcome(await env.escrow.write.collect([usdc, payee], { account: payeeW.account }));
      expect(col.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(9) }]);
      expect(await balanceOf(env, usdc, escrow)).to.equal(0n);
    });

    it("a refund while the token is paused is owed too: withdraw finalizes, the payer collects after the pause", async () => {
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      await hre.network.provider.send("evm_increaseTime", [DAY]);
      await env.usdc.write.setPaused([true]);
      const w = await outcome(await env.escrow.write.withdraw([c.id, c.signer]));
      expect(w.events).to.deep.equal([
        ["Withdrawn", { channelId: c.id, refund: USDC(10) }],
        ["PaymentDeferred", { token: usdc, account: c.payer, amount: USDC(10) }],
      ]);
      await env.usdc.write.setPaused([false]);
      await env.escrow.write.collect([usdc, c.payer], { account: payer.account });
      expect(await balanceOf(env, usdc, escrow)).to.equal(0n);
    });

    it("collect refuses the zero address and the escrow as recipient", async () => {
      for (const to of ["0x0000000000000000000000000000000000000000", escrow] as const) {
        await expectRevert(env.escrow.write.collect([usdc, to], { account: payeeW.account }), "InvalidRecipient", [getAddress(to)]);
      }
    });
  });

  describe("hostile tokens", () => {
    it("a fee-on-transfer token is rejected on open and on top-up (TransferAmountMismatch)", async () => {
      const fee = await hre.viem.deployContract("FeeOnTransferToken");
      const feeAddr = getAddress(fee.address);
      await fund(env, payer, 10_000n, feeAddr);
      await expectRevert(
        env.escrow.write.open([payee, feeAddr, payer.account.address, 10_000n, DAY, `0x${"55".repeat(32)}`], { account: payer.account }),
        "TransferAmountMismatch",
        [feeAddr, 10_000n, 9_900n],
      );
      await fee.write.setFeePercent([0n]);
      const ch = await openWith(env, { payer, token: feeAddr, amount: 10_000n });
      await fee.write.setFeePercent([1n]);
      await fund(env, payer, 1_000n, feeAddr);
      await expectRevert(env.escrow.write.topUp([ch.id, ch.signer, 1_000n], { account: payer.account }), "TransferAmountMismatch", [feeAddr, 1_000n, 990n]);
    });

    describe("a token whose transfer hook calls back into the escrow is stopped by the reentrancy guard", () => {
      let tok: Awaited<ReturnType<typeof hre.viem.deployContract<"ReentrantToken">>>;
      let tokAddr: Address;
      let victim: Opened; // a channel whose close delay has elapsed: anyone may withdraw it
      let target: { c: Opened; v: VoucherSigner };

      beforeEach(async () => {
        tok = await hre.viem.deployContract("ReentrantToken");
        tokAddr = getAddress(tok.address);
        victim = await openWith(env, { payer, token: tokAddr, amount: 1_000n });
        await env.escrow.write.requestClose([victim.id, victim.signer], { account: payer.account });
        await hre.network.provider.send("evm_increaseTime", [DAY]);
        target = await openKeyed({ token: tokAddr, amount: 5_000n });
      });

      /** Arms the token to call withdraw(victim) on its next transfer, runs `action`, and checks the re-entry failed. */
      async function expectGuarded(action: () => Promise<unknown>) {
        await tok.write.arm([escrow, encodeFunctionData({ abi: channelEscrowAbi, functionName: "withdraw", args: [victim.id, victim.signer] })]);
        await action();
        expect(await tok.read.attempted()).to.equal(true);
        expect(await tok.read.reentered()).to.equal(false);
        const err = decodeRevertData((await tok.read.lastRevert()) as Hex);
        expect([err.errorName, err.args]).to.deep.equal(["ReentrancyGuardReentrantCall", []]);
        expect((await channelOf(env, victim.id, victim.signer)).finalized).to.equal(false);
      }

      it("during open (transferFrom)", async () => {
        await fund(env, payer, 10n, tokAddr);
        await expectGuarded(() => env.escrow.write.open([payee, tokAddr, payer.account.address, 10n, DAY, `0x${"66".repeat(32)}`], { account: payer.account }));
      });
      it("during topUp", async () => {
        await fund(env, payer, 10n, tokAddr);
        await expectGuarded(() => env.escrow.write.topUp([target.c.id, target.c.signer, 10n], { account: payer.account }));
      });
      it("during settle's payout", async () => {
        await expectGuarded(() => env.escrow.write.settle([payee, tokAddr, encodeSettleItems([claim(target.v, target.c.id, 10n)])], { account: payeeW.account }));
      });
      it("during close's payout and refund", async () => {
        await expectGuarded(() => closeWith(target.c, 10n, 10n, target.v.sign(target.c.id, 10n).signature));
      });
      it("during withdraw's refund", async () => {
        await env.escrow.write.requestClose([target.c.id, target.c.signer], { account: payer.account });
        await hre.network.provider.send("evm_increaseTime", [DAY]);
        await expectGuarded(() => env.escrow.write.withdraw([target.c.id, target.c.signer]));
      });
      it("every state-changing function refuses re-entry (re-entered from settle's payout)", async () => {
        const salt = `0x${"99".repeat(32)}` as Hex;
        const targets: [string, Hex][] = [
          ["open", encodeFunctionData({ abi: channelEscrowAbi, functionName: "open", args: [payee, tokAddr, payee, 1n, DAY, salt] })],
          ["openWithPermit", encodeFunctionData({ abi: channelEscrowAbi, functionName: "openWithPermit", args: [payee, tokAddr, payee, 1n, DAY, salt, 0n, 27, salt, salt] })],
          ["openWithAuthorization", encodeFunctionData({ abi: channelEscrowAbi, functionName: "openWithAuthorization", args: [c.payer, payee, tokAddr, payee, 1n, DAY, salt, 0n, 0n, "0x"] })],
          ["topUp", encodeFunctionData({ abi: channelEscrowAbi, functionName: "topUp", args: [target.c.id, target.c.signer, 1n] })],
          ["requestClose", encodeFunctionData({ abi: channelEscrowAbi, functionName: "requestClose", args: [target.c.id, target.c.signer] })],
          ["withdraw", encodeFunctionData({ abi: channelEscrowAbi, functionName: "withdraw", args: [victim.id, victim.signer] })],
          ["settle", encodeFunctionData({ abi: channelEscrowAbi, functionName: "settle", args: [payee, tokAddr, encodeSettleItems([claim(target.v, target.c.id, 20n)])] })],
          ["settleContractSigned", encodeFunctionData({ abi: channelEscrowAbi, functionName: "settleContractSigned", args: [payee, tokAddr, []] })],
          ["close", encodeFunctionData({ abi: channelEscrowAbi, functionName: "close", args: [target.c.id, target.c.signer, 0n, 0n, "0x", "0x"] })],
          ["collect", encodeFunctionData({ abi: channelEscrowAbi, functionName: "collect", args: [tokAddr, payee] })],
        ];
        let amount = 10n;
        for (const [name, data] of targets) {
          await tok.write.arm([escrow, data]);
          await env.escrow.write.settle([payee, tokAddr, encodeSettleItems([claim(target.v, target.c.id, amount++)])], { account: payeeW.account });
          expect(await tok.read.reentered(), name).to.equal(false);
          const err = decodeRevertData((await tok.read.lastRevert()) as Hex);
          expect([err.errorName, err.args], name).to.deep.equal(["ReentrancyGuardReentrantCall", []]);
        }
        const ch = await channelOf(env, target.c.id, target.c.signer);
        expect([ch.settled, ch.deposit, ch.closeRequestedAt, ch.finalized]).to.deep.equal([amount - 1n, 5_000n, 0n, false]);
      });
      it("during settleContractSigned's payout", async () => {
        const owner = env.wallets[6];
          const wallet = await hre.viem.deployContract("ERC1271Wallet", [owner.account.address, 0]);
        const wc = await openWith(env, { payer, token: tokAddr, signer: wallet.address, amount: 100n });
        const sig = new VoucherSigner(accountKey(6), env.domain).sign(wc.id, 10n).signature;
        await expectGuarded(() =>
          env.escrow.write.settleContractSigned([payee, tokAddr, [{ channelId: wc.id, cumulativeAmount: 10n, amount: 10n, signer: wallet.address, signature: sig }]], {
            account: payeeW.account,
          }),
        );
      });
    });
  });

  describe("integer edges", () => {
    it("zero amounts: open and topUp revert ZeroAmount; a zero claim is skipped; a zero close refunds everything", async () => {
      await fund(env, payer, 1n);
      await expectRevert(env.escrow.write.open([payee, usdc, payer.account.address, 0n, DAY, `0x${"88".repeat(32)}`], { account: payer.account }), "ZeroAmount", []);
      await expectRevert(env.escrow.write.topUp([c.id, c.signer, 0n], { account: payer.account }), "ZeroAmount", []);
      expect((await outcome(await settle([claim(v, c.id, 0n)]))).events).to.deep.equal(skipped(c.id, SKIP.AmountNotAboveSettled));
      expect((await outcome(await settle([claim(v, c.id, 0n, 5n)]))).events).to.deep.equal(skipped(c.id, SKIP.AmountNotAboveSettled));
      const out = await outcome(await closeWith(c, 0n, 0n, v.sign(c.id, 0n).signature));
      expect(out.events).to.deep.equal([["Closed", { channelId: c.id, settled: 0n, refund: USDC(10) }]]);
    });

    it("a voucher equal to the deposit settles all of it; withdraw then refunds 0", async () => {
      await settle([claim(v, c.id, USDC(10))]);
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      await hre.network.provider.send("evm_increaseTime", [DAY]);
      const w = await outcome(await env.escrow.write.withdraw([c.id, c.signer]));
      expect(w.events).to.deep.equal([["Withdrawn", { channelId: c.id, refund: 0n }]]);
      expect(await balanceOf(env, usdc, escrow)).to.equal(0n);
    });

    it("a 2^128 - 1 voucher lets the payee collect the deposit, never more; amounts are not truncated to 96 bits", async () => {
      const full = await openKeyed({ amount: MAX_DEPOSIT });
      expect((await outcome(await settle([claim(full.v, full.c.id, MAX_UINT128)]))).events).to.deep.equal(skipped(full.c.id, SKIP.AmountAboveDeposit));
      // 2^96 + 5 would read as 5 if the contract dropped the high bits
      expect((await outcome(await settle([claim(v, c.id, (1n << 96n) + 5n)]))).events).to.deep.equal(skipped(c.id, SKIP.AmountAboveDeposit));
      await expectRevert(closeWith(c, (1n << 96n) + 5n, (1n << 96n) + 5n, v.sign(c.id, (1n << 96n) + 5n).signature), "AmountAboveDeposit", [
        c.id, (1n << 96n) + 5n, USDC(10),
      ]);
      await expectRevert(closeWith(full.c, MAX_UINT128, MAX_UINT128, full.v.sign(full.c.id, MAX_UINT128).signature), "AmountAboveDeposit", [
        full.c.id, MAX_UINT128, MAX_DEPOSIT,
      ]);
      const out = await outcome(await settle([claim(full.v, full.c.id, MAX_DEPOSIT, MAX_UINT128)]));
      expect(out.events).to.deep.equal([["Settled", { channelId: full.c.id, amount: MAX_DEPOSIT }]]);
      expect(out.transfers[0].value).to.equal(MAX_DEPOSIT);
      const ch = await channelOf(env, full.c.id, full.c.signer);
      expect([ch.deposit, ch.settled, ch.finalized]).to.deep.equal([MAX_DEPOSIT, MAX_DEPOSIT, false]);
    });

    it("a top-up past MAX_DEPOSIT reverts DepositTooLarge and does not wrap", async () => {
      const full = await openKeyed({ amount: MAX_DEPOSIT });
      await fund(env, payer, MAX_UINT128);
      await expectRevert(env.escrow.write.topUp([full.c.id, full.c.signer, 1n], { account: payer.account }), "DepositTooLarge", [MAX_DEPOSIT + 1n, MAX_DEPOSIT]);
      await expectRevert(env.escrow.write.topUp([full.c.id, full.c.signer, MAX_UINT128], { account: payer.account }), "DepositTooLarge", [
        MAX_DEPOSIT + MAX_UINT128, MAX_DEPOSIT,
      ]);
      // a settled, finalized or close-requested state cannot be reached by overflowing into the neighbouring bits
      const ch = await channelOf(env, full.c.id, full.c.signer);
      expect([ch.deposit, ch.settled, ch.finalized]).to.deep.equal([MAX_DEPOSIT, 0n, false]);
    });
  });

  describe("ERC-1271 signers", () => {
    const Mode = { Valid: 0, GasBurning: 3 } as const; // ERC1271Wallet.Mode

    it("a gas-burning wallet is skipped, the rest of the batch settles, and it costs at most its gas allowance", async () => {
      const owner = env.wallets[6];
      const ownerSigner = new VoucherSigner(accountKey(6), env.domain);
      const mk = async (mode: number) => {
        const wallet = await hre.viem.deployContract("ERC1271Wallet", [owner.account.address, mode]);
        const ch = await openWith(env, { payer, signer: wallet.address, amount: 100n });
        return (amount: bigint) => ({ channelId: ch.id, cumulativeAmount: amount, amount, signer: getAddress(wallet.address), signature: ownerSigner.sign(ch.id, amount).signature });
      };
      const [g1, g2, g3, g4, burn] = [await mk(Mode.Valid), await mk(Mode.Valid), await mk(Mode.Valid), await mk(Mode.Valid), await mk(Mode.GasBurning)];
      // reference: two good items; then two other good items (same cold/warm profile) with a burner between them
      const ref = await outcome(await env.escrow.write.settleContractSigned([payee, usdc, [g1(5n), g2(5n)]], { account: payeeW.account }));
      const withBurner = await outcome(
        await env.escrow.write.settleContractSigned([payee, usdc, [g3(5n), burn(5n), g4(5n)]], { account: payeeW.account, gas: 1_000_000n }),
      );
      expect(withBurner.events.map((e) => e[0])).to.deep.equal(["Settled", "SettleSkipped", "Settled"]);
      expect(withBurner.events[1][1]).to.deep.equal({ channelId: burn(5n).channelId, reason: SKIP.InvalidSignature });
      expect(withBurner.transfers[0].value).to.equal(10n);
      if (underCoverage()) return; // instrumented bytecode: gas figures mean nothing
      const extra = withBurner.gasUsed - ref.gasUsed;
      expect(Number(extra), `gas added by the burner: ${extra}`).to.be.below(50_000 + 12_000); // ERC1271_GAS + one item's overhead
      expect(Number(extra)).to.be.above(50_000); // it did burn its allowance (the bound is real, not a shortcut)
    });

    // Two answers a careless check would take as valid: the 4-byte comparison of the reviewed contract (finding 2)
    // and a whole-word comparison that does not require 32 bytes of return data (its output buffer is pre-zeroed).
    const lyingWallets = [
      {
        contract: "EchoWallet" as const,
        title: "a wallet that echoes its calldata (a 32-byte answer starting with the magic value)",
        answer: (data: Hex | undefined, digest: Hex) => expect(data).to.equal(`0x1626ba7e${digest.slice(2)}${"0".repeat(62)}40${"0".repeat(64)}`),
      },
      {
        contract: "FourByteWallet" as const,
        title: "a wallet that answers the 4 magic bytes alone (no 32-byte word)",
        answer: (data: Hex | undefined) => expect(data).to.equal("0x1626ba7e"),
      },
    ];
    for (const w of lyingWallets) {
      it(`${w.title} validates nothing: settleContractSigned skips it and close reverts`, async () => {
        const wallet = await hre.viem.deployContract(w.contract);
        const ch = await openWith(env, { payer, signer: wallet.address, amount: USDC(10) });
        const signer = getAddress(wallet.address);
        const digest = (await env.escrow.read.voucherDigest([ch.id, USDC(10)])) as Hex;
        const answer = await env.publicClient.call({
          to: signer,
          data: encodeFunctionData({ abi: [{ type: "function", name: "isValidSignature", inputs: [{ type: "bytes32" }, { type: "bytes" }], outputs: [{ type: "bytes4" }], stateMutability: "view" }] as const, functionName: "isValidSignature", args: [digest, "0x"] }),
        });
        w.answer(answer.data, digest); // what a careless check would take as valid
        const item = { channelId: ch.id, cumulativeAmount: USDC(10), amount: USDC(10), signer, signature: "0x" as Hex };
        const out = await outcome(await env.escrow.write.settleContractSigned([payee, usdc, [item]], { account: payeeW.account }));
        expect(out.events).to.deep.equal(skipped(ch.id, SKIP.InvalidSignature));
        expect(out.transfers).to.deep.equal([]);
        await expectRevert(closeWith({ id: ch.id, signer }, USDC(10), USDC(10), "0x"), "InvalidSignature", [ch.id]);
        // nor does it consent to an operator's close on the payer's behalf
        await env.escrow.write.setOperator([stranger.account.address, true], { account: payeeW.account });
        await expectRevert(
          env.escrow.write.close([ch.id, signer, 0n, 0n, "0x", "0x"], { account: stranger.account }),
          "CloseNotConsented",
          [ch.id, getAddress(stranger.account.address)],
        );
        const after = await channelOf(env, ch.id, signer);
        expect([after.settled, after.finalized]).to.deep.equal([0n, false]);
      });
    }
  });

  describe("a recipient whose token transfer burns all the gas (a hostile receive hook)", () => {
    let hook: Awaited<ReturnType<typeof hre.viem.deployContract<"HookToken">>>;
    let hookAddr: Address;
    beforeEach(async () => {
      hook = await hre.viem.deployContract("HookToken");
      hookAddr = getAddress(hook.address);
    });

    it("a refund that runs out of gas reverts the close (TransferOutOfGas) instead of being deferred; the payee's settle still collects", async () => {
      const ch = await openKeyed({ token: hookAddr, amount: 10_000n });
      await hook.write.trap([ch.c.payer, true]);
      await expectRevert(
        env.escrow.write.close([ch.c.id, ch.c.signer, 4_000n, 4_000n, ch.v.sign(ch.c.id, 4_000n).signature, "0x"], { account: payeeW.account, gas: 3_000_000n }),
        "TransferOutOfGas",
        [hookAddr, ch.c.payer],
      );
      await env.escrow.write.requestClose([ch.c.id, ch.c.signer], { account: payer.account });
      await hre.network.provider.send("evm_increaseTime", [DAY]);
      await expectRevert(env.escrow.write.withdraw([ch.c.id, ch.c.signer], { account: stranger.account, gas: 3_000_000n }), "TransferOutOfGas", [hookAddr, ch.c.payer]);
      expect(await env.escrow.read.owed([hookAddr, ch.c.payer])).to.equal(0n);
      const s = await outcome(await settle([claim(ch.v, ch.c.id, 4_000n)], payeeW, payee, hookAddr));
      expect(s.transfers).to.deep.equal([{ token: hookAddr, from: escrow, to: payee, value: 4_000n }]);
    });
  });
});
