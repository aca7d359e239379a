/**
 * Connection pool for the PostgreSQL store: settings from the environment (validated, one message per bad
 * variable) and a `pg.Pool` whose every session runs with `synchronous_commit = on` (a COMMIT returns only once
 * its WAL is flushed to disk, so an accepted voucher is durable before the paid handler runs) and bounded
 * statement / lock / idle-in-transaction times (a stuck request can never hold a channel's row lock for long).
 */
import pg from "pg";

/** Pool settings (all times in ms). */
export interface PgPoolSettings {
  /** Most connections per server process for everything but accepting vouchers (`PG_POOL_MAX`, default 10). */
  max: number;
  /**
   * Connections of the paid path's own pool (`PG_ACCEPT_CONNECTIONS`, default 2): at most this many group-commit
   * batches of accepts run at once, each on its own connection, apart from the pool of everything else.
   */
  acceptConnections: number;
  /** Idle connections are closed after this (`PG_IDLE_TIMEOUT_MS`, default 30,000; 0 = never). */
  idleTimeoutMs: number;
  /** Time to get a connection (new or from the pool) before failing (`PG_CONNECT_TIMEOUT_MS`, default 5,000). */
  connectTimeoutMs: number;
  /** Server-side limit for one statement (`PG_STATEMENT_TIMEOUT_MS`, default 5,000; 0 = none). */
  statementTimeoutMs: number;
  /** Server-side limit for waiting on a lock, e.g. a busy channel row (`PG_LOCK_TIMEOUT_MS`, default 0 = the statement timeout). */
  lockTimeoutMs: number;
  /** A session idle inside a transaction is ended after this (`PG_IDLE_IN_TRANSACTION_TIMEOUT_MS`, default 10,000). */
  idleInTransactionTimeoutMs: number;
  /** `application_name` shown in pg_stat_activity (`PG_APPLICATION_NAME`, default "channel-server"). */
  applicationName: string;
}

export const DEFAULT_PG_POOL: Readonly<PgPoolSettings> = {
  max: 10,
  acceptConnections: 2,
  idleTimeoutMs: 30_000,
  connectTimeoutMs: 5_000,
  statementTimeoutMs: 5_000,
  lockTimeoutMs: 0,
  idleInTransactionTimeoutMs: 10_000,
  applicationName: "channel-server",
};

/** The environment variables {@link pgPoolSettingsFromEnv} reads (for README / --help). */
export const PG_POOL_VARIABLES: ReadonlyArray<{ name: string; default: string; description: string }> = [
  { name: "PG_POOL_MAX", default: "10", description: "most PostgreSQL connections per server process, besides the paid path's PG_ACCEPT_CONNECTIONS" },
  { name: "PG_ACCEPT_CONNECTIONS", default: "2", description: "connections of the paid path (batches of accepted vouchers written at once)" },
  { name: "PG_IDLE_TIMEOUT_MS", default: "30000", description: "idle pooled connections are closed after this, ms (0 = never)" },
  { name: "PG_CONNECT_TIMEOUT_MS", default: "5000", description: "time to obtain a connection before the request fails with 503, ms" },
  { name: "PG_STATEMENT_TIMEOUT_MS", default: "5000", description: "server-side limit for one statement, ms (0 = none)" },
  { name: "PG_LOCK_TIMEOUT_MS", default: "0", description: "server-side limit for waiting on a row lock, ms (0 = bounded by the statement timeout)" },
  { name: "PG_IDLE_IN_TRANSACTION_TIMEOUT_MS", default: "10000", description: "a session idle inside a transaction is ended after this, ms" },
  { name: "PG_APPLICATION_NAME", default: "channel-server", description: "application_name of the sessions" },
];

/** A bad PG_* variable (the message lists every problem). */
export class PgPoolConfigError extends Error {
  override name = "PgPoolConfigError";
}

