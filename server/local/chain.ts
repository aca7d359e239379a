/**
 * A local Hardhat chain served over JSON-RPC, in this process: what `npm start` runs when RPC_URL is not set.
 * Uses Hardhat's in-process network (`hre.network.provider`, chain id 31337, accounts from hardhat.config.ts)
 * behind Hardhat's own JSON-RPC server. No compilation: contracts are deployed from the committed bytecode.
 */
import type { EIP1193Provider } from "hardhat/types";
import { mnemonicToAccount } from "viem/accounts";
import type { Address, Hex } from "viem";

/** Hardhat's default test mnemonic (public; local chains only). */
export const HARDHAT_MNEMONIC = "test test test test test test test test test test test junk";

/** Hardhat test account `index`: address and (public, well-known) private key. */
export function hardhatAccount(index: number): { address: Address; key: Hex } {
  const acc = mnemonicToAccount(HARDHAT_MNEMONIC, { addressIndex: index });
  return { address: acc.address, key: `0x${Buffer.from(acc.getHdKey().privateKey!).toString("hex")}` };
}

export interface LocalChain {
  rpcUrl: string;
  provider: EIP1193Provider;
  close(): Promise<void>;
}

/** Starts Hardhat's in-process network behind a JSON-RPC server on `host:port`. */
export async function startLocalChain(opts: { host?: string; port?: number } = {}): Promise<LocalChain> {
  const host = opts.host ?? "127.0.0.1";
  const port = opts.port ?? 8545;
  // Loaded lazily: importing hardhat reads hardhat.config.ts, which only a local chain needs.
  const hre = (await import("hardhat")).default;
  const { JsonRpcServer } = await import("hardhat/internal/hardhat-network/jsonrpc/server");
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
