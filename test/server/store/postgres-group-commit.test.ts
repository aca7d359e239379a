/**
 * Group commit in the PostgreSQL store (server/core/src/store/postgres/group-commit.ts, accept-batch.ts): the accepts
 * of one event-loop turn share one transaction of a few round trips, each caller is answered only once it is
 * committed, the answers are those of the same accepts one after the other (the property shared with SQLite), an
 * accept that throws fails alone, and two stores (replicas) batching overlapping channels at once never deadlock
 * and serve every voucher exactly once.
 */
import { expect } from "chai";
import pg from "pg";
import type { AcceptVoucherResult, ChainChannel } from "@paychan/server";
import { PostgresStore } from "@paychan/server/postgres";
import { describePostgres, newTestDatabase } from "../../helpers/postgres";
import { accept, binding, snapshot } from "./conformance";
import { batchedEqualsOneByOne } from "./group-commit-property";

async function openStore(url: string): Promise<PostgresStore> {
  const s = await PostgresStore.open({ url, pool: { max: 4 } });
  await s.bind(binding());
  return s;
}

/** Queries sent by every pg client of this process while `fn` runs (pg sends one at a time: one round trip each). */
async function countStatements<T>(fn: () => Promise<T>): Promise<{ value: T; statements: number }> {
  const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const original = proto.query;
  let statements = 0;
  proto.query = function (this: unknown, ...a: unknown[]) {
    statements++;
    return original.apply(this, a);
  };
  try {
    return { value: await fn(), statements };
  } finally {
    proto.query = original;
  }
}

const shuffle = <T>(xs: T[]): T[] => {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
};

