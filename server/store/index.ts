/**
 * Opens the store a DATABASE_URL names. SQLite (file path, `sqlite:`/`file:` URL, `:memory:`) is built in;
 * `postgres://` is reserved for the PostgreSQL store (issue 6).
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
    throw new Error("DATABASE_URL is a PostgreSQL URL, but the PostgreSQL store is not built yet (issue 6); use a SQLite path");
  }
  return new SqliteStore({ url: opts.url, synchronous: opts.sqliteSynchronous });
}
