/**
 * The provider server's configuration: every environment variable it reads, validated once at start.
 * `loadConfig(process.env)` either returns a complete {@link ServerConfig} or throws a {@link ConfigError}
 * listing every problem at once (one line per variable), so a misconfigured server never starts half-way.
 *
 * Amounts (`MIN_DEPOSIT`, `PAYMENT_WINDOW`) are in token units ("1.5" = 1.5 USDC) and converted to atomic
 * units once the token's decimals are known; addresses are checksummed here.
 */
import fs from "node:fs";
import os from "node:os";
import { getAddress, isAddress, type Address } from "viem";
import { MAX_CLOSE_DELAY, MIN_CLOSE_DELAY as CONTRACT_MIN_CLOSE_DELAY, ZERO_ADDRESS_PATTERN } from "@paychan/protocol";
import { parseSettlementEnv, SETTLEMENT_VARIABLES, type SettlementEnv } from "./settlement/config";
import { EXACT_VARIABLES, parseExactEnv, type ExactEnv } from "./exact/config";
import { GASLESS_OPEN_VARIABLES, parseGaslessOpenEnv, type GaslessOpenEnv } from "./open/config";

export type SqliteSynchronous = "FULL" | "NORMAL";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/** Everything the server needs, after validation. Optional chain fields are resolved later (deployments file, local chain). */
export interface ServerConfig {
  /** JSON-RPC endpoint (required by createProvider; the demo app starts a local chain when it is absent). */
  rpcUrl?: string;
  /** Expected chain id; when set, the server refuses to start on another chain. */
  chainId?: number;
  escrow?: Address;
  token?: Address;
  payee?: Address;
  /** A deployments JSON file (`deployments/<chainId>.json`) to take escrow/token from when they are not set. */
  deploymentsFile?: string;
  /** SQLite file path, `sqlite:` URL, `sqlite::memory:`, or (issue 6) a `postgres://` URL. */
  databaseUrl?: string;
  sqliteSynchronous: SqliteSynchronous;
  host: string;
  port: number;
  /** Public base URL used in `resource.url` of challenges (default: from the request's Host header, if allowed). */
  publicUrl?: string;
  /** Without `publicUrl`: host names the Host header may carry besides loopback and `host` (others get 421). */
  allowedHosts: string[];
  /** Label settlement gauges by channel id on `/metrics` (off: aggregates only; ids are not published). */
  metricsPerChannel: boolean;
  /** Chain reads of unknown channels one source (client IP) may cause per minute (burst the same). */
  chainReadsPerSource: number;
  /** Chain reads of unknown channels all sources together may cause per minute (burst the same). */
  chainReadsGlobal: number;
  /** Blocks the channel index scans back at start (0: none); the index is complete when the escrow is younger. */
  channelIndexBlocks: number;
  /** Open client connections at once (the listener's `maxConnections`). */
  maxConnections: number;
  /** Open client connections from one source (IP) at once; more are closed at accept. */
  maxConnectionsPerSource: number;
  /** Smallest channel close delay accepted, in seconds. */
  minCloseDelay: number;
  /** Smallest channel deposit accepted, in token units (decimal string). */
  minDeposit: string;
  /** How many requests a client may keep in flight on one channel: sizes the used-voucher window. */
  maxInFlight: number;
  /** Explicit used-voucher window in token units; default MAX_IN_FLIGHT × the highest route price. */
  paymentWindow?: string;
  /** Worker threads for voucher signature checks under concurrent load (0: always on the main thread). */
  verifyThreads: number;
  /** Paid requests whose payment may be being checked at once (waiting for the chain or the store); more get 503. */
  maxPendingPayments: number;
  /**
   * Seconds that must remain before a pending close's deadline (`closesAt`) for a voucher to be accepted:
   * enough for the settlement job to notice, submit and confirm.
   */
  closeSafetyMargin: number;
  /** How long a 402 offer is valid (x402 `maxTimeoutSeconds`). */
  maxTimeoutSeconds: number;
  /** Chain polling period for events, ms. */
  chainPollInterval: number;
  /** Most blocks per `eth_getLogs` call. */
  logBlockRange: number;
  /** Blocks behind the head that the event follower stays (reorg safety). */
  confirmations: number;
  /** Timeout of one JSON-RPC call, ms. */
  rpcTimeout: number;
  /** How long an "unknown channel" answer is cached, ms (bounds RPC load from random ids). */
  unknownChannelTtl: number;
  /** Time to receive a whole request (headers + body), ms; then 408. */
  requestTimeout: number;
  /** Time a paid handler may take before the server answers 504 and releases the charge, ms. */
  handlerTimeout: number;
  /** Largest request header section, bytes. */
  maxHeaderBytes: number;
  /** Largest request body, bytes. */
  maxBodyBytes: number;
  logLevel: LogLevel;
  /**
   * Settlement variables (SETTLE_*, SETTLER_PRIVATE_KEY), validated; chain-dependent defaults are filled when the
   * chain id is known (`resolveSettlementConfig`). The key is reachable only through `settlement.privateKey()`.
   */
  settlement?: SettlementEnv;
  /** The x402 `exact` scheme's variables (EXACT, EXACT_PRIVATE_KEY, ...); the key only through `exact.privateKey()`. */
  exact?: ExactEnv;
  /** Gasless opens' variables (GASLESS_OPEN, OPEN_FEE, OPENS_PER_PAYER; docs/protocol.md § 5.9). */
  gaslessOpen?: GaslessOpenEnv;
}

