/** ChannelEscrow.settle, settleContractSigned, setOperator / isOperator: effects, events, skips and reverts. */
import hre from "hardhat";
import { expect } from "chai";
import { encodeFunctionData, getAddress, type Address, type Hex } from "viem";
import { channelEscrowAbi, encodeSettleItems, VoucherSigner, type SettleClaim } from "@paychan/protocol";
import { deployEscrow, sessionKey, USDC, type Env } from "../helpers/escrow";
import { balanceOf, channelOf, claim, escrowEvents, openWith, receipt, SKIP, transfers, type Opened, type Wallet } from "../helpers/escrow-tx";
import { expectRevert } from "../helpers/revert";
import { accountKey, isolateEachTest, revertTo, snapshot } from "../helpers/chain";

describe("ChannelEscrow: settlement", () => {
  let env: Env;
  let payeeW: Wallet, payer: Wallet, stranger: Wallet, operator: Wallet, payee2W: Wallet;
  let payee: Address, payee2: Address, usdc: Address, escrow: Address;
  /** Three channels to `payee` in USDC, each with its own session key. */
  let chans: { c: Opened; v: VoucherSigner }[];

  async function openKeyed(opts: { payee?: Address; token?: Address; amount?: bigint } = {}) {
    const k = sessionKey();
    const c = await openWith(env, { payer, signer: k.address, amount: opts.amount ?? USDC(10), payee: opts.payee, token: opts.token });
    return { c, v: new VoucherSigner(k.key, env.domain) };
  }

  before(async () => {
    env = await deployEscrow();
    [payeeW, payer, stranger, operator, payee2W] = env.wallets;
    payee = getAddress(payeeW.account.address);
    payee2 = getAddress(payee2W.account.address);
    usdc = getAddress(env.usdc.address);
    escrow = getAddress(env.escrow.address);
    chans = [];
    for (let i = 0; i < 3; i++) chans.push(await openKeyed());
  });
  isolateEachTest();

  const settle = (items: readonly SettleClaim[], as: Wallet = payeeW, p: Address = payee, token: Address = usdc) =>
    env.escrow.write.settle([p, token, encodeSettleItems(items)], { account: as.account });
  const settleOutcome = async (hash: Hex) => {
    const r = await receipt(env, hash);
    return {
      events: escrowEvents(r).map((e) => [e.eventName, e.args] as const),
      transfers: transfers(r),
    };
  };

  describe("settle", () => {
    it("settles one channel: Settled(id, cumulative settled), one transfer to the payee, returns the total", async () => {
      const [{ c, v }] = chans;
      const items = encodeSettleItems([claim(v, c.id, USDC(2))]);
      const { result } = await env.publicClient.simulateContract({
        address: escrow, abi: channelEscrowAbi, functionName: "settle", args: [payee, usdc, items], account: payeeW.account,
      });
      expect(result).to.equal(USDC(2));
      const out = await settleOutcome(await env.escrow.write.settle([payee, usdc, items], { account: payeeW.account }));
      expect(out.events).to.deep.equal([["Settled", { channelId: c.id, amount: USDC(2) }]]);
      expect(out.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(2) }]);
      expect((await channelOf(env, c.id, c.signer)).settled).to.equal(USDC(2));
      expect(await balanceOf(env, usdc, payee)).to.equal(USDC(2));
    });

    it("aggregates a batch into one transfer of the sum", async () => {
      const items = chans.map(({ c, v }, i) => claim(v, c.id, USDC(i + 1)));
      const out = await settleOutcome(await settle(items));
      expect(out.events).to.deep.equal(chans.map(({ c }, i) => ["Settled", { channelId: c.id, amount: USDC(i + 1) }]));
      expect(out.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(6) }]);
    });

    it("a later voucher pays only the increase; Settled carries the new cumulative amount", async () => {
      const [{ c, v }] = chans;
      await settle([claim(v, c.id, USDC(2))]);
      const out = await settleOutcome(await settle([claim(v, c.id, USDC(5))]));
      expect(out.events).to.deep.equal([["Settled", { channelId: c.id, amount: USDC(5) }]]);
      expect(out.transfers[0].value).to.equal(USDC(3));
    });

    it("claims less than the voucher when asked (amount < cumulativeAmount), and the rest later with the same voucher", async () => {
      const [{ c, v }] = chans;
      await settle([claim(v, c.id, USDC(1), USDC(4))]);
      expect((await channelOf(env, c.id, c.signer)).settled).to.equal(USDC(1));
      const out = await settleOutcome(await settle([claim(v, c.id, USDC(4), USDC(4))]));
      expect(out.transfers[0].value).to.equal(USDC(3));
    });

    it("the same channel twice in a batch: the second item counts against the first's new settled amount", async () => {
      const [{ c, v }] = chans;
      const out = await settleOutcome(await settle([claim(v, c.id, USDC(1)), claim(v, c.id, USDC(3)), claim(v, c.id, USDC(3))]));
      expect(out.events).to.deep.equal([
        ["Settled", { channelId: c.id, amount: USDC(1) }],
        ["Settled", { channelId: c.id, amount: USDC(3) }],
        ["SettleSkipped", { channelId: c.id, reason: SKIP.AmountNotAboveSettled }],
      ]);
      expect(out.transfers[0].value).to.equal(USDC(3));
    });

    it("skips each kind of bad item with its reason and settles the good items around it", async () => {
      const [a, b, d] = chans;
      const other = await openKeyed({ payee: payee2 }); // another payee
      const usdc2 = await hre.viem.deployContract("MockUSDC");
      const otherTok = await openKeyed({ token: usdc2.address }); // another token
      const fin = await openKeyed(); // finalized below
      await env.escrow.write.close([fin.c.id, fin.c.signer, 0n, 0n, "0x", "0x"], { account: payeeW.account });
      await settle([claim(d.v, d.c.id, USDC(5))]); // d.settled = 5
      const unknown = `0x${"cd".repeat(32)}` as Hex;
      const bad: [SettleClaim, number][] = [
        [claim(a.v, unknown, 1n), SKIP.UnknownChannel],
        [claim(other.v, other.c.id, 1n), SKIP.PayeeMismatch],
        [claim(otherTok.v, otherTok.c.id, 1n), SKIP.TokenMismatch],
        [claim(b.v, a.c.id, 1n), SKIP.InvalidSignature], // signed by another channel's key
        [claim(fin.v, fin.c.id, 1n), SKIP.Finalized],
        [claim(d.v, d.c.id, USDC(5)), SKIP.AmountNotAboveSettled],
        [claim(d.v, d.c.id, USDC(4)), SKIP.AmountNotAboveSettled],
        [{ ...claim(d.v, d.c.id, USDC(6)), amount: USDC(7) }, SKIP.AmountAboveVoucher],
        [claim(d.v, d.c.id, USDC(11)), SKIP.AmountAboveDeposit],
      ];
      for (const [item, reason] of bad) {
        const snap = await snapshot();
        const out = await settleOutcome(await settle([claim(a.v, a.c.id, 7n), item, claim(b.v, b.c.id, 9n)]));
        expect(out.events, `reason ${reason}`).to.deep.equal([
          ["Settled", { channelId: a.c.id, amount: 7n }],
          ["SettleSkipped", { channelId: item.channelId, reason }],
          ["Settled", { channelId: b.c.id, amount: 9n }],
        ]);
        expect(out.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: 16n }]);
        for (const x of [other, otherTok, fin]) expect((await channelOf(env, x.c.id, x.c.signer)).settled).to.equal(0n);
        expect((await channelOf(env, d.c.id, d.c.signer)).settled).to.equal(USDC(5));
        await revertTo(snap); // the next bad item meets the same good items
      }
    });

    it("a batch where every item is skipped transfers nothing and does not revert", async () => {
      const [a] = chans;
      const out = await settleOutcome(await settle([claim(a.v, a.c.id, USDC(11)), claim(a.v, a.c.id, 0n)]));
      expect(out.events).to.deep.equal([
        ["SettleSkipped", { channelId: a.c.id, reason: SKIP.AmountAboveDeposit }],
        ["SettleSkipped", { channelId: a.c.id, reason: SKIP.AmountNotAboveSettled }],
      ]);
      expect(out.transfers).to.deep.equal([]);
    });

    it("an approved operator settles for the payee; the funds go to the payee", async () => {
      await env.escrow.write.setOperator([operator.account.address, true], { account: payeeW.account });
      const [{ c, v }] = chans;
      const out = await settleOutcome(await settle([claim(v, c.id, USDC(1))], operator));
      expect(out.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(1) }]);
      expect(await balanceOf(env, usdc, operator.account.address)).to.equal(0n);
    });

    it("reverts NotPayeeOrOperator for anyone else (payer, stranger, another payee's operator, revoked operator)", async () => {
      const [{ c, v }] = chans;
      const items = [claim(v, c.id, 1n)];
      for (const w of [payer, stranger, payee2W]) {
        await expectRevert(settle(items, w), "NotPayeeOrOperator", [payee, w.account.address]);
      }
      await env.escrow.write.setOperator([operator.account.address, true], { account: payee2W.account });
      await expectRevert(settle(items, operator), "NotPayeeOrOperator", [payee, operator.account.address]);
      await env.escrow.write.setOperator([operator.account.address, true], { account: payeeW.account });
      await settle(items, operator);
      await env.escrow.write.setOperator([operator.account.address, false], { account: payeeW.account });
      await expectRevert(settle([claim(v, c.id, 2n)], operator), "NotPayeeOrOperator", [payee, operator.account.address]);
    });

    it("reverts MalformedSettleItems for empty items or a length that is not a multiple of 128 bytes", async () => {
      const [{ c, v }] = chans;
      const one = encodeSettleItems([claim(v, c.id, 1n)]);
      const cases: [Hex, number][] = [
        ["0x", 0],
        [`0x${one.slice(2, 2 + 127 * 2)}`, 127],
        [`${one}00`, 129],
        [`${one}${one.slice(2)}${"00".repeat(64)}`, 320],
      ];
      for (const [items, len] of cases) {
        await expectRevert(env.escrow.write.settle([payee, usdc, items], { account: payeeW.account }), "MalformedSettleItems", [len]);
      }
    });

    it("checks the caller before the items", async () => {
      await expectRevert(env.escrow.write.settle([payee, usdc, "0x"], { account: stranger.account }), "NotPayeeOrOperator", [payee, stranger.account.address]);
    });
  });

  describe("settleContractSigned (ERC-1271 signers)", () => {
    const enum Mode { Valid, Invalid, Reverting, GasBurning }
    let owner: Wallet;
    let ownerSigner: VoucherSigner;

    async function walletChannel(mode: Mode) {
      const wallet = await hre.viem.deployContract("ERC1271Wallet", [owner.account.address, mode]);
      const c = await openWith(env, { payer, signer: wallet.address, amount: USDC(10) });
      return { c, wallet };
    }
    const item = (id: Hex, signer: Address, amount: bigint, cumulativeAmount = amount, by: VoucherSigner = ownerSigner) => ({
      channelId: id, cumulativeAmount, amount, signer, signature: by.sign(id, cumulativeAmount).signature,
    });

    before(() => {
      owner = env.wallets[6];
      ownerSigner = new VoucherSigner(accountKey(6), env.domain);
    });

    it("settles channels whose signer is a contract wallet that validates the owner's signature", async () => {
      const a = await walletChannel(Mode.Valid);
      const b = await walletChannel(Mode.Valid);
      const items = [item(a.c.id, a.wallet.address, USDC(1)), item(b.c.id, b.wallet.address, USDC(2), USDC(3))];
      const { result } = await env.publicClient.simulateContract({
        address: escrow, abi: channelEscrowAbi, functionName: "settleContractSigned", args: [payee, usdc, items], account: payeeW.account,
      });
      expect(result).to.equal(USDC(3));
      const out = await settleOutcome(await env.escrow.write.settleContractSigned([payee, usdc, items], { account: payeeW.account }));
      expect(out.events).to.deep.equal([
        ["Settled", { channelId: a.c.id, amount: USDC(1) }],
        ["Settled", { channelId: b.c.id, amount: USDC(2) }],
      ]);
      expect(out.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(3) }]);
    });

    it("skips invalid, reverting and gas-burning wallets as InvalidSignature and settles the rest", async () => {
      const good = await walletChannel(Mode.Valid);
      const invalid = await walletChannel(Mode.Invalid);
      const reverting = await walletChannel(Mode.Reverting);
      const burning = await walletChannel(Mode.GasBurning);
      const items = [
        item(invalid.c.id, invalid.wallet.address, 1n),
        item(reverting.c.id, reverting.wallet.address, 1n),
        item(burning.c.id, burning.wallet.address, 1n),
        item(good.c.id, good.wallet.address, 5n),
      ];
      const out = await settleOutcome(await env.escrow.write.settleContractSigned([payee, usdc, items], { account: payeeW.account, gas: 3_000_000n }));
      expect(out.events).to.deep.equal([
        ["SettleSkipped", { channelId: invalid.c.id, reason: SKIP.InvalidSignature }],
        ["SettleSkipped", { channelId: reverting.c.id, reason: SKIP.InvalidSignature }],
        ["SettleSkipped", { channelId: burning.c.id, reason: SKIP.InvalidSignature }],
        ["Settled", { channelId: good.c.id, amount: 5n }],
      ]);
      expect(out.transfers).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: 5n }]);
    });

    it("skips a claim that names another signer than the channel's, or a signature not by the wallet's owner", async () => {
      const a = await walletChannel(Mode.Valid);
      const b = await walletChannel(Mode.Valid); // same owner, but not a's signer
      const eoa = sessionKey();
      const eoaChan = await openWith(env, { payer, signer: eoa.address });
      const eoaVoucher = new VoucherSigner(eoa.key, env.domain);
      const items = [
        item(a.c.id, b.wallet.address, 1n),
        item(a.c.id, a.wallet.address, 1n, 1n, new VoucherSigner(accountKey(7), env.domain)),
        // an EOA-signed channel must use settle: an EOA has no isValidSignature
        item(eoaChan.id, eoa.address, 1n, 1n, eoaVoucher),
      ];
      const out = await settleOutcome(await env.escrow.write.settleContractSigned([payee, usdc, items], { account: payeeW.account }));
      expect(out.events).to.deep.equal([
        ["SettleSkipped", { channelId: a.c.id, reason: SKIP.InvalidSignature }],
        ["SettleSkipped", { channelId: a.c.id, reason: SKIP.InvalidSignature }],
        ["SettleSkipped", { channelId: eoaChan.id, reason: SKIP.InvalidSignature }],
      ]);
    });

    it("applies the same amount checks and skip reasons as settle", async () => {
      const a = await walletChannel(Mode.Valid);
      const other = await hre.viem.deployContract("ERC1271Wallet", [owner.account.address, Mode.Valid]);
      const toPayee2 = await openWith(env, { payer, payee: payee2, signer: other.address });
      const unknown = `0x${"ef".repeat(32)}` as Hex;
      const items = [
        item(a.c.id, a.wallet.address, USDC(2)),
        item(a.c.id, a.wallet.address, USDC(2)), // not above settled
        item(a.c.id, a.wallet.address, USDC(4), USDC(3)), // above voucher
        item(a.c.id, a.wallet.address, USDC(11)), // above deposit
        item(unknown, a.wallet.address, 1n),
        item(toPayee2.id, other.address, 1n),
      ];
      const out = await settleOutcome(await env.escrow.write.settleContractSigned([payee, usdc, items], { account: payeeW.account }));
      expect(out.events).to.deep.equal([
        ["Settled", { channelId: a.c.id, amount: USDC(2) }],
        ["SettleSkipped", { channelId: a.c.id, reason: SKIP.AmountNotAboveSettled }],
        ["SettleSkipped", { channelId: a.c.id, reason: SKIP.AmountAboveVoucher }],
        ["SettleSkipped", { channelId: a.c.id, reason: SKIP.AmountAboveDeposit }],
        ["SettleSkipped", { channelId: unknown, reason: SKIP.UnknownChannel }],
        ["SettleSkipped", { channelId: toPayee2.id, reason: SKIP.PayeeMismatch }],
      ]);
      await env.escrow.write.close([a.c.id, a.c.signer, 0n, 0n, "0x", "0x"], { account: payeeW.account });
      const fin = await settleOutcome(
        await env.escrow.write.settleContractSigned([payee, usdc, [item(a.c.id, a.wallet.address, USDC(3))]], { account: payeeW.account }),
      );
      expect(fin.events).to.deep.equal([["SettleSkipped", { channelId: a.c.id, reason: SKIP.Finalized }]]);
      expect(fin.transfers).to.deep.equal([]);
    });

    it("reverts EmptyBatch and NotPayeeOrOperator", async () => {
      await expectRevert(env.escrow.write.settleContractSigned([payee, usdc, []], { account: payeeW.account }), "EmptyBatch", []);
      await expectRevert(env.escrow.write.settleContractSigned([payee, usdc, []], { account: stranger.account }), "NotPayeeOrOperator", [
        payee, stranger.account.address,
      ]);
    });

    it("close accepts a contract wallet's signature (ERC-1271) and rejects it when the wallet says no", async () => {
      const a = await walletChannel(Mode.Valid);
      const s = ownerSigner.sign(a.c.id, USDC(2)).signature;
      await a.wallet.write.setMode([Mode.Invalid]);
      await expectRevert(env.escrow.write.close([a.c.id, a.c.signer, USDC(2), USDC(2), s, "0x"], { account: payeeW.account }), "InvalidSignature", [a.c.id]);
      await a.wallet.write.setMode([Mode.Reverting]);
      await expectRevert(env.escrow.write.close([a.c.id, a.c.signer, USDC(2), USDC(2), s, "0x"], { account: payeeW.account }), "InvalidSignature", [a.c.id]);
      await a.wallet.write.setMode([Mode.Valid]);
      const out = await settleOutcome(await env.escrow.write.close([a.c.id, a.c.signer, USDC(2), USDC(2), s, "0x"], { account: payeeW.account }));
      expect(out.events.at(-1)).to.deep.equal(["Closed", { channelId: a.c.id, settled: USDC(2), refund: USDC(8) }]);
    });

    it("a contract wallet signer can request the close through its owner", async () => {
      const a = await walletChannel(Mode.Valid);
      const data = encodeFunctionData({ abi: channelEscrowAbi, functionName: "requestClose", args: [a.c.id, a.c.signer] });
      await a.wallet.write.execute([escrow, data], { account: owner.account });
      expect((await channelOf(env, a.c.id, a.c.signer)).closeRequestedAt).to.not.equal(0n);
    });
  });

  describe("setOperator / isOperator", () => {
    it("approves and revokes, emitting OperatorSet; approval is per payee", async () => {
      expect(await env.escrow.read.isOperator([payee, operator.account.address])).to.equal(false);
      let out = await settleOutcome(await env.escrow.write.setOperator([operator.account.address, true], { account: payeeW.account }));
      expect(out.events).to.deep.equal([["OperatorSet", { payee, operator: getAddress(operator.account.address), approved: true }]]);
      expect(await env.escrow.read.isOperator([payee, operator.account.address])).to.equal(true);
      expect(await env.escrow.read.isOperator([payee2, operator.account.address])).to.equal(false);
      out = await settleOutcome(await env.escrow.write.setOperator([operator.account.address, false], { account: payeeW.account }));
      expect(out.events).to.deep.equal([["OperatorSet", { payee, operator: getAddress(operator.account.address), approved: false }]]);
      expect(await env.escrow.read.isOperator([payee, operator.account.address])).to.equal(false);
    });
  });
});
