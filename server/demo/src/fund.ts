/** Funds local test accounts with MockUSDC (public mint) so demo clients can open channels. */
import { createPublicClient, createWalletClient, defineChain, http, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { mockUsdcAbi } from "./contracts/mockUsdc";

/** Mints `amount` (atomic units) of the MockUSDC at `token` to each of `to`, sending from `minterKey`. */
export async function mintMockUsdc(rpcUrl: string, chainId: number, token: Address, minterKey: Hex, to: readonly Address[], amount: bigint): Promise<void> {
  const chain = defineChain({ id: chainId, name: `chain ${chainId}`, nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [rpcUrl] } } });
  const transport = http(rpcUrl, { retryCount: 0 });
  const wallet = createWalletClient({ account: privateKeyToAccount(minterKey), chain, transport });
  const pub = createPublicClient({ chain, transport });
  const hashes: Hex[] = [];
  for (const a of to) hashes.push(await wallet.writeContract({ address: token, abi: mockUsdcAbi, functionName: "mint", args: [a, amount] }));
  for (const h of hashes) {
    const r = await pub.waitForTransactionReceipt({ hash: h, pollingInterval: 50 });
    if (r.status !== "success") throw new Error(`mint ${h} failed`);
  }
}
