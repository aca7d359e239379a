/**
 * The {@link ChannelStore} on PostgreSQL (`pg`), for several server replicas sharing one database.
 *
 * Isolation reasoning (READ COMMITTED, PostgreSQL's default, on purpose):
 *
 * - Accepts are group-committed (./group-commit.ts, ./accept-batch.ts): the accepts queued while earlier batches
 *   were being written share ONE transaction on the paid path's own connections (`PG_ACCEPT_CONNECTIONS`), which
 *   first takes the ROW LOCKS of all its channels (`SELECT ... FOR UPDATE`, in channel-id order). Every write to a
 *   channel's accounting (accepts, release, close request, chain snapshots) locks that row first, and every
 *   multi-row writer locks in id order, so all of them serialise per channel, across connections, processes and
 *   replicas, without deadlocking each other. In READ COMMITTED a `FOR UPDATE` that had to wait returns the row's
 *   NEWEST committed version (not the statement's snapshot), so the pure rule `decideVoucher`
 *   (server/payments/accounting.ts, shared with SQLite) runs, item after item in queue order, on exactly the state
 *   the previous holder committed, as earlier items of the batch left it in memory. Each channel is written once per
 *   batch; each caller is answered once the batch committed. Different channels never wait on each other.
 *   SERIALIZABLE would add aborts and retries on the hot path without protecting anything more than the locks do.
 * - The used-voucher check must NOT be a subquery of the locking SELECT: such a subquery would read the
 *   statement's snapshot taken BEFORE the lock wait and miss the used row the previous holder just committed
 *   (two copies of one voucher would both pass). The batch reads the used set in a statement of its own after the
 *   locks (a fresh snapshot, in the same round trip: each statement of a simple query takes its own). Its write still
 *   inserts the used rows with `ON CONFLICT DO NOTHING` and checks the count: a unique-index check sees every
 *   committed row regardless of snapshots, and the primary key (channel, amount) makes a double use impossible even
 *   if the lock were bypassed.
 * - A channel's first voucher has no row to lock: the row is inserted with `ON CONFLICT DO NOTHING`; a concurrent
 *   first voucher blocks on the uncommitted key, then finds the conflict, and its batch starts over, locking the
 *   row that the winner committed.
 * - A batch that fails (a statement, the commit) is run again item by item, each in its own transaction, so only the
 *   failing accept fails; the rest of the store (chain state, releases, settlement, pruning, reads) uses the other
 *   pool, so it never waits for a free connection behind paid-path batches (only, briefly, for a channel's row lock).
 * - Refusals roll back (nothing is written; a rolled-back transaction does not wait for a WAL flush).
 * - Every session runs with `synchronous_commit = on` (see ./pool.ts): COMMIT returns once the WAL is on disk,
 *   so the paid handler only runs for durable accounting.
 * - Multi-row writes (chain snapshots) lock their rows in channel-id order, so two replicas' followers cannot
 *   deadlock each other; a deadlock or serialization failure anywhere is retried as a whole transaction.
 */
import pg from "pg";
import type { Address, Hex } from "viem";
import { MAX_UINT128, type ChannelRef } from "@paychan/protocol";
import { decideVoucher } from "../../payments/accounting";
import {
  StoreBindingError,
  type AcceptVoucherInput,
  type AcceptVoucherResult,
  type ChainChannel,
  type ChannelStore,
  type EventCursor,
  type StoreBinding,
  type StoredChannel,
  type StoreTotals,
} from "../types";
import { migratePostgres } from "./migrate";
import { PRUNE_FINALIZED_SQL } from "./prune";
import { pgRowToChannel, type PgChannelRow } from "./rows";
import { ACCEPT_BATCH_SQL, BATCH_CONFLICT, idOf, inline, planAccepts, writeParams } from "./accept-batch";
import { hasSqlState, PgGroupCommit } from "./group-commit";
import { AcceptCache, newVersion } from "./accept-cache";
import { PgSettlementStore } from "./settlement";
import { PgExactStore } from "./exact";
import type { ExactStore, ExactStoreProvider } from "../exact-types";
import { PgGaslessOpenStore } from "./open";
import type { GaslessOpenStore, GaslessOpenStoreProvider } from "../open-types";
import { POSTGRES_MIGRATIONS, type PgMigration } from "./migrations";
import { createPgPool, DEFAULT_PG_POOL, pgClientConfig, pgPoolSettingsFromEnv, redactUrl, type PgPoolSettings } from "./pool";
import type { SettlementStore, SettlementStoreProvider } from "../settlement-types";

