/** Measures the escrow's gas figures on the in-process chain (shared by `npm run gas` and the gas test). */
import hre from "hardhat";
import { getAddress, keccak256, parseSignature, toHex, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { authorizationNonce, channelEscrowAbi, computeChannelId, encodeSettleItems, PERMIT_TYPES, RECEIVE_WITH_AUTHORIZATION_TYPES, type SettleClaim } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { deployEscrow, openChannel, DAY, USDC, type Env, type OpenedChannel } from "./escrow";

export type GasFigures = Record<string, number>;

async function gasOf(env: Env, hash: Hex): Promise<number> {
  const r = await env.publicClient.waitForTransactionReceipt({ hash });
  if (r.status !== "success") throw new Error(`transaction ${hash} reverted`);
  return Number(r.gasUsed);
}

/** The settle claim of `amount` with a voucher for the same amount. */
export function settleItem(c: OpenedChannel, amount: bigint): SettleClaim {
  const v = c.voucher.sign(c.id, amount);
  return { channelId: c.id, cumulativeAmount: amount, amount, signature: v.signature };
}

// Fixed session keys and salts: channel ids and signatures (hence calldata zero bytes, which cost less) are the same
// on every run, so a figure changes only when the contract does.
let seq = 0;
const fixedKey = (): { key: Hex; address: Address } => {
  const key = keccak256(toHex(`gas-session-key-${++seq}`));
  return { key, address: privateKeyToAccount(key).address };
};
const fixedSalt = (): Hex => keccak256(toHex(`gas-salt-${++seq}`));
const fixed = () => ({ signerKey: fixedKey().key, salt: fixedSalt() });
/** A fixed far-future deadline for permits and authorizations (2100-01-01), so their calldata is fixed too. */
const FAR_FUTURE = 4_102_444_800n;

export async function measureGas(): Promise<GasFigures> {
  seq = 0;
  const env = await deployEscrow();
  const [payee, payer] = env.wallets;
  const out: GasFigures = {};
  const escrow = env.escrow.address;
  const usdc = env.usdc.address;

  // First channel ever for this payee/token pair registers the pair.
  const first = await openChannel(env, fixed());
  void first;

  // open, allowance already given (not the first for this pair).
  {
    const s = fixedKey();
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "mint", args: [payer.account.address, USDC(10)] });
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "approve", args: [escrow, USDC(10)] });
    const hash = await payer.writeContract({
      address: escrow, abi: channelEscrowAbi, functionName: "open",
      args: [payee.account.address, usdc, s.address, USDC(10), DAY, fixedSalt()],
    });
    out.open = await gasOf(env, hash);
  }
  // open for a new payee/token pair (one-time registration of the pair).
  {
    const s = fixedKey();
    const newPayee = env.wallets[5].account.address;
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "mint", args: [payer.account.address, USDC(10)] });
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "approve", args: [escrow, USDC(10)] });
    const hash = await payer.writeContract({
      address: escrow, abi: channelEscrowAbi, functionName: "open",
      args: [newPayee, usdc, s.address, USDC(10), DAY, fixedSalt()],
    });
    out.open_newPayeeTokenPair = await gasOf(env, hash);
  }
  // openWithPermit
  {
    const s = fixedKey();
    const owner = getAddress(payer.account.address);
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "mint", args: [owner, USDC(10)] });
    const nonce = await env.publicClient.readContract({ address: usdc, abi: mockUsdcAbi, functionName: "nonces", args: [owner] });
    const deadline = FAR_FUTURE;
    const sig = await payer.signTypedData({
      domain: { name: "USD Coin", version: "2", chainId: env.chainId, verifyingContract: usdc },
      types: PERMIT_TYPES,
      primaryType: "Permit",
      message: { owner, spender: escrow, value: USDC(10), nonce, deadline },
    });
    const { v, r, s: ss } = parseSignature(sig);
    const hash = await payer.writeContract({
      address: escrow, abi: channelEscrowAbi, functionName: "openWithPermit",
      args: [payee.account.address, usdc, s.address, USDC(10), DAY, fixedSalt(), deadline, Number(v), r, ss],
    });
    out.openWithPermit = await gasOf(env, hash);
  }
  // openWithAuthorization, submitted by the payee (relayer)
  {
    const s = fixedKey();
    const from = getAddress(payer.account.address);
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "mint", args: [from, USDC(10)] });
    const salt = fixedSalt();
    const id = computeChannelId({ chainId: env.chainId, escrow, payer: from, payee: payee.account.address, token: usdc, signer: s.address, salt });
    const validBefore = FAR_FUTURE;
    const signature = await payer.signTypedData({
      domain: { name: "USD Coin", version: "2", chainId: env.chainId, verifyingContract: usdc },
      types: RECEIVE_WITH_AUTHORIZATION_TYPES,
      primaryType: "ReceiveWithAuthorization",
      message: { from, to: escrow, value: USDC(10), validAfter: 0n, validBefore, nonce: authorizationNonce(id, DAY) },
    });
    const hash = await payee.writeContract({
      address: escrow, abi: channelEscrowAbi, functionName: "openWithAuthorization",
      args: [from, payee.account.address, usdc, s.address, USDC(10), DAY, salt, 0n, validBefore, signature],
    });
    out.openWithAuthorization = await gasOf(env, hash);
  }
  // topUp
  {
    const c = await openChannel(env, fixed());
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "mint", args: [payer.account.address, USDC(1)] });
    await payer.writeContract({ address: usdc, abi: mockUsdcAbi, functionName: "approve", args: [escrow, USDC(1)] });
    const hash = await payer.writeContract({ address: escrow, abi: channelEscrowAbi, functionName: "topUp", args: [c.id, c.signer, USDC(1)] });
    out.topUp = await gasOf(env, hash);
  }
  // The payee already holds tokens (a warm payee, as in the x402 `exact` figure): settle once to get there.
  {
    const c = await openChannel(env, { deposit: USDC(1), ...fixed() });
    const hash = await payee.writeContract({
      address: escrow, abi: channelEscrowAbi, functionName: "settle", args: [payee.account.address, usdc, encodeSettleItems([settleItem(c, 1n)])],
    });
    out.settle_1_coldPayee = await gasOf(env, hash);
  }
  // settle batches: first settlement of each channel (the common case)
  for (const n of [1, 10, 100]) {
    const chans: OpenedChannel[] = [];
    for (let i = 0; i < n; i++) chans.push(await openChannel(env, { deposit: USDC(1), ...fixed() }));
    const items = chans.map((c) => settleItem(c, 123_456n));
    const hash = await payee.writeContract({
      address: escrow, abi: channelEscrowAbi, functionName: "settle", args: [payee.account.address, usdc, encodeSettleItems(items)],
    });
    out[`settle_${n}`] = await gasOf(env, hash);
  }
  out.settle_marginalPerChannel = Math.round((out.settle_100 - out.settle_1) / 99);
  out.settle_100_perChannel = Math.round(out.settle_100 / 100);
  // settle again on already-settled channels (a later voucher)
  // close (cooperative, with a new voucher)
  {
    const c = await openChannel(env, fixed());
    const v = c.voucher.sign(c.id, USDC(2));
    const hash = await payee.writeContract({
      address: escrow, abi: channelEscrowAbi, functionName: "close", args: [c.id, c.signer, USDC(2), USDC(2), v.signature, "0x"],
    });
    out.close = await gasOf(env, hash);
  }
  // requestClose then withdraw
  {
    const c = await openChannel(env, fixed());
    let hash = await payer.writeContract({ address: escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [c.id, c.signer] });
    out.requestClose = await gasOf(env, hash);
    await hre.network.provider.send("evm_increaseTime", [DAY]);
    await hre.network.provider.send("evm_mine", []);
    hash = await payer.writeContract({ address: escrow, abi: channelEscrowAbi, functionName: "withdraw", args: [c.id, c.signer] });
    out.withdraw = await gasOf(env, hash);
  }
  return out;
}
