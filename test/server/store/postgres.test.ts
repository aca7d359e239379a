/**
 * The PostgreSQL store against the conformance suites (this folder's ./conformance.ts and settlement's
 * test/helpers/settlement-store-conformance.ts), plus PostgreSQL specifics. Needs PostgreSQL: see
 * test/helpers/postgres.ts (a throwaway server, or TEST_DATABASE_URL).
 */
import { expect } from "chai";
import pg from "pg";
import { decodePaymentResponse } from "@paychan/protocol";
import { settlementStoreFor } from "@paychan/server";
import { openStore } from "@paychan/server";
import {
  DEFAULT_PG_POOL,
  migratePostgres,
  pgPoolSettingsFromEnv,
  PgPoolConfigError,
  PostgresStore,
  POSTGRES_MIGRATIONS,
  type PgPoolSettings,
} from "@paychan/server/postgres";
import { openChannel } from "../../helpers/escrow";
import { describePostgres, newTestDatabase } from "../../helpers/postgres";
import { until } from "../../helpers/wait";
import { startTestServer } from "../../helpers/server";
import { settlementStoreConformance } from "../../helpers/settlement-store-conformance";
import { accept, binding, sig, snapshot, storeConformance } from "./conformance";

describePostgres("PostgreSQL store", function () {
  const open = (url: string) => PostgresStore.open({ url, pool: { max: 8 } });

  storeConformance({
    name: "PostgreSQL",
    newDatabase: () => newTestDatabase("conf"),
    open,
    propertyRuns: 25,
    async countRows(store, table, channelId) {
      const r = await (store as PostgresStore).pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE channel_id = $1`, [channelId.toLowerCase()]);
      return Number(r.rows[0].n);
    },
  });

  settlementStoreConformance("postgres", async () => {
    const store = await open(await newTestDatabase("settle"));
    return { store, settlement: settlementStoreFor(store), close: () => store.close() };
  });
});

/** A raw pg client on a test database (outside any store). */
async function rawClient(url: string): Promise<pg.Client> {
  const u = new URL(url);
  const options = u.searchParams.get("options") ?? undefined;
  u.searchParams.delete("options");
  const c = new pg.Client({ connectionString: u.toString(), options });
  await c.connect();
  return c;
}

describe("PostgreSQL store: pool settings from the environment", () => {
  it("reads PG_POOL_MAX, PG_IDLE_TIMEOUT_MS, PG_CONNECT_TIMEOUT_MS, PG_STATEMENT_TIMEOUT_MS and friends, with defaults", () => {
    expect(pgPoolSettingsFromEnv({})).to.deep.equal(DEFAULT_PG_POOL);
    expect(
      pgPoolSettingsFromEnv({
        PG_POOL_MAX: "25",
        PG_ACCEPT_CONNECTIONS: "3",
        PG_IDLE_TIMEOUT_MS: "0",
        PG_CONNECT_TIMEOUT_MS: "2500",
        PG_STATEMENT_TIMEOUT_MS: "750",
        PG_LOCK_TIMEOUT_MS: "300",
        PG_IDLE_IN_TRANSACTION_TIMEOUT_MS: "2000",
        PG_APPLICATION_NAME: "replica-2",
      }),
    ).to.deep.equal({
      max: 25,
      acceptConnections: 3,
      idleTimeoutMs: 0,
      connectTimeoutMs: 2500,
      statementTimeoutMs: 750,
      lockTimeoutMs: 300,
      idleInTransactionTimeoutMs: 2000,
      applicationName: "replica-2",
    });
  });

  it("refuses bad values with one message naming every bad variable", () => {
    let err: unknown;
    try {
      pgPoolSettingsFromEnv({ PG_POOL_MAX: "0", PG_CONNECT_TIMEOUT_MS: "soon", PG_STATEMENT_TIMEOUT_MS: "-1" });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(PgPoolConfigError);
    const msg = (err as Error).message;
    expect(msg).to.include("PG_POOL_MAX").and.include("PG_CONNECT_TIMEOUT_MS").and.include("PG_STATEMENT_TIMEOUT_MS");
    expect(msg).not.to.include("PG_IDLE_TIMEOUT_MS");
  });
});

describePostgres("PostgreSQL store: specifics", function () {
  this.timeout(60_000);
  const stores: PostgresStore[] = [];
  const clients: pg.Client[] = [];
  const open = async (url: string, pool: Partial<PgPoolSettings> = { max: 8 }) => {
    const s = await PostgresStore.open({ url, pool });
    stores.push(s);
    return s;
  };
  const raw = async (url: string) => {
    const c = await rawClient(url);
    clients.push(c);
    return c;
  };
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.end().catch(() => undefined);
    for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  });

  it("migrates once when six replicas open one empty database at the same moment", async () => {
    const url = await newTestDatabase("mig");
    await Promise.all(Array.from({ length: 6 }, () => open(url)));
    const c = await raw(url);
    const rows = (await c.query<{ version: number; n: string }>("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version ORDER BY version")).rows;
    expect(rows.map((r) => [r.version, Number(r.n)])).to.deep.equal(POSTGRES_MIGRATIONS.map((m) => [m.version, 1]));
    // Re-running applies nothing; an added migration is applied exactly once.
    expect(await migratePostgres(c)).to.deep.equal([]);
    const extra = { version: 250, name: "test table", up: "CREATE TABLE mig_extra (id int PRIMARY KEY)" };
    expect(await migratePostgres(c, [...POSTGRES_MIGRATIONS, extra])).to.deep.equal([250]);
    expect(await migratePostgres(c, [...POSTGRES_MIGRATIONS, extra])).to.deep.equal([]);
    let err: unknown;
    try {
      await migratePostgres(c, [extra, extra]);
    } catch (e) {
      err = e;
    }
    expect((err as Error)?.message).to.match(/duplicate/);
  });

  it("upgrades a database of the first schema: its channels have no close request signature until the payer's request stores one", async () => {
    const url = await newTestDatabase("upgrade");
    const c = await raw(url);
    await migratePostgres(c, POSTGRES_MIGRATIONS.filter((m) => m.version === 1));
    const ch = snapshot();
    await c.query(
      `INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, settled, close_delay, accepted, accepted_signature,
         spent, floor, payer_close_requested_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 300, $8, 50, 0, 1700000000, 1, 1)`,
      [ch.channelId, ch.payer, ch.payee, ch.token, ch.signer, ch.deposit.toString(), ch.closeDelay, sig(300)],
    );
    const store = await open(url);
    expect(await store.getChannel(ch.channelId)).to.include({ accepted: 300n, spent: 50n, payerCloseRequestedAt: 1_700_000_000, closeRequestSignature: null });
    expect(await store.requestCooperativeClose(ch, 1_800_000_000, sig(0xc1))).to.include({ payerCloseRequestedAt: 1_700_000_000, closeRequestSignature: sig(0xc1) });
  });

  it("upgrading sweeps the used vouchers of channels already finalized (migration 4), floor raised to accepted; open channels keep theirs", async () => {
    const url = await newTestDatabase("sweep");
    const c = await raw(url);
    await migratePostgres(c, POSTGRES_MIGRATIONS.filter((m) => m.version < 4));
    const closed = snapshot();
    const live = snapshot();
    for (const [ch, fin] of [[closed, true], [live, false]] as const) {
      await c.query(
        `INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, settled, close_delay, finalized, accepted, accepted_signature,
           spent, floor, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, 501, $9, 501, 0, 1, 1)`,
        [ch.channelId.toLowerCase(), ch.payer, ch.payee, ch.token, ch.signer, ch.deposit.toString(), ch.closeDelay, fin, sig(501)],
      );
      await c.query("INSERT INTO used_vouchers (channel_id, amount) SELECT $1, generate_series(1, 501)", [ch.channelId.toLowerCase()]);
    }
    const store = await open(url);
    const count = async (id: string) => Number((await c.query<{ n: string }>("SELECT count(*) AS n FROM used_vouchers WHERE channel_id = $1", [id.toLowerCase()])).rows[0].n);
    expect(await count(closed.channelId)).to.equal(0);
    expect(await count(live.channelId)).to.equal(501);
    expect(await store.getChannel(closed.channelId)).to.include({ floor: 501n, finalized: true });
    expect(await store.getChannel(live.channelId)).to.include({ floor: 0n, reserved: 0n });
  });

  it("a failing migration leaves nothing half-applied", async () => {
    const url = await newTestDatabase("migfail");
    await open(url);
    const c = await raw(url);
    const bad = { version: 251, name: "half", up: "CREATE TABLE half_a (id int); CREATE TABLE half_a (id int);" };
    let err: unknown;
    try {
      await migratePostgres(c, [...POSTGRES_MIGRATIONS, bad]);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(Error);
    expect((await c.query("SELECT to_regclass('half_a') AS t")).rows[0].t).to.equal(null);
    expect((await c.query("SELECT 1 FROM schema_migrations WHERE version = 251")).rowCount).to.equal(0);
  });

  it("every session commits synchronously, even when the URL asks for synchronous_commit=off", async () => {
    const base = await newTestDatabase("sync");
    const u = new URL(base);
    u.searchParams.set("options", `${u.searchParams.get("options")} -c synchronous_commit=off`);
    const s = await open(u.toString());
    const rows = await Promise.all(Array.from({ length: 4 }, () => s.pool.query<{ v: string }>("SELECT current_setting('synchronous_commit') AS v")));
    expect(rows.map((r) => r.rows[0].v)).to.deep.equal(["on", "on", "on", "on"]);
    // and the URL's other options (the schema) still apply
    expect((await s.pool.query("SELECT current_schema() AS s")).rows[0].s).to.equal(new URL(base).searchParams.get("options")!.split("=")[1]);
  });

  it("a voucher waits for the channel's row lock and then sees the holder's committed used voucher (no stale snapshot)", async () => {
    const url = await newTestDatabase("lock");
    const s = await open(url);
    const c = snapshot();
    expect((await accept(s, c, 100n, 10n)).ok).to.equal(true);
    const other = await raw(url);
    // Another session (think: another replica mid-transaction) holds the row and records voucher 500 as used.
    await other.query("BEGIN");
    await other.query("SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", [c.channelId]);
    await other.query("INSERT INTO used_vouchers (channel_id, amount) VALUES ($1, 500)", [c.channelId]);
    await other.query("UPDATE channels SET accepted = 500, spent = spent + 10 WHERE channel_id = $1", [c.channelId]);
    let settled = false;
    const pending = accept(s, c, 500n, 10n).finally(() => (settled = true));
    // The accept's session is blocked on the row lock (not merely slow): PostgreSQL says so.
    const waiting = async () =>
      Number(
        (await other.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).rows[0]
          .n,
      ) > 0;
    await until(waiting, "the accept to wait for the row lock");
    expect(settled, "acceptVoucher must wait for the row lock").to.equal(false);
    await other.query("COMMIT");
    const r = await pending;
    expect(r.ok ? "ok" : r.code).to.equal("voucher_reused");
    expect(await s.getChannel(c.channelId)).to.include({ accepted: 500n, spent: 20n });
  });

  it("a lock held longer than PG_STATEMENT_TIMEOUT_MS fails the voucher (503 upstream) instead of hanging", async () => {
    const url = await newTestDatabase("timeout");
    const s = await open(url, { max: 4, statementTimeoutMs: 300 });
    const c = snapshot();
    expect((await accept(s, c, 100n)).ok).to.equal(true);
    const other = await raw(url);
    await other.query("BEGIN");
    await other.query("SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", [c.channelId]);
    const t0 = Date.now();
    let err: unknown;
    try {
      await accept(s, c, 200n);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string })?.code).to.equal("57014"); // query_canceled (statement timeout)
    expect(Date.now() - t0).to.be.below(3_000);
    await other.query("ROLLBACK");
    // nothing was written, and the pool still works
    expect((await accept(s, c, 200n)).ok).to.equal(true);
    expect((await s.getChannel(c.channelId))?.spent).to.equal(20n);
  });

  it("recovers when PostgreSQL drops its connections (server restart, failover)", async () => {
    const url = await newTestDatabase("drop");
    const s = await open(url, { max: 4, applicationName: "drop-test" });
    const c = snapshot();
    expect((await accept(s, c, 100n)).ok).to.equal(true);
    const admin = await raw(url);
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'drop-test' AND pid <> pg_backend_pid()");
    // Every connection of the store saw its end and left its pool; the next calls open new ones.
    await until(() => s.connections === 0, "the store's pools to drop the terminated connections");
    expect((await accept(s, c, 200n)).ok).to.equal(true);
    expect((await s.getChannel(c.channelId))?.accepted).to.equal(200n);
  });

  it("DATABASE_URL postgres:// and postgresql:// open the PostgreSQL store; an unreachable one fails with the password hidden", async () => {
    const url = await newTestDatabase("url");
    for (const u of [url, url.replace(/^postgres:/, "postgresql:")]) {
      const s = await openStore({ url: u });
      expect(s.kind).to.equal("postgres");
      await s.bind(binding());
      await s.close();
    }
    let err: unknown;
    try {
      await openStore({ url: "postgres://someone:s3cret@127.0.0.1:1/nowhere" });
    } catch (e) {
      err = e;
    }
    expect((err as Error)?.message).to.include("cannot connect to PostgreSQL").and.not.include("s3cret");
  });

  describe("the one-settler lock", () => {
    it("exactly one of eight replicas racing for it gets it; it is released when its holder's store closes", async () => {
      const url = await newTestDatabase("settler");
      const ss = await Promise.all(Array.from({ length: 8 }, () => open(url)));
      const got = await Promise.all(ss.map((s, i) => settlementStoreFor(s).tryAcquireSettlerLease(`replica-${i}`, 60_000)));
      expect(got.filter(Boolean)).to.have.length(1);
      const winner = got.indexOf(true);
      expect(await settlementStoreFor(ss[winner]).tryAcquireSettlerLease(`replica-${winner}`, 60_000)).to.equal(true); // renewal
      const next = (winner + 1) % 8;
      expect(await settlementStoreFor(ss[next]).tryAcquireSettlerLease(`replica-${next}`, 60_000)).to.equal(false);
      await ss[winner].close();
      expect(await settlementStoreFor(ss[next]).tryAcquireSettlerLease(`replica-${next}`, 60_000)).to.equal(true);
    });

    it("a holder whose session dies loses the lock at once; another takes over and the old holder is refused", async () => {
      const url = await newTestDatabase("settler2");
      const a = await open(url);
      const b = await open(url);
      const sa = settlementStoreFor(a);
      const sb = settlementStoreFor(b);
      expect(await sa.tryAcquireSettlerLease("a", 60_000)).to.equal(true);
      expect(await sb.tryAcquireSettlerLease("b", 60_000)).to.equal(false);
      // Kill the holder's session from outside (what SIGKILL of the replica, or a lost network, amounts to).
      const admin = await raw(url);
      const killed = await admin.query(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()",
      );
      expect(killed.rowCount).to.be.at.least(1);
      // The killed session is gone, and its advisory lock with it.
      await until(
        async () => (await admin.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()")).rowCount === 0,
        "the killed holder's advisory lock to be released",
      );
      expect(await sb.tryAcquireSettlerLease("b", 60_000)).to.equal(true);
      expect(await sa.tryAcquireSettlerLease("a", 60_000)).to.equal(false);
      await sb.releaseSettlerLease("b");
      expect(await sa.tryAcquireSettlerLease("a", 60_000)).to.equal(true);
    });

    it("settlers of different deployments (schemas) in one database do not block each other", async () => {
      const a = await open(await newTestDatabase("dep_a"));
      const b = await open(await newTestDatabase("dep_b"));
      expect(await settlementStoreFor(a).tryAcquireSettlerLease("x", 60_000)).to.equal(true);
      expect(await settlementStoreFor(b).tryAcquireSettlerLease("y", 60_000)).to.equal(true);
    });
  });

  it("the server runs on DATABASE_URL=postgres://: a paid request is served once, and its state survives a restart", async () => {
    const url = await newTestDatabase("server");
    const srv = await startTestServer({ databaseUrl: url });
    let srv2: Awaited<ReturnType<typeof startTestServer>> | null = null;
    try {
      expect(srv.store.kind).to.equal("postgres");
      const ch = await openChannel(srv.env);
      const terms = await srv.terms("/v1/echo?msg=hi");
      const voucher = ch.voucher.sign(ch.id, terms.amount);
      const res = await fetch(`${srv.url}/v1/echo?msg=hi`, { headers: srv.pay(terms, voucher) });
      expect(res.status, await res.text()).to.equal(200);
      expect(decodePaymentResponse(res.headers.get("payment-response")).amount).to.equal(terms.amount);
      await srv.close();
      srv2 = await startTestServer({ env: srv.env, databaseUrl: url });
      const again = await fetch(`${srv2.url}/v1/echo?msg=hi`, { headers: srv2.pay(terms, voucher) });
      expect(again.status).to.equal(402);
      expect(await again.json()).to.include({ error: "voucher_reused" });
      expect(await srv2.store.getChannel(ch.id)).to.include({ accepted: terms.amount, spent: terms.amount });
    } finally {
      await srv.close();
      await srv2?.close();
    }
  });
});