export interface PostgresStoreOptions {
  /** `postgres://` or `postgresql://` URL (libpq-style parameters such as `sslmode` and `options` are honoured). */
  url: string;
  /** Pool settings; default: from the environment ({@link pgPoolSettingsFromEnv}). */
  pool?: Partial<PgPoolSettings>;
  /** Extra migrations (settlement, tests); merged with {@link POSTGRES_MIGRATIONS}. */
  migrations?: readonly PgMigration[];
}

const lower = (s: string) => s.toLowerCase();

function amountParam(v: bigint): string {
  if (v < 0n || v > MAX_UINT128) throw new RangeError(`amount out of range: ${v}`);
  return v.toString(10);
}

/** No used amounts (what a one-round-trip batch plans on: its write checks that none was used). */
const NONE_USED: ReadonlySet<string> = new Set();

/** Whether `e` is the accept write's own failure: a row changed since it was read, or a voucher already used. */
function isBatchConflict(e: unknown): boolean {
  return (e as { code?: string }).code === "22P02" && String((e as Error).message).includes(BATCH_CONFLICT);
}

/** SQLSTATEs after which the whole transaction can safely run again. */
const RETRYABLE = new Set(["40P01" /* deadlock_detected */, "40001" /* serialization_failure */]);

/**
 * Chain fields of a snapshot: a newer (or equal) block wins over the stored ones, except that `settled` never goes
 * down and `finalized` never goes back: the settlement job raises those from a confirmed receipt without a block
 * number of the channel's whole state, so a snapshot of the same block read before the settlement (another
 * replica's cached view) must not undo them. (A reorg replaces them with `force`.)
 */
const MERGE_CHAIN = (t: string, p: { deposit: string; settled: string; cra: string; ca: string; fin: string; block: string }) => `
  deposit            = CASE WHEN ${t}.chain_block <= ${p.block} THEN ${p.deposit} ELSE ${t}.deposit END,
  settled            = CASE WHEN ${t}.chain_block <= ${p.block} THEN GREATEST(${t}.settled, ${p.settled}) ELSE ${t}.settled END,
  close_requested_at = CASE WHEN ${t}.chain_block <= ${p.block} THEN ${p.cra} ELSE ${t}.close_requested_at END,
  closes_at          = CASE WHEN ${t}.chain_block <= ${p.block} THEN ${p.ca} ELSE ${t}.closes_at END,
  finalized          = CASE WHEN ${t}.chain_block <= ${p.block} THEN ${t}.finalized OR ${p.fin} ELSE ${t}.finalized END,
  chain_block        = GREATEST(${t}.chain_block, ${p.block})`;

const COLUMNS = `channel_id, payer, payee, token, signer, deposit, settled, close_delay, close_requested_at, closes_at, finalized,
  chain_block, accepted, accepted_signature, spent, floor, payer_close_requested_at, created_at, updated_at`;

