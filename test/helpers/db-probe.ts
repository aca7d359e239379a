/**
 * Read-only probes of a server's SQLite database, to prove that some traffic wrote NOTHING:
 *
 * ```ts
 * const probe = openSqliteProbe(srv.databaseUrl);
 * const before = probe.snapshot();
 * ... hostile traffic ...
 * expect(probe.snapshot()).to.deep.equal(before);     // same rows, same file sizes, no commit by anyone
 * probe.close();
 * ```
 * `dataVersion` is SQLite's `PRAGMA data_version` on the probe's own connection: it changes whenever ANOTHER
 * connection commits, so an unchanged value means no transaction was committed at all (not just "the same rows").
 */
import fs from "node:fs";
import Database from "better-sqlite3";

export interface DbSnapshot {
  dataVersion: number;
  /** Every table's rows, sorted (JSON lines per table). */
  tables: Record<string, string[]>;
  /** Row count per table. */
  counts: Record<string, number>;
  /** Bytes of the database file and its WAL. */
  sizes: { db: number; wal: number };
}

export interface SqliteProbe {
  snapshot(): DbSnapshot;
  /** Rows of one query (read-only). */
  all<T = Record<string, unknown>>(sql: string, ...params: unknown[]): T[];
  close(): void;
}

const size = (f: string) => {
  try {
    return fs.statSync(f).size;
  } catch {
    return 0;
  }
};

/**
 * Opens `file` (the server's SQLite path), read-only by default. After a crash (no server running), open it with
 * `readonly: false` so SQLite may recover the WAL index; the probe still only reads.
 */
export function openSqliteProbe(file: string, o: { readonly?: boolean } = {}): SqliteProbe {
  const db = new Database(file, { readonly: o.readonly ?? true, fileMustExist: true });
  return {
    snapshot() {
      const tables: Record<string, string[]> = {};
      const counts: Record<string, number> = {};
      const names = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>;
      for (const { name } of names) {
        const rows = db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).all();
        tables[name] = rows.map((r) => JSON.stringify(r)).sort();
        counts[name] = rows.length;
      }
      const dataVersion = db.pragma("data_version", { simple: true }) as number;
      return { dataVersion, tables, counts, sizes: { db: size(file), wal: size(`${file}-wal`) } };
    },
    all<T>(sql: string, ...params: unknown[]) {
      return db.prepare(sql).all(...params) as T[];
    },
    close: () => db.close(),
  };
}
