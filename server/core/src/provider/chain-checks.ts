/**
 * What a provider checks on the chain before it opens anything: the RPC answers (on the expected chain), escrow and
 * token come from the configuration or the deployment record, both have code, and the token's decimals.
 */
import type { Address, Hex, Transport } from "viem";
import { ChainReader } from "../chain/reader";
import type { ServerConfig } from "../config";
import { readDeployment } from "../deployments";
import { firstLine } from "./errors";
import { ProviderStartError } from "./types";

/** The chain as the provider will use it. */
export interface ConnectedChain {
  reader: ChainReader;
  chainId: number;
  escrow: Address;
  token: Address;
  decimals: number;
  /** Binds the store to this chain (a store is never reused across chains or resets). */
  genesisHash: Hex;
}

/** The escrow of the first reader, which only asks for the chain id (the escrow may come from a deployment record). */
const ZERO: Address = "0x0000000000000000000000000000000000000000";

/** Connects to the chain of `config` (or `transport`); {@link ProviderStartError} saying what is wrong otherwise. */
export async function connectChain(config: ServerConfig, transport?: Transport): Promise<ConnectedChain> {
  const probe = new ChainReader({ rpcUrl: config.rpcUrl, transport, escrow: config.escrow ?? ZERO, timeout: config.rpcTimeout });
  let chainId: number;
  try {
    chainId = await probe.chainId();
  } catch (e) {
    throw new ProviderStartError(`cannot reach the chain at ${config.rpcUrl ?? "(transport)"}: ${firstLine(e)}`);
  }
  if (config.chainId !== undefined && config.chainId !== chainId) throw new ProviderStartError(`CHAIN_ID is ${config.chainId} but the RPC serves chain ${chainId}`);
  let { escrow, token } = config;
  if (!escrow || !token) {
    const d = await readDeployment(chainId, config.deploymentsFile);
    if (!d) {
      throw new ProviderStartError(
        `ESCROW_ADDRESS/TOKEN_ADDRESS are not set and there is no deployments file for chain ${chainId} (${config.deploymentsFile ?? `deployments/${chainId}.json`})`,
      );
    }
    escrow ??= d.escrow;
    token ??= d.token;
  }
  const reader = new ChainReader({ rpcUrl: config.rpcUrl, transport, escrow, timeout: config.rpcTimeout });
  const read = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (e) {
      throw new ProviderStartError(`cannot read ${what} on chain ${chainId}: ${firstLine(e)}`);
    }
  };
  if (!(await read("the escrow's code", () => reader.hasCode(escrow)))) throw new ProviderStartError(`no contract at ESCROW_ADDRESS ${escrow} on chain ${chainId}`);
  if (!(await read("the token's code", () => reader.hasCode(token)))) throw new ProviderStartError(`no contract at TOKEN_ADDRESS ${token} on chain ${chainId}`);
  const decimals = await read(`the decimals of the token ${token}`, () => reader.tokenDecimals(token));
  const genesis = await read("the genesis block", () => reader.block(0n));
  return { reader, chainId, escrow, token, decimals, genesisHash: genesis.hash };
}