/** Reads and validates the pool settings from `env`; empty values mean "default". */
export function pgPoolSettingsFromEnv(env: Record<string, string | undefined> = process.env): PgPoolSettings {
  const problems: string[] = [];
  const int = (name: string, def: number, min: number, max: number): number => {
    const raw = env[name]?.trim();
    if (!raw) return def;
    if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be an integer from ${min} to ${max}`);
      return def;
    }
    return Number(raw);
  };
  const s: PgPoolSettings = {
    max: int("PG_POOL_MAX", DEFAULT_PG_POOL.max, 1, 1_000),
    acceptConnections: int("PG_ACCEPT_CONNECTIONS", DEFAULT_PG_POOL.acceptConnections, 1, 100),
    idleTimeoutMs: int("PG_IDLE_TIMEOUT_MS", DEFAULT_PG_POOL.idleTimeoutMs, 0, 86_400_000),
    connectTimeoutMs: int("PG_CONNECT_TIMEOUT_MS", DEFAULT_PG_POOL.connectTimeoutMs, 100, 600_000),
    statementTimeoutMs: int("PG_STATEMENT_TIMEOUT_MS", DEFAULT_PG_POOL.statementTimeoutMs, 0, 86_400_000),
    lockTimeoutMs: int("PG_LOCK_TIMEOUT_MS", DEFAULT_PG_POOL.lockTimeoutMs, 0, 86_400_000),
    idleInTransactionTimeoutMs: int("PG_IDLE_IN_TRANSACTION_TIMEOUT_MS", DEFAULT_PG_POOL.idleInTransactionTimeoutMs, 0, 86_400_000),
    applicationName: env.PG_APPLICATION_NAME?.trim() || DEFAULT_PG_POOL.applicationName,
  };
  if (!/^[\x20-\x7e]{1,63}$/.test(s.applicationName)) problems.push("PG_APPLICATION_NAME must be 1 to 63 printable ASCII characters");
  // One line: `npm start` prints the first line of a start failure.
  if (problems.length) throw new PgPoolConfigError(`invalid PostgreSQL pool configuration: ${problems.join("; ")}`);
  return s;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable URL)";
  }
}

/**
 * The connection settings every session of the store uses (pool connections and dedicated ones). Session settings
 * travel in the startup packet (`options`), so they cost no round trip; any `options` in the URL (e.g.
 * `-c search_path=...`) are kept, with ours appended so they win.
 */
export function pgClientConfig(url: string, s: PgPoolSettings, extraOptions: string[] = []): pg.ClientConfig {
  // pg lets the URL's own parameters override the config object, so take `options` out of the URL and merge.
  let connectionString = url;
  let fromUrl = "";
  try {
    const u = new URL(url);
    if (u.searchParams.has("options")) {
      fromUrl = u.searchParams.get("options") ?? "";
      u.searchParams.delete("options");
      connectionString = u.toString();
    }
  } catch {
    // pg parses forms WHATWG URL does not (e.g. an empty host for a Unix socket); without `options` in them, ours apply
  }
  const options = [fromUrl, "-c synchronous_commit=on", ...extraOptions].filter(Boolean).join(" ");
  return {
    connectionString,
    options,
    connectionTimeoutMillis: s.connectTimeoutMs,
    statement_timeout: s.statementTimeoutMs || undefined,
    lock_timeout: s.lockTimeoutMs || undefined,
    idle_in_transaction_session_timeout: s.idleInTransactionTimeoutMs || undefined,
    application_name: s.applicationName,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  } as pg.ClientConfig;
}

/** Creates a pool of `max` connections (see {@link pgClientConfig} for the session settings). */
export function createPgPool(url: string, s: PgPoolSettings, max = s.max): pg.Pool {
  const pool = new pg.Pool({ ...pgClientConfig(url, s), max, idleTimeoutMillis: s.idleTimeoutMs } as pg.PoolConfig);
  // An idle client losing its connection (server restart, network) must not crash the process; the pool drops it.
  pool.on("error", () => undefined);
  return pool;
}
