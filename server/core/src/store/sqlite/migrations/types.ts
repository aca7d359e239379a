import type { Database } from "better-sqlite3";

/**
 * One schema step. Versions are unique and applied in ascending order, each in its own transaction, exactly once
 * (recorded in `schema_migrations`). Ranges: 1-99 core server, 100-199 settlement (issue 5), 200-299 later work.
 * Never edit an applied migration; add a new one.
 */
export interface SqliteMigration {
  version: number;
  name: string;
  /** SQL script, or a function for steps SQL cannot express. */
  up: string | ((db: Database) => void);
}