describePostgres("PostgreSQL group commit", function () {
  this.timeout(120_000);
  let url: string;
  let store: PostgresStore;
  let observer: pg.Pool;

  beforeEach(async () => {
    url = await newTestDatabase("gc");
    store = await openStore(url);
    observer = store.pool; // another connection than the accept pool's
  });
  afterEach(async () => {
    await store.close();
  });

  const usedCount = async (c: ChainChannel) =>
    Number((await observer.query<{ n: string }>("SELECT count(*) AS n FROM used_vouchers WHERE channel_id = $1", [c.channelId.toLowerCase()])).rows[0].n);

  it("sixteen concurrent accepts on a channel this process knows share ONE statement that commits alone (one round trip); a new channel takes the locking path (two)", async () => {
    const c = snapshot({ deposit: 10_000n });
    // First voucher: the row is unknown here, so the batch locks and reads it (BEGIN + lock + used read; write + COMMIT).
    const first = await countStatements(() => accept(store, c, 10n));
    expect(first.value.ok).to.equal(true);
    expect(first.statements).to.equal(2);
    const before = store.acceptTransactions;
    const { value: results, statements } = await countStatements(() => Promise.all(Array.from({ length: 16 }, (_, k) => accept(store, c, 20n + 10n * BigInt(k)))));
    expect(results.every((r) => r.ok)).to.equal(true);
    expect(store.acceptTransactions - before).to.equal(1);
    expect(statements).to.equal(1); // 0.0625 round trips per paid request (before group commit: 4 each)
    expect(await usedCount(c)).to.equal(17);
    expect(store.oneTripMisses).to.equal(0);
    // One at a time: one each.
    const alone = await countStatements(() => accept(store, c, 500n));
    expect(alone.value.ok).to.equal(true);
    expect(alone.statements).to.equal(1);
    expect((await store.getChannel(c.channelId))!.spent).to.equal(180n);
  });

  it("a one-round-trip batch planned on a row another replica changed writes nothing and is decided again under lock", async () => {
    const c = snapshot({ deposit: 10_000n });
    expect((await accept(store, c, 100n)).ok).to.equal(true); // this store knows the row now
    const other = await openStore(url);
    try {
      expect((await accept(other, c, 200n, 150n)).ok).to.equal(true); // spent 10 + 150 = 160: this store's guess is stale
      const before = { batches: store.oneTripBatches, misses: store.oneTripMisses };
      // On the stale row (spent 10) 250 would pay for 100 more; on the real one (spent 160) it cannot.
      const r = await accept(store, c, 250n, 100n);
      expect(r.ok ? "ok" : r.code).to.equal("insufficient_voucher");
      expect(store.oneTripMisses - before.misses).to.equal(1);
      const row = (await store.getChannel(c.channelId))!;
      expect([row.accepted, row.spent]).to.deep.equal([200n, 160n]);
      // The locking path's read is what later batches plan on: after the channel's short backoff (it is left to
      // the locking path for 25 ms after a failed guess), its batches take one round trip again.
      let v = 300n;
      const deadline = Date.now() + 30_000;
      while (store.oneTripBatches === before.batches) {
        expect(Date.now(), "no one-round-trip batch after the backoff").to.be.below(deadline);
        expect((await accept(store, c, (v += 10n), 10n)).ok).to.equal(true);
      }
      expect(store.oneTripMisses - before.misses).to.equal(1);
      const next = await countStatements(() => accept(store, c, (v += 10n), 10n));
      expect(next.value.ok).to.equal(true);
      expect(next.statements).to.equal(1);
    } finally {
      await other.close();
    }
  });

  it("a used voucher sent again is caught by the one-round-trip write even when the same batch raises the floor above it", async () => {
    const c = snapshot({ deposit: 100_000n });
    const W = 1_000n; // window: the floor follows accepted at 1,000 below
    expect((await accept(store, c, 1_000n, 10n, W)).ok).to.equal(true);
    expect((await accept(store, c, 1_500n, 10n, W)).ok).to.equal(true); // floor 500; 1,000 and 1,500 used
    const misses = store.oneTripMisses;
    // The replayed 1,500 first, then 3,000 (floor to 2,000): planned on the cache alone, 1,500 looks unused.
    const rs = await Promise.all([accept(store, c, 1_500n, 10n, W), accept(store, c, 3_000n, 10n, W)]);
    expect(rs.map((r) => (r.ok ? "ok" : r.code))).to.deep.equal(["voucher_reused", "ok"]);
    expect(store.oneTripMisses - misses).to.equal(1);
    expect((await store.getChannel(c.channelId))!.spent).to.equal(30n);
  });

  it("a replayed voucher the request cannot cover is refused voucher_reused, as one by one (the used rule comes before cover): such a batch is decided under lock", async () => {
    const c = snapshot({ deposit: 100_000n });
    expect((await accept(store, c, 100n, 10n)).ok).to.equal(true); // the row is known here now
    const before = { batches: store.oneTripBatches, misses: store.oneTripMisses };
    const rs = await Promise.all([accept(store, c, 200n, 10n), accept(store, c, 100n, 1_000n)]);
    expect(rs.map((r) => (r.ok ? "ok" : r.code))).to.deep.equal(["ok", "voucher_reused"]);
    expect(store.oneTripBatches - before.batches).to.equal(0);
    expect(store.oneTripMisses - before.misses).to.equal(0);
  });

  it("a payer replaying its own used voucher costs its batches a failed round trip, but backs off no channel (nothing changed behind the guess)", async () => {
    const x = snapshot({ deposit: 1_000_000n }); // replays its voucher 100
    const y = snapshot({ deposit: 1_000_000n }); // only shares batches with x
    const W = 1_000_000n;
    expect((await accept(store, x, 100n, 10n, W)).ok).to.equal(true);
    expect((await accept(store, y, 100n, 10n, W)).ok).to.equal(true);
    let [vx, vy] = [100n, 100n];
    const misses = store.oneTripMisses;
    for (let round = 0; round < 6; round++) {
      const rs = await Promise.all([accept(store, x, 100n, 10n, W), accept(store, x, (vx += 10n), 10n, W), accept(store, y, (vy += 10n), 10n, W)]);
      expect(rs.map((r) => (r.ok ? "ok" : r.code))).to.deep.equal(["voucher_reused", "ok", "ok"]);
    }
    // Every round tried one round trip (no channel was backed off) and fell back under lock.
    expect(store.oneTripMisses - misses).to.equal(6);
    for (const c of [x, y]) {
      const alone = await countStatements(() => accept(store, c, c === x ? (vx += 10n) : (vy += 10n), 10n, W));
      expect(alone.value.ok).to.equal(true);
      expect(alone.statements, "a lone accept on a channel nobody else writes").to.equal(1);
    }
  });

  it("accepts arriving while a batch of their channel is in flight wait for it and go in the next batch, planned on its outcome: one round trip each", async () => {
    const c = snapshot({ deposit: 100_000n });
    expect((await accept(store, c, 10n)).ok).to.equal(true);
    const before = { batches: store.oneTripBatches, misses: store.oneTripMisses, tx: store.acceptTransactions };
    const first = Array.from({ length: 8 }, (_, k) => accept(store, c, 20n + 10n * BigInt(k)));
    await new Promise((r) => setImmediate(r)); // the first batch is sent; these queue behind it
    await new Promise((r) => setImmediate(r));
    const second = Array.from({ length: 8 }, (_, k) => accept(store, c, 100n + 10n * BigInt(k)));
    const rs = await Promise.all([...first, ...second]);
    expect(rs.every((r) => r.ok)).to.equal(true);
    expect(store.acceptTransactions - before.tx).to.equal(2);
    expect(store.oneTripBatches - before.batches).to.equal(2);
    expect(store.oneTripMisses - before.misses).to.equal(0);
    const row = (await store.getChannel(c.channelId))!;
    expect([row.accepted, row.spent]).to.deep.equal([170n, 170n]);
    expect(await usedCount(c)).to.equal(17);
  });

  it("a chain update of this process makes the next batch lock and read the row (no failed guess); other writers' changes are caught", async () => {
    const c = snapshot({ deposit: 1_000n, block: 5n });
    expect((await accept(store, c, 100n)).ok).to.equal(true);
    await store.applyChainSnapshots([{ ...c, deposit: 5_000n, block: 6n }]);
    const misses = store.oneTripMisses;
    const r = await accept(store, c, 2_000n, 10n, 10_000n); // above the old deposit: needs the new row
    expect(r.ok && r.channel.deposit).to.equal(5_000n);
    expect(store.oneTripMisses).to.equal(misses);
    // A write this process does not know of (another replica's settlement, say) only makes the guess fail.
    await observer.query("UPDATE channels SET settled = 50 WHERE channel_id = $1", [c.channelId.toLowerCase()]);
    const r2 = await accept(store, c, 2_100n, 10n, 10_000n);
    expect(r2.ok && r2.channel.settled).to.equal(50n);
    expect(store.oneTripMisses).to.equal(misses + 1);
  });

  it("each caller is answered only after its accept is committed (visible to another connection)", async () => {
    const c = snapshot({ deposit: 10_000n });
    const pending = [accept(store, c, 10n), accept(store, c, 20n)];
    const answers = await Promise.all(pending.map((p) => p.then(async (r) => ({ ok: r.ok, visible: await usedCount(c) }))));
    expect(answers).to.deep.equal([
      { ok: true, visible: 2 },
      { ok: true, visible: 2 },
    ]);
  });

  it("a voucher committed earlier and sent again inside a batch is refused, the rest of the batch served", async () => {
    const c = snapshot({ deposit: 10_000n });
    expect((await accept(store, c, 100n)).ok).to.equal(true);
    const rs = await Promise.all([accept(store, c, 110n), accept(store, c, 100n), accept(store, c, 120n)]);
    expect(rs.map((r) => (r.ok ? "ok" : r.code))).to.deep.equal(["ok", "voucher_reused", "ok"]);
    expect(rs[2].ok && rs[2].channel.spent).to.equal(30n);
    expect(await usedCount(c)).to.equal(3);
  });

  it("an accept that throws fails alone; the others of its batch are committed", async () => {
    const good = snapshot({ deposit: 1_000n });
    // A new channel whose row cannot be inserted (payer is NOT NULL): the batch fails, then each accept runs alone.
    const broken = snapshot({ payer: null as unknown as `0x${string}` });
    const results = await Promise.allSettled([accept(store, good, 10n), accept(store, broken, 10n), accept(store, good, 20n)]);
    expect(results.map((r) => r.status)).to.deep.equal(["fulfilled", "rejected", "fulfilled"]);
    expect(await usedCount(good)).to.equal(2);
    expect(await usedCount(broken)).to.equal(0);
  });

  it("closing the store answers the accepts still queued", async () => {
    const c = snapshot({ deposit: 1_000n });
    const pending = accept(store, c, 10n);
    await store.close();
    expect((await pending).ok).to.equal(true);
    const check = await openStore(url);
    try {
      expect((await check.getChannel(c.channelId))?.accepted).to.equal(10n);
    } finally {
      await check.close();
    }
  });

  it("property: random concurrent accepts on a few channels end as the same accepts one by one (answers, rows, used sets)", async () => {
    await batchedEqualsOneByOne({
      runs: 25,
      open: async (label) => openStore(await newTestDatabase(label.slice(0, 10))),
      async dump(st) {
        const q = (sql: string) => (st as PostgresStore).pool.query(sql).then((r) => r.rows);
        return {
          rows: await q("SELECT channel_id, accepted::text, accepted_signature, spent::text, floor::text, deposit::text, chain_block::text FROM channels ORDER BY channel_id"),
          // The used set above each channel's floor: what decides an accept (an amount at or below the floor is
          // refused before the used set is read). A one-round-trip batch that raises the floor leaves the amounts it
          // used below the new floor until the next rise prunes them; the locking path never inserts them.
          used: await q(`SELECT u.channel_id, u.amount::text FROM used_vouchers u JOIN channels c USING (channel_id)
                         WHERE u.amount > c.floor ORDER BY u.channel_id, u.amount`),
        };
      },
    });
  });
});

