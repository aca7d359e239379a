/**
 * The PostgreSQL store (issue 6): `DATABASE_URL=postgres://...` selects it (see ../index.ts `openStore`).
 * Several server replicas may share one database; see ./store.ts for the isolation reasoning.
 */
export { PostgresStore, openPostgresStore, type PostgresStoreOptions } from "./store";
export { pgRowToChannel } from "./rows";
export { PgSettlementStore } from "./settlement";
export { migratePostgres } from "./migrate";
export { POSTGRES_MIGRATIONS, type PgMigration } from "./migrations";
export {
  createPgPool,
  pgPoolSettingsFromEnv,
  redactUrl,
  DEFAULT_PG_POOL,
  PG_POOL_VARIABLES,
  PgPoolConfigError,
  type PgPoolSettings,
} from "./pool";