/** A configuration that cannot work; `problems` has one line per variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
}

/** Documentation of every variable (README and `--help` print this). */
export const CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; description: string }> = [
  { name: "RPC_URL", default: "(none: npm start runs a local chain)", description: "JSON-RPC endpoint of the chain holding the escrow" },
  { name: "CHAIN_ID", default: "(read from RPC)", description: "expected chain id; start fails on another chain" },
  { name: "ESCROW_ADDRESS", default: "(deployments file)", description: "ChannelEscrow address" },
  { name: "TOKEN_ADDRESS", default: "(deployments file)", description: "ERC-20 accepted (USDC)" },
  { name: "PAYEE_ADDRESS", default: "(required; npm start: account #0)", description: "address that receives payments (channels must pay it)" },
  { name: "DEPLOYMENTS_FILE", default: "./deployments/<chainId>.json", description: "deployment record to read escrow/token from when not set" },
  { name: "DATABASE_URL", default: ".data/server-<chainId>.sqlite", description: "SQLite file path or sqlite: URL (sqlite::memory: for tests), or postgres:// URL" },
  { name: "SQLITE_SYNCHRONOUS", default: "FULL", description: "FULL (every commit fsynced) or NORMAL (WAL; last commits may be lost on power loss, not on process crash)" },
  { name: "HOST", default: "127.0.0.1", description: "listen address" },
  { name: "PORT", default: "4021", description: "listen port (0 = any free port)" },
  { name: "PUBLIC_URL", default: "(from Host header)", description: "base URL advertised in challenges" },
  {
    name: "ALLOWED_HOSTS",
    default: "(none: loopback names and HOST)",
    description: "without PUBLIC_URL: comma-separated host names the Host header may carry on paid routes besides localhost, 127.0.0.1, [::1] and HOST; others get 421 host_not_allowed",
  },
  { name: "METRICS_PER_CHANNEL", default: "false", description: "label settlement gauges by channel id on /metrics (true publishes channel ids; off: aggregates only)" },
  {
    name: "CHAIN_READS_PER_SOURCE",
    default: "30",
    description: "chain reads of channels the server does not know that one client IP may cause per minute; more wait for the event follower, then get 503 overloaded",
  },
  { name: "CHAIN_READS_GLOBAL", default: "600", description: "the same bound for all clients together, per minute" },
  {
    name: "CHANNEL_INDEX_BLOCKS",
    default: "200000",
    description: "blocks scanned back at start for channels opened to the payee (LOG_BLOCK_RANGE per eth_getLogs); when the escrow is younger the index is complete and unknown ids are answered from it (0: no scan)",
  },
  {
    name: "MAX_CONNECTIONS",
    default: "half the open-files limit, at most 4096 (1024 when unknown)",
    description: "open client connections at once; more are closed at accept; from 3/4 of it the keep-alive drops to 1 s and idle connections are closed",
  },
  { name: "MAX_CONNECTIONS_PER_SOURCE", default: "128", description: "open client connections from one IP (IPv6: /64) at once; more are closed at accept (behind a reverse proxy: raise to MAX_CONNECTIONS)" },
  { name: "MIN_CLOSE_DELAY", default: "86400", description: "smallest channel close delay accepted, seconds (>= 900)" },
  { name: "MIN_DEPOSIT", default: "1", description: "smallest channel deposit accepted, token units" },
  { name: "MAX_IN_FLIGHT", default: "64", description: "requests a client may have in flight on one channel (sizes the voucher window)" },
  { name: "PAYMENT_WINDOW", default: "MAX_IN_FLIGHT x highest route price", description: "used-voucher window, token units" },
  { name: "MAX_PENDING_PAYMENTS", default: "1024", description: "paid requests whose payment may be being checked at once (waiting for the chain or the store); more get 503 overloaded" },
  { name: "VERIFY_THREADS", default: "1 (0 on one core)", description: "worker threads checking voucher signatures while several paid requests are in progress (0 = main thread only)" },
  { name: "CLOSE_SAFETY_MARGIN", default: "3600", description: "seconds that must remain before a pending close's deadline to accept vouchers" },
  { name: "MAX_TIMEOUT_SECONDS", default: "60", description: "maxTimeoutSeconds advertised in offers" },
  { name: "CHAIN_POLL_INTERVAL", default: "2000", description: "event polling period, ms" },
  { name: "LOG_BLOCK_RANGE", default: "2000", description: "most blocks per eth_getLogs call" },
  { name: "CONFIRMATIONS", default: "0", description: "blocks the event follower stays behind the head" },
  { name: "RPC_TIMEOUT", default: "5000", description: "timeout of one JSON-RPC call, ms" },
  { name: "UNKNOWN_CHANNEL_TTL", default: "2000", description: "how long an unknown channel id is remembered, ms" },
  { name: "REQUEST_TIMEOUT", default: "30000", description: "time to receive a request, ms (then 408)" },
  { name: "HANDLER_TIMEOUT", default: "30000", description: "time a paid handler may take, ms (then 504, charge released)" },
  { name: "MAX_HEADER_BYTES", default: "16384", description: "largest request header section, bytes" },
  { name: "MAX_BODY_BYTES", default: "1048576", description: "largest request body, bytes" },
  { name: "LOG_LEVEL", default: "info", description: "fatal, error, warn, info, debug, trace or silent" },
  ...SETTLEMENT_VARIABLES,
  ...EXACT_VARIABLES,
  ...GASLESS_OPEN_VARIABLES,
];

