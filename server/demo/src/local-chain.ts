/**
 * A local Hardhat chain served over JSON-RPC, in this process: what `npm start` runs when RPC_URL is not set.
 * Uses Hardhat's in-process network (`hre.network.provider`, chain id 31337, accounts from hardhat.config.ts)
 * behind Hardhat's own JSON-RPC server. No compilation: contracts are deployed from the committed bytecode.
 */
import type { EIP1193Provider } from "hardhat/types";

export interface LocalChain {
  rpcUrl: string;
  provider: EIP1193Provider;
  close(): Promise<void>;
}

/** Starts Hardhat's in-process network behind a JSON-RPC server on `host:port`. */
export async function startLocalChain(opts: { host?: string; port?: number } = {}): Promise<LocalChain> {
  const host = opts.host ?? "127.0.0.1";
  const port = opts.port ?? 8545;
  // Loaded lazily (require, not import(): this is CommonJS): importing hardhat reads hardhat.config.ts, which only a
  // local chain needs.
  // hardhat.config.ts needs a TypeScript loader; the Hardhat CLI registers one, a plain `require` does not.
  const ts = require("hardhat/internal/core/typescript-support") as typeof import("hardhat/internal/core/typescript-support");
  const registered = (process as unknown as Record<symbol, unknown>)[Symbol.for("ts-node.register.instance")] !== undefined;
  if (!registered && ts.isTypescriptSupported()) ts.loadTsNode();
  const hre = require("hardhat") as typeof import("hardhat");
  const { JsonRpcServer } = require("hardhat/internal/hardhat-network/jsonrpc/server") as typeof import("hardhat/internal/hardhat-network/jsonrpc/server");
  const provider = hre.network.provider as unknown as EIP1193Provider;
  const server = new JsonRpcServer({ hostname: host, port, provider });
  try {
    const { port: actual } = await server.listen();
    return { rpcUrl: `http://${host}:${actual}`, provider, close: () => server.close() };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw new Error(`port ${port} on ${host} is in use (another node?). Stop it, or set RPC_URL=http://${host}:${port} to use that chain`);
    }
    throw e;
  }
}
