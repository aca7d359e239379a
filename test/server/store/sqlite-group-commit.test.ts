/**
 * Group commit in the SQLite store: accepts made in one event-loop turn share one transaction, each caller is
 * answered only once that transaction is durable, the answers are those of running the accepts one after the
 * other, and an accept that throws fails alone.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { expect } from "chai";
import { SqliteStore } from "@paychan/server";
import { GroupCommit } from "../../../server/core/src/store/sqlite/group-commit";
import type { AcceptVoucherResult, ChainChannel } from "@paychan/server";
import { accept, binding, sig, snapshot } from "./conformance";
import { batchedEqualsOneByOne } from "./group-commit-property";

describe("SQLite group commit", () => {
  let dir: string;
  let file: string;
  let store: SqliteStore;
  let observer: Database.Database;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "group-commit-"));
    file = path.join(dir, "store.sqlite");
    store = new SqliteStore({ url: file, synchronous: "NORMAL" });
    await store.bind(binding());
    observer = new Database(file, { readonly: true });
  });
  afterEach(async () => {
    observer.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const usedCount = (c: ChainChannel) =>
    (observer.prepare("SELECT count(*) AS n FROM used_vouchers WHERE channel_id = ?").get(c.channelId.toLowerCase()) as { n: number }).n;

  it("sixteen concurrent accepts on one channel are committed together, in one transaction", async () => {
    const c = snapshot({ deposit: 10_000n });
    await accept(store, c, 10n); // the row exists: the batch below is pure updates
    const before = store.acceptTransactions;
    const results = await Promise.all(Array.from({ length: 16 }, (_, k) => accept(store, c, 20n + 10n * BigInt(k))));
    expect(results.every((r) => r.ok)).to.equal(true);
    expect(store.acceptTransactions - before).to.equal(1);
    expect(usedCount(c)).to.equal(17);
  });

  it("accepts made in separate loop turns commit separately", async () => {
    const c = snapshot({ deposit: 10_000n });
    const before = store.acceptTransactions;
    for (let k = 1n; k <= 3n; k++) expect((await accept(store, c, 10n * k)).ok).to.equal(true);
    expect(store.acceptTransactions - before).to.equal(3);
    expect(usedCount(c)).to.equal(3);
  });

  it("each caller is answered only after its accept is durable (visible to another connection)", async () => {
    const c = snapshot({ deposit: 10_000n });
    const pending = [accept(store, c, 10n), accept(store, c, 20n)];
    expect(usedCount(c)).to.equal(0); // queued, not yet committed
    const answers = await Promise.all(pending.map((p) => p.then((r) => ({ ok: r.ok, visible: usedCount(c) }))));
    expect(answers).to.deep.equal([
      { ok: true, visible: 2 },
      { ok: true, visible: 2 },
    ]);
  });

  it("a batch answers exactly as the same accepts one after the other: the same voucher twice is served once", async () => {
    const c = snapshot({ deposit: 1_000n });
    const amounts = [10n, 10n, 30n, 20n, 20n, 5_000n, 40n];
    const batched = await Promise.all(amounts.map((v) => accept(store, c, v)));

    const serialStore = new SqliteStore({ url: path.join(dir, "serial.sqlite"), synchronous: "NORMAL" });
    try {
      await serialStore.bind(binding());
      const serial: AcceptVoucherResult[] = [];
      for (const v of amounts) serial.push(await accept(serialStore, c, v));
      const shape = (rs: typeof serial) => rs.map((r) => (r.ok ? { ok: true, accepted: r.channel.accepted, spent: r.channel.spent, floor: r.channel.floor } : { ok: false, code: r.code }));
      expect(shape(batched)).to.deep.equal(shape(serial));
      expect(shape(batched).map((r) => ("code" in r ? r.code : "ok"))).to.deep.equal(["ok", "voucher_reused", "ok", "ok", "voucher_reused", "exceeds_deposit", "ok"]);
    } finally {
      await serialStore.close();
    }
  });

  it("property: random concurrent accepts on a few channels end as the same accepts one by one (answers, rows, used sets)", async () => {
    await batchedEqualsOneByOne({
      runs: 60,
      async open(label) {
        const st = new SqliteStore({ url: path.join(dir, `${label}.sqlite`), synchronous: "NORMAL" });
        await st.bind(binding());
        return st;
      },
      async dump(st) {
        const db = (st as SqliteStore).db;
        return {
          rows: db.prepare("SELECT channel_id, accepted, accepted_signature, spent, floor, deposit, chain_block FROM channels ORDER BY channel_id").all(),
          used: db.prepare("SELECT channel_id, amount FROM used_vouchers ORDER BY channel_id, amount").all(),
        };
      },
    });
  });

  it("an accept that throws fails alone; the others of its batch are committed", async () => {
    const good = snapshot({ deposit: 1_000n });
    // A new channel whose row cannot be inserted (payer is NOT NULL): the store throws for this accept only.
    const broken = snapshot({ payer: null as unknown as `0x${string}` });
    const results = await Promise.allSettled([accept(store, good, 10n), accept(store, broken, 10n), accept(store, good, 20n)]);
    expect(results.map((r) => r.status)).to.deep.equal(["fulfilled", "rejected", "fulfilled"]);
    expect(usedCount(good)).to.equal(2);
    expect(usedCount(broken)).to.equal(0);
  });

  it("closing the store answers the accepts still queued", async () => {
    const c = snapshot({ deposit: 1_000n });
    const pending = accept(store, c, 10n, 10n, 1_000n, sig(10n));
    await store.close();
    expect((await pending).ok).to.equal(true);
    expect(usedCount(c)).to.equal(1);
  });
});

describe("GroupCommit", () => {
  it("runs a batch once for the calls of one loop turn, and each call alone after the next turn", async () => {
    const batches: number[][] = [];
    const g = new GroupCommit<number, number>(
      (x) => x * 10,
      (xs) => {
        batches.push([...xs]);
        return xs.map((x) => x * 10);
      },
    );
    expect(await Promise.all([1, 2, 3].map((x) => g.submit(x)))).to.deep.equal([10, 20, 30]);
    expect(await g.submit(4)).to.equal(40);
    expect(batches).to.deep.equal([[1, 2, 3]]); // a lone call does not go through the batch function
  });

  it("when the batch throws, retries each call alone so only the failing one rejects", async () => {
    const g = new GroupCommit<number, number>(
      (x) => {
        if (x === 2) throw new Error("two");
        return x;
      },
      () => {
        throw new Error("batch rolled back");
      },
    );
    const r = await Promise.allSettled([1, 2, 3].map((x) => g.submit(x)));
    expect(r.map((x) => (x.status === "fulfilled" ? x.value : (x.reason as Error).message))).to.deep.equal([1, "two", 3]);
  });
});