const SQL = {
  lock: "SELECT * FROM channels WHERE channel_id = $1 FOR UPDATE",
  // A batch's rows, locked in id order (every multi-row writer locks in this order: no deadlock between replicas).
  lockBatch: "SELECT * FROM channels WHERE channel_id = ANY($1::text[]) ORDER BY channel_id FOR UPDATE",
  // Which of a batch's (channel, amount) pairs are used; a statement of its own, after the locks (see the file comment).
  usedOf: `
    SELECT u.channel_id, u.amount::text AS amount FROM used_vouchers u
    JOIN unnest($1::text[], $2::numeric[]) AS x(id, amount) ON u.channel_id = x.id AND u.amount = x.amount`,
  release: "UPDATE channels SET spent = GREATEST(spent - $2, 0), updated_at = $3 WHERE channel_id = $1 RETURNING *",
  // Ends one reservation: its row goes (at most once, whoever deletes it first) and the channel's books move with it.
  // A charge above the reservation's amount matches no row (nothing changes; the caller tells the two cases apart).
  finishReservation: `
    WITH r AS (
      DELETE FROM reservations WHERE channel_id = $1 AND voucher = $2 AND amount >= $3 RETURNING amount
    )
    UPDATE channels c SET reserved = GREATEST(c.reserved - r.amount, 0), spent = c.spent + $3, updated_at = $4
    FROM r WHERE c.channel_id = $1
    RETURNING c.*`,
  // Abandoned reservations: dropped without a charge, channels locked in id order (as every multi-row write).
  // Metered reservations only: a stream's (checkpoint_at set) ends by its stream or the stream sweeper, charged.
  expiredReservations: "SELECT channel_id FROM reservations WHERE created_at < $1 AND checkpoint_at IS NULL ORDER BY channel_id",
  expireReservations: `
    WITH r AS (
      DELETE FROM reservations WHERE channel_id = ANY($1::text[]) AND created_at < $2 AND checkpoint_at IS NULL RETURNING channel_id, amount
    ), s AS (
      SELECT channel_id, sum(amount) AS amount, count(*) AS n FROM r GROUP BY channel_id
    ), u AS (
      UPDATE channels c SET reserved = GREATEST(c.reserved - s.amount, 0), updated_at = $3 FROM s WHERE c.channel_id = s.channel_id
    )
    SELECT COALESCE(sum(n), 0)::bigint AS n FROM s`,
  // The first request time and the first signature stay; a signature fills an empty one.
  coopClose: `
    INSERT INTO channels (${COLUMNS}, close_request_signature)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, NULL, 0, 0, $13, $14, $14, $15)
    ON CONFLICT (channel_id) DO UPDATE SET
      ${MERGE_CHAIN("channels", { deposit: "EXCLUDED.deposit", settled: "EXCLUDED.settled", cra: "EXCLUDED.close_requested_at", ca: "EXCLUDED.closes_at", fin: "EXCLUDED.finalized", block: "EXCLUDED.chain_block" })},
      payer_close_requested_at = CASE WHEN channels.payer_close_requested_at = 0 THEN EXCLUDED.payer_close_requested_at
                                      ELSE channels.payer_close_requested_at END,
      close_request_signature = COALESCE(channels.close_request_signature, EXCLUDED.close_request_signature),
      updated_at = EXCLUDED.updated_at
    RETURNING *`,
  lockMany: "SELECT channel_id FROM channels WHERE channel_id = ANY($1::text[]) ORDER BY channel_id FOR UPDATE",
  snapshots: `
    UPDATE channels c SET updated_at = $8,
      ${MERGE_CHAIN("c", { deposit: "s.deposit", settled: "s.settled", cra: "s.cra", ca: "s.ca", fin: "s.fin", block: "s.blk" })}
    FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::bigint[], $5::bigint[], $6::boolean[], $7::bigint[])
      AS s(id, deposit, settled, cra, ca, fin, blk)
    WHERE c.channel_id = s.id AND c.chain_block <= s.blk`,
  // After a reorg (the follower's resync) the chain's state replaces the stored one whatever its block number.
  snapshotsForce: `
    UPDATE channels c SET updated_at = $8, deposit = s.deposit, settled = s.settled, close_requested_at = s.cra,
      closes_at = s.ca, finalized = s.fin, chain_block = s.blk
    FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::bigint[], $5::bigint[], $6::boolean[], $7::bigint[])
      AS s(id, deposit, settled, cra, ca, fin, blk)
    WHERE c.channel_id = s.id`,
  setCursor: `
    INSERT INTO cursors (name, block, block_hash, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (name) DO UPDATE SET block = EXCLUDED.block, block_hash = EXCLUDED.block_hash, updated_at = EXCLUDED.updated_at`,
  getCursor: "SELECT block, block_hash FROM cursors WHERE name = $1",
  getChannel: "SELECT * FROM channels WHERE channel_id = $1",
  active: "SELECT channel_id, signer FROM channels WHERE NOT finalized ORDER BY channel_id",
  unsettled: `
    SELECT * FROM channels WHERE NOT finalized AND spent > settled
    ORDER BY (closes_at = 0 AND payer_close_requested_at = 0), closes_at, spent DESC, channel_id LIMIT $1`,
  totals: `
    SELECT count(*)::bigint AS n,
           COALESCE(sum(accepted), 0)::text AS accepted,
           COALESCE(sum(spent), 0)::text AS spent,
           COALESCE(sum(settled), 0)::text AS settled,
           COALESCE(sum(spent - settled) FILTER (WHERE NOT finalized AND spent > settled), 0)::text AS unsettled
    FROM channels`,
  bindInsert: "INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (key) DO NOTHING",
  bindRead: "SELECT key, value FROM meta WHERE key = ANY($1::text[])",
  ping: "INSERT INTO meta (key, value) VALUES ('health_probe', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
} as const;

/** Named (prepared once per connection) query. */
function q(name: keyof typeof SQL, values: unknown[]): pg.QueryConfig {
  return { name: `cs_${name}`, text: SQL[name], values };
}

/** Outcome of a transaction body: the value, and whether to COMMIT it (false: ROLLBACK, nothing written). */
interface TxOutcome<T> {
  value: T;
  commit: boolean;
}

