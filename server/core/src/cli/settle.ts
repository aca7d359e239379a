/**
 * `channel-settle [--all] [--dry-run] [--json]`: one settlement cycle for cron, against the same database and chain
 * as the provider's server (which may be running: the settler lease keeps one settler at a time, SQLite waits on its
 * busy timeout). Settles what the policy selects (`--all`: everything owed), closes what payers asked to close, waits
 * for confirmations, prints a summary and returns the exit code:
 *   0  everything selected is settled and confirmed
 *   1  something failed (a revert, an RPC error, a dropped transaction, a voucher the contract refused)
 *   2  configuration problem (nothing was done)
 *   3  still waiting for confirmations after SETTLE_WAIT_TIMEOUT (run again to finish; nothing is lost)
 *
 * The package has no local defaults: RPC_URL, PAYEE_ADDRESS and SETTLER_PRIVATE_KEY come from the environment, the
 * database from DATABASE_URL (or the server's default `.data/server-<chainId>.sqlite` when it exists), the escrow and
 * token from ESCROW_ADDRESS / TOKEN_ADDRESS, DEPLOYMENTS_FILE or `./deployments/<chainId>.json`. A repository's own
 * script may pass {@link SettleCommandDefaults} for its local chain (this repository's `npm run settle` does).
 *
 * ```ts
 * process.exitCode = await runSettleCommand(process.argv.slice(2), process.env);
 * ```
 */
import fs from "node:fs";
import pino from "pino";
import { Registry } from "prom-client";
import { createPublicClient, erc20Abi, getAddress, http, isAddress, type Address } from "viem";
import { formatTokenAmount } from "@paychan/protocol";
import { ChainReader } from "../chain/reader";
import { ConfigError, loadConfig, type LogLevel, type ServerConfig } from "../config";
import { DeploymentFileError, deploymentPath, readDeployment } from "../deployments";
import { createLogger } from "../log";
import {
  checkCloseDelayRuleFor,
  createSettlement,
  parseSettlementEnv,
  resolveSettlementConfig,
  resolveSettlerKey,
  type SettlementRunReport,
  type SettlerKeyFallback,
} from "../settlement";
import { isPostgresUrl, openStore, sqliteFilename, StoreBindingError } from "../store";
import { settleSummary, settleUsage } from "./settle-output";

/** Environment variables, as `process.env` holds them. */
export type SettleCommandEnv = Readonly<Record<string, string | undefined>>;

/**
 * Values for what the environment leaves unset. The `channel-settle` command has none (a provider configures it);
 * a development setup passes its local chain's (see this repository's `scripts/settle.ts`).
 */
export interface SettleCommandDefaults {
  /** RPC_URL when it is unset. */
  rpcUrl?: string;
  /** Directory of `<chainId>.json` deployment records when DEPLOYMENTS_FILE is unset (default `./deployments`). */
  deploymentsDir?: string;
  /** PAYEE_ADDRESS when it is unset, for the chain served (undefined: PAYEE_ADDRESS is required). */
  payee?: (chainId: number) => Address | undefined;
  /** The settler key when SETTLER_PRIVATE_KEY is unset (null: SETTLER_PRIVATE_KEY is required). Never logged. */
  settlerKey?: SettlerKeyFallback;
  /**
   * SQLite files to use, the first that exists, when DATABASE_URL is unset (default: the server's
   * `.data/server-<chainId>.sqlite`).
   */
  databaseCandidates?: (chainId: number, env: SettleCommandEnv) => string[];
}

/** How {@link runSettleCommand} prints and names itself. */
export interface SettleCommandOptions {
  /** See {@link SettleCommandDefaults}; none by default. */
  defaults?: SettleCommandDefaults;
  /** The first line of `--help` (default `usage: channel-settle [--all] [--dry-run] [--json]`). */
  usageLine?: string;
  /** Settler-lease holder name (default `channel-settle:<pid>`). */
  holder?: string;
  /** Prints to standard output (default `console.log`): the summary, or the JSON report. */
  out?: (text: string) => void;
  /** Prints to standard error (default `console.error`): why it stopped. */
  err?: (text: string) => void;
  /** Where the logs go (default: standard error, so that standard output holds only the summary). */
  logDestination?: pino.DestinationStream;
}

/** Exit codes of the settle command. */
export const SETTLE_EXIT = { done: 0, failed: 1, configuration: 2, pending: 3 } as const;

/** Longest wait for a settler lease held by another settler (a server's cycle), ms. */
const LEASE_WAIT_MS = 60_000;

/** Stops the command with `code` after printing `message` on standard error. */
class CommandExit extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function fail(code: number, message: string): never {
  throw new CommandExit(code, message);
}

