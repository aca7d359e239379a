/**
 * The PostgreSQL accepts' row cache (server/core/src/store/postgres/accept-cache.ts), in memory: which rows a
 * one-round-trip batch may plan on, and how reports of this process's writers keep it from going older than the
 * database.
 */
import { expect } from "chai";
import { AcceptCache, MAX_BACKOFF_MS, newVersion } from "../../../server/core/src/store/postgres/accept-cache";
import type { StoredChannel } from "@paychan/server";

const ID = `0x${"ab".repeat(32)}`;
const row = (spent: bigint): StoredChannel => ({ channelId: ID, spent } as unknown as StoredChannel);

describe("PostgreSQL accept cache", () => {
  it("a report started before another report on the channel drops the row (neither is known to be newer)", () => {
    const cache = new AcceptCache();
    const early = cache.clock(); // a release starts
    const late = cache.clock(); // a locking batch starts, reads the row after the release, commits, reports
    cache.observe(row(20n), "2", late);
    expect(cache.lookup([ID], 0)?.get(ID)?.version).to.equal("2");
    cache.observe(row(10n), "1", early); // the release's answer arrives last: older or not, it overlapped
    expect(cache.lookup([ID], 0)).to.equal(null);
    // A report that overlaps nothing is taken.
    cache.observe(row(30n), "3", cache.clock());
    expect(cache.lookup([ID], 0)?.get(ID)?.channel.spent).to.equal(30n);
  });

  it("forget drops the row, and a report that started before the forget is not taken", () => {
    const cache = new AcceptCache();
    cache.observe(row(1n), "1", cache.clock());
    const since = cache.clock();
    cache.forget([ID.toUpperCase().replace("0X", "0x")]);
    expect(cache.lookup([ID], 0)).to.equal(null);
    cache.observe(row(2n), "2", since);
    expect(cache.lookup([ID], 0)).to.equal(null);
  });

  it("a struck channel takes the locking path for 25 ms, doubling with each strike in a row, at most MAX_BACKOFF_MS; a committed batch clears it", () => {
    const cache = new AcceptCache();
    cache.observe(row(1n), "1", cache.clock());
    const waits: number[] = [];
    for (let k = 0; k < 12; k++) {
      cache.strike([ID], 0);
      let t = 0;
      while (cache.lookup([ID], t) === null) t++;
      waits.push(t);
    }
    expect(waits.slice(0, 4)).to.deep.equal([25, 50, 100, 200]);
    expect(Math.max(...waits)).to.equal(MAX_BACKOFF_MS);
    const base = cache.lookup([ID], MAX_BACKOFF_MS)!;
    cache.committed(base, new Map([[ID, row(5n)]]), new Map([[ID, "9"]]));
    cache.strike([ID], 0);
    expect(cache.lookup([ID], 24)).to.equal(null);
    expect(cache.lookup([ID], 25)?.get(ID)?.version).to.equal("9");
  });

  it("a committed batch updates its rows unless a report replaced them meanwhile; a failed one drops them", () => {
    const cache = new AcceptCache();
    cache.observe(row(1n), "1", cache.clock());
    const base = cache.lookup([ID], 0)!;
    cache.observe(row(7n), "7", cache.clock()); // a release committed after the batch (it would have failed before)
    cache.committed(base, new Map([[ID, row(2n)]]), new Map([[ID, "2"]]));
    expect(cache.lookup([ID], 0)?.get(ID)?.version).to.equal("7");
    const again = cache.lookup([ID], 0)!;
    cache.failed(again);
    expect(cache.lookup([ID], 0)).to.equal(null);
  });

  it("holds at most maxRows rows (the least recently used go) and gives distinct positive 62-bit tokens", () => {
    const cache = new AcceptCache(3);
    const ids = ["0x01", "0x02", "0x03", "0x04"];
    for (const id of ids) cache.observe({ channelId: id } as unknown as StoredChannel, "1", cache.clock());
    expect(cache.size).to.equal(3);
    expect(cache.lookup(["0x01"], 0)).to.equal(null);
    const tokens = new Set(Array.from({ length: 1000 }, newVersion));
    expect(tokens.size).to.equal(1000);
    for (const t of tokens) expect(BigInt(t) > 0n && BigInt(t) < 2n ** 62n).to.equal(true);
  });
});