/** {@link ChannelStore} on PostgreSQL; see the file comment for the isolation reasoning. Create with {@link PostgresStore.open}. */
/** The first 12 insert parameters of a channel row ($1–$12 of `acceptNew` and `coopClose`): id and chain state. */
function chainColumns(id: string, chain: ChainChannel): unknown[] {
  return [
    id,
    chain.payer,
    chain.payee,
    chain.token,
    chain.signer,
    amountParam(chain.deposit),
    amountParam(chain.settled),
    chain.closeDelay,
    chain.closeRequestedAt,
    chain.closesAt,
    chain.finalized,
    chain.block.toString(),
  ];
}

export class PostgresStore implements ChannelStore, SettlementStoreProvider, ExactStoreProvider, GaslessOpenStoreProvider {
  readonly kind = "postgres";
  /**
   * The pool of everything but accepting vouchers (chain state, releases and reservations, settlement, pruning,
   * reads), also for store extensions (settlement) that add tables and queries on the same database.
   */
  readonly pool: pg.Pool;
  /** The paid path's own connections (`settings.acceptConnections`): batches of accepts never wait for the other pool. */
  private readonly acceptPool: pg.Pool;
  /** Accepts share transactions (./group-commit.ts, {@link acceptBatch}). */
  private readonly accepts: PgGroupCommit<AcceptVoucherInput, AcceptVoucherResult>;
  private closing = false;
  /** Transactions run again after a deadlock or serialization failure (tests; every multi-row writer locks in id order). */
  retriedTransactions = 0;
  /** What one-round-trip accept batches plan on (./accept-cache.ts). */
  private readonly rowCache = new AcceptCache();
  /** Accept batches written in one round trip, and those whose guess failed (then run by the locking path). */
  oneTripBatches = 0;
  oneTripMisses = 0;
  /** The URL without its password (messages). */
  readonly displayUrl: string;
  readonly settings: PgPoolSettings;
  private readonly url: string;
  private closed = false;
  private settlement: PgSettlementStore | null = null;
  private exact: PgExactStore | null = null;
  private readonly closeHooks: Array<() => Promise<void>> = [];

  private constructor(pool: pg.Pool, url: string, settings: PgPoolSettings) {
    this.pool = pool;
    this.acceptPool = createPgPool(url, settings, settings.acceptConnections);
    // Keyed by channel: a batch is planned on what the batches before it on its channels committed.
    this.accepts = new PgGroupCommit((inputs) => this.acceptBatch(inputs), settings.acceptConnections, 256, idOf);
    this.url = url;
    this.displayUrl = redactUrl(url);
    this.settings = settings;
  }

  /**
   * A new connection outside the pool, with the store's session settings (same database and schema), for work
   * that must own a session (the settler's advisory lock). The caller ends it.
   */
  dedicatedClient(extraOptions: string[] = []): pg.Client {
    return new pg.Client(pgClientConfig(this.url, this.settings, extraOptions));
  }

  /** Runs `hook` when the store closes (before the pool ends). */
  onClose(hook: () => Promise<void>): void {
    this.closeHooks.push(hook);
  }

  /** The settlement records and the settler lock, on this database (server/store/settlement-types.ts). */
  settlementStore(): SettlementStore {
    this.check();
    return (this.settlement ??= new PgSettlementStore(this));
  }

  /** The `exact` payments and sender nonces, on this database (server/store/exact-types.ts). */
  exactStore(): ExactStore {
    this.check();
    return (this.exact ??= new PgExactStore(this));
  }

  private opens: PgGaslessOpenStore | null = null;
  /** Gasless opens (docs/protocol.md § 5.9), on this database, sharing the `exact` sender nonces. */
  gaslessOpenStore(): GaslessOpenStore {
    this.check();
    return (this.opens ??= new PgGaslessOpenStore(this));
  }

  /** Connects, applies the migrations (safe when several replicas start at once) and returns the store. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const settings: PgPoolSettings = { ...(opts.pool ? DEFAULT_PG_POOL : pgPoolSettingsFromEnv()), ...opts.pool };
    const displayUrl = redactUrl(opts.url);
    const pool = createPgPool(opts.url, settings);
    try {
      const client = await pool.connect().catch((e: Error) => {
        throw new Error(`cannot connect to PostgreSQL at ${displayUrl}: ${e.message}`);
      });
      try {
        const sc = (await client.query<{ synchronous_commit: string }>("SHOW synchronous_commit")).rows[0].synchronous_commit;
        if (sc !== "on") throw new Error(`synchronous_commit is ${sc} on ${displayUrl}; the store needs it on`);
        await migratePostgres(client, [...POSTGRES_MIGRATIONS, ...(opts.migrations ?? [])]);
      } finally {
        client.release();
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e;
    }
    return new PostgresStore(pool, opts.url, settings);
  }

  /** Throws when the store is closed. */
  check(): void {
    if (this.closed) throw new Error("store is closed");
  }

