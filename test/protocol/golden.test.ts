/**
 * A golden voucher vector: fixed key, domain and voucher → fixed digest and signature, committed as literals.
 * If any of these literals changes, every voucher ever signed stops verifying: that is a protocol break.
 *
 * The domain's escrow address is deterministic: the escrow is deployed by a fixed key at nonce 0 (the token at
 * nonce 1), so the same vector is checked off chain (VoucherSigner, viem) and against the real contract
 * (`voucherDigest`, `settle` with the packed compact signature, `close` with the 65-byte signature).
 * The on-chain part runs inside an `evm_snapshot` / `evm_revert` pair so it leaves the shared chain as it found it.
 */
import { expect } from "chai";
import hre from "hardhat";
import { createWalletClient, custom, getAddress, getContractAddress, keccak256, recoverTypedDataAddress, toHex, zeroAddress, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import {
  channelEscrowAbi,
  computeChannelId,
  encodeSettleItems,
  escrowDomain,
  VOUCHER_TYPES,
  VoucherHasher,
  VoucherSigner,
  VoucherVerifier,
  domainSeparator,
} from "@paychan/protocol";
import { channelEscrowBytecode, mockUsdcBytecode, mockUsdcAbi } from "@paychan/demo";

/** The vector. Derivations are re-checked below; the digest and signature are only ever compared to these literals. */
const GOLDEN = {
  chainId: 31337,
  /** keccak256("channel-payments/golden-vector/deployer") */
  deployerKey: "0xdc6c8b4b7bfb3d7d3ab454f858b3834cd39650b3cb590d2c0d4a8a5e0caa36d1",
  deployer: "0xdBe009864aB34Ac428A272feC24744Ede42e2c9e",
  /** The deployer's first contract (nonce 0). */
  escrow: "0x0582d4Ee9b5Deec2A8f8b1F4fbEDa6AF29dA38f5",
  /** The deployer's second contract (nonce 1), a MockUSDC. */
  token: "0x16FfF08370bC67cb05337BAEb84e568890A3E600",
  /** Private key 1: payer and (signer 0 at open) voucher signer. */
  signerKey: "0x0000000000000000000000000000000000000000000000000000000000000001",
  signer: "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf",
  /** Hardhat account #0. */
  payee: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  salt: "0x000000000000000000000000000000000000000000000000000000000000002a",
  channelId: "0x0a91b2268a1ee8d4f26e648ea3b04a02f79c06e694e31d1652a9e7e045b66646",
  cumulativeAmount: 1_234_567n,
  digest: "0xe78544e53ffa36ee1eb947d19f61393daf6c794ffbfb12b04708ecfe155c9ed7",
  signature:
    "0x9ed5c88b45453415cd5300ed3b1b1cc0d673b315f2844f0be6a1adc9df03311209090409e0a3343d95d44273feca70d24049cbf5dfa825a84229966f60ca7a201c",
  /** EIP-2098 form of the signature, as packed into `settle` items. */
  compact: {
    r: "0x9ed5c88b45453415cd5300ed3b1b1cc0d673b315f2844f0be6a1adc9df033112",
    vs: "0x89090409e0a3343d95d44273feca70d24049cbf5dfa825a84229966f60ca7a20",
  },
} as const;

const domain = escrowDomain(GOLDEN.chainId, GOLDEN.escrow);
const message = { channelId: GOLDEN.channelId, cumulativeAmount: GOLDEN.cumulativeAmount } as const;

describe("golden voucher vector", function () {
  describe("off chain", function () {
    it("the fixed parameters derive the fixed addresses and channel id", function () {
      expect(keccak256(toHex("channel-payments/golden-vector/deployer"))).to.equal(GOLDEN.deployerKey);
      expect(privateKeyToAccount(GOLDEN.deployerKey).address).to.equal(GOLDEN.deployer);
      expect(getContractAddress({ from: GOLDEN.deployer, nonce: 0n })).to.equal(GOLDEN.escrow);
      expect(getContractAddress({ from: GOLDEN.deployer, nonce: 1n })).to.equal(GOLDEN.token);
      expect(privateKeyToAccount(GOLDEN.signerKey).address).to.equal(GOLDEN.signer);
      const id = computeChannelId({
        chainId: GOLDEN.chainId,
        escrow: GOLDEN.escrow,
        payer: GOLDEN.signer,
        payee: GOLDEN.payee,
        token: GOLDEN.token,
        signer: zeroAddress,
        salt: GOLDEN.salt,
      });
      expect(id).to.equal(GOLDEN.channelId);
    });

    it("VoucherHasher gives the fixed digest", function () {
      expect(new VoucherHasher(domain).digest(GOLDEN.channelId, GOLDEN.cumulativeAmount)).to.equal(GOLDEN.digest);
    });

    it("VoucherSigner gives the fixed signature (RFC 6979, low s, v = 28)", function () {
      const v = new VoucherSigner(GOLDEN.signerKey, domain).sign(GOLDEN.channelId, GOLDEN.cumulativeAmount);
      expect(v).to.deep.equal({ ...message, signature: GOLDEN.signature });
    });

    it("viem's signTypedData gives the same signature and recoverTypedDataAddress the signer", async function () {
      const account = privateKeyToAccount(GOLDEN.signerKey);
      expect(await account.signTypedData({ domain, types: VOUCHER_TYPES, primaryType: "Voucher", message })).to.equal(GOLDEN.signature);
      const recovered = await recoverTypedDataAddress({ domain, types: VOUCHER_TYPES, primaryType: "Voucher", message, signature: GOLDEN.signature });
      expect(recovered).to.equal(GOLDEN.signer);
    });

    it("VoucherVerifier recovers the signer from the fixed signature", function () {
      const verifier = new VoucherVerifier(domain);
      expect(getAddress(verifier.recover(GOLDEN.channelId, GOLDEN.cumulativeAmount, GOLDEN.signature)!)).to.equal(GOLDEN.signer);
      expect(verifier.verify({ ...message, signature: GOLDEN.signature }, GOLDEN.signer)).to.equal(true);
      expect(verifier.verify({ ...message, cumulativeAmount: GOLDEN.cumulativeAmount + 1n, signature: GOLDEN.signature }, GOLDEN.signer)).to.equal(false);
    });

    it("the packed settle item holds the fixed compact signature", function () {
      const items = encodeSettleItems([{ ...message, amount: 1_000_000n, signature: GOLDEN.signature }]);
      expect(items).to.equal(
        `0x${GOLDEN.channelId.slice(2)}${(1_234_567n).toString(16).padStart(32, "0")}${(1_000_000n).toString(16).padStart(32, "0")}` +
          `${GOLDEN.compact.r.slice(2)}${GOLDEN.compact.vs.slice(2)}`,
      );
    });
  });

  describe("on chain (escrow deployed at the golden address)", function () {
    let snapshot: Hex;
    const provider = hre.network.provider;
    const local = (key: Hex) => createWalletClient({ account: privateKeyToAccount(key), chain: hardhat, transport: custom(provider) });

    before(async function () {
      snapshot = (await provider.send("evm_snapshot", [])) as Hex;
      const publicClient = await hre.viem.getPublicClient();
      for (const who of [GOLDEN.deployer, GOLDEN.signer]) {
        await provider.send("hardhat_setBalance", [who, "0x56bc75e2d63100000"]); // 100 ETH
      }
      const nonce = await publicClient.getTransactionCount({ address: GOLDEN.deployer });
      expect(nonce, "the golden deployer key must be unused on this chain").to.equal(0);
      const deployer = local(GOLDEN.deployerKey);
      for (const [abi, bytecode] of [
        [channelEscrowAbi, channelEscrowBytecode],
        [mockUsdcAbi, mockUsdcBytecode],
      ] as const) {
        const hash = await deployer.deployContract({ abi, bytecode: bytecode as Hex });
        const receipt = await publicClient.waitForTransactionReceipt({ hash });
        expect(receipt.status).to.equal("success");
      }
    });

    after(async function () {
      await provider.send("evm_revert", [snapshot]);
    });

    it("the contracts landed at the golden addresses", async function () {
      const publicClient = await hre.viem.getPublicClient();
      const [, name, version, chainId, verifyingContract] = await publicClient.readContract({
        address: GOLDEN.escrow,
        abi: channelEscrowAbi,
        functionName: "eip712Domain",
      });
      expect({ name, version, chainId: Number(chainId), verifyingContract }).to.deep.equal(domain);
      expect(domainSeparator(domain)).to.equal(new VoucherHasher(domain).domainSeparator);
      expect(await publicClient.readContract({ address: GOLDEN.token, abi: mockUsdcAbi, functionName: "decimals" })).to.equal(6);
    });

    it("voucherDigest equals the fixed digest", async function () {
      const publicClient = await hre.viem.getPublicClient();
      const digest = await publicClient.readContract({
        address: GOLDEN.escrow,
        abi: channelEscrowAbi,
        functionName: "voucherDigest",
        args: [GOLDEN.channelId, GOLDEN.cumulativeAmount],
      });
      expect(digest).to.equal(GOLDEN.digest);
    });

    it("the contract accepts the fixed signature in settle (compact) and close (65 bytes)", async function () {
      const publicClient = await hre.viem.getPublicClient();
      const payer = local(GOLDEN.signerKey);
      const [payee] = await hre.viem.getWalletClients();
      expect(getAddress(payee.account.address)).to.equal(GOLDEN.payee);
      const deposit = 2_000_000n;
      const send = async (p: Promise<Hex>) => {
        const receipt = await publicClient.waitForTransactionReceipt({ hash: await p });
        expect(receipt.status).to.equal("success");
        return receipt;
      };
      await send(payer.writeContract({ address: GOLDEN.token, abi: mockUsdcAbi, functionName: "mint", args: [GOLDEN.signer, deposit] }));
      await send(payer.writeContract({ address: GOLDEN.token, abi: mockUsdcAbi, functionName: "approve", args: [GOLDEN.escrow, deposit] }));
      await send(
        payer.writeContract({
          address: GOLDEN.escrow,
          abi: channelEscrowAbi,
          functionName: "open",
          args: [GOLDEN.payee, GOLDEN.token, zeroAddress, deposit, 86_400, GOLDEN.salt],
        }),
      );
      const read = () => publicClient.readContract({ address: GOLDEN.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [GOLDEN.channelId, GOLDEN.signer] });
      expect((await read()).signer).to.equal(GOLDEN.signer);

      // settle part of the voucher with the packed compact signature
      const items = encodeSettleItems([{ ...message, amount: 1_000_000n, signature: GOLDEN.signature }]);
      const settleReceipt = await send(
        payee.writeContract({ address: GOLDEN.escrow, abi: channelEscrowAbi, functionName: "settle", args: [GOLDEN.payee, GOLDEN.token, items] }),
      );
      const settleLogs = settleReceipt.logs.filter((l) => getAddress(l.address) === GOLDEN.escrow);
      expect(settleLogs).to.have.length(1); // Settled, no SettleSkipped
      expect((await read()).settled).to.equal(1_000_000n);

      // close with the rest of the same voucher and its 65-byte signature
      await send(
        payee.writeContract({
          address: GOLDEN.escrow,
          abi: channelEscrowAbi,
          functionName: "close",
          args: [GOLDEN.channelId, GOLDEN.signer, GOLDEN.cumulativeAmount, GOLDEN.cumulativeAmount, GOLDEN.signature, "0x"],
        }),
      );
      const ch = await read();
      expect(ch.settled).to.equal(GOLDEN.cumulativeAmount);
      expect(ch.finalized).to.equal(true);
      const balanceOf = (a: `0x${string}`) => publicClient.readContract({ address: GOLDEN.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] });
      expect(await balanceOf(GOLDEN.signer)).to.equal(deposit - GOLDEN.cumulativeAmount);
      expect(await balanceOf(GOLDEN.escrow)).to.equal(0n);
    });
  });
});
