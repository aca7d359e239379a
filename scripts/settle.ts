/**
 * `npm run settle [-- --all] [--dry-run] [--json]`: one settlement cycle for cron, against the same database and chain
 * as the server (which may be running: the settler lease keeps one settler at a time, SQLite waits on its busy
 * timeout). Settles what the policy selects (`--all`: everything owed), closes what payers asked to close, waits for
 * confirmations, prints a summary and exits:
 *   0  everything selected is settled and confirmed
 *   1  something failed (a revert, an RPC error, a dropped transaction, a voucher the contract refused)
 *   2  configuration problem (nothing was done)
 *   3  still waiting for confirmations after SETTLE_WAIT_TIMEOUT (run again to finish; nothing is lost)
 *
 * With no configuration it works against `npm start`: RPC http://127.0.0.1:8545, deployments/31337.json, the
 * server's default database, the payee's (Hardhat account #0) key.
 */
import fs from "node:fs";
import path from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { createPublicClient, erc20Abi, http, isAddress, getAddress, type Address } from "viem";
import { formatTokenAmount } from "@paychan/protocol";
import { ChainReader } from "@paychan/server";
import { CONFIG_VARIABLES, ConfigError, loadConfig, type LogLevel } from "@paychan/server";
import { createLogger } from "@paychan/server";
import {
  checkCloseDelayRule,
  createSettlement,
  parseSettlementEnv,
  resolveSettlementConfig,
  resolveSettlerKey,
  SETTLEMENT_VARIABLES,
  type SettlementRunReport,
} from "@paychan/server";
import { hardhatAccount, localSettlerKey } from "@paychan/demo";
import { isPostgresUrl, openStore, sqliteFilename, StoreBindingError } from "@paychan/server";
import { DEFAULT_DEPLOYMENTS_DIR, DEFAULT_RPC_URL, LOCAL_CHAIN_IDS, readDeployment } from "@paychan/demo";

const ENV_USED = ["RPC_URL", "CHAIN_ID", "ESCROW_ADDRESS", "TOKEN_ADDRESS", "PAYEE_ADDRESS", "DEPLOYMENTS_FILE", "DATABASE_URL", "MIN_CLOSE_DELAY", "CHAIN_POLL_INTERVAL", "CONFIRMATIONS", "RPC_TIMEOUT", "LOG_LEVEL"];

function usage(): string {
  const vars = [...CONFIG_VARIABLES.filter((v) => ENV_USED.includes(v.name)), ...SETTLEMENT_VARIABLES];
  const w = Math.max(...vars.map((v) => v.name.length));
  return [
    "usage: npm run settle [-- --all] [--dry-run] [--json]",
    "",
    "  --all      settle every channel that owes anything (default: what the policy selects)",
    "  --dry-run  show what would be settled or closed; send nothing",
    "  --json     print the report as JSON",
    "",
    "exit: 0 done, 1 something failed, 2 configuration problem, 3 confirmations still pending (run again)",
    "",
    ...vars.map((v) => `  ${v.name.padEnd(w)}  ${v.description} [default: ${v.default}]`),
  ].join("\n");
}

class UsageError extends Error {}

function parseArgs(argv: string[]): { all: boolean; dryRun: boolean; json: boolean } {
  const a = { all: false, dryRun: false, json: false };
  for (const arg of argv) {
    if (arg === "--all") a.all = true;
    else if (arg === "--dry-run") a.dryRun = true;
    else if (arg === "--json") a.json = true;
    else if (arg === "--help" || arg === "-h") {
      console.log(usage());
      process.exit(0);
    } else throw new UsageError(`unknown argument ${arg}`);
  }
  return a;
}

const n = (v: bigint | number) => BigInt(v).toLocaleString("en-US");