type Env = Record<string, string | undefined>;

/** The variable behind each configuration field (an object configuration is checked by the variables' rules). */
export const CONFIG_FIELD_VARIABLES: Readonly<Record<Exclude<keyof ServerConfig, "settlement" | "exact" | "gaslessOpen">, string>> = {
  rpcUrl: "RPC_URL",
  chainId: "CHAIN_ID",
  escrow: "ESCROW_ADDRESS",
  token: "TOKEN_ADDRESS",
  payee: "PAYEE_ADDRESS",
  deploymentsFile: "DEPLOYMENTS_FILE",
  databaseUrl: "DATABASE_URL",
  sqliteSynchronous: "SQLITE_SYNCHRONOUS",
  host: "HOST",
  port: "PORT",
  publicUrl: "PUBLIC_URL",
  allowedHosts: "ALLOWED_HOSTS",
  metricsPerChannel: "METRICS_PER_CHANNEL",
  chainReadsPerSource: "CHAIN_READS_PER_SOURCE",
  chainReadsGlobal: "CHAIN_READS_GLOBAL",
  channelIndexBlocks: "CHANNEL_INDEX_BLOCKS",
  maxConnections: "MAX_CONNECTIONS",
  maxConnectionsPerSource: "MAX_CONNECTIONS_PER_SOURCE",
  minCloseDelay: "MIN_CLOSE_DELAY",
  minDeposit: "MIN_DEPOSIT",
  maxInFlight: "MAX_IN_FLIGHT",
  paymentWindow: "PAYMENT_WINDOW",
  verifyThreads: "VERIFY_THREADS",
  maxPendingPayments: "MAX_PENDING_PAYMENTS",
  closeSafetyMargin: "CLOSE_SAFETY_MARGIN",
  maxTimeoutSeconds: "MAX_TIMEOUT_SECONDS",
  chainPollInterval: "CHAIN_POLL_INTERVAL",
  logBlockRange: "LOG_BLOCK_RANGE",
  confirmations: "CONFIRMATIONS",
  rpcTimeout: "RPC_TIMEOUT",
  unknownChannelTtl: "UNKNOWN_CHANNEL_TTL",
  requestTimeout: "REQUEST_TIMEOUT",
  handlerTimeout: "HANDLER_TIMEOUT",
  maxHeaderBytes: "MAX_HEADER_BYTES",
  maxBodyBytes: "MAX_BODY_BYTES",
  logLevel: "LOG_LEVEL",
};

/**
 * Checks configuration fields given as an object by the same rules as their variables, and returns them normalised
 * (addresses checksummed, levels in their canonical case). Throws {@link ConfigError} naming each bad field.
 */
