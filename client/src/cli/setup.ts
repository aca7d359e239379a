/**
 * What every `channel` command runs on: the chain at the RPC URL, the payer's account, the chain's deployment record
 * (`deployments/<chainId>.json`), and a {@link ChannelClient} with the owner's limits. Loaded only once a command's
 * arguments passed their checks: it imports viem and the client.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { createPublicClient, createWalletClient, defineChain, getAddress, http, isAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { isBytes32Hex } from "@paychan/protocol";
import { createChannelClient, type ChannelClient } from "../client";
import { ClientError, shortMessageOf } from "../errors";
import { FileStore } from "../file-store";
import type { SpendingLimits } from "../limits";
import type { ClientEvent } from "../options";
import { gaslessOption, positiveInt, rpcUrlOf, schemesOption, type Opts } from "./args";
import { shortHex, type TokenInfo } from "./format";
import { LOCAL_CHAIN_IDS } from "./key";
import { UsageError } from "./usage";

/** A chain's deployment record: the escrow and token `npm start` or `npm run deploy` deployed. */
export interface Deployment {
  escrow: Address;
  token: Address;
  /** Where the search for lost channels starts. */
  blockNumber?: number;
}

/** Everything a command needs: the client, the deployment record, and how to print. */
export interface Context {
  agent: ChannelClient;
  json: boolean;
  deployment?: Deployment;
  out: (s: string) => void;
  err: (s: string) => void;
  /** A token's decimals and symbol (read once per run). */
  tokenInfo(token: Address): Promise<TokenInfo>;
  /** The stored channel a full id or a unique prefix names (else `unknown_channel`; ambiguous: a usage error). */
  resolveChannel(idOrPrefix: string): Hex;
}

/**
 * One CLI command: `parse` checks its arguments without the chain (and without loading viem), `run` does the work.
 * Command modules import only types and light modules at the top; what `run` needs it requires when it runs.
 */
export interface Command<A> {
  parse(args: string[], opts: Opts): A;
  run(ctx: Context, input: A, opts: Opts): Promise<number>;
}

/** The deployment record of `chainId` in CHANNEL_DEPLOYMENTS_DIR, else in ./deployments; undefined when none is usable. */
export function loadDeployment(chainId: number): Deployment | undefined {
  const dir = process.env.CHANNEL_DEPLOYMENTS_DIR ?? path.join(process.cwd(), "deployments");
  const f = path.join(dir, `${chainId}.json`);
  if (!existsSync(f)) return undefined;
  try {
    const j = JSON.parse(readFileSync(f, "utf8"));
    if (isAddress(j.escrow) && isAddress(j.token)) return { escrow: getAddress(j.escrow), token: getAddress(j.token), blockNumber: j.blockNumber };
  } catch {
    /* ignore a malformed record */
  }
  return undefined;
}

/** An integer option or its environment variable (checked by args.ts; the environment's here). */
function intOption(v: string | undefined, name: string): number | undefined {
  return v === undefined ? undefined : positiveInt(v, name, 0);
}

/**
 * The owner's limits from the options, else their CHANNEL_* environment variables, else the defaults (docs: the
 * README's quick start): max price 0.01, max deposit 5, and the SDK's defaults for the rest.
 */
export function limitsOf(opts: Opts, escrows: string[] | undefined, assets?: string[]): SpendingLimits {
  const env = process.env;
  return {
    maxPrice: opts["max-price"] ?? env.CHANNEL_MAX_PRICE ?? "0.01",
    maxDeposit: opts["max-deposit"] ?? env.CHANNEL_MAX_DEPOSIT ?? "5",
    maxSpend: opts["max-spend"] ?? env.CHANNEL_MAX_SPEND,
    maxCloseDelay: intOption(opts["max-close-delay"] ?? env.CHANNEL_MAX_CLOSE_DELAY, "--max-close-delay"),
    maxChannelsPerProvider: intOption(opts["max-channels"] ?? env.CHANNEL_MAX_CHANNELS, "--max-channels"),
    maxDepositPerProvider: opts["max-deposit-per-provider"] ?? env.CHANNEL_MAX_DEPOSIT_PER_PROVIDER,
    maxUnservedPerChannel: opts["max-unserved"] ?? env.CHANNEL_MAX_UNSERVED,
    maxConsecutiveRefusals: intOption(opts["max-refusals"] ?? env.CHANNEL_MAX_REFUSALS, "--max-refusals"),
    maxOpenFee: opts["max-open-fee"] ?? env.CHANNEL_MAX_OPEN_FEE,
    maxRequestSpend: opts["max-request-spend"] ?? env.CHANNEL_MAX_REQUEST_SPEND,
    escrows,
    assets,
  };
}