function summary(r: SettlementRunReport, o: { decimals: number; chainId: number; escrow: Address; payee: Address; settler: Address; source: string; dryRun: boolean }): string {
  const lines: string[] = [];
  lines.push(`chain ${o.chainId}, escrow ${o.escrow}, payee ${o.payee}, settler ${o.settler} (${o.source})`);
  const sel = Object.entries(r.selected);
  const total = sel.reduce((a, [, v]) => a + (v ?? 0), 0);
  lines.push(`selected: ${total} channel${total === 1 ? "" : "s"}${sel.length ? ` (${sel.map(([k, v]) => `${k} ${v}`).join(", ")})` : ""}`);
  if (o.dryRun) {
    for (const p of r.plan) lines.push(`  would ${p.action} ${p.channelId}  ${formatTokenAmount(p.amount > 0n ? p.amount : 0n, o.decimals)}  (${p.reason})`);
    return lines.join("\n");
  }
  if (r.txs.length) lines.push("transactions:");
  for (const t of r.txs) {
    const gas = t.gasUsed === null ? "-" : n(t.gasUsed);
    lines.push(
      `  #${t.id} ${t.kind.padEnd(6)} ${t.status.padEnd(9)} ${t.hash}  nonce ${t.nonce}  channels ${t.settled}/${t.channels}  amount ${formatTokenAmount(t.amount, o.decimals)}  gas ${gas}${t.error ? `  (${t.error})` : ""}`,
    );
    for (const s of t.skipped) lines.push(`      skipped ${s.channelId}: ${s.reason}`);
  }
  const perChannel = r.gasPerChannel === null ? "" : ` (${n(r.gasPerChannel)} gas per settled channel)`;
  lines.push(
    `settled ${r.channelsSettled} channel${r.channelsSettled === 1 ? "" : "s"}, closed ${r.channelsClosed}, amount ${formatTokenAmount(r.amountSettled, o.decimals)}, gas used ${n(r.gasUsed)}${perChannel}`,
  );
  if (r.pending) lines.push(`pending: ${r.pending} transaction${r.pending === 1 ? "" : "s"} not yet confirmed${r.timedOut ? " (timed out waiting; run again)" : ""}`);
  lines.push(r.failures.length ? `failures:\n${r.failures.map((f) => `  - ${f}`).join("\n")}` : "failures: none");
  return lines.join("\n");
}

function fail(code: number, message: string): never {
  console.error(message);
  process.exit(code);
}