export function checkConfigFields(fields: Partial<ServerConfig>): Partial<ServerConfig> {
  const env: Env = {};
  const keys: Array<keyof typeof CONFIG_FIELD_VARIABLES> = [];
  for (const [k, v] of Object.entries(fields)) {
    const name = CONFIG_FIELD_VARIABLES[k as keyof typeof CONFIG_FIELD_VARIABLES];
    if (!name || v === undefined) continue;
    env[name] = String(v);
    keys.push(k as keyof typeof CONFIG_FIELD_VARIABLES);
  }
  let checked: ServerConfig;
  try {
    checked = loadConfig(env, { partial: true });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const byVariable = new Map(Object.entries(CONFIG_FIELD_VARIABLES).map(([k, name]) => [name, k]));
    throw new ConfigError(e.problems.map((p) => `config.${byVariable.get(p.split(/[= ]/)[0]) ?? "?"}: ${p}`));
  }
  const out: Partial<ServerConfig> = { ...fields };
  for (const k of keys) (out as Record<string, unknown>)[k] = checked[k];
  return out;
}

/**
 * Reads and validates the configuration from `env` (usually `process.env`).
 * Empty strings count as unset. Throws {@link ConfigError} with every problem found. `partial`: skip the rules that
 * join several variables (used to check some fields alone).
 */
