/** Schema migrations of the SQLite store: each applied once, in its own IMMEDIATE transaction. */
import type Database from "better-sqlite3";
import { SQLITE_MIGRATIONS, type SqliteMigration } from "./migrations";

/** Applies migrations not yet recorded, each in its own IMMEDIATE transaction. Safe to run concurrently. */
export function migrateSqlite(db: Database.Database, migrations: readonly SqliteMigration[] = SQLITE_MIGRATIONS): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const seen = new Set<number>();
  for (const m of migrations) {
    if (!Number.isInteger(m.version) || m.version <= 0 || seen.has(m.version)) throw new Error(`bad or duplicate migration version ${m.version}`);
    seen.add(m.version);
  }
  const applied: number[] = [];
  const has = db.prepare<[number], { version: number }>("SELECT version FROM schema_migrations WHERE version = ?");
  const record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    const step = db.transaction(() => {
      if (has.get(m.version)) return false;
      if (typeof m.up === "string") db.exec(m.up);
      else m.up(db);
      record.run(m.version, m.name, Date.now());
      return true;
    });
    if (step.immediate()) applied.push(m.version);
  }
  return applied;
}