interface Args {
  all: boolean;
  dryRun: boolean;
  json: boolean;
  help: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { all: false, dryRun: false, json: false, help: false };
  for (const arg of argv) {
    if (arg === "--all") a.all = true;
    else if (arg === "--dry-run") a.dryRun = true;
    else if (arg === "--json") a.json = true;
    else if (arg === "--help" || arg === "-h") return { ...a, help: true };
    else throw new Error(`unknown argument ${arg}`);
  }
  return a;
}

/**
 * Runs the settle command with `argv` (the arguments after the command name) and `env`; resolves with the exit code
 * ({@link SETTLE_EXIT}). Never throws, and never prints the settler key.
 */
export async function runSettleCommand(argv: readonly string[], env: SettleCommandEnv, options: SettleCommandOptions = {}): Promise<number> {
  const out = options.out ?? ((t: string) => console.log(t));
  const err = options.err ?? ((t: string) => console.error(t));
  try {
    return await settle(argv, env, options, out);
  } catch (e) {
    if (e instanceof CommandExit) {
      err(e.message);
      return e.code;
    }
    // First line only: RPC errors can be long, and nothing here may echo the key.
    err(`settle failed: ${String((e as Error)?.message ?? e).split("\n")[0]}`);
    return SETTLE_EXIT.failed;
  }
}

