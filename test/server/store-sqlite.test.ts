/**
 * The SQLite store: the conformance suite, plus SQLite specifics (migrations, URLs, synchronous mode).
 */
import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { migrateSqlite, SqliteStore, sqliteFilename } from "@paychan/server";
import { SQLITE_MIGRATIONS } from "../../server/core/src/store/sqlite/migrations";
import { tempDatabaseUrl } from "../helpers/server";
import { chainChannel, describeStoreConformance } from "../helpers/store-conformance";

function remove(file: string) {
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
}

describeStoreConformance("sqlite (file, synchronous=FULL)", async () => {
  const url = tempDatabaseUrl();
  return { store: new SqliteStore({ url }), reopen: async () => new SqliteStore({ url }), destroy: async () => remove(url) };
});

describe("store: SQLite specifics", () => {
  it("applies migrations once, in order, recorded in schema_migrations; re-running applies nothing", () => {
    const db = new Database(":memory:");
    expect(migrateSqlite(db)).to.deep.equal(SQLITE_MIGRATIONS.map((m) => m.version));
    expect(migrateSqlite(db)).to.deep.equal([]);
    const extra = { version: 150, name: "settlement test table", up: "CREATE TABLE settlement_test (id INTEGER PRIMARY KEY)" };
    expect(migrateSqlite(db, [...SQLITE_MIGRATIONS, extra])).to.deep.equal([150]);
    expect(migrateSqlite(db, [...SQLITE_MIGRATIONS, extra])).to.deep.equal([]);
    const rows = db.prepare("SELECT version FROM schema_migrations ORDER BY version").all() as Array<{ version: number }>;
    expect(rows.map((r) => r.version)).to.deep.equal([...SQLITE_MIGRATIONS.map((m) => m.version), 150]);
    expect(() => migrateSqlite(db, [extra, extra])).to.throw(/duplicate/);
    db.close();
  });

  it("opens with WAL and the configured synchronous mode", async () => {
    for (const [mode, level] of [["FULL", 2], ["NORMAL", 1]] as const) {
      const url = tempDatabaseUrl();
      const s = new SqliteStore({ url, synchronous: mode });
      expect(s.db.pragma("journal_mode", { simple: true })).to.equal("wal");
      expect(s.db.pragma("synchronous", { simple: true })).to.equal(level);
      await s.close();
      remove(url);
    }
  });

  it("understands file paths, sqlite: and file: URLs, and :memory:", () => {
    expect(sqliteFilename("data/x.sqlite")).to.equal("data/x.sqlite");
    expect(sqliteFilename("sqlite:data/x.sqlite")).to.equal("data/x.sqlite");
    expect(sqliteFilename("sqlite:///abs/x.sqlite")).to.equal("/abs/x.sqlite");
    expect(sqliteFilename("sqlite://rel/x.sqlite")).to.equal("rel/x.sqlite");
    expect(sqliteFilename("file:///abs/x.sqlite")).to.equal("/abs/x.sqlite");
    expect(sqliteFilename("sqlite::memory:")).to.equal(":memory:");
    expect(() => sqliteFilename("sqlite:")).to.throw();
  });

  it("two handles on one file see each other's commits: one voucher is accepted once", async () => {
    const url = tempDatabaseUrl();
    const a = new SqliteStore({ url });
    const b = new SqliteStore({ url });
    const c = chainChannel();
    const input = { chain: c, amount: 1000n, signature: `0x${"ab".repeat(65)}` as `0x${string}`, charge: 1000n, window: 64_000n };
    const results = await Promise.all([a.acceptVoucher(input), b.acceptVoucher(input), a.acceptVoucher(input), b.acceptVoucher(input)]);
    expect(results.filter((r) => r.ok)).to.have.length(1);
    await a.close();
    await b.close();
    remove(url);
  });
});
