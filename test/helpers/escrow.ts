/**
 * Test and script helpers for the escrow on Hardhat's in-process chain: deploy, fund, open channels, sign vouchers.
 * They use the real contracts and the real `protocol/` code; nothing of ours is mocked.
 */
import hre from "hardhat";
import { getAddress, keccak256, toHex, type Address, type Hex } from "viem";
import { privateKeyToAccount, generatePrivateKey } from "viem/accounts";
import {
  escrowDomain,
  VoucherSigner,
  computeChannelId,
  channelEscrowAbi,
  type EscrowDomain,
} from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";

export const DAY = 86_400;
export const USDC = (n: number | bigint) => BigInt(n) * 1_000_000n;

export async function deployEscrow() {
  const publicClient = await hre.viem.getPublicClient();
  const wallets = await hre.viem.getWalletClients();
  const escrow = await hre.viem.deployContract("ChannelEscrow");
  const usdc = await hre.viem.deployContract("MockUSDC");
  const chainId = await publicClient.getChainId();
  const domain = escrowDomain(chainId, escrow.address);
  return { publicClient, wallets, escrow, usdc, chainId, domain };
}

export type Env = Awaited<ReturnType<typeof deployEscrow>>;

/** A fresh voucher-signing session key. */
export function sessionKey(): { key: Hex; address: Address } {
  const key = generatePrivateKey();
  return { key, address: privateKeyToAccount(key).address };
}

let saltCounter = 0n;
/** A salt unique within this process. */
export function nextSalt(): Hex {
  saltCounter++;
  return keccak256(toHex(`salt-${saltCounter}-${process.pid}`));
}

export interface OpenedChannel {
  id: Hex;
  payer: Address;
  payee: Address;
  token: Address;
  signer: Address;
  signerKey: Hex;
  deposit: bigint;
  voucher: VoucherSigner;
}

/** Mints, approves and opens a channel from wallet `payerIndex` to `payee`, with a new session key as signer. */
export async function openChannel(
  env: Env,
  opts: { payerIndex?: number; payee?: Address; deposit?: bigint; closeDelay?: number; token?: Address; signerKey?: Hex; salt?: Hex } = {},
): Promise<OpenedChannel> {
  const payerWallet = env.wallets[opts.payerIndex ?? 1];
  const payer = getAddress(payerWallet.account.address);
  const payee = opts.payee ?? getAddress(env.wallets[0].account.address);
  const deposit = opts.deposit ?? USDC(10);
  const token = opts.token ?? env.usdc.address;
  const s = opts.signerKey ? { key: opts.signerKey, address: privateKeyToAccount(opts.signerKey).address } : sessionKey();
  const salt = opts.salt ?? nextSalt();
  await payerWallet.writeContract({ address: token, abi: mockUsdcAbi, functionName: "mint", args: [payer, deposit] });
  await payerWallet.writeContract({ address: token, abi: mockUsdcAbi, functionName: "approve", args: [env.escrow.address, deposit] });
  await payerWallet.writeContract({
    address: env.escrow.address,
    abi: channelEscrowAbi,
    functionName: "open",
    args: [payee, token, s.address, deposit, opts.closeDelay ?? DAY, salt],
  });
  const id = computeChannelId({ chainId: env.chainId, escrow: env.escrow.address, payer, payee, token, signer: s.address, salt });
  return { id, payer, payee, token, signer: s.address, signerKey: s.key, deposit, voucher: new VoucherSigner(s.key, env.domain) };
}

export function domainOf(env: Env): EscrowDomain {
  return env.domain;
}