async function settle(argv: readonly string[], env: SettleCommandEnv, options: SettleCommandOptions, out: (text: string) => void): Promise<number> {
  const defaults = options.defaults ?? {};
  // Variables the command cannot do without, unless a default was supplied: `--help` says so.
  const required: Record<string, string> = {};
  if (defaults.rpcUrl === undefined) required.RPC_URL = "(required)";
  if (defaults.payee === undefined) required.PAYEE_ADDRESS = "(required)";
  if (defaults.settlerKey === undefined) required.SETTLER_PRIVATE_KEY = "(required)";
  const usage = () => settleUsage(options.usageLine ?? "usage: channel-settle [--all] [--dry-run] [--json]", required);

  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    fail(SETTLE_EXIT.configuration, `${(e as Error).message}\n\n${usage()}`);
  }
  if (args.help) {
    out(usage());
    return SETTLE_EXIT.done;
  }

  const problems: string[] = [];
  // The server's variables, validated by the server's own rules (RPC_URL is checked here: it may have a default).
  let server: ServerConfig | undefined;
  try {
    server = loadConfig({ ...env, RPC_URL: undefined });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...e.problems);
  }
  const rpcUrl = env.RPC_URL?.trim() || defaults.rpcUrl;
  if (rpcUrl === undefined) problems.push("RPC_URL is required (the JSON-RPC endpoint of the chain holding the escrow)");
  else if (!/^https?:\/\//.test(rpcUrl)) problems.push(`RPC_URL=${JSON.stringify(rpcUrl)} must be an http(s) URL`);
  const senv = parseSettlementEnv(env, problems);
  if (!env.PAYEE_ADDRESS?.trim() && defaults.payee === undefined) problems.push("PAYEE_ADDRESS is required (the address channels pay)");
  if (!env.SETTLER_PRIVATE_KEY?.trim() && defaults.settlerKey === undefined) {
    problems.push("SETTLER_PRIVATE_KEY is required (the payee's key, or an operator it approved with setOperator)");
  }
  // loadConfig validates the SETTLE_* variables too: each problem once.
  if (problems.length || !server || rpcUrl === undefined) {
    fail(SETTLE_EXIT.configuration, `invalid configuration:\n  - ${[...new Set(problems)].join("\n  - ")}\n\nRun with --help for the variables.`);
  }

  const level = (env.LOG_LEVEL?.trim() ? server.logLevel : "warn") as LogLevel;
  const logger = createLogger(level, options.logDestination ?? pino.destination(2)); // logs on stderr, the summary on stdout

  const client = createPublicClient({ transport: http(rpcUrl, { timeout: server.rpcTimeout, retryCount: 1 }) });
  let chainId: number;
  try {
    chainId = await client.getChainId();
  } catch (e) {
    fail(SETTLE_EXIT.failed, `cannot reach the chain at ${rpcUrl}: ${String((e as Error).message).split("\n")[0]}`);
  }
  if (server.chainId !== undefined && server.chainId !== chainId) fail(SETTLE_EXIT.configuration, `CHAIN_ID is ${server.chainId} but ${rpcUrl} serves chain ${chainId}`);

  let escrow = server.escrow;
  let token = server.token;
  if (!escrow || !token) {
    const file = server.deploymentsFile ?? deploymentPath(chainId, defaults.deploymentsDir);
    const d = await readDeployment(chainId, file).catch((e: unknown) => {
      if (e instanceof DeploymentFileError) fail(SETTLE_EXIT.configuration, e.message);
      throw e;
    });
    if (!d) fail(SETTLE_EXIT.configuration, `ESCROW_ADDRESS/TOKEN_ADDRESS are not set and there is no ${file}`);
    escrow ??= getAddress(d.escrow);
    token ??= getAddress(d.token);
  }
  const payee = server.payee ?? defaults.payee?.(chainId);
  if (!payee) fail(SETTLE_EXIT.configuration, "PAYEE_ADDRESS is required (the address channels pay)");
  if (!isAddress(payee)) fail(SETTLE_EXIT.configuration, "PAYEE_ADDRESS is not an address");

  const config = resolveSettlementConfig(senv, chainId);
  const rule = checkCloseDelayRuleFor(server, config);
  if (!rule.ok) fail(SETTLE_EXIT.configuration, `refusing to settle: ${rule.message}`);

  const privateKey = senv.privateKey();
  const key = privateKey ? resolveSettlerKey({ privateKey }) : (defaults.settlerKey?.({ chainId, payee }) ?? null);
  if (!key) fail(SETTLE_EXIT.configuration, `SETTLER_PRIVATE_KEY is required on chain ${chainId} (the payee's key, or an operator it approved with setOperator)`);

  // The server's database: DATABASE_URL, else the first existing default.
  let databaseUrl = server.databaseUrl;
  if (!databaseUrl) {
    const candidates = defaults.databaseCandidates?.(chainId, env) ?? [`.data/server-${chainId}.sqlite`];
    databaseUrl = candidates.find((f) => fs.existsSync(f));
    if (!databaseUrl) fail(SETTLE_EXIT.configuration, `no database found (looked for ${candidates.join(", ")}); set DATABASE_URL to the server's database`);
  } else if (!isPostgresUrl(databaseUrl)) {
    const file = sqliteFilename(databaseUrl);
    if (file !== ":memory:" && !fs.existsSync(file)) fail(SETTLE_EXIT.configuration, `no database at ${file}; set DATABASE_URL to the server's database`);
  }

  const reader = new ChainReader({ rpcUrl, escrow, timeout: server.rpcTimeout });
  const store = await openStore({ url: databaseUrl, sqliteSynchronous: server.sqliteSynchronous });
  try {
    const genesis = await reader.block(0n);
    try {
      await store.bind({ chainId, escrow, token, payee, genesisHash: genesis.hash });
    } catch (e) {
      if (e instanceof StoreBindingError) fail(SETTLE_EXIT.configuration, e.message);
      throw e;
    }
    const decimals = await reader.tokenDecimals(token);
    const { job, chain } = createSettlement({
      config,
      privateKey: key.privateKey,
      rpcUrl,
      chainId,
      escrow,
      token,
      payee,
      decimals,
      store,
      reader,
      rpcTimeout: server.rpcTimeout,
      logger,
      registry: new Registry(),
      holder: options.holder ?? `channel-settle:${process.pid}`,
      pollInterval: Math.min(1_000, Math.max(100, config.blockTime * 250)),
    });
    try {
      await job.preflight();
    } catch (e) {
      fail(SETTLE_EXIT.failed, `cannot settle: ${(e as Error).message.split("\n")[0]}`);
    }
    const balanceOf = () => client.readContract({ address: token, abi: erc20Abi, functionName: "balanceOf", args: [payee] });
    const balanceBefore = await balanceOf();
    // A settler inside the server holds the lease only during its cycles: wait for one to end (up to 60 s).
    const run = () => job.runOnce({ all: args.all, dryRun: args.dryRun, wait: true, refreshCandidates: true });
    let report: SettlementRunReport = await run();
    const leaseDeadline = Date.now() + LEASE_WAIT_MS;
    while (!report.leased && Date.now() < leaseDeadline) {
      await new Promise((r) => setTimeout(r, 1_000));
      report = await run();
    }
    if (!report.leased) fail(SETTLE_EXIT.failed, "another settler (a running server?) kept the settler lease for 60 s; try again");
    const balanceAfter = await balanceOf();
    if (args.json) {
      out(JSON.stringify({ ...report, payeeBalanceBefore: balanceBefore, payeeBalanceAfter: balanceAfter }, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2));
    } else {
      out(settleSummary(report, { decimals, chainId, escrow, payee, settler: chain.sender, source: key.source, dryRun: args.dryRun }));
      if (!args.dryRun) {
        const delta = balanceAfter - balanceBefore;
        out(`payee balance ${formatTokenAmount(balanceBefore, decimals)} -> ${formatTokenAmount(balanceAfter, decimals)} (+${formatTokenAmount(delta, decimals)})`);
      }
    }
    return report.failures.length ? SETTLE_EXIT.failed : report.timedOut || report.pending > 0 ? SETTLE_EXIT.pending : SETTLE_EXIT.done;
  } finally {
    await store.close();
  }
}
