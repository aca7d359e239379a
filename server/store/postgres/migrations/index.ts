/**
 * Every PostgreSQL migration, in order. To extend the schema (e.g. settlement records, issue 5): add a file next to
 * `core.ts` exporting `PgMigration[]` with versions in your range and append it here.
 */
import { CORE_PG_MIGRATIONS } from "./core";
import type { PgMigration } from "./types";

export type { PgMigration } from "./types";

export const POSTGRES_MIGRATIONS: readonly PgMigration[] = [...CORE_PG_MIGRATIONS].sort((a, b) => a.version - b.version);