async function main(): Promise<void> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    fail(2, `${(e as Error).message}\n\n${usage()}`);
  }
  const env = process.env;
  const problems: string[] = [];
  // The server's variables, validated by the server's own rules (RPC_URL is handled here: it defaults to the local node).
  let server;
  try {
    server = loadConfig({ ...env, RPC_URL: undefined });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...e.problems);
  }
  const rpcUrl = env.RPC_URL?.trim() || DEFAULT_RPC_URL;
  if (!/^https?:\/\//.test(rpcUrl)) problems.push(`RPC_URL=${JSON.stringify(rpcUrl)} must be an http(s) URL`);
  const senv = parseSettlementEnv(env, problems);
  if (problems.length || !server) fail(2, `invalid configuration:\n  - ${problems.join("\n  - ")}\n\nRun with --help for the variables.`);

  const level = (env.LOG_LEVEL?.trim() ? server.logLevel : "warn") as LogLevel;
  const logger = createLogger(level, pino.destination(2)); // logs on stderr, the summary on stdout

  const client = createPublicClient({ transport: http(rpcUrl, { timeout: server.rpcTimeout, retryCount: 1 }) });
  let chainId: number;
  try {
    chainId = await client.getChainId();
  } catch (e) {
    fail(1, `cannot reach the chain at ${rpcUrl}: ${String((e as Error).message).split("\n")[0]}`);
  }
  if (server.chainId !== undefined && server.chainId !== chainId) fail(2, `CHAIN_ID is ${server.chainId} but ${rpcUrl} serves chain ${chainId}`);
  const local = LOCAL_CHAIN_IDS.includes(chainId);

  let escrow = server.escrow;
  let token = server.token;
  if (!escrow || !token) {
    const dir = server.deploymentsFile ? path.dirname(server.deploymentsFile) : DEFAULT_DEPLOYMENTS_DIR;
    const d = await readDeployment(chainId, dir);
    if (!d) fail(2, `ESCROW_ADDRESS/TOKEN_ADDRESS are not set and there is no ${path.join(dir, `${chainId}.json`)}`);
    escrow ??= getAddress(d.escrow);
    token ??= getAddress(d.token);
  }
  let payee = server.payee;
  if (!payee) {
    if (!local) fail(2, "PAYEE_ADDRESS is required (the address channels pay)");
    payee = hardhatAccount(0).address; // npm start's payee
  }
  if (!isAddress(payee)) fail(2, "PAYEE_ADDRESS is not an address");

  const config = resolveSettlementConfig(senv, chainId);
  const rule = checkCloseDelayRule({
    minCloseDelay: server.minCloseDelay,
    settleInterval: config.interval,
    chainPollInterval: server.chainPollInterval / 1000,
    followerConfirmations: server.confirmations,
    settleConfirmations: config.confirmations,
    blockTime: config.blockTime,
    resubmitAfter: config.resubmitAfter,
    closeGrace: config.closeGrace,
    rpcOutageMargin: config.rpcOutageMargin,
  });
  if (!rule.ok) fail(2, `refusing to settle: ${rule.message}`);

  const key = localSettlerKey({ privateKey: senv.privateKey(), chainId, payee });
  if (!key) fail(2, `SETTLER_PRIVATE_KEY is required on chain ${chainId} (the payee's key, or an operator it approved with setOperator)`);

  // The server's database: DATABASE_URL, else the default of npm start (local chain) or of the server (RPC_URL set).
  let databaseUrl = server.databaseUrl;
  if (!databaseUrl) {
    const candidates = [`.data/local-${chainId}.sqlite`, `.data/server-${chainId}.sqlite`];
    if (env.RPC_URL?.trim()) candidates.reverse();
    databaseUrl = candidates.find((f) => fs.existsSync(f));
    if (!databaseUrl) fail(2, `no database found (looked for ${candidates.join(", ")}); set DATABASE_URL to the server's database`);
  } else if (!isPostgresUrl(databaseUrl)) {
    const file = sqliteFilename(databaseUrl);
    if (file !== ":memory:" && !fs.existsSync(file)) fail(2, `no database at ${file}; set DATABASE_URL to the server's database`);
  }

  const reader = new ChainReader({ rpcUrl, escrow: escrow!, timeout: server.rpcTimeout });
  const store = await openStore({ url: databaseUrl, sqliteSynchronous: server.sqliteSynchronous });
  let code = 0;
  try {
    const genesis = await reader.block(0n);
    try {
      await store.bind({ chainId, escrow: escrow!, token: token!, payee, genesisHash: genesis.hash });
    } catch (e) {
      if (e instanceof StoreBindingError) fail(2, e.message);
      throw e;
    }
    const decimals = await reader.tokenDecimals(token!);
    const { job, chain } = createSettlement({
      config,
      privateKey: key.privateKey,
      rpcUrl,
      chainId,
      escrow: escrow!,
      token: token!,
      payee,
      decimals,
      store,
      reader,
      rpcTimeout: server.rpcTimeout,
      logger,
      registry: new Registry(),
      holder: `npm-run-settle:${process.pid}`,
      pollInterval: Math.min(1_000, Math.max(100, config.blockTime * 250)),
    });
    try {
      await job.preflight();
    } catch (e) {
      fail(1, `cannot settle: ${(e as Error).message.split("\n")[0]}`);
    }
    const balanceOf = () => client.readContract({ address: token!, abi: erc20Abi, functionName: "balanceOf", args: [payee!] });
    const balanceBefore = await balanceOf();
    // A settler inside the server holds the lease only during its cycles: wait for one to end (up to 60 s).
    let report = await job.runOnce({ all: args.all, dryRun: args.dryRun, wait: true, refreshCandidates: true });
    const leaseDeadline = Date.now() + 60_000;
    while (!report.leased && Date.now() < leaseDeadline) {
      await new Promise((r) => setTimeout(r, 1_000));
      report = await job.runOnce({ all: args.all, dryRun: args.dryRun, wait: true, refreshCandidates: true });
    }
    if (!report.leased) fail(1, "another settler (a running server?) kept the settler lease for 60 s; try again");
    const o = { decimals, chainId, escrow: escrow!, payee, settler: chain.sender, source: key.source, dryRun: args.dryRun };
    const balanceAfter = await balanceOf();
    if (args.json) console.log(JSON.stringify({ ...report, payeeBalanceBefore: balanceBefore, payeeBalanceAfter: balanceAfter }, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2));
    else {
      console.log(summary(report, o));
      if (!args.dryRun) {
        const delta = balanceAfter - balanceBefore;
        console.log(`payee balance ${formatTokenAmount(balanceBefore, decimals)} -> ${formatTokenAmount(balanceAfter, decimals)} (+${formatTokenAmount(delta, decimals)})`);
      }
    }
    code = report.failures.length ? 1 : report.timedOut || report.pending > 0 ? 3 : 0;
  } finally {
    await store.close();
  }
  process.exit(code);
}

main().catch((e) => {
  // First line only: RPC errors can be long, and nothing here may echo the key.
  console.error(`settle failed: ${String((e as Error)?.message ?? e).split("\n")[0]}`);
  process.exit(1);
});
