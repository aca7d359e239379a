/**
 * Every SQLite migration, in order. To extend the schema (e.g. settlement transaction records, issue 5):
 * add a file next to `core.ts` exporting `SqliteMigration[]` with versions in your range and append it here.
 */
import { CORE_MIGRATIONS } from "./core";
import { STREAM_MIGRATIONS } from "./stream";
import type { SqliteMigration } from "./types";

export type { SqliteMigration } from "./types";

export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [...CORE_MIGRATIONS, ...STREAM_MIGRATIONS].sort((a, b) => a.version - b.version);