describePostgres("PostgreSQL group commit: two replicas batching overlapping channels", function () {
  this.timeout(180_000);
  const PRICE = 10n;
  const N = 12; // vouchers per channel, each sent to both replicas
  const CHANNELS = 40; // per batch: long lock statements, so the two replicas' ones overlap

  /** Sends every voucher of `chans` to both stores, in bursts (one batch per store per burst, in random orders). */
  async function race(a: PostgresStore, b: PostgresStore, chans: ChainChannel[], bursts: number) {
    const all = chans.flatMap((c) => Array.from({ length: N }, (_, k) => ({ c, v: 1_000n + PRICE * BigInt(k + 1) })));
    const per = Math.ceil(all.length / bursts);
    const outcomes: Array<{ c: ChainChannel; v: bigint; r: AcceptVoucherResult }> = [];
    const order = shuffle(all);
    for (let i = 0; i < order.length; i += per) {
      const part = order.slice(i, i + per);
      const send = (s: PostgresStore) => shuffle(part).map((x) => accept(s, x.c, x.v, PRICE, 1_000_000n).then((r) => outcomes.push({ ...x, r })));
      await Promise.all([...send(a), ...send(b)]);
    }
    return outcomes;
  }

  function expectServedOnce(outcomes: Array<{ c: ChainChannel; v: bigint; r: AcceptVoucherResult }>, chans: ChainChannel[]) {
    for (const c of chans) {
      for (let k = 1; k <= N; k++) {
        const v = 1_000n + PRICE * BigInt(k);
        const mine = outcomes.filter((o) => o.c === c && o.v === v).map((o) => (o.r.ok ? "ok" : o.r.code)).sort();
        expect(mine, `${c.channelId} ${v}`).to.deep.equal(["ok", "voucher_reused"]);
      }
    }
  }

  async function books(s: PostgresStore, chans: ChainChannel[]) {
    for (const c of chans) {
      const row = (await s.getChannel(c.channelId))!;
      expect(row.spent).to.equal(PRICE * BigInt(N) + PRICE); // N vouchers + the first one
      expect(row.accepted).to.equal(1_000n + PRICE * BigInt(N));
      const used = await s.pool.query<{ n: string }>("SELECT count(*) AS n FROM used_vouchers WHERE channel_id = $1", [c.channelId.toLowerCase()]);
      expect(Number(used.rows[0].n)).to.equal(N + 1);
    }
  }

  it("stored channels: every voucher served exactly once, no deadlock (rows locked in channel-id order)", async () => {
    const url = await newTestDatabase("gc2");
    const [a, b] = [await openStore(url), await openStore(url)];
    try {
      const chans = Array.from({ length: CHANNELS }, () => snapshot({ deposit: 1_000_000n }));
      for (const c of chans) expect((await accept(a, c, 1_000n, PRICE, 1_000_000n)).ok).to.equal(true);
      const outcomes = await race(a, b, chans, 24);
      expectServedOnce(outcomes, chans);
      await books(a, chans);
      expect(a.retriedTransactions + b.retriedTransactions, "transactions retried after a deadlock").to.equal(0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("new channels (first vouchers racing to insert the rows): every voucher still served exactly once", async () => {
    const url = await newTestDatabase("gc3");
    const [a, b] = [await openStore(url), await openStore(url)];
    try {
      const chans = Array.from({ length: 6 }, () => snapshot({ deposit: 1_000_000n }));
      // The first voucher of every channel to both replicas at once, in opposite orders.
      const first = await Promise.all([...chans.map((c) => accept(a, c, 1_000n, PRICE, 1_000_000n)), ...[...chans].reverse().map((c) => accept(b, c, 1_000n, PRICE, 1_000_000n))]);
      expect(first.filter((r) => r.ok)).to.have.length(chans.length);
      const outcomes = await race(a, b, chans, 6);
      expectServedOnce(outcomes, chans);
      await books(b, chans);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
