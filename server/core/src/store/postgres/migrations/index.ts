/**
 * Every PostgreSQL migration, in order, applied when the store opens: core (1-99), settlement (100-199), `exact` payments (200-209), gasless opens (210-219) and stream reservations (220-229).
 * To extend the schema: add a file next to `core.ts` exporting `PgMigration[]` with versions in your range and
 * append it here.
 */
import { CORE_PG_MIGRATIONS } from "./core";
import { SETTLEMENT_PG_MIGRATIONS } from "./settlement";
import { EXACT_PG_MIGRATIONS } from "./exact";
import { OPEN_PG_MIGRATIONS } from "./open";
import { STREAM_PG_MIGRATIONS } from "./stream";
import type { PgMigration } from "./types";

export type { PgMigration } from "./types";

export const POSTGRES_MIGRATIONS: readonly PgMigration[] = [...CORE_PG_MIGRATIONS, ...SETTLEMENT_PG_MIGRATIONS, ...EXACT_PG_MIGRATIONS, ...OPEN_PG_MIGRATIONS, ...STREAM_PG_MIGRATIONS].sort((a, b) => a.version - b.version);