  /**
   * Runs `fn` in one READ COMMITTED transaction on one pooled connection and commits it; rolls back when `fn`
   * throws. Deadlocks and serialization failures re-run the whole transaction (up to 5 attempts), so `fn` must
   * not have effects outside the database. For store extensions (settlement).
   */
  async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.tx(async (c) => ({ value: await fn(c), commit: true }));
  }

  private async tx<T>(fn: (client: pg.PoolClient) => Promise<TxOutcome<T>>, pool: pg.Pool = this.pool): Promise<T> {
    this.check();
    for (let attempt = 1; ; attempt++) {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        let out: TxOutcome<T>;
        try {
          out = await fn(client);
        } catch (e) {
          // The connection is reusable only if the rollback worked.
          await client.query("ROLLBACK").catch((re: Error) => (broken = re));
          throw e;
        }
        // A COMMIT that fails for a lost connection has an unknown outcome: it is never retried here.
        try {
          await client.query(out.commit ? "COMMIT" : "ROLLBACK");
        } catch (e) {
          broken = e as Error;
          throw e;
        }
        return out.value;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code && RETRYABLE.has(code) && attempt < 5 && !broken) {
          this.retriedTransactions++;
          await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
          continue;
        }
        throw e;
      } finally {
        client.release(broken);
      }
    }
  }

  async bind(b: StoreBinding): Promise<void> {
    const want: Record<string, string> = {
      chain_id: String(b.chainId),
      escrow: lower(b.escrow),
      token: lower(b.token),
      payee: lower(b.payee),
      genesis_hash: lower(b.genesisHash),
    };
    const keys = Object.keys(want);
    // Concurrent replicas: the first insert wins, everyone compares against what is committed.
    const have = await this.tx(async (c) => {
      await c.query(SQL.bindInsert, [keys, keys.map((k) => want[k])]);
      const rows = (await c.query<{ key: string; value: string }>(SQL.bindRead, [keys])).rows;
      return { value: new Map(rows.map((r) => [r.key, r.value])), commit: true };
    });
    const mismatches = keys.filter((k) => have.get(k) !== want[k]).map((k) => `${k}: store has ${have.get(k)}, server has ${want[k]}`);
    if (mismatches.length) {
      throw new StoreBindingError(`the database ${this.displayUrl} belongs to another deployment (${mismatches.join("; ")}); use another DATABASE_URL`);
    }
  }

  async getChannel(channelId: Hex): Promise<StoredChannel | null> {
    this.check();
    const r = await this.pool.query<PgChannelRow>(q("getChannel", [lower(channelId)]));
    return r.rows[0] ? pgRowToChannel(r.rows[0]) : null;
  }

  /**
   * Accepts a voucher through the group commit (./group-commit.ts): the accepts queued while batches are being
   * written share one transaction (see {@link acceptBatch}); this answers once that transaction committed.
   */
  async acceptVoucher(input: AcceptVoucherInput): Promise<AcceptVoucherResult> {
    if (this.closing) throw new Error("store is closed");
    // Bad amounts fail their own caller here, never a batch.
    amountParam(input.amount);
    amountParam(input.charge);
    return this.accepts.submit(input);
  }

  /** Transactions the accepts ran (a batch counts once), for tests and metrics. */
  get acceptTransactions(): number {
    return this.accepts.transactions;
  }

  /**
   * Accepts `inputs` as one batch: in ONE round trip when this process knows the state of every channel of the batch
   * ({@link acceptOneTrip}), else (or when that guess fails) in one locking transaction of two round trips
   * ({@link acceptLocked}).
   */
  private async acceptBatch(inputs: readonly AcceptVoucherInput[]): Promise<AcceptVoucherResult[]> {
    this.check();
    const fast = await this.acceptOneTrip(inputs);
    if (Array.isArray(fast)) return fast;
    return this.acceptLocked(inputs, fast?.expected);
  }

  /**
   * The one-round-trip path: the batch is decided on the rows as this process last knew them (./accept-cache.ts,
   * the used set taken as empty) and written by ONE statement that commits alone (a prepared statement: no BEGIN,
   * no COMMIT), which writes nothing unless every row still has the version token the batch planned on and none of
   * the accepted amounts was used. Null when the batch cannot take this path (a channel unknown or backing off; a
   * channel only refused, or a refusal that the used set could change: they must be decided on rows read under
   * lock); the tokens it expected when it was written and found a row changed or an amount used (nothing written).
   */
  private async acceptOneTrip(inputs: readonly AcceptVoucherInput[]): Promise<AcceptVoucherResult[] | { expected: Map<string, string> } | null> {
    const ids = [...new Set(inputs.map(idOf))];
    const now = Date.now();
    const base = this.rowCache.lookup(ids, now);
    if (!base) return null;
    const rows = new Map([...base].map(([id, r]) => [id, r.channel]));
    const plan = planAccepts(inputs, rows, NONE_USED, now);
    // Every channel must be written (its token checked), else a refusal could rest on a stale row.
    if (plan.held.length !== ids.length) return null;
    // Planned with no used amounts: a refusal for want of cover of an amount that may be used (at most the row's
    // accepted) could be voucher_reused one by one (the used rule comes first).
    const mayBeUsed = plan.results.some((r, i) => !r.ok && r.code === "insufficient_voucher" && inputs[i].amount <= base.get(idOf(inputs[i]))!.channel.accepted);
    if (mayBeUsed) return null;
    const versions = { expect: new Map([...base].map(([id, r]) => [id, r.version])), next: new Map(ids.map((id) => [id, newVersion()])) };
    const values = writeParams(plan, now, versions, "read");
    const client = await this.acceptPool.connect();
    let broken: Error | undefined;
    try {
      await client.query({ name: "accept_batch", text: ACCEPT_BATCH_SQL, values });
    } catch (e) {
      this.rowCache.failed(base);
      // Nothing was written when PostgreSQL answered with an error; without an answer the outcome is unknown.
      if (!hasSqlState(e)) {
        broken = e as Error;
        throw e;
      }
      if (RETRYABLE.has((e as { code?: string }).code ?? "")) this.retriedTransactions++;
      this.oneTripMisses++;
      return isBatchConflict(e) ? { expected: versions.expect } : null;
    } finally {
      client.release(broken);
    }
    this.rowCache.committed(base, new Map(plan.held.map(([id, h]) => [id, h.channel!])), versions.next);
    this.oneTripBatches++;
    return plan.results;
  }

  /**
   * The locking path: ONE transaction of two round trips on the accept pool: `BEGIN`, the batch's channel rows
   * locked in id order and the used read (one simple query); then, when anything was accepted, the batch's one write
   * with `COMMIT` (./accept-batch.ts); refusals only: `ROLLBACK`. A concurrent first voucher of another replica on a
   * channel new to this batch (the insert finds the row: the write fails with {@link BATCH_CONFLICT}) starts the
   * batch over, when it locks that row; so do deadlocks and serialization failures. The rows as committed are what
   * the next one-round-trip batches plan on. `expected`: the tokens a one-round-trip attempt of this batch expected;
   * the channels read with another token were changed behind the guess and back off (./accept-cache.ts).
   */
  private async acceptLocked(inputs: readonly AcceptVoucherInput[], expected?: ReadonlyMap<string, string>): Promise<AcceptVoucherResult[]> {
    const ids = [...new Set(inputs.map(idOf))].sort();
    const pairs: [string[], string[]] = [inputs.map(idOf), inputs.map((x) => amountParam(x.amount))];
    for (let attempt = 1; ; attempt++) {
      const since = this.rowCache.clock();
      const client = await this.acceptPool.connect();
      const esc = (x: string) => client.escapeLiteral(x);
      let broken: Error | undefined;
      try {
        // Each statement of a simple query takes its own snapshot: the used read's follows the locks.
        const read = (await client.query(`BEGIN; ${inline(SQL.lockBatch, [ids], esc)}; ${inline(SQL.usedOf, pairs, esc)}`)) as unknown as pg.QueryResult[];
        const locked = read[1].rows as PgChannelRow[];
        const rows = new Map(locked.map((r) => [r.channel_id, pgRowToChannel(r)]));
        const versions = { expect: new Map(locked.map((r) => [r.channel_id, String(r.version)])), next: new Map(ids.map((id) => [id, newVersion()])) };
        if (expected && attempt === 1) {
          const changed = [...versions.expect].filter(([id, v]) => expected.has(id) && expected.get(id) !== v).map(([id]) => id);
          this.rowCache.strike(changed, Date.now());
        }
        const used = new Set((read[2].rows as Array<{ channel_id: string; amount: string }>).map((r) => `${r.channel_id}:${r.amount}`));
        const now = Date.now();
        const plan = planAccepts(inputs, rows, used, now);
        // A failed write aborts the transaction, so the COMMIT after it does not run; the ROLLBACK below ends it.
        await client.query(plan.writes ? `${inline(ACCEPT_BATCH_SQL, writeParams(plan, now, versions), esc)}; COMMIT` : "ROLLBACK");
        const written = new Set(plan.held.map(([id]) => id));
        for (const [id, h] of plan.held) this.rowCache.observe(h.channel!, versions.next.get(id)!, since);
        for (const [id, channel] of rows) if (!written.has(id)) this.rowCache.observe(channel, versions.expect.get(id)!, since);
        return plan.results;
      } catch (e) {
        // Ends an aborted transaction (outside one it only warns); the connection is reusable only if it worked.
        await client.query("ROLLBACK").catch((re: Error) => (broken = re));
        const code = (e as { code?: string }).code;
        const conflict = isBatchConflict(e);
        if ((conflict || (code && RETRYABLE.has(code))) && attempt < 5 && !broken) {
          this.retriedTransactions += conflict ? 0 : 1;
          if (!conflict) await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
          continue;
        }
        throw e;
      } finally {
        client.release(broken);
      }
    }
  }

  async releaseCharge(channelId: Hex, amount: bigint): Promise<StoredChannel | null> {
    this.check();
    if (amount < 0n) throw new RangeError("release amount must be >= 0");
    // One statement: the UPDATE takes the row lock and computes from the newest committed row.
    const since = this.rowCache.clock();
    const r = await this.pool.query<PgChannelRow>(q("release", [lower(channelId), amountParam(amount > MAX_UINT128 ? MAX_UINT128 : amount), Date.now()]));
    return r.rows[0] ? this.observed(r.rows[0], since) : null;
  }

  async finishReservation(channelId: Hex, voucher: bigint, charged: bigint): Promise<{ finished: boolean; channel: StoredChannel | null }> {
    this.check();
    if (charged < 0n) throw new RangeError("a charge is >= 0");
    const id = lower(channelId);
    const since = this.rowCache.clock();
    const out = await this.tx<{ finished: boolean; row: PgChannelRow | null }>(async (c) => {
      // The channel's row lock first, then the reservation's: the order of every other writer (accept, expiry).
      await c.query(q("lock", [id]));
      const r = await c.query<PgChannelRow>(q("finishReservation", [id, amountParam(voucher), amountParam(charged), Date.now()]));
      if (r.rows[0]) return { value: { finished: true, row: r.rows[0] }, commit: true };
      // Not finished: no such reservation, or a charge above it (refused, like the SQLite store does).
      const res = await c.query<{ amount: string }>("SELECT amount FROM reservations WHERE channel_id = $1 AND voucher = $2", [id, amountParam(voucher)]);
      if (res.rows[0]) throw new RangeError(`charge ${charged} is above the reservation ${res.rows[0].amount}`);
      const row = (await c.query<PgChannelRow>(q("getChannel", [id]))).rows[0];
      return { value: { finished: false, row: row ?? null }, commit: false };
    });
    // Committed: the accepts plan on the row as finished.
    if (out.finished && out.row) return { finished: true, channel: this.observed(out.row, since) };
    return { finished: out.finished, channel: out.row ? pgRowToChannel(out.row) : null };
  }

  async expireReservations(before: number): Promise<number> {
    this.check();
    let expired: string[] = [];
    return this.tx(async (c) => {
      const ids = [...new Set((await c.query<{ channel_id: string }>(q("expiredReservations", [before]))).rows.map((r) => r.channel_id))];
      if (ids.length === 0) return { value: 0, commit: false };
      expired = ids;
      this.rowCache.forget(ids);
      await c.query(q("lockMany", [ids]));
      const n = (await c.query<{ n: string }>(q("expireReservations", [ids, before, Date.now()]))).rows[0].n;
      return { value: Number(n), commit: true };
    }).finally(() => this.rowCache.forget(expired));
  }

  async applyChainSnapshots(snapshots: readonly ChainChannel[], cursor?: EventCursor, options?: { force?: boolean }): Promise<void> {
    this.check();
    // One snapshot per channel (the newest; on equal blocks the later one, as if applied in order), in id order.
    const byId = new Map<string, ChainChannel>();
    for (const s of snapshots) {
      const id = lower(s.channelId);
      const prev = byId.get(id);
      if (!prev || s.block >= prev.block) byId.set(id, s);
    }
    const list = [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const now = Date.now();
    const cursorParams = cursor ? ["escrow", cursor.block.toString(), cursor.hash ?? null, now] : null;
    if (list.length === 0) {
      if (cursorParams) await this.pool.query(q("setCursor", cursorParams));
      return;
    }
    // The rows change under the accepts' feet: their next batches take the locking path (a guess would only fail).
    // Forgotten before (no batch plans on them meanwhile) and after (a locking batch that read them first reports
    // an older row, which overlaps this forget and is dropped).
    this.rowCache.forget(byId.keys());
    await this.tx(async (c) => {
      const ids = list.map(([id]) => id);
      const present = (await c.query(q("lockMany", [ids]))).rowCount ?? 0;
      if (present > 0) {
        const s = list.map(([, x]) => x);
        await c.query(
          q(options?.force ? "snapshotsForce" : "snapshots", [
            ids,
            s.map((x) => amountParam(x.deposit)),
            s.map((x) => amountParam(x.settled)),
            s.map((x) => x.closeRequestedAt),
            s.map((x) => x.closesAt),
            s.map((x) => x.finalized),
            s.map((x) => x.block.toString()),
            now,
          ]),
        );
      }
      const finalized = list.filter(([, x]) => x.finalized).map(([id]) => id);
      if (present > 0 && finalized.length) await c.query(PRUNE_FINALIZED_SQL, [finalized]);
      if (cursorParams) await c.query(q("setCursor", cursorParams));
      return { value: undefined, commit: true };
    }).finally(() => this.rowCache.forget(byId.keys()));
  }

  async requestCooperativeClose(chain: ChainChannel, at: number, signature?: Hex): Promise<StoredChannel> {
    this.check();
    const since = this.rowCache.clock();
    const r = await this.pool.query<PgChannelRow>(
      q("coopClose", [
        ...chainColumns(lower(chain.channelId), chain),
        at,
        Date.now(),
        signature ? lower(signature) : null,
      ]),
    );
    return this.observed(r.rows[0], since);
  }

  /**
   * Tells the accepts' row cache that other statements of this process are changing these channels (the stream
   * and settlement stores, before their transaction and again after it): their next accept batches lock and read
   * the rows rather than guess.
   */
  forgetChannels(ids: Iterable<string>): void {
    this.rowCache.forget(ids);
  }

  /** Open connections of the store's pools (both), for health and tests. */
  get connections(): number {
    return this.pool.totalCount + this.acceptPool.totalCount;
  }

  /**
   * A row another writer of this process just committed (it held the row's lock; it started at tick `since`): the
   * accepts plan on it next.
   */
  private observed(row: PgChannelRow, since: number): StoredChannel {
    const channel = pgRowToChannel(row);
    this.rowCache.observe(channel, String(row.version), since);
    return channel;
  }

  async getCursor(): Promise<EventCursor | null> {
    this.check();
    const r = (await this.pool.query<{ block: string; block_hash: string | null }>(q("getCursor", ["escrow"]))).rows[0];
    return r ? { block: BigInt(r.block), hash: (r.block_hash ?? undefined) as Hex | undefined } : null;
  }

  async activeChannels(): Promise<ChannelRef[]> {
    this.check();
    return (await this.pool.query<{ channel_id: string; signer: string }>(q("active", []))).rows.map((r) => ({ channelId: r.channel_id as Hex, signer: r.signer as Address }));
  }

  async listUnsettled(limit: number): Promise<StoredChannel[]> {
    this.check();
    return (await this.pool.query<PgChannelRow>(q("unsettled", [limit]))).rows.map(pgRowToChannel);
  }

  async totals(): Promise<StoreTotals> {
    this.check();
    const t = (await this.pool.query<{ n: string; accepted: string; spent: string; settled: string; unsettled: string }>(q("totals", []))).rows[0];
    return { channels: Number(t.n), accepted: BigInt(t.accepted), spent: BigInt(t.spent), settled: BigInt(t.settled), unsettled: BigInt(t.unsettled) };
  }

  async ping(): Promise<void> {
    this.check();
    await this.pool.query(q("ping", [String(Date.now())]));
  }

  async close(): Promise<void> {
    if (this.closing) return;
    // Accepts already queued are answered (committed) before the pools end.
    this.closing = true;
    await this.accepts.drain();
    this.closed = true;
    for (const h of this.closeHooks.splice(0)) await h().catch(() => undefined);
    await Promise.all([this.pool.end(), this.acceptPool.end()]);
  }
}

/** Opens (and migrates) a PostgreSQL store; pool settings from the environment unless given. */
export function openPostgresStore(opts: PostgresStoreOptions): Promise<PostgresStore> {
  return PostgresStore.open(opts);
}
