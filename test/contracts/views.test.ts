/** ChannelEscrow views and constants: getChannel, getChannels, computeChannelId, voucherDigest, eip712Domain. */
import hre from "hardhat";
import { expect } from "chai";
import { getAddress, hashTypedData, zeroAddress, type Address, type Hex } from "viem";
import {
  channelEscrowAbi,
  computeChannelId,
  escrowDomain,
  isSignerMismatch,
  isUnknownChannel,
  MAX_CLOSE_DELAY,
  MAX_DEPOSIT,
  MAX_UINT128,
  MIN_CLOSE_DELAY,
  SETTLE_ITEM_SIZE,
  VOUCHER_TYPEHASH,
  VOUCHER_TYPES,
  VoucherHasher,
} from "@paychan/protocol";
import { deployEscrow, DAY, nextSalt, sessionKey, USDC, type Env } from "../helpers/escrow";
import { openWith, type Wallet } from "../helpers/escrow-tx";
import { isolateEachTest, latestTimestamp } from "../helpers/chain";

describe("ChannelEscrow: views", () => {
  let env: Env;
  let payer: Wallet;
  let payee: Address, usdc: Address, escrow: Address;

  before(async () => {
    env = await deployEscrow();
    payer = env.wallets[1];
    payee = getAddress(env.wallets[0].account.address);
    usdc = getAddress(env.usdc.address);
    escrow = getAddress(env.escrow.address);
  });
  isolateEachTest();

  const getChannel = (id: Hex, signer: Address) =>
    env.publicClient.readContract({ address: escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [id, signer] });
  const zeroChannel = {
    payer: zeroAddress, payee: zeroAddress, token: zeroAddress, signer: zeroAddress,
    deposit: 0n, settled: 0n, closeRequestedAt: 0n, closeDelay: 0, finalized: false,
  };

  it("getChannel of an unknown id is all zeroes, whatever the signer", async () => {
    for (const signer of [zeroAddress, getAddress(payer.account.address), sessionKey().address]) {
      const got = await getChannel(`0x${"11".repeat(32)}`, signer);
      expect(got).to.deep.equal(zeroChannel);
      expect([isUnknownChannel(got), isSignerMismatch(got)]).to.deep.equal([true, false]);
    }
  });

  it("getChannel of a known id with another signer gives the record fields, signer 0 and no money (also once finalized)", async () => {
    const k = sessionKey();
    const c = await openWith(env, { payer, signer: k.address, amount: USDC(4), closeDelay: 2 * DAY });
    await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
    const at = await latestTimestamp();
    const record = { payer: c.payer, payee, token: usdc, closeRequestedAt: at, closeDelay: 2 * DAY };
    for (const wrong of [zeroAddress, c.payer, sessionKey().address]) {
      const got = await getChannel(c.id, wrong);
      expect(got).to.deep.equal({ ...record, signer: zeroAddress, deposit: 0n, settled: 0n, finalized: false });
      expect([isUnknownChannel(got), isSignerMismatch(got)]).to.deep.equal([false, true]);
    }
    await hre.network.provider.send("evm_increaseTime", [2 * DAY]);
    await env.escrow.write.withdraw([c.id, c.signer]);
    expect((await getChannel(c.id, c.signer)).finalized).to.equal(true);
    expect(await getChannel(c.id, c.payer)).to.deep.equal({ ...record, signer: zeroAddress, deposit: 0n, settled: 0n, finalized: false });
  });

  it("getChannel reflects every field through the channel's life", async () => {
    const k = sessionKey();
    const c = await openWith(env, { payer, signer: k.address, amount: USDC(4), closeDelay: 2 * DAY });
    await env.escrow.write.requestClose([c.id, c.signer], { account: payer.account });
    const at = await latestTimestamp();
    const got = await getChannel(c.id, c.signer);
    expect([isUnknownChannel(got), isSignerMismatch(got)]).to.deep.equal([false, false]);
    expect(got).to.deep.equal({
      payer: c.payer, payee, token: usdc, signer: k.address, deposit: USDC(4), settled: 0n, closeRequestedAt: at, closeDelay: 2 * DAY, finalized: false,
    });
  });

  it("getChannels returns channels in the order asked, zeroes for unknown ids, signer mismatches as getChannel does, and [] for []", async () => {
    const a = await openWith(env, { payer, amount: 1n });
    const b = await openWith(env, { payer, signer: sessionKey().address, amount: 2n });
    const unknown = `0x${"22".repeat(32)}` as Hex;
    const read = (refs: { channelId: Hex; signer: Address }[]) =>
      env.publicClient.readContract({ address: escrow, abi: channelEscrowAbi, functionName: "getChannels", args: [refs] });
    const ref = (c: { id: Hex; signer: Address }) => ({ channelId: c.id, signer: c.signer });
    const got = await read([ref(b), { channelId: unknown, signer: a.signer }, ref(a), { channelId: b.id, signer: a.signer }, ref(b)]);
    expect(got.map((c) => c.deposit)).to.deep.equal([2n, 0n, 1n, 0n, 2n]);
    expect(got[1]).to.deep.equal(zeroChannel);
    expect(got[3]).to.deep.equal(await getChannel(b.id, a.signer));
    expect([got[3].payer, got[3].signer]).to.deep.equal([b.payer, zeroAddress]);
    expect(await read([])).to.deep.equal([]);
  });

  it("computeChannelId equals the protocol's, binds every parameter, and replaces a zero signer by the payer", async () => {
    const p = { payer: getAddress(payer.account.address), payee, token: usdc, signer: sessionKey().address, salt: nextSalt() };
    const onChain = await env.escrow.read.computeChannelId([p.payer, p.payee, p.token, p.signer, p.salt]);
    expect(onChain).to.equal(computeChannelId({ chainId: env.chainId, escrow, ...p }));
    const variants: [Address, Address, Address, Address, Hex][] = [
      [payee, p.payee, p.token, p.signer, p.salt],
      [p.payer, p.payer, p.token, p.signer, p.salt],
      [p.payer, p.payee, escrow, p.signer, p.salt],
      [p.payer, p.payee, p.token, p.payer, p.salt],
      [p.payer, p.payee, p.token, p.signer, nextSalt()],
    ];
    const ids = new Set([onChain]);
    for (const v of variants) ids.add(await env.escrow.read.computeChannelId(v));
    expect(ids.size).to.equal(variants.length + 1);
    expect(await env.escrow.read.computeChannelId([p.payer, p.payee, p.token, zeroAddress, p.salt])).to.equal(
      await env.escrow.read.computeChannelId([p.payer, p.payee, p.token, p.payer, p.salt]),
    );
    // another escrow (or chain) gives another id for the same parameters
    const other = await hre.viem.deployContract("ChannelEscrow");
    expect(await other.read.computeChannelId([p.payer, p.payee, p.token, p.signer, p.salt])).to.not.equal(onChain);
    expect(computeChannelId({ chainId: 1, escrow, ...p })).to.not.equal(onChain);
  });

  it("voucherDigest equals the protocol hasher and viem's EIP-712 hash, including at 0 and 2^128 - 1", async () => {
    const hasher = new VoucherHasher(env.domain);
    const id = nextSalt();
    for (const amount of [0n, 1n, 123_456_789n, MAX_DEPOSIT, MAX_UINT128]) {
      const onChain = await env.escrow.read.voucherDigest([id, amount]);
      expect(onChain).to.equal(hasher.digest(id, amount));
      expect(onChain).to.equal(
        hashTypedData({ domain: env.domain, types: VOUCHER_TYPES, primaryType: "Voucher", message: { channelId: id, cumulativeAmount: amount } }),
      );
    }
  });

  it("eip712Domain (ERC-5267) is ChannelEscrow / 1 on this chain and escrow, as the protocol's escrowDomain", async () => {
    const [fields, name, version, chainId, verifyingContract, salt, extensions] = await env.publicClient.readContract({
      address: escrow, abi: channelEscrowAbi, functionName: "eip712Domain",
    });
    expect(fields).to.equal("0x0f");
    const d = escrowDomain(env.chainId, escrow);
    expect({ name, version, chainId: Number(chainId), verifyingContract: getAddress(verifyingContract) }).to.deep.equal(d);
    expect(salt).to.equal(`0x${"00".repeat(32)}`);
    expect(extensions).to.deep.equal([]);
  });

  it("constants equal the protocol's", async () => {
    expect(await env.escrow.read.VOUCHER_TYPEHASH()).to.equal(VOUCHER_TYPEHASH);
    expect(await env.escrow.read.MIN_CLOSE_DELAY()).to.equal(MIN_CLOSE_DELAY);
    expect(await env.escrow.read.MAX_CLOSE_DELAY()).to.equal(MAX_CLOSE_DELAY);
    expect(await env.escrow.read.MAX_DEPOSIT()).to.equal(MAX_DEPOSIT);
    expect(await env.escrow.read.SETTLE_ITEM_SIZE()).to.equal(BigInt(SETTLE_ITEM_SIZE));
  });
});
