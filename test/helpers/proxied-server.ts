/**
 * The real server process reading the chain through a fault proxy, for the fault tests: fresh contracts, a fresh
 * SQLite database, the server's terms from a first 402, and one `stop()` that heals the proxy, stops everything and
 * removes the database.
 */
import fs from "node:fs";
import path from "node:path";
import { decodePaymentRequired, type ChannelRequirements } from "@paychan/protocol";
import { deployEscrow, type Env } from "./escrow";
import { startFaultProxy, type FaultProxy } from "./fault-proxy";
import { startServerProcess, type ServerProcess } from "./process";
import { rpcUrl, tempDatabaseUrl } from "./server";

export interface ProxiedServer {
  env: Env;
  proxy: FaultProxy;
  server: ServerProcess;
  databaseUrl: string;
  /** The `channel` offer of `GET /v1/echo`. */
  terms: ChannelRequirements;
  stop(): Promise<void>;
}

/** Starts it; `serverEnv` adds to (or overrides) the server's environment. */
export async function startProxiedServer(serverEnv: Record<string, string> = {}): Promise<ProxiedServer> {
  const env = await deployEscrow();
  const proxy = await startFaultProxy(await rpcUrl());
  const databaseUrl = tempDatabaseUrl();
  const server = await startServerProcess({
    RPC_URL: proxy.url,
    ESCROW_ADDRESS: env.escrow.address,
    TOKEN_ADDRESS: env.usdc.address,
    PAYEE_ADDRESS: env.wallets[0].account.address,
    DATABASE_URL: databaseUrl,
    ...serverEnv,
  });
  const challenge = await fetch(`${server.url}/v1/echo`);
  await challenge.arrayBuffer();
  const terms = decodePaymentRequired(challenge.headers.get("payment-required")).accepts[0];
  return {
    env,
    proxy,
    server,
    databaseUrl,
    terms,
    async stop() {
      proxy.mode("pass");
      await server.stop();
      await proxy.close();
      fs.rmSync(path.dirname(databaseUrl), { recursive: true, force: true });
    },
  };
}
