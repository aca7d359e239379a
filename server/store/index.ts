/**
 * Opens the store a DATABASE_URL names. SQLite (file path, `sqlite:`/`file:` URL, `:memory:`) is built in;
 * `postgres://` / `postgresql://` opens the PostgreSQL store (`./postgres`, issue 6).
 */
import type { ChannelStore } from "./types";
import { SqliteStore } from "./sqlite/store";

export * from "./types";
export { SqliteStore, sqliteFilename, migrateSqlite } from "./sqlite/store";
export { encodeAmount, decodeAmount } from "./amounts";

export interface OpenStoreOptions {
  url: string;
  sqliteSynchronous?: "FULL" | "NORMAL";
}

/** Whether a DATABASE_URL names a PostgreSQL database. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** Opens (and migrates) the store for `url`. */
export async function openStore(opts: OpenStoreOptions): Promise<ChannelStore> {
  if (isPostgresUrl(opts.url)) {
    // Loaded on demand: SQLite-only servers never load pg. Pool settings come from PG_* variables (postgres/pool.ts).
    const { openPostgresStore } = await import("./postgres");
    return openPostgresStore({ url: opts.url });
  }
  return new SqliteStore({ url: opts.url, synchronous: opts.sqliteSynchronous });
}
