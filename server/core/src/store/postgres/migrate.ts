/**
 * Applies PostgreSQL migrations at start. Several replicas may start at once against one database, so the whole
 * run happens in ONE transaction holding a transaction-level advisory lock: the first replica creates the tables,
 * the others wait on the lock, then find every version recorded and do nothing. (DDL is transactional in
 * PostgreSQL, so a failed migration leaves nothing half-applied; even `CREATE TABLE IF NOT EXISTS` can fail with a
 * unique violation when two sessions race, which the lock rules out.)
 */
import type pg from "pg";
import { POSTGRES_MIGRATIONS, type PgMigration } from "./migrations";

/**
 * The advisory lock key (per schema, so unrelated deployments in one database do not wait on each other):
 * computed in SQL from `current_schema()`.
 */
const MIGRATION_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('channel-store:migrate:' || current_schema(), 0))";

/** Checks versions are positive, unique integers; returns them sorted. */
export function sortedMigrations(migrations: readonly PgMigration[]): PgMigration[] {
  const seen = new Set<number>();
  for (const m of migrations) {
    if (!Number.isInteger(m.version) || m.version <= 0 || seen.has(m.version)) throw new Error(`bad or duplicate migration version ${m.version}`);
    seen.add(m.version);
  }
  return [...migrations].sort((a, b) => a.version - b.version);
}

/**
 * Applies the migrations not yet recorded in `schema_migrations` (in the connection's current schema). Returns the
 * versions applied by this call. Safe to run concurrently from several processes.
 */
export async function migratePostgres(client: pg.ClientBase, migrations: readonly PgMigration[] = POSTGRES_MIGRATIONS): Promise<number[]> {
  const list = sortedMigrations(migrations);
  const schema = (await client.query<{ s: string | null }>("SELECT current_schema() AS s")).rows[0].s;
  if (!schema) throw new Error("the PostgreSQL search_path names no existing schema to create the store's tables in");
  const applied: number[] = [];
  await client.query("BEGIN");
  try {
    // Waiting for another replica's migration, or a long migration, may exceed the pool's statement timeout.
    await client.query("SET LOCAL statement_timeout = '300s'");
    await client.query(MIGRATION_LOCK_SQL);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)`);
    const done = new Set((await client.query<{ version: number }>("SELECT version FROM schema_migrations")).rows.map((r) => r.version));
    for (const m of list) {
      if (done.has(m.version)) continue;
      if (typeof m.up === "string") await client.query(m.up);
      else await m.up(client);
      await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [m.version, m.name, Date.now()]);
      applied.push(m.version);
    }
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
  return applied;
}
