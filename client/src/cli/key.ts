/**
 * The funding (payer) key of the `channel` CLI: from --key-file, else CHANNEL_PRIVATE_KEY, else PRIVATE_KEY.
 * There is no default key, not even on a local chain (the CLI is installed by agents: it carries no test key); on
 * the local chain of `npm start`, the error says that npm start prints the local payer's key. Light: no viem.
 */
import { readFileSync } from "node:fs";
import { rpcUrlOf, type Opts } from "./args";
import { UsageError, firstLine } from "./usage";
import { isBytes32Hex } from "@paychan/protocol/hex";

/** Chain ids of local development chains (Hardhat, Ganache / Anvil's legacy default). */
export const LOCAL_CHAIN_IDS: readonly number[] = [31337, 1337];

/** The key given (0x-prefixed, 32 bytes), or undefined when none is; a malformed or unreadable one is a usage error. */
export function readKey(opts: Pick<Opts, "key-file">): `0x${string}` | undefined {
  let raw: string | undefined;
  if (opts["key-file"]) {
    try {
      raw = readFileSync(opts["key-file"], "utf8").trim();
    } catch (e) {
      throw new UsageError(`cannot read the key file ${opts["key-file"]}: ${firstLine(e)}`);
    }
  } else raw = process.env.CHANNEL_PRIVATE_KEY ?? process.env.PRIVATE_KEY;
  if (raw === undefined || raw === "") return undefined;
  const key = raw.startsWith("0x") ? raw : `0x${raw}`;
  if (!isBytes32Hex(key)) throw new UsageError("the private key must be 32 bytes of hex");
  return key as `0x${string}`;
}

/** The key given, or a usage error saying how to give one (and, on a local chain, where its key is printed). */
export async function requireKey(opts: Opts): Promise<`0x${string}`> {
  const key = readKey(opts);
  if (key) return key;
  let message = "no key: set CHANNEL_PRIVATE_KEY (or PRIVATE_KEY) or pass --key-file";
  const chainId = await chainIdAt(rpcUrlOf(opts));
  if (chainId !== undefined && LOCAL_CHAIN_IDS.includes(chainId)) {
    message +=
      `\n  On this local chain (${chainId}), \`npm start\` prints the local payer's key in its "ready" line: ` +
      "export CHANNEL_PRIVATE_KEY=0x…";
  }
  throw new UsageError(message);
}

/** The chain id at `rpcUrl` (one `eth_chainId`, 3 s at most), or undefined when it cannot be read. */
async function chainIdAt(rpcUrl: string): Promise<number | undefined> {
  try {
    const res = await fetch(rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      signal: AbortSignal.timeout(3_000),
    });
    const { result } = (await res.json()) as { result?: unknown };
    return typeof result === "string" && /^0x[0-9a-fA-F]+$/.test(result) ? Number.parseInt(result, 16) : undefined;
  } catch {
    return undefined;
  }
}