export function loadConfig(env: Env = process.env, o: { partial?: boolean } = {}): ServerConfig {
  const problems: string[] = [];
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const int = (name: string, def: number, min: number, max: number): number => {
    const raw = get(name);
    if (raw === undefined) return def;
    if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be an integer from ${min} to ${max}`);
      return def;
    }
    return Number(raw);
  };
  const addr = (name: string): Address | undefined => {
    const raw = get(name);
    if (raw === undefined) return undefined;
    if (!isAddress(raw, { strict: false })) {
      problems.push(`${name}=${JSON.stringify(raw)} is not a 20-byte 0x-hex address`);
      return undefined;
    }
    if (ZERO_ADDRESS_PATTERN.test(raw)) {
      problems.push(`${name} must not be the zero address`);
      return undefined;
    }
    return getAddress(raw);
  };
  const tokenAmount = (name: string, def: string | undefined): string | undefined => {
    const raw = get(name) ?? def;
    if (raw === undefined) return undefined;
    if (!/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(raw)) {
      problems.push(`${name}=${JSON.stringify(raw)} must be a decimal amount in token units, e.g. 1 or 0.5`);
      return def;
    }
    return raw;
  };
  const oneOf = <T extends string>(name: string, values: readonly T[], def: T): T => {
    const raw = get(name);
    if (raw === undefined) return def;
    const v = (name === "LOG_LEVEL" ? raw.toLowerCase() : raw.toUpperCase()) as T;
    if (!values.includes(v)) {
      problems.push(`${name}=${JSON.stringify(raw)} must be one of ${values.join(", ")}`);
      return def;
    }
    return v;
  };

  const rpcUrl = get("RPC_URL");
  if (rpcUrl !== undefined) {
    let ok = false;
    try {
      const u = new URL(rpcUrl);
      ok = u.protocol === "http:" || u.protocol === "https:";
    } catch {
      ok = false;
    }
    if (!ok) problems.push(`RPC_URL=${JSON.stringify(rpcUrl)} must be an http(s) URL`);
  }
  const chainIdRaw = get("CHAIN_ID");
  let chainId: number | undefined;
  if (chainIdRaw !== undefined) {
    if (!/^[1-9][0-9]{0,15}$/.test(chainIdRaw) || !Number.isSafeInteger(Number(chainIdRaw))) {
      problems.push(`CHAIN_ID=${JSON.stringify(chainIdRaw)} must be a positive integer`);
    } else chainId = Number(chainIdRaw);
  }
  const publicUrl = get("PUBLIC_URL");
  if (publicUrl !== undefined) {
    try {
      const u = new URL(publicUrl);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
    } catch {
      problems.push(`PUBLIC_URL=${JSON.stringify(publicUrl)} must be an http(s) URL`);
    }
  }
  const allowedHosts: string[] = [];
  for (const h of (get("ALLOWED_HOSTS") ?? "").split(",").map((x) => x.trim().toLowerCase()).filter(Boolean)) {
    if (/^[a-z0-9.-]{1,253}$|^\[[0-9a-f:.]{2,45}\]$/.test(h)) allowedHosts.push(h);
    else problems.push(`ALLOWED_HOSTS entry ${JSON.stringify(h)} must be a host name or address without port (IPv6 in brackets)`);
  }
  const flag = (name: string, def: boolean): boolean => {
    const raw = get(name);
    if (raw === undefined) return def;
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    problems.push(`${name}=${JSON.stringify(raw)} must be true or false`);
    return def;
  };
  const databaseUrl = get("DATABASE_URL");
  if (databaseUrl !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(databaseUrl) && !/^(sqlite|file|postgres|postgresql):/i.test(databaseUrl)) {
    problems.push(`DATABASE_URL scheme must be sqlite:, file: or postgres: (got ${JSON.stringify(databaseUrl.split(":")[0])})`);
  }

  const minCloseDelay = int("MIN_CLOSE_DELAY", 86_400, CONTRACT_MIN_CLOSE_DELAY, MAX_CLOSE_DELAY);
  const closeSafetyMargin = int("CLOSE_SAFETY_MARGIN", 3_600, 0, MAX_CLOSE_DELAY);

  const config: ServerConfig = {
    rpcUrl,
    chainId,
    escrow: addr("ESCROW_ADDRESS"),
    token: addr("TOKEN_ADDRESS"),
    payee: addr("PAYEE_ADDRESS"),
    deploymentsFile: get("DEPLOYMENTS_FILE"),
    databaseUrl,
    sqliteSynchronous: oneOf("SQLITE_SYNCHRONOUS", ["FULL", "NORMAL"] as const, "FULL"),
    host: get("HOST") ?? "127.0.0.1",
    port: int("PORT", 4021, 0, 65_535),
    publicUrl,
    allowedHosts,
    metricsPerChannel: flag("METRICS_PER_CHANNEL", false),
    chainReadsPerSource: int("CHAIN_READS_PER_SOURCE", 30, 1, 1_000_000),
    chainReadsGlobal: int("CHAIN_READS_GLOBAL", 600, 1, 10_000_000),
    channelIndexBlocks: int("CHANNEL_INDEX_BLOCKS", 200_000, 0, 1_000_000_000),
    maxConnections: int("MAX_CONNECTIONS", defaultMaxConnections(), 1, 1_000_000),
    maxConnectionsPerSource: int("MAX_CONNECTIONS_PER_SOURCE", 128, 1, 1_000_000),
    minCloseDelay,
    minDeposit: tokenAmount("MIN_DEPOSIT", "1") ?? "1",
    maxInFlight: int("MAX_IN_FLIGHT", 64, 1, 100_000),
    paymentWindow: tokenAmount("PAYMENT_WINDOW", undefined),
    maxPendingPayments: int("MAX_PENDING_PAYMENTS", 1024, 1, 1_000_000),
    verifyThreads: int("VERIFY_THREADS", os.availableParallelism() > 1 ? 1 : 0, 0, 16),
    closeSafetyMargin,
    maxTimeoutSeconds: int("MAX_TIMEOUT_SECONDS", 60, 1, 86_400),
    chainPollInterval: int("CHAIN_POLL_INTERVAL", 2_000, 50, 3_600_000),
    logBlockRange: int("LOG_BLOCK_RANGE", 2_000, 1, 1_000_000),
    confirmations: int("CONFIRMATIONS", 0, 0, 1_000),
    rpcTimeout: int("RPC_TIMEOUT", 5_000, 100, 600_000),
    unknownChannelTtl: int("UNKNOWN_CHANNEL_TTL", 2_000, 0, 3_600_000),
    requestTimeout: int("REQUEST_TIMEOUT", 30_000, 1_000, 3_600_000),
    handlerTimeout: int("HANDLER_TIMEOUT", 30_000, 100, 3_600_000),
    maxHeaderBytes: int("MAX_HEADER_BYTES", 16_384, 4_096, 1_048_576),
    maxBodyBytes: int("MAX_BODY_BYTES", 1_048_576, 1_024, 1_073_741_824),
    logLevel: oneOf("LOG_LEVEL", ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const, "info"),
    settlement: parseSettlementEnv(env, problems),
    exact: parseExactEnv(env, problems),
    gaslessOpen: parseGaslessOpenEnv(env, problems),
  };
  if (!o.partial && config.rpcUrl !== undefined && config.payee === undefined) {
    problems.push("PAYEE_ADDRESS is required when RPC_URL is set (the address channels must pay)");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * The default MAX_CONNECTIONS: half the process's soft open-files limit (Linux `/proc/self/limits`), so the database,
 * the chain RPC and the logs keep the other half, at most 4096; 1024 where the limit cannot be read.
 */
export function defaultMaxConnections(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
    if (m) return m[1] === "unlimited" ? 4_096 : Math.max(16, Math.min(4_096, Math.floor(Number(m[1]) / 2)));
  } catch {
    /* not Linux */
  }
  return 1_024;
}

/** The default configuration (as with an empty environment), with overrides: for tests and embedding. */
export function defaultConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return { ...loadConfig({}), ...overrides };
}
