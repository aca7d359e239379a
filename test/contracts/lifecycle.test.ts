/** ChannelEscrow.topUp, requestClose, withdraw and close: effects, events and every revert. */
import hre from "hardhat";
import { expect } from "chai";
import { getAddress, toHex, zeroAddress, type Address, type Hex } from "viem";
import { closeRequestDigest, encodeSettleItems, escrowDomain, MAX_DEPOSIT, MAX_UINT128, signCloseRequest, VoucherSigner } from "@paychan/protocol";
import { deployEscrow, DAY, USDC, type Env } from "../helpers/escrow";
import { balanceOf, channelOf, escrowEvents, fund, openWith, receipt, transfers, type Opened, type Wallet } from "../helpers/escrow-tx";
import { expectRevert } from "../helpers/revert";
import { accountKey, isolateEachTest, latestTimestamp, setNextTimestamp } from "../helpers/chain";

describe("ChannelEscrow: top-up, close request, withdraw and cooperative close", () => {
  let env: Env;
  let payeeW: Wallet, payer: Wallet, stranger: Wallet, operator: Wallet, signerW: Wallet;
  let payee: Address, usdc: Address, escrow: Address;
  let voucher: VoucherSigner;
  let c: Opened;

  before(async () => {
    env = await deployEscrow();
    [payeeW, payer, stranger, operator] = env.wallets;
    signerW = env.wallets[5];
    payee = getAddress(payeeW.account.address);
    usdc = getAddress(env.usdc.address);
    escrow = getAddress(env.escrow.address);
    voucher = new VoucherSigner(accountKey(5), env.domain);
    // A channel whose signer is a funded account, so it can send requestClose itself.
    c = await openWith(env, { payer, signer: signerW.account.address, amount: USDC(10) });
    await env.escrow.write.setOperator([operator.account.address, true], { account: payeeW.account });
  });
  isolateEachTest();

  const sig = (id: Hex, cum: bigint) => voucher.sign(id, cum).signature;
  const unknownId = `0x${"ab".repeat(32)}` as Hex;

  async function finalizeByWithdraw(ch: Opened) {
    await env.escrow.write.requestClose([ch.id, ch.signer], { account: payer.account });
    await hre.network.provider.send("evm_increaseTime", [DAY]);
    await env.escrow.write.withdraw([ch.id, ch.signer], { account: payer.account });
  }

  describe("topUp", () => {
    it("adds to the deposit, pulls the tokens and emits ChannelToppedUp with the new total", async () => {
      await fund(env, payer, USDC(3));
      const hash = await env.escrow.write.topUp([c.id, c.signer, USDC(3)], { account: payer.account });
      const r = await receipt(env, hash);
      expect(escrowEvents(r).map((e) => [e.eventName, e.args])).to.deep.equal([
        ["ChannelToppedUp", { channelId: c.id, amount: USDC(3), deposit: USDC(13) }],
      ]);
      expect(transfers(r)).to.deep.equal([{ token: usdc, from: c.payer, to: escrow, value: USDC(3) }]);
      expect((await channelOf(env, c.id, c.signer)).deposit).to.equal(USDC(13));
      expect(await balanceOf(env, usdc, escrow)).to.equal(USDC(13));
    });

    it("cancels a pending close: closeRequestedAt returns to 0 and withdraw needs a new request", async () => {
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      expect((await channelOf(env, c.id, c.signer)).closeRequestedAt).to.not.equal(0n);
      await fund(env, payer, 1n);
      await env.escrow.write.topUp([c.id, c.signer, 1n], { account: payer.account });
      expect((await channelOf(env, c.id, c.signer)).closeRequestedAt).to.equal(0n);
      await hre.network.provider.send("evm_increaseTime", [DAY]);
      await expectRevert(env.escrow.write.withdraw([c.id, c.signer], { account: payer.account }), "CloseNotRequested", [c.id]);
    });

    it("keeps the settled amount when topping up a partly settled channel", async () => {
      await env.escrow.write.settle([payee, usdc, encodeSettleItems([{ channelId: c.id, cumulativeAmount: USDC(4), amount: USDC(4), signature: sig(c.id, USDC(4)) }])], { account: payeeW.account });
      await fund(env, payer, USDC(1));
      await env.escrow.write.topUp([c.id, c.signer, USDC(1)], { account: payer.account });
      const ch = await channelOf(env, c.id, c.signer);
      expect([ch.deposit, ch.settled]).to.deep.equal([USDC(11), USDC(4)]);
    });

    it("reverts ZeroAmount, UnknownChannel, NotPayer and ChannelFinalized", async () => {
      await expectRevert(env.escrow.write.topUp([c.id, c.signer, 0n], { account: payer.account }), "ZeroAmount", []);
      await expectRevert(env.escrow.write.topUp([unknownId, c.signer, 1n], { account: payer.account }), "UnknownChannel", [unknownId]);
      for (const w of [payeeW, signerW, stranger]) {
        await fund(env, w, 1n);
        await expectRevert(env.escrow.write.topUp([c.id, c.signer, 1n], { account: w.account }), "NotPayer", [c.id, w.account.address]);
      }
      await finalizeByWithdraw(c);
      await fund(env, payer, 1n);
      await expectRevert(env.escrow.write.topUp([c.id, c.signer, 1n], { account: payer.account }), "ChannelFinalized", [c.id]);
    });

    it("reaches MAX_DEPOSIT exactly and reverts DepositTooLarge one unit past it or for a uint128 top-up", async () => {
      const big = await openWith(env, { payer, amount: MAX_DEPOSIT - 5n });
      await fund(env, payer, MAX_UINT128);
      await expectRevert(env.escrow.write.topUp([big.id, big.signer, 6n], { account: payer.account }), "DepositTooLarge", [MAX_DEPOSIT + 1n, MAX_DEPOSIT]);
      await expectRevert(env.escrow.write.topUp([big.id, big.signer, MAX_UINT128], { account: payer.account }), "DepositTooLarge", [
        MAX_DEPOSIT - 5n + MAX_UINT128, MAX_DEPOSIT,
      ]);
      await env.escrow.write.topUp([big.id, big.signer, 5n], { account: payer.account });
      expect((await channelOf(env, big.id, big.signer)).deposit).to.equal(MAX_DEPOSIT);
      await expectRevert(env.escrow.write.topUp([big.id, big.signer, 1n], { account: payer.account }), "DepositTooLarge", [MAX_DEPOSIT + 1n, MAX_DEPOSIT]);
    });

    it("reverts TransferAmountMismatch when the token starts charging a fee after the open", async () => {
      const fee = await hre.viem.deployContract("FeeOnTransferToken");
      await fee.write.setFeePercent([0n]);
      const ch = await openWith(env, { payer, token: fee.address, amount: 1000n });
      await fee.write.setFeePercent([2n]);
      await fund(env, payer, 500n, fee.address);
      await expectRevert(env.escrow.write.topUp([ch.id, ch.signer, 500n], { account: payer.account }), "TransferAmountMismatch", [fee.address, 500n, 490n]);
      expect((await channelOf(env, ch.id, ch.signer)).deposit).to.equal(1000n);
    });
  });

  describe("requestClose", () => {
    it("by the payer: records the time and emits CloseRequested with closesAt = now + closeDelay", async () => {
      const t = (await latestTimestamp()) + 10n;
      await setNextTimestamp(t);
      const hash = await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      expect(escrowEvents(await receipt(env, hash)).map((e) => [e.eventName, e.args])).to.deep.equal([
        ["CloseRequested", { channelId: c.id, closesAt: t + BigInt(DAY) }],
      ]);
      expect((await channelOf(env, c.id, c.signer)).closeRequestedAt).to.equal(t);
    });

    it("by the signer (an agent's key may ask to close)", async () => {
      await env.escrow.write.requestClose([c.id, c.signer], { account: signerW.account });
      expect((await channelOf(env, c.id, c.signer)).closeRequestedAt).to.equal(await latestTimestamp());
    });

    it("reverts NotPayerOrSigner for the payee, an operator and a stranger", async () => {
      for (const w of [payeeW, operator, stranger]) {
        await expectRevert(env.escrow.write.requestClose([c.id, c.signer], { account: w.account }), "NotPayerOrSigner", [c.id, w.account.address]);
      }
    });

    it("reverts CloseAlreadyRequested with the pending closesAt, UnknownChannel, and ChannelFinalized", async () => {
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      const at = await latestTimestamp();
      await expectRevert(env.escrow.write.requestClose([c.id, c.signer], { account: signerW.account }), "CloseAlreadyRequested", [c.id, at + BigInt(DAY)]);
      await expectRevert(env.escrow.write.requestClose([unknownId, c.signer], { account: payer.account }), "UnknownChannel", [unknownId]);
      await hre.network.provider.send("evm_increaseTime", [DAY]);
      await env.escrow.write.withdraw([c.id, c.signer]);
      await expectRevert(env.escrow.write.requestClose([c.id, c.signer], { account: payer.account }), "ChannelFinalized", [c.id]);
    });
  });

  describe("withdraw", () => {
    it("before a close request reverts CloseNotRequested; during the delay CloseDelayNotElapsed(closesAt, now)", async () => {
      await expectRevert(env.escrow.write.withdraw([c.id, c.signer], { account: payer.account }), "CloseNotRequested", [c.id]);
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      const closesAt = (await latestTimestamp()) + BigInt(DAY);
      await setNextTimestamp(closesAt - 1n);
      await expectRevert(env.escrow.write.withdraw([c.id, c.signer], { account: payer.account }), "CloseDelayNotElapsed", [c.id, closesAt, closesAt - 1n]);
    });

    it("at closesAt refunds deposit - settled to the payer, emits Withdrawn and finalizes (anyone may call)", async () => {
      await env.escrow.write.settle([payee, usdc, encodeSettleItems([{ channelId: c.id, cumulativeAmount: USDC(3), amount: USDC(3), signature: sig(c.id, USDC(3)) }])], { account: payeeW.account });
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      const closesAt = (await latestTimestamp()) + BigInt(DAY);
      await setNextTimestamp(closesAt);
      const before = await balanceOf(env, usdc, c.payer);
      const hash = await env.escrow.write.withdraw([c.id, c.signer], { account: stranger.account });
      const r = await receipt(env, hash);
      expect(escrowEvents(r).map((e) => [e.eventName, e.args])).to.deep.equal([["Withdrawn", { channelId: c.id, refund: USDC(7) }]]);
      expect(transfers(r)).to.deep.equal([{ token: usdc, from: escrow, to: c.payer, value: USDC(7) }]);
      expect(await balanceOf(env, usdc, c.payer)).to.equal(before + USDC(7));
      const ch = await channelOf(env, c.id, c.signer);
      expect([ch.finalized, ch.deposit, ch.settled]).to.deep.equal([true, USDC(10), USDC(3)]);
      await expectRevert(env.escrow.write.withdraw([c.id, c.signer], { account: payer.account }), "ChannelFinalized", [c.id]);
    });

    it("of a fully settled channel finalizes without a transfer", async () => {
      await env.escrow.write.settle([payee, usdc, encodeSettleItems([{ channelId: c.id, cumulativeAmount: USDC(10), amount: USDC(10), signature: sig(c.id, USDC(10)) }])], { account: payeeW.account });
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      await hre.network.provider.send("evm_increaseTime", [DAY]);
      const r = await receipt(env, await env.escrow.write.withdraw([c.id, c.signer]));
      expect(escrowEvents(r).map((e) => [e.eventName, e.args])).to.deep.equal([["Withdrawn", { channelId: c.id, refund: 0n }]]);
      expect(transfers(r)).to.deep.equal([]);
      expect((await channelOf(env, c.id, c.signer)).finalized).to.equal(true);
    });

    it("reverts UnknownChannel for an unknown id", async () => {
      await expectRevert(env.escrow.write.withdraw([unknownId, c.signer]), "UnknownChannel", [unknownId]);
    });
  });

  describe("close (cooperative)", () => {
    it("settles the voucher, refunds the rest to the payer at once, emits Settled then Closed, finalizes", async () => {
      const payerBefore = await balanceOf(env, usdc, c.payer);
      const hash = await env.escrow.write.close([c.id, c.signer, USDC(4), USDC(3), sig(c.id, USDC(4)), "0x"], { account: payeeW.account });
      const r = await receipt(env, hash);
      expect(escrowEvents(r).map((e) => [e.eventName, e.args])).to.deep.equal([
        ["Settled", { channelId: c.id, amount: USDC(3) }],
        ["Closed", { channelId: c.id, settled: USDC(3), refund: USDC(7) }],
      ]);
      expect(transfers(r)).to.deep.equal([
        { token: usdc, from: escrow, to: payee, value: USDC(3) },
        { token: usdc, from: escrow, to: c.payer, value: USDC(7) },
      ]);
      expect(await balanceOf(env, usdc, c.payer)).to.equal(payerBefore + USDC(7));
      const ch = await channelOf(env, c.id, c.signer);
      expect([ch.finalized, ch.settled, ch.deposit]).to.deep.equal([true, USDC(3), USDC(10)]);
      expect(await balanceOf(env, usdc, escrow)).to.equal(0n);
    });

    it("accepts an ECDSA voucher from a signer key that has code (an EIP-7702 delegated account), as settle does", async () => {
      // Give the signer's address code, as an EIP-7702 delegation would; its key still signs ECDSA vouchers.
      await hre.network.provider.send("hardhat_setCode", [c.signer, "0x60006000fd"]); // a contract that always reverts
      const r = await receipt(env, await env.escrow.write.close([c.id, c.signer, USDC(4), USDC(4), sig(c.id, USDC(4)), "0x"], { account: payeeW.account }));
      expect(escrowEvents(r).map((e) => e.eventName)).to.deep.equal(["Settled", "Closed"]);
      await hre.network.provider.send("hardhat_setCode", [c.signer, "0x"]);
    });

    it("by an approved operator pays the payee, not the operator", async () => {
      const consent = signCloseRequest(env.domain, c.id, accountKey(5));
      const r = await receipt(env, await env.escrow.write.close([c.id, c.signer, USDC(2), USDC(2), sig(c.id, USDC(2)), consent], { account: operator.account }));
      expect(transfers(r)[0]).to.deep.equal({ token: usdc, from: escrow, to: payee, value: USDC(2) });
      expect(await balanceOf(env, usdc, operator.account.address)).to.equal(0n);
    });

    describe("an operator cannot waive the payee's money", () => {
      // The review's scenario: 10 deposited, the payee holds a 6 voucher, its hot operator key is compromised.
      const byOperator = (cum: bigint, amount: bigint, signature: Hex, consent: Hex = "0x") =>
        env.escrow.write.close([c.id, c.signer, cum, amount, signature, consent], { account: operator.account });

      it("without the payer's consent an operator's refunding close reverts CloseNotConsented, and the payee's voucher still settles", async () => {
        const op = getAddress(operator.account.address);
        await expectRevert(byOperator(0n, 0n, "0x"), "CloseNotConsented", [c.id, op]);
        await expectRevert(byOperator(USDC(1), USDC(1), sig(c.id, USDC(1))), "CloseNotConsented", [c.id, op]); // an older voucher
        const ch = await channelOf(env, c.id, c.signer);
        expect([ch.settled, ch.finalized]).to.deep.equal([0n, false]);
        await env.escrow.write.settle([payee, usdc, encodeSettleItems([{ channelId: c.id, cumulativeAmount: USDC(6), amount: USDC(6), signature: sig(c.id, USDC(6)) }])], { account: operator.account });
        expect(await balanceOf(env, usdc, payee)).to.equal(USDC(6));
      });

      it("refuses a consent signed by a stranger, for another channel, or a voucher signature in its place", async () => {
        const op = getAddress(operator.account.address);
        const other = await openWith(env, { payer, signer: signerW.account.address, amount: USDC(1) });
        for (const consent of [
          signCloseRequest(env.domain, c.id, accountKey(9)), // a stranger's key
          signCloseRequest(env.domain, other.id, accountKey(5)), // the right key, another channel
          sig(c.id, 0n), // a voucher, not a close request
          signCloseRequest(escrowDomain(env.chainId, payee), c.id, accountKey(5)), // another escrow's domain
        ]) {
          await expectRevert(byOperator(0n, 0n, "0x", consent), "CloseNotConsented", [c.id, op]);
        }
      });

      it("with a close request signed by the channel's signer or by its payer, an operator closes: the payee is paid and the rest refunded", async () => {
        for (const key of [accountKey(5), accountKey(1)]) {
          const ch = await openWith(env, { payer, signer: signerW.account.address, amount: USDC(10) });
          const r = await receipt(
            env,
            await env.escrow.write.close([ch.id, ch.signer, USDC(6), USDC(6), sig(ch.id, USDC(6)), signCloseRequest(env.domain, ch.id, key)], { account: operator.account }),
          );
          expect(escrowEvents(r).at(-1)?.args).to.deep.equal({ channelId: ch.id, settled: USDC(6), refund: USDC(4) });
        }
      });

      it("with a close pending on chain (the payer asked), an operator closes without a signature", async () => {
        await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
        await byOperator(USDC(6), USDC(6), sig(c.id, USDC(6)));
        expect((await channelOf(env, c.id, c.signer)).finalized).to.equal(true);
      });

      it("an operator's close that refunds nothing (the whole deposit claimed) needs no consent", async () => {
        await byOperator(USDC(10), USDC(10), sig(c.id, USDC(10)));
        expect(await balanceOf(env, usdc, payee)).to.equal(USDC(10));
      });

      it("the payee itself may still waive: its close without any voucher refunds everything", async () => {
        const r = await receipt(env, await env.escrow.write.close([c.id, c.signer, 0n, 0n, "0x", "0x"], { account: payeeW.account }));
        expect(escrowEvents(r).at(-1)?.args).to.deep.equal({ channelId: c.id, settled: 0n, refund: USDC(10) });
      });

      it("closeRequestDigest equals the protocol's close request digest", async () => {
        const onChain = await env.escrow.read.closeRequestDigest([c.id]);
        expect(onChain).to.equal(toHex(closeRequestDigest(env.domain, c.id)));
      });
    });

    it("with an amount at or below settled needs no valid signature and refunds deposit - settled", async () => {
      await env.escrow.write.settle([payee, usdc, encodeSettleItems([{ channelId: c.id, cumulativeAmount: USDC(5), amount: USDC(5), signature: sig(c.id, USDC(5)) }])], { account: payeeW.account });
      const r = await receipt(env, await env.escrow.write.close([c.id, c.signer, 0n, USDC(5), "0x", "0x"], { account: payeeW.account }));
      expect(escrowEvents(r).map((e) => [e.eventName, e.args])).to.deep.equal([["Closed", { channelId: c.id, settled: USDC(5), refund: USDC(5) }]]);
      expect(transfers(r)).to.deep.equal([{ token: usdc, from: escrow, to: c.payer, value: USDC(5) }]);
    });

    it("for the whole deposit pays the payee and makes no refund transfer", async () => {
      const r = await receipt(env, await env.escrow.write.close([c.id, c.signer, USDC(10), USDC(10), sig(c.id, USDC(10)), "0x"], { account: payeeW.account }));
      expect(transfers(r)).to.deep.equal([{ token: usdc, from: escrow, to: payee, value: USDC(10) }]);
      expect(escrowEvents(r).at(-1)?.args).to.deep.equal({ channelId: c.id, settled: USDC(10), refund: 0n });
    });

    it("works while a close is pending (the payee closes instead of waiting)", async () => {
      await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
      await env.escrow.write.close([c.id, c.signer, USDC(1), USDC(1), sig(c.id, USDC(1)), "0x"], { account: payeeW.account });
      expect((await channelOf(env, c.id, c.signer)).finalized).to.equal(true);
    });

    it("reverts NotPayeeOrOperator for the payer, the signer, a stranger and a revoked operator", async () => {
      for (const w of [payer, signerW, stranger]) {
        await expectRevert(env.escrow.write.close([c.id, c.signer, USDC(1), USDC(1), sig(c.id, USDC(1)), "0x"], { account: w.account }), "NotPayeeOrOperator", [
          payee, w.account.address,
        ]);
      }
      await env.escrow.write.setOperator([operator.account.address, false], { account: payeeW.account });
      await expectRevert(env.escrow.write.close([c.id, c.signer, USDC(1), USDC(1), sig(c.id, USDC(1)), "0x"], { account: operator.account }), "NotPayeeOrOperator", [
        payee, operator.account.address,
      ]);
    });

    it("reverts AmountAboveVoucher, AmountAboveDeposit and InvalidSignature with their arguments", async () => {
      await expectRevert(env.escrow.write.close([c.id, c.signer, USDC(2), USDC(3), sig(c.id, USDC(2)), "0x"], { account: payeeW.account }), "AmountAboveVoucher", [
        c.id, USDC(3), USDC(2),
      ]);
      await expectRevert(env.escrow.write.close([c.id, c.signer, USDC(11), USDC(11), sig(c.id, USDC(11)), "0x"], { account: payeeW.account }), "AmountAboveDeposit", [
        c.id, USDC(11), USDC(10),
      ]);
      // a voucher for another amount, and a voucher signed by the payer instead of the channel's signer
      await expectRevert(env.escrow.write.close([c.id, c.signer, USDC(3), USDC(3), sig(c.id, USDC(4)), "0x"], { account: payeeW.account }), "InvalidSignature", [c.id]);
      const byPayer = new VoucherSigner(accountKey(1), env.domain).sign(c.id, USDC(3)).signature;
      await expectRevert(env.escrow.write.close([c.id, c.signer, USDC(3), USDC(3), byPayer, "0x"], { account: payeeW.account }), "InvalidSignature", [c.id]);
    });

    it("reverts UnknownChannel and, once finalized, ChannelFinalized", async () => {
      await expectRevert(env.escrow.write.close([unknownId, c.signer, 1n, 1n, "0x", "0x"], { account: payeeW.account }), "UnknownChannel", [unknownId]);
      await env.escrow.write.close([c.id, c.signer, 0n, 0n, "0x", "0x"], { account: payeeW.account });
      await expectRevert(env.escrow.write.close([c.id, c.signer, USDC(1), USDC(1), sig(c.id, USDC(1)), "0x"], { account: payeeW.account }), "ChannelFinalized", [c.id]);
    });

    it("checks the caller before the finalized flag (a stranger learns nothing)", async () => {
      await env.escrow.write.close([c.id, c.signer, 0n, 0n, "0x", "0x"], { account: payeeW.account });
      await expectRevert(env.escrow.write.close([c.id, c.signer, 0n, 0n, "0x", "0x"], { account: stranger.account }), "NotPayeeOrOperator", [payee, stranger.account.address]);
    });
  });

  describe("naming a channel by (channelId, signer)", () => {
    // Wrong signers: another funded account, the payer (not this channel's signer), and the zero address.
    const wrongSigners = () => [stranger.account.address, c.payer, zeroAddress].map((a) => getAddress(a));

    it("topUp, requestClose, withdraw and close with another signer revert SignerMismatch(channelId, signer) and change nothing", async () => {
      await fund(env, payer, USDC(1));
      const before = await channelOf(env, c.id, c.signer);
      const escrowBefore = await balanceOf(env, usdc, escrow);
      for (const wrong of wrongSigners()) {
        await expectRevert(env.escrow.write.topUp([c.id, wrong, 1n], { account: payer.account }), "SignerMismatch", [c.id, wrong]);
        await expectRevert(env.escrow.write.requestClose([c.id, wrong], { account: payer.account }), "SignerMismatch", [c.id, wrong]);
        await expectRevert(env.escrow.write.withdraw([c.id, wrong], { account: payer.account }), "SignerMismatch", [c.id, wrong]);
        await expectRevert(env.escrow.write.close([c.id, wrong, 0n, 0n, "0x", "0x"], { account: payeeW.account }), "SignerMismatch", [c.id, wrong]);
      }
      // A stranger naming itself as the signer cannot start the close delay (the signer is checked before the caller).
      await expectRevert(env.escrow.write.requestClose([c.id, stranger.account.address], { account: stranger.account }), "SignerMismatch", [
        c.id, getAddress(stranger.account.address),
      ]);
      expect(await channelOf(env, c.id, c.signer)).to.deep.equal(before);
      expect(await balanceOf(env, usdc, escrow)).to.equal(escrowBefore);
    });

    it("close with a voucher signed by the wrong signer's own key still reverts SignerMismatch (no empty slot is written)", async () => {
      const strangerVoucher = new VoucherSigner(accountKey(2), env.domain).sign(c.id, USDC(1)).signature;
      await expectRevert(
        env.escrow.write.close([c.id, getAddress(stranger.account.address), USDC(1), USDC(1), strangerVoucher, "0x"], { account: payeeW.account }),
        "SignerMismatch",
        [c.id, getAddress(stranger.account.address)],
      );
      const wrong = await channelOf(env, c.id, stranger.account.address);
      expect([wrong.deposit, wrong.settled, wrong.finalized, wrong.signer]).to.deep.equal([0n, 0n, false, zeroAddress]);
    });

    it("after a withdraw the channel still answers ChannelFinalized for its signer and SignerMismatch for another", async () => {
      await finalizeByWithdraw(c);
      await expectRevert(env.escrow.write.requestClose([c.id, c.signer], { account: payer.account }), "ChannelFinalized", [c.id]);
      const wrong = getAddress(stranger.account.address);
      await expectRevert(env.escrow.write.requestClose([c.id, wrong], { account: payer.account }), "SignerMismatch", [c.id, wrong]);
    });
  });

  it("a channel signed by the payer (signer 0 at open) closes with the payer's vouchers", async () => {
    const own = await openWith(env, { payer, signer: zeroAddress, amount: USDC(2) });
    const s = new VoucherSigner(accountKey(1), env.domain).sign(own.id, USDC(1)).signature;
    const r = await receipt(env, await env.escrow.write.close([own.id, own.signer, USDC(1), USDC(1), s, "0x"], { account: payeeW.account }));
    expect(escrowEvents(r).at(-1)?.args).to.deep.equal({ channelId: own.id, settled: USDC(1), refund: USDC(1) });
  });
});
