/**
 * The SQLite store: the conformance suite (./conformance.ts) with the default `synchronous=FULL` and with `NORMAL`,
 * plus SQLite specifics (migrations, URLs, journal and synchronous modes). Group commit: ./sqlite-group-commit.test.ts.
 */
import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { migrateSqlite, SqliteStore, sqliteFilename } from "@paychan/server";
import { SQLITE_MIGRATIONS } from "../../../server/core/src/store/sqlite/migrations";
import { tempDatabaseUrl } from "../../helpers/server";
import { sig, snapshot, storeConformance } from "./conformance";

function remove(file: string) {
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

for (const synchronous of ["FULL", "NORMAL"] as const) {
  storeConformance({
    name: `SQLite (synchronous=${synchronous})`,
    async newDatabase() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "store-conformance-"));
      dirs.push(dir);
      return path.join(dir, "store.sqlite");
    },
    async open(url) {
      return new SqliteStore({ url, synchronous });
    },
    async countRows(store, table, channelId) {
      return ((store as SqliteStore).db.prepare(`SELECT count(*) AS n FROM ${table} WHERE channel_id = ?`).get(channelId.toLowerCase()) as { n: number }).n;
    },
  });
}

describe("store: SQLite specifics", () => {
  it("applies migrations once, in order, recorded in schema_migrations; re-running applies nothing", () => {
    const db = new Database(":memory:");
    expect(migrateSqlite(db)).to.deep.equal(SQLITE_MIGRATIONS.map((m) => m.version));
    expect(migrateSqlite(db)).to.deep.equal([]);
    const extra = { version: 150, name: "settlement test table", up: "CREATE TABLE settlement_test (id INTEGER PRIMARY KEY)" };
    expect(migrateSqlite(db, [...SQLITE_MIGRATIONS, extra])).to.deep.equal([150]);
    expect(migrateSqlite(db, [...SQLITE_MIGRATIONS, extra])).to.deep.equal([]);
    const rows = db.prepare("SELECT version FROM schema_migrations ORDER BY version").all() as Array<{ version: number }>;
    expect(rows.map((r) => r.version)).to.deep.equal([...SQLITE_MIGRATIONS.map((m) => m.version), 150].sort((a, b) => a - b));
    expect(() => migrateSqlite(db, [extra, extra])).to.throw(/duplicate/);
    db.close();
  });

  it("upgrades a database of the first schema: its channels have no close request signature until the payer's request stores one", async () => {
    const url = tempDatabaseUrl();
    const db = new Database(url);
    migrateSqlite(db, SQLITE_MIGRATIONS.filter((m) => m.version === 1));
    const c = snapshot();
    const amount = (v: bigint) => v.toString(10).padStart(39, "0");
    db.prepare(
      `INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, settled, close_delay, accepted, accepted_signature,
         spent, floor, payer_close_requested_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(c.channelId, c.payer, c.payee, c.token, c.signer, amount(c.deposit), amount(0n), c.closeDelay, amount(300n), sig(300), amount(50n), amount(0n), 1_700_000_000, 1, 1);
    db.close();
    const store = new SqliteStore({ url });
    try {
      expect(await store.getChannel(c.channelId)).to.include({ accepted: 300n, spent: 50n, payerCloseRequestedAt: 1_700_000_000, closeRequestSignature: null });
      const ch = await store.requestCooperativeClose(c, 1_800_000_000, sig(0xc1));
      expect(ch).to.include({ payerCloseRequestedAt: 1_700_000_000, closeRequestSignature: sig(0xc1) });
    } finally {
      await store.close();
      remove(url);
    }
  });

  it("upgrading sweeps the used vouchers of channels already finalized (migration 4), floor raised to accepted; open channels keep theirs", async () => {
    const url = tempDatabaseUrl();
    const db = new Database(url);
    migrateSqlite(db, SQLITE_MIGRATIONS.filter((m) => m.version < 4));
    const amount = (v: bigint) => v.toString(10).padStart(39, "0");
    const insert = db.prepare(
      `INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, settled, close_delay, finalized, accepted, accepted_signature,
         spent, floor, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1)`,
    );
    const closed = snapshot();
    const open = snapshot();
    for (const [c, fin] of [[closed, 1], [open, 0]] as const) {
      const id = c.channelId.toLowerCase();
      insert.run(id, c.payer, c.payee, c.token, c.signer, amount(c.deposit), amount(0n), c.closeDelay, fin, amount(501n), sig(501), amount(501n), amount(0n));
      for (let v = 1n; v <= 501n; v++) db.prepare("INSERT INTO used_vouchers (channel_id, amount) VALUES (?, ?)").run(id, amount(v));
    }
    db.close();
    const store = new SqliteStore({ url });
    try {
      const count = (id: string) => (store.db.prepare("SELECT count(*) AS n FROM used_vouchers WHERE channel_id = ?").get(id.toLowerCase()) as { n: number }).n;
      expect(count(closed.channelId)).to.equal(0);
      expect(count(open.channelId)).to.equal(501);
      expect(await store.getChannel(closed.channelId)).to.include({ floor: 501n, finalized: true });
      expect(await store.getChannel(open.channelId)).to.include({ floor: 0n, reserved: 0n });
    } finally {
      await store.close();
      remove(url);
    }
  });

  it("opens with WAL and the configured synchronous mode, FULL by default", async () => {
    for (const [mode, level] of [[undefined, 2], ["FULL", 2], ["NORMAL", 1]] as const) {
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
});
