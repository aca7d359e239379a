/**
 * Opens the store a DATABASE_URL names. SQLite (file path, `sqlite:`/`file:` URL, `:memory:`) is built in;
 * `postgres://` / `postgresql://` opens the PostgreSQL store (`./postgres`, issue 6).
 */
import type { ChannelStore } from "./types";
import { StoreDriverMissingError } from "./types";

export * from "./types";
export { sqliteFilename } from "./sqlite/filename";
// The SQLite classes load better-sqlite3 only when a store is constructed (./sqlite/driver.ts).
export { SqliteStore, type SqliteStoreOptions } from "./sqlite/store";
export { SqliteSettlementStore } from "./sqlite/settlement";
export { migrateSqlite } from "./sqlite/migrate";
export { SQLITE_MIGRATIONS, type SqliteMigration } from "./sqlite/migrations";
export { encodeAmount, decodeAmount } from "./amounts";

export interface OpenStoreOptions {
  url: string;
  sqliteSynchronous?: "FULL" | "NORMAL";
}

/**
 * Loads a store's module (and with it its driver, an optional peer dependency) only when that store is selected.
 * Lazy `require`, not `import()`: the package is CommonJS and must resolve `./postgres` as CommonJS does.
 */
function loadStoreModule<T>(store: "sqlite" | "postgres", driver: string, load: () => T): T {
  try {
    return load();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "MODULE_NOT_FOUND" && err.message.includes(`'${driver}'`)) throw new StoreDriverMissingError(store, driver, e);
    throw e;
  }
}

/** Whether a DATABASE_URL names a PostgreSQL database. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** Opens (and migrates) the store for `url`. */
export async function openStore(opts: OpenStoreOptions): Promise<ChannelStore> {
  if (isPostgresUrl(opts.url)) {
    // Loaded on demand: SQLite-only servers never load pg. Pool settings come from PG_* variables (postgres/pool.ts).
    const { openPostgresStore } = loadStoreModule("postgres", "pg", () => require("./postgres") as typeof import("./postgres"));
    return openPostgresStore({ url: opts.url });
  }
  const { SqliteStore } = loadStoreModule("sqlite", "better-sqlite3", () => require("./sqlite/store") as typeof import("./sqlite/store"));
  return new SqliteStore({ url: opts.url, synchronous: opts.sqliteSynchronous });
}
