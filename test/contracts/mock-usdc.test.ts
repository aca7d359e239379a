/** MockUSDC behaves like USDC where the escrow depends on it: decimals, permit, EIP-3009, blacklist, pause. */
import hre from "hardhat";
import { expect } from "chai";
import { getAddress, maxUint256, parseSignature, zeroAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { mockUsdcAbi } from "@paychan/demo";
import { type Wallet } from "../helpers/escrow-tx";
import { expectRevert } from "../helpers/revert";
import { accountKey, isolateEachTest, latestTimestamp } from "../helpers/chain";
import { signAuthorization, signCancelAuthorization, signPermit } from "../helpers/usdc";

describe("MockUSDC", () => {
  let usdc: Awaited<ReturnType<typeof hre.viem.deployContract<"MockUSDC">>>;
  let chainId: number;
  let owner: Wallet, alice: Wallet, bob: Wallet, carol: Wallet;
  let token: Address;
  const aliceKey = accountKey(1);

  before(async () => {
    usdc = await hre.viem.deployContract("MockUSDC");
    token = getAddress(usdc.address);
    chainId = await (await hre.viem.getPublicClient()).getChainId();
    [owner, alice, bob, carol] = await hre.viem.getWalletClients();
    await usdc.write.mint([alice.account.address, 1_000_000n]);
  });
  isolateEachTest();

  const bal = (w: Wallet | Address) => usdc.read.balanceOf([typeof w === "string" ? w : w.account.address]);
  const nonce = () => `0x${Buffer.from(generatePrivateKey().slice(2), "hex").toString("hex")}` as Hex;

  it("has USDC's metadata: 6 decimals, name USD Coin, symbol USDC, EIP-712 domain USD Coin / 2", async () => {
    expect(await usdc.read.decimals()).to.equal(6);
    expect(await usdc.read.name()).to.equal("USD Coin");
    expect(await usdc.read.symbol()).to.equal("USDC");
    const [, name, version, cid, vc] = await (await hre.viem.getPublicClient()).readContract({ address: token, abi: mockUsdcAbi, functionName: "eip712Domain" });
    expect([name, version, Number(cid), getAddress(vc)]).to.deep.equal(["USD Coin", "2", chainId, token]);
  });

  it("mints to anyone (local networks) and tracks total supply; not to the zero address", async () => {
    await usdc.write.mint([bob.account.address, 5n], { account: carol.account });
    expect(await bal(bob)).to.equal(5n);
    expect(await usdc.read.totalSupply()).to.equal(1_000_005n);
    await expectRevert(usdc.write.mint([zeroAddress, 1n]), "InvalidAccount", [zeroAddress]);
  });

  it("transfer and transferFrom move balances and spend allowance; an infinite allowance is not spent", async () => {
    await usdc.write.transfer([bob.account.address, 100n], { account: alice.account });
    expect([await bal(alice), await bal(bob)]).to.deep.equal([999_900n, 100n]);
    await usdc.write.approve([carol.account.address, 50n], { account: alice.account });
    await usdc.write.transferFrom([alice.account.address, bob.account.address, 30n], { account: carol.account });
    expect(await usdc.read.allowance([alice.account.address, carol.account.address])).to.equal(20n);
    await expectRevert(usdc.write.transferFrom([alice.account.address, bob.account.address, 21n], { account: carol.account }), "InsufficientAllowance", [
      carol.account.address, 20n, 21n,
    ]);
    await usdc.write.approve([carol.account.address, maxUint256], { account: alice.account });
    await usdc.write.transferFrom([alice.account.address, bob.account.address, 10n], { account: carol.account });
    expect(await usdc.read.allowance([alice.account.address, carol.account.address])).to.equal(maxUint256);
    await expectRevert(usdc.write.transfer([alice.account.address, 1_000n], { account: bob.account }), "InsufficientBalance", [
      bob.account.address, 140n, 1_000n,
    ]);
    await expectRevert(usdc.write.transfer([zeroAddress, 1n], { account: alice.account }), "InvalidAccount", [zeroAddress]);
  });

  describe("EIP-2612 permit", () => {
    it("sets the allowance from the owner's signature and increments the nonce; a replay fails", async () => {
      const deadline = (await latestTimestamp()) + 3600n;
      const p = await signPermit(aliceKey, { chainId, token, spender: bob.account.address, value: 77n, nonce: 0n, deadline });
      await usdc.write.permit([alice.account.address, bob.account.address, 77n, deadline, p.v, p.r, p.s], { account: carol.account });
      expect(await usdc.read.allowance([alice.account.address, bob.account.address])).to.equal(77n);
      expect(await usdc.read.nonces([alice.account.address])).to.equal(1n);
      await expectRevert(usdc.write.permit([alice.account.address, bob.account.address, 77n, deadline, p.v, p.r, p.s]), "InvalidSigner", [
        alice.account.address,
      ]);
    });

    it("reverts PermitExpired after the deadline and InvalidSigner for another signer or other values", async () => {
      const now = await latestTimestamp();
      const old = await signPermit(aliceKey, { chainId, token, spender: bob.account.address, value: 1n, nonce: 0n, deadline: now });
      await expectRevert(usdc.write.permit([alice.account.address, bob.account.address, 1n, now, old.v, old.r, old.s]), "PermitExpired", [now]);
      const deadline = now + 3600n;
      const byBob = await signPermit(accountKey(2), { chainId, token, spender: bob.account.address, value: 1n, nonce: 0n, deadline });
      await expectRevert(usdc.write.permit([alice.account.address, bob.account.address, 1n, deadline, byBob.v, byBob.r, byBob.s]), "InvalidSigner", [
        alice.account.address,
      ]);
      const p = await signPermit(aliceKey, { chainId, token, spender: bob.account.address, value: 1n, nonce: 0n, deadline });
      await expectRevert(usdc.write.permit([alice.account.address, bob.account.address, 2n, deadline, p.v, p.r, p.s]), "InvalidSigner", [
        alice.account.address,
      ]);
    });
  });

  describe("EIP-3009", () => {
    async function auth(kind: "ReceiveWithAuthorization" | "TransferWithAuthorization", to: Address, value: bigint, o: { validAfter?: bigint; validBefore?: bigint; n?: Hex } = {}) {
      const a = { to, value, validAfter: o.validAfter ?? 0n, validBefore: o.validBefore ?? 2n ** 40n, nonce: o.n ?? nonce() };
      return { ...a, signature: await signAuthorization(aliceKey, chainId, token, a, kind) };
    }

    it("transferWithAuthorization moves funds once (bytes and v/r/s forms); the nonce is then used", async () => {
      const a = await auth("TransferWithAuthorization", bob.account.address, 10n);
      await usdc.write.transferWithAuthorization([alice.account.address, a.to, a.value, a.validAfter, a.validBefore, a.nonce, a.signature], { account: carol.account });
      expect(await bal(bob)).to.equal(10n);
      expect(await usdc.read.authorizationState([alice.account.address, a.nonce])).to.equal(true);
      await expectRevert(
        usdc.write.transferWithAuthorization([alice.account.address, a.to, a.value, a.validAfter, a.validBefore, a.nonce, a.signature]),
        "AuthorizationAlreadyUsed",
        [alice.account.address, a.nonce],
      );
      const b = await auth("TransferWithAuthorization", bob.account.address, 5n);
      const { v, r, s } = parseSignature(b.signature);
      await usdc.write.transferWithAuthorization([alice.account.address, b.to, b.value, b.validAfter, b.validBefore, b.nonce, Number(v), r, s]);
      expect(await bal(bob)).to.equal(15n);
    });

    it("receiveWithAuthorization must be called by the payee (CallerMustBePayee), then works in both forms", async () => {
      const a = await auth("ReceiveWithAuthorization", bob.account.address, 10n);
      const args = [alice.account.address, a.to, a.value, a.validAfter, a.validBefore, a.nonce, a.signature] as const;
      await expectRevert(usdc.write.receiveWithAuthorization(args, { account: carol.account }), "CallerMustBePayee", [carol.account.address, bob.account.address]);
      await usdc.write.receiveWithAuthorization(args, { account: bob.account });
      expect(await bal(bob)).to.equal(10n);
      const b = await auth("ReceiveWithAuthorization", bob.account.address, 1n);
      const { v, r, s } = parseSignature(b.signature);
      await usdc.write.receiveWithAuthorization([alice.account.address, b.to, b.value, b.validAfter, b.validBefore, b.nonce, Number(v), r, s], {
        account: bob.account,
      });
      expect(await bal(bob)).to.equal(11n);
    });

    it("a receive authorization cannot be used as a transfer authorization (distinct type hashes)", async () => {
      const a = await auth("ReceiveWithAuthorization", bob.account.address, 10n);
      await expectRevert(
        usdc.write.transferWithAuthorization([alice.account.address, a.to, a.value, a.validAfter, a.validBefore, a.nonce, a.signature], { account: bob.account }),
        "InvalidSigner",
        [alice.account.address],
      );
    });

    it("reverts AuthorizationNotYetValid / AuthorizationExpired at the window's edges and InvalidSigner for other values", async () => {
      const now = await latestTimestamp();
      const next = now + 1n; // the block the call will be mined in
      const early = await auth("TransferWithAuthorization", bob.account.address, 1n, { validAfter: next });
      await hre.network.provider.send("evm_setNextBlockTimestamp", [Number(next)]);
      await expectRevert(
        usdc.write.transferWithAuthorization([alice.account.address, early.to, 1n, early.validAfter, early.validBefore, early.nonce, early.signature]),
        "AuthorizationNotYetValid",
        [next],
      );
      const late = await auth("TransferWithAuthorization", bob.account.address, 1n, { validBefore: now + 2n });
      // the next block is exactly validBefore: expired (valid strictly before it)
      await hre.network.provider.send("evm_setNextBlockTimestamp", [Number(now + 2n)]);
      await expectRevert(
        usdc.write.transferWithAuthorization([alice.account.address, late.to, 1n, late.validAfter, late.validBefore, late.nonce, late.signature]),
        "AuthorizationExpired",
        [now + 2n],
      );
      const ok = await auth("TransferWithAuthorization", bob.account.address, 1n);
      await expectRevert(
        usdc.write.transferWithAuthorization([alice.account.address, carol.account.address, 1n, ok.validAfter, ok.validBefore, ok.nonce, ok.signature]),
        "InvalidSigner",
        [alice.account.address],
      );
    });

    it("cancelAuthorization burns a nonce (then unusable), refuses a used nonce and a wrong signer", async () => {
      const a = await auth("TransferWithAuthorization", bob.account.address, 1n);
      const wrong = await signCancelAuthorization(accountKey(2), chainId, token, a.nonce);
      await expectRevert(usdc.write.cancelAuthorization([alice.account.address, a.nonce, wrong]), "InvalidSigner", [alice.account.address]);
      const cancel = await signCancelAuthorization(aliceKey, chainId, token, a.nonce);
      await usdc.write.cancelAuthorization([alice.account.address, a.nonce, cancel], { account: carol.account });
      await expectRevert(
        usdc.write.transferWithAuthorization([alice.account.address, a.to, a.value, a.validAfter, a.validBefore, a.nonce, a.signature]),
        "AuthorizationAlreadyUsed",
        [alice.account.address, a.nonce],
      );
      await expectRevert(usdc.write.cancelAuthorization([alice.account.address, a.nonce, cancel]), "AuthorizationAlreadyUsed", [alice.account.address, a.nonce]);
    });

    it("accepts an authorization signed by a contract wallet (ERC-1271), as USDC v2.2", async () => {
      const wallet = await hre.viem.deployContract("ERC1271Wallet", [alice.account.address, 0]);
      await usdc.write.mint([wallet.address, 10n]);
      const n = nonce();
      const a = { to: bob.account.address, value: 10n, validAfter: 0n, validBefore: 2n ** 40n, nonce: n };
      // the wallet validates alice's signature of the digest whose `from` is the wallet
      const signature = await privateKeyToAccount(aliceKey).signTypedData({
        domain: { name: "USD Coin", version: "2", chainId, verifyingContract: token },
        types: { TransferWithAuthorization: [
          { name: "from", type: "address" }, { name: "to", type: "address" }, { name: "value", type: "uint256" },
          { name: "validAfter", type: "uint256" }, { name: "validBefore", type: "uint256" }, { name: "nonce", type: "bytes32" }] },
        primaryType: "TransferWithAuthorization",
        message: { from: wallet.address, ...a },
      });
      await usdc.write.transferWithAuthorization([wallet.address, a.to, a.value, a.validAfter, a.validBefore, n, signature]);
      expect(await bal(bob)).to.equal(10n);
    });
  });

  describe("blacklist and pause", () => {
    it("a blacklisted account can neither send, receive, approve nor spend; its balance is kept and restored", async () => {
      await usdc.write.mint([bob.account.address, 100n]);
      await usdc.write.approve([carol.account.address, 100n], { account: alice.account });
      await usdc.write.blacklist([bob.account.address, true]);
      expect(await usdc.read.isBlacklisted([bob.account.address])).to.equal(true);
      expect(await bal(bob)).to.equal(100n);
      await expectRevert(usdc.write.transfer([alice.account.address, 1n], { account: bob.account }), "AccountBlacklisted", [bob.account.address]);
      await expectRevert(usdc.write.transfer([bob.account.address, 1n], { account: alice.account }), "AccountBlacklisted", [bob.account.address]);
      await expectRevert(usdc.write.approve([alice.account.address, 1n], { account: bob.account }), "AccountBlacklisted", [bob.account.address]);
      await expectRevert(usdc.write.mint([bob.account.address, 1n]), "AccountBlacklisted", [bob.account.address]);
      await usdc.write.blacklist([carol.account.address, true]);
      await expectRevert(usdc.write.transferFrom([alice.account.address, owner.account.address, 1n], { account: carol.account }), "AccountBlacklisted", [
        carol.account.address,
      ]);
      await usdc.write.blacklist([bob.account.address, false]);
      await usdc.write.transfer([alice.account.address, 100n], { account: bob.account });
      expect(await bal(bob)).to.equal(0n);
    });

    it("pause makes every transfer, approval and authorization revert Paused until unpaused", async () => {
      await usdc.write.setPaused([true]);
      expect(await usdc.read.paused()).to.equal(true);
      await expectRevert(usdc.write.transfer([bob.account.address, 1n], { account: alice.account }), "Paused", []);
      await expectRevert(usdc.write.approve([bob.account.address, 1n], { account: alice.account }), "Paused", []);
      const a = { to: bob.account.address, value: 1n, validAfter: 0n, validBefore: 2n ** 40n, nonce: nonce() };
      const sig = await signAuthorization(aliceKey, chainId, token, a, "TransferWithAuthorization");
      await expectRevert(usdc.write.transferWithAuthorization([alice.account.address, a.to, 1n, 0n, a.validBefore, a.nonce, sig]), "Paused", []);
      await expectRevert(usdc.write.cancelAuthorization([alice.account.address, a.nonce, await signCancelAuthorization(aliceKey, chainId, token, a.nonce)]), "Paused", []);
      await usdc.write.setPaused([false]);
      await usdc.write.transfer([bob.account.address, 1n], { account: alice.account });
      expect(await bal(bob)).to.equal(1n);
    });

    it("only the owner may blacklist or pause (NotOwner)", async () => {
      await expectRevert(usdc.write.blacklist([bob.account.address, true], { account: alice.account }), "NotOwner", [alice.account.address]);
      await expectRevert(usdc.write.setPaused([true], { account: alice.account }), "NotOwner", [alice.account.address]);
    });
  });
});