/** Connects to the chain, builds the client with `key` as payer, and loads its state. */
export async function setup(opts: Opts, key: Hex, err: (s: string) => void): Promise<Context> {
  const rpcUrl = rpcUrlOf(opts);
  const transport = http(rpcUrl, { timeout: 15_000, retryCount: 1 });
  let chainId: number;
  try {
    chainId = await createPublicClient({ transport }).getChainId();
  } catch (e) {
    throw new ClientError("chain_failure", `cannot reach the chain at ${rpcUrl}`, {
      details: "Start one with `npm start` (local chain and demo server) or set RPC_URL.",
      cause: e,
    });
  }
  const local = LOCAL_CHAIN_IDS.includes(chainId);
  const chain = defineChain({
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
  const account = privateKeyToAccount(key);
  const publicClient = createPublicClient({ chain, transport, pollingInterval: local ? 50 : 2_000 });
  const walletClient = createWalletClient({ chain, transport, account });
  const deployment = loadDeployment(chainId);
  const escrows = opts.escrow ? [opts.escrow] : deployment ? [deployment.escrow] : undefined;
  // args.ts checked the shapes; viem also checks the checksum of a mixed-case address.
  if (opts.escrow && !isAddress(opts.escrow)) throw new UsageError("--escrow must be an address");
  if (opts.token && !isAddress(opts.token)) throw new UsageError("--token must be an address");
  const closeDelay = opts["close-delay"] === undefined ? undefined : positiveInt(opts["close-delay"], "--close-delay", 0);
  const passedOver = new Set<string>();
  const onEvent = (e: ClientEvent) => {
    if (opts.json) return;
    if (e.type === "channel_opened") err(`opened channel ${e.channelId} (${e.method}, tx ${shortHex(e.txHash)})`);
    else if (e.type === "gasless_open_signing") {
      const why = e.reason === "no_gas" ? "the payer has no gas for its own open" : "--gasless always";
      err(`signing a gasless open of channel ${shortHex(e.channelId)} (${why}): the provider opens it, deposit ${e.deposit}, open fee ${e.fee} (atomic units) added to the first call`);
    } else if (e.type === "channel_opened_by_provider") err(`channel ${e.channelId} opened by the provider (gasless), open fee ${e.fee} (atomic units)`);
    else if (e.type === "channel_replaced") err(`channel ${shortHex(e.channelId)} ran out: opening a new one gaslessly; the old one is closed cooperatively`);
    else if (e.type === "close_failed") err(`cooperative close of ${shortHex(e.channelId)} failed: ${shortMessageOf(e.error)}`);
    else if (e.type === "channel_recovered") err(`recovered channel ${e.channelId} from the chain`);
    else if (e.type === "topped_up") err(`topped up channel ${shortHex(e.channelId)} (tx ${shortHex(e.txHash)})`);
    else if (e.type === "top_up_failed") err(`top-up of ${shortHex(e.channelId)} failed: ${shortMessageOf(e.error)}`);
    else if (e.type === "store_error") err(`state not saved: ${shortMessageOf(e.error)}`);
    else if (e.type === "scheme_passed_over" && !passedOver.has(e.scheme)) {
      passedOver.add(e.scheme); // once per run, not once per call
      err(`not paying ${e.scheme}: ${shortMessageOf(e.error)}; paying the next scheme offered`);
    }
  };
  const agent = createChannelClient({
    account,
    publicClient,
    walletClient,
    store: new FileStore(opts["state-dir"] ?? process.env.CHANNEL_STATE_DIR ?? ".channel", {
      onLockWait: (h) => err(`waiting for the state directory, in use by pid ${h.pid}${h.host ? ` on ${h.host}` : ""}`),
    }),
    // The limits count in the units of the token of --token or the deployment record; without either, in USDC.
    limits: limitsOf(opts, escrows, opts.token ? [opts.token] : deployment ? [deployment.token] : undefined),
    policy: { deposit: opts.deposit, closeDelay, gaslessOpen: gaslessOption(opts) },
    schemes: schemesOption(opts),
    discoverFromBlock: deployment?.blockNumber !== undefined ? BigInt(deployment.blockNumber) : 0n,
    onEvent,
  });
  await agent.ready();

  const tokens = new Map<string, TokenInfo>();
  return {
    agent,
    json: Boolean(opts.json),
    deployment,
    out: (s) => process.stdout.write(s + "\n"),
    err,
    async tokenInfo(token) {
      const k = token.toLowerCase();
      let t = tokens.get(k);
      if (!t) {
        const [decimals, symbol] = await Promise.all([agent.decimalsOf(token), agent.symbolOf(token)]);
        t = { decimals, symbol };
        tokens.set(k, t);
      }
      return t;
    },
    resolveChannel(idOrPrefix) {
      const p = idOrPrefix.toLowerCase();
      const matches = agent.channels().filter((c) => c.id.toLowerCase().startsWith(p));
      if (matches.length === 1) return matches[0].id;
      if (matches.length > 1) throw new UsageError(`${idOrPrefix} matches ${matches.length} channels; give more digits`);
      if (isBytes32Hex(idOrPrefix)) return idOrPrefix;
      throw new ClientError("unknown_channel", `no channel ${idOrPrefix} in this state directory`);
    },
  };
}
