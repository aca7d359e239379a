/**
 * `npm run deploy [-- --mock-token] [-- --out DIR]`: deploys ChannelEscrow (and MockUSDC on local networks) to the
 * network at RPC_URL with DEPLOYER_PRIVATE_KEY, and writes deployments/<chainId>.json.
 *
 * Environment:
 *   RPC_URL               JSON-RPC endpoint (default http://127.0.0.1:8545, a local Hardhat node)
 *   DEPLOYER_PRIVATE_KEY  0x-hex key paying for the deployment (default: Hardhat's public account #0 key)
 *   TOKEN_ADDRESS         use this token (e.g. USDC) instead of deploying MockUSDC
 *   DEPLOYMENTS_DIR       where <chainId>.json goes (default ./deployments; --out overrides)
 */
import { DEFAULT_RPC_URL, deployContracts, DeployError } from "@paychan/demo";
import type { Address, Hex } from "viem";

const USAGE = `usage: ts-node scripts/deploy.ts [--mock-token] [--out DIR]
env: RPC_URL (default ${DEFAULT_RPC_URL}), DEPLOYER_PRIVATE_KEY (default Hardhat account #0), TOKEN_ADDRESS, DEPLOYMENTS_DIR`;

function parseArgs(argv: string[]): { mockToken: boolean; out?: string } {
  const args = { mockToken: false, out: undefined as string | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--mock-token") args.mockToken = true;
    else if (a === "--out" && argv[i + 1]) args.out = argv[++i];
    else if (a.startsWith("--out=")) args.out = a.slice("--out=".length);
    else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new DeployError(`unknown argument ${a}\n${USAGE}`);
  }
  return args;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const deployment = await deployContracts({
    rpcUrl: process.env.RPC_URL || undefined,
    privateKey: (process.env.DEPLOYER_PRIVATE_KEY || undefined) as Hex | undefined,
    tokenAddress: (process.env.TOKEN_ADDRESS || undefined) as Address | undefined,
    mockToken: args.mockToken,
    deploymentsDir: args.out ?? (process.env.DEPLOYMENTS_DIR || undefined),
    log: (m) => console.error(m),
  });
  console.log(JSON.stringify(deployment, null, 2));
}

main().catch((e) => {
  // Operator-facing: a DeployError's message says what to fix; anything else gets its first line only (no key echo).
  console.error(e instanceof DeployError ? `deploy: ${e.message}` : `deploy failed: ${String((e as Error)?.message ?? e).split("\n")[0]}`);
  process.exit(1);
});
