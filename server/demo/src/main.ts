/**
 * `npm start`: the provider server.
 *
 * Without RPC_URL it runs everything locally: a Hardhat chain on 127.0.0.1:8545 (chain id 31337) in this process,
 * MockUSDC + ChannelEscrow deployed from the committed bytecode (deployments/31337.json), 1,000 MockUSDC minted to
 * Hardhat accounts #1..#9, account #0 as payee, a fresh SQLite store, and the demo routes on 127.0.0.1:4021.
 * With RPC_URL it uses that chain; ESCROW_ADDRESS / TOKEN_ADDRESS come from the environment or the deployments file.
 * The settlement job runs inside (every SETTLE_INTERVAL; on the local chain with the payee's key, account #0).
 * Prints one line containing `ready`; SIGINT/SIGTERM stop everything.
 */
import fs from "node:fs";
import path from "node:path";
import { formatTokenAmount } from "@paychan/protocol";
import { CONFIG_VARIABLES, ConfigError, createLogger, loadConfig, type ServerConfig } from "@paychan/server";
import { hardhatAccount, HARDHAT_ACCOUNT_1_KEY } from "./accounts";
import { startProviderServer, type ProviderServer } from "./app";
import { deployContracts } from "./deploy";
import { mintMockUsdc } from "./fund";
import { startLocalChain, type LocalChain } from "./local-chain";

const LOCAL_MINT = 1_000n * 1_000_000n; // 1,000 MockUSDC (6 decimals)

function usage(): string {
  const w = Math.max(...CONFIG_VARIABLES.map((v) => v.name.length));
  return [
    "usage: npm start   (configuration from environment variables)",
    "",
    ...CONFIG_VARIABLES.map((v) => `  ${v.name.padEnd(w)}  ${v.description} [default: ${v.default}]`),
  ].join("\n");
}

function removeSqlite(file: string) {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
}

async function main(): Promise<void> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(usage());
    return;
  }
  let config: ServerConfig;
  try {
    config = loadConfig(process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`${e.message}\n\nRun with --help for the list of variables.`);
      process.exit(2);
    }
    throw e;
  }
  const logger = createLogger(config.logLevel);
  let chain: LocalChain | null = null;
  let server: ProviderServer | null = null;
  let stopping = false;

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    await server?.close().catch(() => undefined);
    await chain?.close().catch(() => undefined);
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));

  const started = Date.now();
  let note = "";
  if (!config.rpcUrl) {
    chain = await startLocalChain({ host: "127.0.0.1", port: 8545 });
    const deployer = hardhatAccount(0);
    const d = await deployContracts({ rpcUrl: chain.rpcUrl, privateKey: deployer.key, tokenAddress: config.token });
    const funded = Array.from({ length: 9 }, (_, i) => hardhatAccount(i + 1).address);
    if (!config.token) await mintMockUsdc(chain.rpcUrl, d.chainId, d.token, deployer.key, funded, LOCAL_MINT);
    // A fresh chain needs a fresh store (channel ids and the escrow address would otherwise repeat).
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      databaseUrl = path.join(".data", `local-${d.chainId}.sqlite`);
      removeSqlite(databaseUrl);
    }
    config = { ...config, rpcUrl: chain.rpcUrl, escrow: d.escrow, token: d.token, payee: config.payee ?? deployer.address, databaseUrl };
    note =
      ` | local chain ${chain.rpcUrl} (31337), accounts #1-#9 hold ${formatTokenAmount(LOCAL_MINT, 6)} MockUSDC` +
      ` | pay as account #1: export CHANNEL_PRIVATE_KEY=${HARDHAT_ACCOUNT_1_KEY}`;
  }
  // With RPC_URL and no ESCROW_ADDRESS/TOKEN_ADDRESS, the provider reads DEPLOYMENTS_FILE or deployments/<chainId>.json.

  // Settlement runs in the server (SETTLE_IN_SERVER=false leaves it to `npm run settle` from cron).
  server = await startProviderServer({ config, logger, processMetrics: true, settlement: true });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `ready in ${secs}s: ${server.url} (escrow ${server.escrow}, token ${server.token}, payee ${server.payee})${note} | try: curl -i "${server.url}/v1/echo?msg=hi"  then  npx channel call "${server.url}/v1/echo?msg=hi"`,
  );
}

main().catch((e) => {
  console.error(`server failed to start: ${(e as Error)?.message?.split("\n")[0] ?? String(e)}`);
  process.exit(1);
});
