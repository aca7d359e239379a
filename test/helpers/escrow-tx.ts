/**
 * Transaction helpers for the escrow's contract tests: funding, opening channels with chosen parameters,
 * reading receipts and decoding their events. Real contracts on the in-process chain; nothing is mocked.
 */
import hre from "hardhat";
import { getAddress, parseEventLogs, zeroAddress, type Address, type ContractEventName, type Hex, type TransactionReceipt } from "viem";
import { channelEscrowAbi, computeChannelId, VoucherSigner, type SettleClaim } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { DAY, nextSalt, type Env } from "./escrow";

/** A wallet client of the in-process chain (Hardhat test account). */
export type Wallet = Env["wallets"][number];

/** The mined receipt of `hash` (Hardhat automines: it is available at once). */
export async function receipt(env: Env, hash: Hex): Promise<TransactionReceipt> {
  return env.publicClient.getTransactionReceipt({ hash });
}

/** The escrow events of a receipt, decoded, in log order. */
export function escrowEvents(r: TransactionReceipt) {
  return parseEventLogs({ abi: channelEscrowAbi, logs: r.logs, strict: true });
}

/** The escrow events named `eventName` of a receipt, decoded and typed. */
export function eventsNamed<const N extends ContractEventName<typeof channelEscrowAbi>>(r: TransactionReceipt, eventName: N) {
  return parseEventLogs({ abi: channelEscrowAbi, eventName, logs: r.logs, strict: true });
}

/** The ERC-20 `Transfer` events of a receipt (any token), in log order. */
export function transfers(r: TransactionReceipt) {
  return parseEventLogs({ abi: mockUsdcAbi, eventName: "Transfer", logs: r.logs, strict: true }).map((l) => ({
    token: getAddress(l.address),
    from: getAddress(l.args.from),
    to: getAddress(l.args.to),
    value: l.args.value,
  }));
}

/** The ERC-20 balance of `who`. */
export async function balanceOf(env: Env, token: Address, who: Address): Promise<bigint> {
  return env.publicClient.readContract({ address: token, abi: mockUsdcAbi, functionName: "balanceOf", args: [who] });
}

/** Mints `amount` of `token` (MockUSDC-compatible `mint`) to `wallet` and approves the escrow for it. */
export async function fund(env: Env, wallet: Wallet, amount: bigint, token: Address = env.usdc.address): Promise<void> {
  await wallet.writeContract({ address: token, abi: mockUsdcAbi, functionName: "mint", args: [wallet.account.address, amount] });
  await wallet.writeContract({ address: token, abi: mockUsdcAbi, functionName: "approve", args: [env.escrow.address, amount] });
}

/** Parameters of {@link openWith}; everything but the payer has a default. */
export interface OpenParams {
  payer: Wallet;
  payee?: Address;
  token?: Address;
  /** Voucher signer; zero address (the default here is a given key's address or the payer) means the payer. */
  signer?: Address;
  amount?: bigint;
  closeDelay?: number;
  salt?: Hex;
  /** Mint and approve before opening (default true). */
  fund?: boolean;
}

/** A channel opened by {@link openWith}. */
export interface Opened {
  id: Hex;
  hash: Hex;
  payer: Address;
  payee: Address;
  token: Address;
  signer: Address;
  deposit: bigint;
  closeDelay: number;
  salt: Hex;
}

/** Opens a channel with explicit parameters (funding the payer first unless `fund: false`). */
export async function openWith(env: Env, p: OpenParams): Promise<Opened> {
  const payer = getAddress(p.payer.account.address);
  const payee = getAddress(p.payee ?? env.wallets[0].account.address);
  const token = getAddress(p.token ?? env.usdc.address);
  const signer = p.signer ?? zeroAddress;
  const amount = p.amount ?? 10_000_000n;
  const closeDelay = p.closeDelay ?? DAY;
  const salt = p.salt ?? nextSalt();
  if (p.fund !== false) await fund(env, p.payer, amount, token);
  const hash = await p.payer.writeContract({
    address: env.escrow.address,
    abi: channelEscrowAbi,
    functionName: "open",
    args: [payee, token, signer, amount, closeDelay, salt],
  });
  const effectiveSigner = signer === zeroAddress ? payer : getAddress(signer);
  const id = computeChannelId({ chainId: env.chainId, escrow: env.escrow.address, payer, payee, token, signer: effectiveSigner, salt });
  return { id, hash, payer, payee, token, signer: effectiveSigner, deposit: amount, closeDelay, salt };
}

/** The claim `amount` with a voucher for `cumulativeAmount` (default: the same) signed by `signer`. */
export function claim(signer: VoucherSigner, channelId: Hex, amount: bigint, cumulativeAmount: bigint = amount): SettleClaim {
  return { channelId, cumulativeAmount, amount, signature: signer.sign(channelId, cumulativeAmount).signature };
}

/** The channel `id` whose signer is `signer`, as the escrow reports it. */
export async function channelOf(env: Env, id: Hex, signer: Address) {
  return env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [id, signer] });
}

/** Gas used by a mined transaction. */
export async function gasUsed(env: Env, hash: Hex): Promise<bigint> {
  return (await receipt(env, hash)).gasUsed;
}

/** `SkipReason` of `SettleSkipped`, in the contract's declaration order. */
export const SKIP = {
  UnknownChannel: 0,
  PayeeMismatch: 1,
  TokenMismatch: 2,
  InvalidSignature: 3,
  Finalized: 4,
  AmountNotAboveSettled: 5,
  AmountAboveVoucher: 6,
  AmountAboveDeposit: 7,
} as const;

/** Hardhat's `hre` re-exported for tests that need raw provider access next to these helpers. */
export { hre };
