/**
 * Parity between `protocol/` and the deployed `ChannelEscrow`: the voucher digest, the channel id and the EIP-712
 * domain must be computed identically off chain (our code, viem) and on chain, or vouchers would not settle.
 */
import { expect } from "chai";
import fc from "fast-check";
import hre from "hardhat";
import { getAddress, hashDomain, hashTypedData, zeroAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  channelEscrowAbi,
  computeChannelId,
  domainSeparator,
  escrowDomain,
  MAX_CLOSE_DELAY,
  MAX_DEPOSIT,
  MIN_CLOSE_DELAY,
  VOUCHER_TYPEHASH,
  VOUCHER_TYPES,
  VoucherHasher,
  VoucherSigner,
} from "@paychan/protocol";
import { address, amount128, bytes32, EDGE_AMOUNTS, privateKey } from "../helpers/arbitraries";
import { flipS } from "../helpers/signatures";
import { deployEscrow, type Env } from "../helpers/escrow";

const EIP712_DOMAIN_TYPES = {
  EIP712Domain: [
    { name: "name", type: "string" },
    { name: "version", type: "string" },
    { name: "chainId", type: "uint256" },
    { name: "verifyingContract", type: "address" },
  ],
} as const;

describe("protocol ↔ ChannelEscrow parity", function () {
  let env: Env;
  let hasher: VoucherHasher;

  const onChainDigest = (channelId: Hex, amount: bigint) =>
    env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "voucherDigest", args: [channelId, amount] });
  const viemDigest = (channelId: Hex, amount: bigint) =>
    hashTypedData({ domain: env.domain, types: VOUCHER_TYPES, primaryType: "Voucher", message: { channelId, cumulativeAmount: amount } });

  before(async function () {
    env = await deployEscrow();
    hasher = new VoucherHasher(env.domain);
  });

  describe("EIP-712 domain", function () {
    it("eip712Domain() on chain equals escrowDomain(chainId, escrow)", async function () {
      const [fields, name, version, chainId, verifyingContract, salt, extensions] = await env.publicClient.readContract({
        address: env.escrow.address,
        abi: channelEscrowAbi,
        functionName: "eip712Domain",
      });
      expect(fields).to.equal("0x0f"); // name, version, chainId, verifyingContract; no salt
      expect(salt).to.equal(`0x${"00".repeat(32)}`);
      expect(extensions).to.deep.equal([]);
      // Addresses compare checksummed (the deploy helper may hand them out lowercase; the separator ignores case).
      const expected = escrowDomain(env.chainId, getAddress(env.escrow.address));
      expect(escrowDomain(Number(chainId), verifyingContract)).to.deep.equal(expected);
      expect({ name, version, chainId: Number(chainId), verifyingContract }).to.deep.equal(expected);
      expect(domainSeparator(escrowDomain(Number(chainId), verifyingContract))).to.equal(domainSeparator(env.domain));
      expect(env.domain.chainId).to.equal(31337);
    });

    it("domainSeparator equals viem's hashDomain", function () {
      expect(domainSeparator(env.domain)).to.equal(hashDomain({ domain: { ...env.domain, chainId: BigInt(env.domain.chainId) }, types: EIP712_DOMAIN_TYPES }));
      expect(hasher.domainSeparator).to.equal(domainSeparator(env.domain));
    });

    it("the contract's constants equal the protocol's", async function () {
      const read = <F extends "VOUCHER_TYPEHASH" | "MIN_CLOSE_DELAY" | "MAX_CLOSE_DELAY" | "MAX_DEPOSIT" | "SETTLE_ITEM_SIZE">(functionName: F) =>
        env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName });
      expect(await read("VOUCHER_TYPEHASH")).to.equal(VOUCHER_TYPEHASH);
      expect(await read("MIN_CLOSE_DELAY")).to.equal(MIN_CLOSE_DELAY);
      expect(await read("MAX_CLOSE_DELAY")).to.equal(MAX_CLOSE_DELAY);
      expect(await read("MAX_DEPOSIT")).to.equal(MAX_DEPOSIT);
      expect(await read("SETTLE_ITEM_SIZE")).to.equal(128n);
      expect(MIN_CLOSE_DELAY).to.equal(15 * 60);
      expect(MAX_CLOSE_DELAY).to.equal(30 * 86_400);
    });

    it("a different chain id or escrow address changes the domain separator and every digest", function () {
      const other = [escrowDomain(1, env.escrow.address), escrowDomain(31337, zeroAddress)];
      for (const d of other) {
        expect(domainSeparator(d)).to.not.equal(domainSeparator(env.domain));
        expect(new VoucherHasher(d).digest(`0x${"11".repeat(32)}`, 5n)).to.not.equal(hasher.digest(`0x${"11".repeat(32)}`, 5n));
      }
    });
  });

  describe("voucher digest", function () {
    it("VoucherHasher.digest equals voucherDigest on chain at the amount edges", async function () {
      const id = `0x${"ab".repeat(32)}` as Hex;
      for (const amount of EDGE_AMOUNTS) {
        const ours = hasher.digest(id, amount);
        expect(ours).to.equal(await onChainDigest(id, amount));
        expect(ours).to.equal(viemDigest(id, amount));
      }
    });

    it("digest parity with viem's hashTypedData over random channel ids and amounts (off chain, 2,000 runs)", function () {
      fc.assert(
        fc.property(bytes32(), amount128(), (id, amount) => {
          expect(hasher.digest(id, amount)).to.equal(viemDigest(id, amount));
        }),
        { numRuns: 2000 },
      );
    });

    it("digest parity with the contract over random channel ids and amounts (on chain, 60 runs)", async function () {
      await fc.assert(
        fc.asyncProperty(bytes32(), amount128(), async (id, amount) => {
          expect(hasher.digest(id, amount)).to.equal(await onChainDigest(id, amount));
        }),
        { numRuns: 60 },
      );
    });

    it("digestBytes returns a fresh copy that later calls do not overwrite", function () {
      const a = hasher.digestBytes(`0x${"01".repeat(32)}`, 1n);
      const copy = Uint8Array.from(a);
      hasher.digestBytes(`0x${"02".repeat(32)}`, 2n);
      expect(a).to.deep.equal(copy);
    });

    it("refuses amounts outside uint128", function () {
      const id = `0x${"01".repeat(32)}` as Hex;
      expect(() => hasher.digest(id, -1n)).to.throw(RangeError);
      expect(() => hasher.digest(id, 1n << 128n)).to.throw(RangeError);
    });
  });

  describe("channel id", function () {
    const onChainId = (payer: Address, payee: Address, token: Address, signer: Address, salt: Hex) =>
      env.publicClient.readContract({
        address: env.escrow.address,
        abi: channelEscrowAbi,
        functionName: "computeChannelId",
        args: [payer, payee, token, signer, salt],
      });

    it("computeChannelId equals the contract's, with signer 0 meaning the payer (40 random channels)", async function () {
      await fc.assert(
        fc.asyncProperty(address(), address(), address(), fc.option(address(), { nil: undefined }), bytes32(), async (payer, payee, token, signer, salt) => {
          const s = signer ?? zeroAddress;
          const ours = computeChannelId({ chainId: env.chainId, escrow: env.escrow.address, payer, payee, token, signer: s, salt });
          expect(ours).to.equal(await onChainId(payer, payee, token, s, salt));
          if (signer === undefined) {
            const explicit = computeChannelId({ chainId: env.chainId, escrow: env.escrow.address, payer, payee, token, signer: payer, salt });
            expect(ours).to.equal(explicit);
          }
        }),
        { numRuns: 40 },
      );
    });

    it("open returns and records the id computeChannelId predicts, with the payer as signer when 0 is given", async function () {
      const [payeeWallet, payerWallet] = env.wallets;
      const payer = payerWallet.account.address;
      const payee = payeeWallet.account.address;
      const salt = `0x${"5a".repeat(32)}` as Hex;
      const deposit = 1_000_000n;
      const token = env.usdc.address;
      await payerWallet.writeContract({ address: token, abi: env.usdc.abi, functionName: "mint", args: [payer, deposit] });
      await payerWallet.writeContract({ address: token, abi: env.usdc.abi, functionName: "approve", args: [env.escrow.address, deposit] });
      const { result } = await env.publicClient.simulateContract({
        account: payerWallet.account,
        address: env.escrow.address,
        abi: channelEscrowAbi,
        functionName: "open",
        args: [payee, token, zeroAddress, deposit, MIN_CLOSE_DELAY, salt],
      });
      await payerWallet.writeContract({
        address: env.escrow.address,
        abi: channelEscrowAbi,
        functionName: "open",
        args: [payee, token, zeroAddress, deposit, MIN_CLOSE_DELAY, salt],
      });
      const id = computeChannelId({ chainId: env.chainId, escrow: env.escrow.address, payer, payee, token, signer: zeroAddress, salt });
      expect(result).to.equal(id);
      const ch = await env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [id, payer] });
      expect(ch.signer.toLowerCase()).to.equal(payer.toLowerCase());
      expect(ch.deposit).to.equal(deposit);
    });
  });

  describe("signatures the contract accepts and rejects", function () {
    it("a VoucherSigner signature and its high-s twin: the contract takes the first, refuses the second like VoucherVerifier", async function () {
      // Random key and amount: the on-chain `close` path (65-byte signatures) agrees with the protocol signer.
      const [key] = fc.sample(privateKey(), { numRuns: 1, seed: 7 });
      const signer = privateKeyToAccount(key).address;
      const [payeeWallet, payerWallet] = env.wallets;
      const payer = payerWallet.account.address;
      const payee = payeeWallet.account.address;
      const salt = `0x${"77".repeat(32)}` as Hex;
      const deposit = 5_000_000n;
      await payerWallet.writeContract({ address: env.usdc.address, abi: env.usdc.abi, functionName: "mint", args: [payer, deposit] });
      await payerWallet.writeContract({ address: env.usdc.address, abi: env.usdc.abi, functionName: "approve", args: [env.escrow.address, deposit] });
      await payerWallet.writeContract({
        address: env.escrow.address,
        abi: channelEscrowAbi,
        functionName: "open",
        args: [payee, env.usdc.address, signer, deposit, MIN_CLOSE_DELAY, salt],
      });
      const id = computeChannelId({ chainId: env.chainId, escrow: env.escrow.address, payer, payee, token: env.usdc.address, signer, salt });
      const v = new VoucherSigner(key, env.domain).sign(id, 3_000_000n);
      const highS = flipS(v.signature);
      await expectRevert(
        payeeWallet.writeContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "close", args: [id, signer, 3_000_000n, 3_000_000n, highS, "0x"] }),
        "InvalidSignature",
      );
      await payeeWallet.writeContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "close", args: [id, signer, 3_000_000n, 3_000_000n, v.signature, "0x"] });
      const ch = await env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [id, signer] });
      expect(ch.settled).to.equal(3_000_000n);
      expect(ch.finalized).to.equal(true);
    });
  });
});

async function expectRevert(p: Promise<unknown>, errorName: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(String((e as Error).message)).to.include(errorName);
    return;
  }
  expect.fail(`expected a revert with ${errorName}`);
}
