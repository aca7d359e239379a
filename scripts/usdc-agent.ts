/**
 * `npm run -s agent:usdc [-- --amount 100]`: a fresh agent key that holds only MockUSDC and no ETH, on the local chain
 * of `npm start` (the normal case for an x402 agent; docs/protocol.md § 5.9, § 7.6): prints
 * `export CHANNEL_PRIVATE_KEY=0x…` on stdout (so `eval "$(npm run -s agent:usdc)"` sets it) and what it holds on
 * stderr. The mint is sent by Hardhat's public test account #1 (MockUSDC's mint is public); the new key never receives
 * ETH. Local chains only (a test key must never meet real money). RPC: RPC_URL, default http://127.0.0.1:8545; token:
 * deployments/<chainId>.json (CHANNEL_DEPLOYMENTS_DIR to look elsewhere).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { createPublicClient, erc20Abi, getAddress, http, isAddress, parseUnits } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { DEFAULT_DEPLOYMENTS_DIR, DEFAULT_RPC_URL, hardhatAccount, LOCAL_CHAIN_IDS, mintMockUsdc } from "@paychan/demo";

async function main(argv: string[]): Promise<number> {
  const i = argv.indexOf("--amount");
  const amountText = i >= 0 ? argv[i + 1] : "100";
  if (!amountText || !/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(amountText)) {
    process.stderr.write("usage: npm run -s agent:usdc [-- --amount <MockUSDC, default 100>]\n");
    return 2;
  }
  const rpcUrl = process.env.RPC_URL?.trim() || DEFAULT_RPC_URL;
  const publicClient = createPublicClient({ transport: http(rpcUrl) });
  const chainId = await publicClient.getChainId().catch(() => undefined);
  if (chainId === undefined) {
    process.stderr.write(`cannot reach the chain at ${rpcUrl}: start it with \`npm start\`\n`);
    return 1;
  }
  if (!LOCAL_CHAIN_IDS.includes(chainId)) {
    process.stderr.write(`chain ${chainId} is not a local chain: this command mints test tokens to a throwaway key on local chains only\n`);
    return 2;
  }
  const file = path.join(process.env.CHANNEL_DEPLOYMENTS_DIR ?? DEFAULT_DEPLOYMENTS_DIR, `${chainId}.json`);
  const token = existsSync(file) ? JSON.parse(readFileSync(file, "utf8")).token : undefined;
  if (!isAddress(token)) {
    process.stderr.write(`no MockUSDC in ${file}: start the local chain with \`npm start\`\n`);
    return 1;
  }
  const key = generatePrivateKey();
  const agent = privateKeyToAccount(key).address;
  const amount = parseUnits(amountText, 6);
  await mintMockUsdc(rpcUrl, chainId, getAddress(token), hardhatAccount(1).key, [agent], amount);
  const [usdc, eth] = await Promise.all([
    publicClient.readContract({ address: getAddress(token), abi: erc20Abi, functionName: "balanceOf", args: [agent] }),
    publicClient.getBalance({ address: agent }),
  ]);
  process.stderr.write(`agent ${agent}: ${Number(usdc) / 1e6} MockUSDC, ${eth} ETH (the provider opens its channel from its signature)\n`);
  process.stdout.write(`export CHANNEL_PRIVATE_KEY=${key}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`${e instanceof Error ? e.message.split("\n")[0] : String(e)}\n`);
    process.exit(1);
  },
);
