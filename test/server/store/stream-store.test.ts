/**
 * The stream store (server/core/src/store/stream-types.ts, docs/protocol.md § 5.10) on SQLite and PostgreSQL, the same
 * tests for both: a checkpoint marks a reservation as a stream's (the metered expiry then skips it), only raises the
 * charge and renews the lease; a top-up is one transaction decided by the § 6 rule (refusals write nothing); the
 * sweeper finishes expired leases charging their checkpoints, once, even with two stores sweeping one database.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { PostgresStore } from "@paychan/server/postgres";
import { SqliteStore, streamStoreFor, type ChainChannel, type ChannelStore, type StreamStore } from "@paychan/server";
import { describePostgres, newTestDatabase } from "../../helpers/postgres";
import { reserve, sig, snapshot } from "./conformance";

interface Backend {
  name: string;
  newDatabase(): Promise<string>;
  open(url: string): Promise<ChannelStore>;
}

const LEASE = 10_000;

function streamStoreSuite(b: Backend): void {
  describe(`stream store: ${b.name}`, function () {
    this.timeout(60_000);
    let store: ChannelStore;
    let streams: StreamStore;
    const opened: ChannelStore[] = [];
    const streamStores: StreamStore[] = [];
    beforeEach(async () => {
      store = await b.open(await b.newDatabase());
      opened.push(store);
      streams = streamStoreFor(store);
      streamStores.push(streams);
    });
    afterEach(async () => {
      for (const s of streamStores.splice(0)) await s.close();
      for (const s of opened.splice(0)) await s.close();
    });

    /** A stream's reservation: voucher 1000 reserving 1000, marked at `at` with charged 0. */
    async function streamOn(chain: ChainChannel = snapshot(), at = Date.now()) {
      expect((await reserve(store, chain, 1000n, 1000n)).ok).to.equal(true);
      expect(await streams.checkpoint({ channelId: chain.channelId, voucher: 1000n, charged: 0n, at, leaseMs: LEASE })).to.equal(true);
      return chain;
    }
    const topUp = (chain: ChainChannel, v: bigint, over: Partial<Parameters<StreamStore["topUp"]>[0]> = {}) =>
      streams.topUp({ chain, amount: v, signature: sig(v), topUp: 1000n, window: 1_000_000n, channelId: chain.channelId, voucher: 1000n, charged: 300n, at: Date.now(), leaseMs: LEASE, ...over });

    it("a checkpoint marks the reservation as a stream's: the metered expiry skips it, a metered one next to it expires", async () => {
      const chain = await streamOn();
      expect((await reserve(store, chain, 5000n, 2000n)).ok).to.equal(true); // a metered reservation
      expect(await store.expireReservations(Date.now() + 1)).to.equal(1);
      const c = (await store.getChannel(chain.channelId))!;
      expect(c.reserved).to.equal(1000n);
      expect(await streams.list()).to.deep.equal([{ channelId: chain.channelId.toLowerCase(), voucher: 1000n, amount: 1000n, charged: 0n, checkpointAt: (await streams.list())[0].checkpointAt, leaseMs: LEASE }]);
    });

    it("a checkpoint only raises the charge (at most the reservation) and answers false when the reservation is gone", async () => {
      const chain = await streamOn();
      const id = chain.channelId;
      expect(await streams.checkpoint({ channelId: id, voucher: 1000n, charged: 400n, at: 5, leaseMs: LEASE })).to.equal(true);
      expect(await streams.checkpoint({ channelId: id, voucher: 1000n, charged: 200n, at: 6, leaseMs: LEASE })).to.equal(true);
      expect((await streams.list())[0]).to.deep.include({ charged: 400n, checkpointAt: 6 });
      expect(await streams.checkpoint({ channelId: id, voucher: 1000n, charged: 1001n, at: 7, leaseMs: LEASE })).to.equal(false);
      expect(await streams.checkpoint({ channelId: id, voucher: 999n, charged: 1n, at: 7, leaseMs: LEASE })).to.equal(false);
      expect((await store.finishReservation(id, 1000n, 700n)).finished).to.equal(true);
      expect(await streams.checkpoint({ channelId: id, voucher: 1000n, charged: 800n, at: 8, leaseMs: LEASE })).to.equal(false);
      expect((await store.getChannel(id))!).to.deep.include({ spent: 700n, reserved: 0n });
    });

    it("a top-up grows the reservation and its checkpoint in one transaction by the § 6 rule; the voucher is then used", async () => {
      const chain = await streamOn();
      const r = await topUp(chain, 2000n);
      expect(r.ok).to.equal(true);
      if (!r.ok) return;
      expect(r.reserved).to.equal(2000n);
      expect(r.channel).to.deep.include({ accepted: 2000n, acceptedSignature: sig(2000n), reserved: 2000n, spent: 0n });
      expect((await streams.list())[0]).to.deep.include({ amount: 2000n, charged: 300n });
      const again = await topUp(chain, 2000n);
      expect(again.ok ? "ok" : again.code).to.equal("voucher_reused");
      expect((await store.finishReservation(chain.channelId, 1000n, 1500n)).finished).to.equal(true);
      expect((await store.getChannel(chain.channelId))!).to.deep.include({ spent: 1500n, reserved: 0n, accepted: 2000n });
    });

    it("refused top-ups write nothing: insufficient_voucher, voucher_too_low, exceeds_deposit, channel_closing, stream_not_found", async () => {
      const chain = await streamOn(snapshot({ deposit: 10_000n }));
      const before = (await store.getChannel(chain.channelId))!;
      const code = async (p: Promise<Awaited<ReturnType<StreamStore["topUp"]>>>) => {
        const r = await p;
        return r.ok ? "ok" : r.code;
      };
      expect(await code(topUp(chain, 1999n))).to.equal("insufficient_voucher"); // 1999 < reserved 1000 + top-up 1000
      expect(await code(topUp(chain, 20_000n))).to.equal("exceeds_deposit");
      expect(await code(topUp(chain, 3000n, { window: 1000n }))).to.equal("ok"); // floor rises to 2000
      expect(await code(topUp(chain, 1500n))).to.equal("voucher_too_low");
      expect(await code(topUp(chain, 9000n, { voucher: 777n }))).to.equal("stream_not_found"); // no such reservation
      const metered = snapshot();
      expect((await reserve(store, metered, 1000n, 1000n)).ok).to.equal(true);
      expect(await code(topUp(metered, 9000n))).to.equal("stream_not_found"); // a metered reservation is no stream
      await store.requestCooperativeClose(chain, 1);
      expect(await code(topUp(chain, 9000n))).to.equal("channel_closing");
      const after = (await store.getChannel(chain.channelId))!;
      expect({ accepted: after.accepted, reserved: after.reserved, floor: after.floor }).to.deep.equal({ accepted: 3000n, reserved: 2000n, floor: 2000n });
      expect(before.accepted).to.equal(1000n);
      expect((await streams.list()).find((r) => r.channelId === chain.channelId.toLowerCase())!.amount).to.equal(2000n);
    });

    it("the sweeper finishes expired leases charging their checkpoints, once (two stores sweeping one database); live ones stay", async () => {
      const url = await b.newDatabase();
      const s1 = await b.open(url);
      const s2 = await b.open(url);
      opened.push(s1, s2);
      const [a, b2] = [streamStoreFor(s1), streamStoreFor(s2)];
      streamStores.push(a, b2);
      const dead = snapshot();
      const live = snapshot();
      for (const c of [dead, live]) expect((await reserve(s1, c, 1000n, 1000n)).ok).to.equal(true);
      const now = Date.now();
      expect(await a.checkpoint({ channelId: dead.channelId, voucher: 1000n, charged: 640n, at: now - LEASE - 5, leaseMs: LEASE })).to.equal(true);
      expect(await a.checkpoint({ channelId: live.channelId, voucher: 1000n, charged: 300n, at: now, leaseMs: LEASE })).to.equal(true);
      const [x, y] = await Promise.all([a.sweep(now), b2.sweep(now)]);
      const swept = [...x, ...y];
      expect(swept.map((r) => [r.channelId, r.charged])).to.deep.equal([[dead.channelId.toLowerCase(), 640n]]);
      expect((await s1.getChannel(dead.channelId))!).to.deep.include({ spent: 640n, reserved: 0n });
      expect((await s1.getChannel(live.channelId))!).to.deep.include({ spent: 0n, reserved: 1000n });
      expect(await a.sweep(now)).to.deep.equal([]);
      expect((await s2.finishReservation(dead.channelId, 1000n, 900n)).finished).to.equal(false); // never charged twice
      expect((await s1.getChannel(dead.channelId))!.spent).to.equal(640n);
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

streamStoreSuite({
  name: "SQLite",
  async newDatabase() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stream-store-"));
    dirs.push(dir);
    return path.join(dir, "store.sqlite");
  },
  async open(url) {
    return new SqliteStore({ url });
  },
});

describePostgres("PostgreSQL stream store", function () {
  streamStoreSuite({ name: "PostgreSQL", newDatabase: () => newTestDatabase("stream"), open: (url) => PostgresStore.open({ url, pool: { max: 4 } }) });
});
