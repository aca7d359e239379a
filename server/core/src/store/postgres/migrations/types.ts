import type pg from "pg";

/**
 * One PostgreSQL schema step. Versions are unique and applied in ascending order, exactly once (recorded in
 * `schema_migrations`), all inside one transaction under an advisory lock (see `../migrate.ts`). Ranges follow the
 * SQLite store's: 1-99 core server, 100-199 settlement (issue 5), 200-299 later work. Never edit an applied
 * migration; add a new one.
 */
export interface PgMigration {
  version: number;
  name: string;
  /** SQL script (may hold several statements), or a function for steps SQL cannot express. */
  up: string | ((client: pg.ClientBase) => Promise<void>);
}
