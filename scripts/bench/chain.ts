/**
 * The benchmark's chain: Hardhat's in-process network behind JSON-RPC on 127.0.0.1 (what `npm start` runs), the
 * contracts deployed from the committed bytecode, and quick transaction helpers over the in-process provider
 * (unlocked Hardhat accounts, automine: a transaction is mined when `send` returns).
 */
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  encodeFunctionData,
  getAddress,
  keccak256,
  toHex,
  type Abi,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { channelEscrowAbi, computeChannelId, escrowDomain, VoucherSigner, type EscrowDomain } from "@paychan/protocol";
import { deployContracts, mockUsdcAbi } from "@paychan/demo";
import { hardhatAccount, startLocalChain, type LocalChain } from "@paychan/demo";

export interface BenchChain {
  rpcUrl: string;
  chainId: number;
  escrow: Address;
  token: Address;
  domain: EscrowDomain;
  /** Reads over the in-process provider (no HTTP). */
  publicClient: PublicClient;
  /** Sends a contract call from Hardhat account `from` (unlocked) and returns the mined receipt's gas; throws on revert. */
  send(from: number, to: Address, abi: Abi, functionName: string, args: readonly unknown[]): Promise<{ gasUsed: bigint; hash: Hex; block: bigint }>;
  /** Hardhat account address. */
  account(index: number): Address;
  close(): Promise<void>;
}

/** Starts the chain on a free port and deploys MockUSDC + ChannelEscrow. */
export async function startBenchChain(): Promise<BenchChain> {
  // Blocks may share a timestamp, so the chain's clock follows the wall clock as on a real chain. By default Hardhat
  // mines each block one second after the previous one: the thousands of one-transaction blocks of a run (an `exact`
  // call mines one) would move the chain's time far ahead of the wall clock that x402 clients sign their windows from.
  // Set before the in-process network's first request, which creates it from this configuration.
  const hre = require("hardhat") as typeof import("hardhat");
  (hre.config.networks.hardhat as { allowBlocksWithSameTimestamp?: boolean }).allowBlocksWithSameTimestamp = true;
  const chain: LocalChain = await startLocalChain({ host: "127.0.0.1", port: 0 });
  const deployer = hardhatAccount(0);
  const d = await deployContracts({ rpcUrl: chain.rpcUrl, privateKey: deployer.key, deploymentsDir: null });
  const c = defineChain({
    id: d.chainId,
    name: "hardhat",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [chain.rpcUrl] } },
  });
  const transport = custom(chain.provider as unknown as { request(a: { method: string; params?: unknown }): Promise<unknown> });
  const publicClient = createPublicClient({ chain: c, transport, pollingInterval: 10 }) as PublicClient;
  const wallet = createWalletClient({ chain: c, transport });
  const accounts = new Map<number, Address>();
  const account = (i: number) => {
    let a = accounts.get(i);
    if (!a) accounts.set(i, (a = hardhatAccount(i).address));
    return a;
  };
  return {
    rpcUrl: chain.rpcUrl,
    chainId: d.chainId,
    escrow: getAddress(d.escrow),
    token: getAddress(d.token),
    domain: escrowDomain(d.chainId, getAddress(d.escrow)),
    publicClient,
    account,
    async send(from, to, abi, functionName, args) {
      const data = encodeFunctionData({ abi, functionName, args } as Parameters<typeof encodeFunctionData>[0]);
      const hash = await wallet.sendTransaction({ account: account(from), to, data, chain: c });
      const r = await publicClient.getTransactionReceipt({ hash });
      if (r.status !== "success") throw new Error(`${functionName} from #${from} reverted (${hash})`);
      return { gasUsed: r.gasUsed, hash, block: r.blockNumber };
    },
    close: () => chain.close(),
  };
}

/** A channel opened for benchmarks, with its voucher signer. */
export interface BenchChannel {
  id: Hex;
  signer: VoucherSigner;
  signerKey: Hex;
  deposit: bigint;
  openGas: bigint;
}

let salt = 0;

/**
 * Opens a channel from Hardhat account `payerIndex` to `payee` (the payer must hold and have approved enough tokens:
 * see {@link fundPayer}). Returns the channel and the gas of the `open` transaction alone.
 */
export async function openBenchChannel(
  chain: BenchChain,
  o: { payerIndex: number; payee: Address; deposit: bigint; closeDelay?: number },
): Promise<BenchChannel> {
  const key = generatePrivateKey();
  const signerAddr = privateKeyToAccount(key).address;
  const s = keccak256(toHex(`bench-${process.pid}-${++salt}`));
  const r = await chain.send(o.payerIndex, chain.escrow, channelEscrowAbi as Abi, "open", [o.payee, chain.token, signerAddr, o.deposit, o.closeDelay ?? 86_400, s]);
  const id = computeChannelId({
    chainId: chain.chainId,
    escrow: chain.escrow,
    payer: chain.account(o.payerIndex),
    payee: o.payee,
    token: chain.token,
    signer: signerAddr,
    salt: s,
  });
  return { id, signer: new VoucherSigner(key, chain.domain), signerKey: key, deposit: o.deposit, openGas: r.gasUsed };
}

/** Mints `amount` MockUSDC to account `index` and approves the escrow for `allowance` (default: the amount). */
export async function fundPayer(chain: BenchChain, index: number, amount: bigint, allowance = amount): Promise<void> {
  await chain.send(index, chain.token, mockUsdcAbi as Abi, "mint", [chain.account(index), amount]);
  await chain.send(index, chain.token, mockUsdcAbi as Abi, "approve", [chain.escrow, allowance]);
}
