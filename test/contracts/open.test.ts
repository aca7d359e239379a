/** ChannelEscrow.open, openWithPermit and openWithAuthorization: effects, events and every revert. */
import hre from "hardhat";
import { expect } from "chai";
import { getAddress, zeroAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { channelEscrowAbi, authorizationNonce, computeChannelId, MAX_CLOSE_DELAY, MAX_DEPOSIT, MAX_UINT128, MIN_CLOSE_DELAY } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { deployEscrow, DAY, nextSalt, USDC, type Env } from "../helpers/escrow";
import { balanceOf, channelOf, escrowEvents, eventsNamed, fund, openWith, receipt, transfers } from "../helpers/escrow-tx";
import { expectRevert } from "../helpers/revert";
import { accountKey, isolateEachTest, latestTimestamp } from "../helpers/chain";
import { signAuthorization, signCancelAuthorization, signPermit } from "../helpers/usdc";

describe("ChannelEscrow: opening channels", () => {
  let env: Env;
  let payee: Address;
  let payer: Env["wallets"][number];
  let other: Env["wallets"][number];
  let usdc: Address;
  let escrowAddr: Address;

  before(async () => {
    env = await deployEscrow();
    payee = getAddress(env.wallets[0].account.address);
    payer = env.wallets[1];
    other = env.wallets[2];
    usdc = getAddress(env.usdc.address);
    escrowAddr = getAddress(env.escrow.address);
  });
  isolateEachTest();

  const args = (o: Partial<{ payee: Address; token: Address; signer: Address; amount: bigint; delay: number; salt: `0x${string}` }> = {}) =>
    [o.payee ?? payee, o.token ?? usdc, o.signer ?? zeroAddress, o.amount ?? USDC(10), o.delay ?? DAY, o.salt ?? nextSalt()] as const;

  describe("open", () => {
    it("pulls the deposit, records the channel, emits ChannelOpened and returns computeChannelId", async () => {
      const signer = privateKeyToAccount(generatePrivateKey()).address;
      await fund(env, payer, USDC(10));
      const a = args({ signer });
      const { result } = await env.publicClient.simulateContract({
        address: escrowAddr, abi: channelEscrowAbi, functionName: "open", args: a, account: payer.account,
      });
      const expected = computeChannelId({
        chainId: env.chainId, escrow: escrowAddr, payer: payer.account.address, payee, token: usdc, signer, salt: a[5],
      });
      expect(result).to.equal(expected);
      const before = await balanceOf(env, usdc, payer.account.address);
      const hash = await env.escrow.write.open(a, { account: payer.account });
      const r = await receipt(env, hash);
      const events = escrowEvents(r);
      expect(events.map((e) => e.eventName)).to.deep.equal(["ChannelOpened"]);
      expect(events[0].args).to.deep.equal({
        channelId: expected, payer: getAddress(payer.account.address), payee, token: usdc, signer, deposit: USDC(10), closeDelay: DAY,
      });
      expect(transfers(r)).to.deep.equal([
        { token: usdc, from: getAddress(payer.account.address), to: escrowAddr, value: USDC(10) },
      ]);
      expect(await balanceOf(env, usdc, payer.account.address)).to.equal(before - USDC(10));
      expect(await balanceOf(env, usdc, escrowAddr)).to.equal(USDC(10));
      expect(await channelOf(env, expected, signer)).to.deep.equal({
        payer: getAddress(payer.account.address), payee, token: usdc, signer,
        deposit: USDC(10), settled: 0n, closeRequestedAt: 0n, closeDelay: DAY, finalized: false,
      });
    });

    it("uses the payer as signer when the signer is the zero address (same id as naming the payer)", async () => {
      const salt = nextSalt();
      const c = await openWith(env, { payer, signer: zeroAddress, salt });
      const ch = await channelOf(env, c.id, c.signer);
      expect(ch.signer).to.equal(getAddress(payer.account.address));
      const explicit = await env.escrow.read.computeChannelId([payer.account.address, payee, usdc, payer.account.address, salt]);
      expect(explicit).to.equal(c.id);
      await fund(env, payer, USDC(10));
      await expectRevert(env.escrow.write.open(args({ signer: payer.account.address, salt }), { account: payer.account }), "ChannelExists", [c.id]);
    });

    it("accepts the boundary values: close delay 15 minutes and 30 days, deposit of MAX_DEPOSIT", async () => {
      const a = await openWith(env, { payer, closeDelay: MIN_CLOSE_DELAY, amount: 1n });
      const b = await openWith(env, { payer, closeDelay: MAX_CLOSE_DELAY, amount: MAX_DEPOSIT });
      expect((await channelOf(env, a.id, a.signer)).closeDelay).to.equal(MIN_CLOSE_DELAY);
      const chB = await channelOf(env, b.id, b.signer);
      expect(chB.closeDelay).to.equal(MAX_CLOSE_DELAY);
      expect(chB.deposit).to.equal(MAX_DEPOSIT);
    });

    it("keeps payee and token apart across routes (first open of a pair registers it, later opens reuse it)", async () => {
      const usdc2 = await hre.viem.deployContract("MockUSDC");
      usdc2.address = getAddress(usdc2.address);
      const payee2 = getAddress(env.wallets[4].account.address);
      const c1 = await openWith(env, { payer });
      const c2 = await openWith(env, { payer, payee: payee2 });
      const c3 = await openWith(env, { payer, token: usdc2.address });
      const c4 = await openWith(env, { payer, payee: payee2, token: usdc2.address });
      const c5 = await openWith(env, { payer });
      const got = await env.publicClient.readContract({
        address: escrowAddr, abi: channelEscrowAbi, functionName: "getChannels", args: [[c1, c2, c3, c4, c5].map((c) => ({ channelId: c.id, signer: c.signer }))],
      });
      expect(got.map((c) => [c.payee, c.token])).to.deep.equal([
        [payee, usdc],
        [payee2, usdc],
        [payee, usdc2.address],
        [payee2, usdc2.address],
        [payee, usdc],
      ]);
    });

    it("reverts InvalidPayee for the zero address and for the escrow itself", async () => {
      await fund(env, payer, USDC(10));
      await expectRevert(env.escrow.write.open(args({ payee: zeroAddress }), { account: payer.account }), "InvalidPayee", [zeroAddress]);
      await expectRevert(env.escrow.write.open(args({ payee: escrowAddr }), { account: payer.account }), "InvalidPayee", [escrowAddr]);
    });

    it("reverts InvalidToken for the zero address and for the escrow itself", async () => {
      await expectRevert(env.escrow.write.open(args({ token: zeroAddress }), { account: payer.account }), "InvalidToken", [zeroAddress]);
      await expectRevert(env.escrow.write.open(args({ token: escrowAddr }), { account: payer.account }), "InvalidToken", [escrowAddr]);
    });

    it("reverts ZeroAmount for a zero deposit", async () => {
      await expectRevert(env.escrow.write.open(args({ amount: 0n }), { account: payer.account }), "ZeroAmount", []);
    });

    it("reverts DepositTooLarge above MAX_DEPOSIT (2^96 - 1), up to the largest uint128", async () => {
      await expectRevert(env.escrow.write.open(args({ amount: MAX_DEPOSIT + 1n }), { account: payer.account }), "DepositTooLarge", [MAX_DEPOSIT + 1n, MAX_DEPOSIT]);
      await expectRevert(env.escrow.write.open(args({ amount: MAX_UINT128 }), { account: payer.account }), "DepositTooLarge", [MAX_UINT128, MAX_DEPOSIT]);
    });

    it("reverts CloseDelayOutOfRange one second outside [15 minutes, 30 days] and at 0", async () => {
      for (const delay of [0, MIN_CLOSE_DELAY - 1, MAX_CLOSE_DELAY + 1, 2 ** 32 - 1]) {
        await expectRevert(env.escrow.write.open(args({ delay }), { account: payer.account }), "CloseDelayOutOfRange", [
          delay, MIN_CLOSE_DELAY, MAX_CLOSE_DELAY,
        ]);
      }
    });

    it("reverts ChannelExists when the same parameters are opened twice", async () => {
      const c = await openWith(env, { payer });
      await fund(env, payer, USDC(10));
      await expectRevert(
        env.escrow.write.open([c.payee, c.token, zeroAddress, USDC(10), DAY, c.salt], { account: payer.account }),
        "ChannelExists",
        [c.id],
      );
    });

    it("lets another payer open with the same payee, token, signer and salt (the payer is part of the id)", async () => {
      const salt = nextSalt();
      const signer = privateKeyToAccount(generatePrivateKey()).address;
      const a = await openWith(env, { payer, signer, salt });
      const b = await openWith(env, { payer: other, signer, salt });
      expect(a.id).to.not.equal(b.id);
      expect((await channelOf(env, b.id, b.signer)).payer).to.equal(getAddress(other.account.address));
    });

    it("bubbles the token's error when the allowance is missing and records nothing", async () => {
      await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "mint", args: [payer.account.address, USDC(10)] });
      const a = args();
      await expectRevert(env.escrow.write.open(a, { account: payer.account }), "InsufficientAllowance", [escrowAddr, 0n, USDC(10)]);
      const id = (await env.escrow.read.computeChannelId([payer.account.address, payee, usdc, zeroAddress, a[5]])) as Hex;
      expect((await channelOf(env, id, payer.account.address)).payer).to.equal(zeroAddress);
    });

    it("reverts TransferAmountMismatch for a fee-on-transfer token", async () => {
      const fee = await hre.viem.deployContract("FeeOnTransferToken");
      await fund(env, payer, 1000n, fee.address);
      await expectRevert(env.escrow.write.open(args({ token: fee.address, amount: 1000n }), { account: payer.account }), "TransferAmountMismatch", [
        fee.address, 1000n, 990n,
      ]);
    });
  });

  describe("openWithPermit", () => {
    const deadline = 2n ** 40n;
    async function permitFor(amount: bigint, spender: Address = escrowAddr, key = accountKey(1)) {
      const nonce = (await env.usdc.read.nonces([privateKeyToAccount(key).address])) as bigint;
      return signPermit(key, { chainId: env.chainId, token: usdc, spender, value: amount, nonce, deadline });
    }

    it("opens with a permit instead of an allowance, which is then used up", async () => {
      await env.usdc.write.mint([payer.account.address, USDC(5)]);
      const p = await permitFor(USDC(5));
      const a = args({ amount: USDC(5) });
      const hash = await env.escrow.write.openWithPermit([...a, deadline, p.v, p.r, p.s], { account: payer.account });
      const r = await receipt(env, hash);
      expect(escrowEvents(r).map((e) => e.eventName)).to.deep.equal(["ChannelOpened"]);
      const id = eventsNamed(r, "ChannelOpened")[0].args.channelId;
      expect((await channelOf(env, id, payer.account.address)).deposit).to.equal(USDC(5));
      expect(await env.usdc.read.allowance([payer.account.address, escrowAddr])).to.equal(0n);
      expect(await env.usdc.read.nonces([payer.account.address])).to.equal(1n);
    });

    it("still opens when a front-runner submitted the same permit first", async () => {
      await env.usdc.write.mint([payer.account.address, USDC(5)]);
      const p = await permitFor(USDC(5));
      // The front-runner copies the permit from the mempool and submits it directly to the token.
      await env.usdc.write.permit([payer.account.address, escrowAddr, USDC(5), deadline, p.v, p.r, p.s], { account: other.account });
      const hash = await env.escrow.write.openWithPermit([...args({ amount: USDC(5) }), deadline, p.v, p.r, p.s], { account: payer.account });
      const r = await receipt(env, hash);
      expect(escrowEvents(r).map((e) => e.eventName)).to.deep.equal(["ChannelOpened"]);
      expect(eventsNamed(r, "ChannelOpened")[0].args.deposit).to.equal(USDC(5));
    });

    it("ignores an invalid permit when an allowance is already in place", async () => {
      await fund(env, payer, USDC(5));
      const p = await permitFor(USDC(5), escrowAddr, accountKey(7)); // signed by someone else
      const hash = await env.escrow.write.openWithPermit([...args({ amount: USDC(5) }), deadline, p.v, p.r, p.s], { account: payer.account });
      expect(escrowEvents(await receipt(env, hash))[0].eventName).to.equal("ChannelOpened");
    });

    it("reverts with the token's InsufficientAllowance when the permit fails and there is no allowance", async () => {
      await env.usdc.write.mint([payer.account.address, USDC(5)]);
      const p = await permitFor(USDC(5), other.account.address); // permit for another spender
      await expectRevert(
        env.escrow.write.openWithPermit([...args({ amount: USDC(5) }), deadline, p.v, p.r, p.s], { account: payer.account }),
        "InsufficientAllowance",
        [escrowAddr, 0n, USDC(5)],
      );
    });

    it("checks the channel parameters like open (ZeroAmount, InvalidPayee, CloseDelayOutOfRange, ChannelExists)", async () => {
      const p = await permitFor(USDC(5));
      await expectRevert(env.escrow.write.openWithPermit([...args({ amount: 0n }), deadline, p.v, p.r, p.s], { account: payer.account }), "ZeroAmount", []);
      await expectRevert(
        env.escrow.write.openWithPermit([...args({ payee: zeroAddress, amount: USDC(5) }), deadline, p.v, p.r, p.s], { account: payer.account }),
        "InvalidPayee",
        [zeroAddress],
      );
      await expectRevert(
        env.escrow.write.openWithPermit([...args({ amount: USDC(5), delay: 1 }), deadline, p.v, p.r, p.s], { account: payer.account }),
        "CloseDelayOutOfRange",
        [1, MIN_CLOSE_DELAY, MAX_CLOSE_DELAY],
      );
      const c = await openWith(env, { payer, amount: USDC(5) });
      await expectRevert(
        env.escrow.write.openWithPermit([c.payee, c.token, zeroAddress, USDC(5), DAY, c.salt, deadline, p.v, p.r, p.s], { account: payer.account }),
        "ChannelExists",
        [c.id],
      );
    });
  });

  describe("openWithAuthorization", () => {
    /** A payer with tokens but no native currency: only a relayer can open for it. */
    async function gaslessPayer(amount: bigint) {
      const key = generatePrivateKey();
      const address = privateKeyToAccount(key).address;
      await env.usdc.write.mint([address, amount]);
      return { key, address };
    }
    async function authorize(key: `0x${string}`, params: { payee?: Address; signer?: Address; salt: `0x${string}`; amount: bigint; validAfter?: bigint; validBefore?: bigint; closeDelay?: number }) {
      const from = privateKeyToAccount(key).address;
      const channelId = computeChannelId({
        chainId: env.chainId, escrow: escrowAddr, payer: from, payee: params.payee ?? payee, token: usdc,
        signer: params.signer ?? zeroAddress, salt: params.salt,
      });
      const nonce = authorizationNonce(channelId, params.closeDelay ?? DAY);
      const validAfter = params.validAfter ?? 0n;
      const validBefore = params.validBefore ?? 2n ** 40n;
      const signature = await signAuthorization(key, env.chainId, usdc, {
        to: escrowAddr, value: params.amount, validAfter, validBefore, nonce,
      });
      return { channelId, nonce, validAfter, validBefore, signature, from };
    }

    it("opens for a payer without gas, submitted by a relayer, using the authorization whose nonce binds the channel id and close delay", async () => {
      const p = await gaslessPayer(USDC(7));
      const signer = privateKeyToAccount(generatePrivateKey()).address;
      const salt = nextSalt();
      const a = await authorize(p.key, { signer, salt, amount: USDC(7) });
      expect(await env.publicClient.getBalance({ address: p.address })).to.equal(0n);
      const hash = await env.escrow.write.openWithAuthorization(
        [p.address, payee, usdc, signer, USDC(7), DAY, salt, a.validAfter, a.validBefore, a.signature],
        { account: env.wallets[0].account },
      );
      const r = await receipt(env, hash);
      expect(escrowEvents(r).map((e) => e.eventName)).to.deep.equal(["ChannelOpened"]);
      const opened = eventsNamed(r, "ChannelOpened")[0].args;
      expect(opened.channelId).to.equal(a.channelId);
      expect(a.nonce).to.equal(await env.escrow.read.authorizationNonce([a.channelId, DAY]));
      expect(opened.payer).to.equal(p.address);
      expect(transfers(r)).to.deep.equal([{ token: usdc, from: p.address, to: escrowAddr, value: USDC(7) }]);
      expect(await env.usdc.read.authorizationState([p.address, a.nonce])).to.equal(true);
      const ch = await channelOf(env, a.channelId, signer);
      expect([ch.payer, ch.signer, ch.deposit]).to.deep.equal([p.address, signer, USDC(7)]);
    });

    it("cannot redirect the authorization to another channel (other payee, signer, salt, amount or close delay): the token rejects it", async () => {
      const p = await gaslessPayer(USDC(7));
      const salt = nextSalt();
      const a = await authorize(p.key, { salt, amount: USDC(7) });
      const attacker = getAddress(other.account.address);
      const base = [p.address, payee, usdc, zeroAddress, USDC(7), DAY, salt, a.validAfter, a.validBefore, a.signature] as const;
      const variants = [
        [p.address, attacker, ...base.slice(2)], // payee redirected to the attacker
        [...base.slice(0, 3), attacker, ...base.slice(4)], // attacker's signer key
        [...base.slice(0, 6), nextSalt(), ...base.slice(7)], // other salt
        [...base.slice(0, 4), USDC(6), ...base.slice(5)], // other amount
        [...base.slice(0, 5), 30 * DAY, ...base.slice(6)], // the relayer picks the longest close delay
        [...base.slice(0, 5), 15 * 60, ...base.slice(6)], // or the shortest
      ];
      for (const v of variants) {
        await expectRevert(env.escrow.write.openWithAuthorization(v as unknown as typeof base, { account: other.account }), "InvalidSigner", [p.address]);
      }
      // The intended channel still opens with it.
      await env.escrow.write.openWithAuthorization(base, { account: other.account });
      expect((await channelOf(env, a.channelId, p.address)).payee).to.equal(payee);
    });

    it("cannot be used twice: the second open reverts ChannelExists", async () => {
      const p = await gaslessPayer(USDC(14));
      const salt = nextSalt();
      const a = await authorize(p.key, { salt, amount: USDC(7) });
      const call = [p.address, payee, usdc, zeroAddress, USDC(7), DAY, salt, a.validAfter, a.validBefore, a.signature] as const;
      await env.escrow.write.openWithAuthorization(call);
      await expectRevert(env.escrow.write.openWithAuthorization(call), "ChannelExists", [a.channelId]);
      expect(await balanceOf(env, usdc, p.address)).to.equal(USDC(7));
    });

    it("reverts with the token's errors for an expired, not yet valid or cancelled authorization", async () => {
      const p = await gaslessPayer(USDC(7));
      const now = await latestTimestamp();
      const s1 = nextSalt();
      const expired = await authorize(p.key, { salt: s1, amount: USDC(7), validBefore: now });
      await expectRevert(
        env.escrow.write.openWithAuthorization([p.address, payee, usdc, zeroAddress, USDC(7), DAY, s1, 0n, now, expired.signature]),
        "AuthorizationExpired",
        [now],
      );
      const s2 = nextSalt();
      const future = now + 10_000n;
      const early = await authorize(p.key, { salt: s2, amount: USDC(7), validAfter: future });
      await expectRevert(
        env.escrow.write.openWithAuthorization([p.address, payee, usdc, zeroAddress, USDC(7), DAY, s2, future, early.validBefore, early.signature]),
        "AuthorizationNotYetValid",
        [future],
      );
      // The payer cancels the authorization (e.g. changed its mind) before the relayer submits it.
      const s3 = nextSalt();
      const a = await authorize(p.key, { salt: s3, amount: USDC(7) });
      const cancel = await signCancelAuthorization(p.key, env.chainId, usdc, a.nonce);
      await env.usdc.write.cancelAuthorization([p.address, a.nonce, cancel]);
      await expectRevert(
        env.escrow.write.openWithAuthorization([p.address, payee, usdc, zeroAddress, USDC(7), DAY, s3, 0n, a.validBefore, a.signature]),
        "AuthorizationAlreadyUsed",
        [p.address, a.nonce],
      );
    });

    it("checks the channel parameters before touching the token", async () => {
      const p = await gaslessPayer(USDC(7));
      const s = nextSalt();
      const a = await authorize(p.key, { salt: s, amount: USDC(7) });
      const call = (o: { payee?: Address; token?: Address; amount?: bigint; delay?: number }) =>
        env.escrow.write.openWithAuthorization([
          p.address, o.payee ?? payee, o.token ?? usdc, zeroAddress, o.amount ?? USDC(7), o.delay ?? DAY, s, 0n, a.validBefore, a.signature,
        ]);
      await expectRevert(call({ payee: zeroAddress }), "InvalidPayee", [zeroAddress]);
      await expectRevert(call({ token: zeroAddress }), "InvalidToken", [zeroAddress]);
      await expectRevert(call({ amount: 0n }), "ZeroAmount", []);
      await expectRevert(call({ amount: MAX_DEPOSIT + 1n }), "DepositTooLarge", [MAX_DEPOSIT + 1n, MAX_DEPOSIT]);
      await expectRevert(call({ delay: MAX_CLOSE_DELAY + 1 }), "CloseDelayOutOfRange", [MAX_CLOSE_DELAY + 1, MIN_CLOSE_DELAY, MAX_CLOSE_DELAY]);
    });

    it("rejects a zero payer (no channel can be opened for nobody)", async () => {
      const s = nextSalt();
      await expectRevert(
        env.escrow.write.openWithAuthorization([zeroAddress, payee, usdc, zeroAddress, USDC(1), DAY, s, 0n, 2n ** 40n, "0x"]),
        "InvalidPayer",
        [zeroAddress],
      );
    });
  });

  it("the escrow ABI exposes open, openWithPermit and openWithAuthorization returning the channel id", () => {
    for (const name of ["open", "openWithPermit", "openWithAuthorization"]) {
      const f = channelEscrowAbi.find((x) => x.type === "function" && x.name === name);
      expect(f && "outputs" in f ? f.outputs.map((o) => o.type) : null, name).to.deep.equal(["bytes32"]);
    }
  });
});
