/** The SQLite settlement store against the shared conformance checks (test/helpers/settlement-store-conformance.ts). */
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { SqliteStore } from "@paychan/server";
import { settlementStoreFor } from "@paychan/server";
import { settlementStoreConformance } from "../../helpers/settlement-store-conformance";
import { tempDatabaseUrl } from "../../helpers/server";

settlementStoreConformance("sqlite", async () => {
  const url = tempDatabaseUrl();
  const store = new SqliteStore({ url, synchronous: "NORMAL" });
  return {
    store,
    settlement: settlementStoreFor(store),
    async close() {
      await store.close();
      fs.rmSync(path.dirname(url), { recursive: true, force: true });
    },
  };
});

describe("settlement store: sqlite specifics", () => {
  it("shares the lease between two connections to one file (a server and `npm run settle`)", async () => {
    const url = tempDatabaseUrl();
    const a = new SqliteStore({ url });
    const b = new SqliteStore({ url });
    try {
      const sa = settlementStoreFor(a);
      const sb = settlementStoreFor(b);
      expect(sb).not.to.equal(sa);
      expect(await sa.tryAcquireSettlerLease("server", 60_000)).to.equal(true);
      expect(await sb.tryAcquireSettlerLease("cli", 60_000)).to.equal(false);
      await sa.releaseSettlerLease("server");
      expect(await sb.tryAcquireSettlerLease("cli", 60_000)).to.equal(true);
      expect(settlementStoreFor(a)).to.equal(sa); // one per channel store
    } finally {
      await a.close();
      await b.close();
      fs.rmSync(path.dirname(url), { recursive: true, force: true });
    }
  });
});
