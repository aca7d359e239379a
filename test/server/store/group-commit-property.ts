/**
 * The group-commit property shared by the SQLite and PostgreSQL stores: random bursts of concurrent accepts on a few
 * channels (each burst one batch, or a few) end exactly as the same accepts made one by one on another database:
 * the same answers, rows and used sets.
 */
import { expect } from "chai";
import fc from "fast-check";
import type { AcceptVoucherResult, ChannelStore } from "@paychan/server";
import { accept, snapshot } from "./conformance";

export interface GroupCommitBackend {
  /** A new store on a new, empty, bound database. */
  open(label: string): Promise<ChannelStore>;
  /** The rows and used sets of `store`, comparable with deep equality (channel id order). */
  dump(store: ChannelStore): Promise<unknown>;
  runs: number;
}

/** Checks that bursts of concurrent accepts answer and store exactly as the same accepts one after the other. */
export async function batchedEqualsOneByOne(backend: GroupCommitBackend): Promise<void> {
  // Each channel as the chain view saw it at block 10, and after a top-up at block 11 (requests may carry either).
  const chans = [snapshot({ deposit: 400n }), snapshot({ deposit: 250n }), snapshot({ deposit: 1_000n })].map((c) => [c, { ...c, block: 11n, deposit: c.deposit + 100n }]);
  const op = fc.record({
    ch: fc.integer({ min: 0, max: 2 }),
    seen: fc.integer({ min: 0, max: 1 }),
    v: fc.integer({ min: 0, max: 60 }).map((x) => BigInt(x) * 10n),
    charge: fc.constantFrom(5n, 10n, 20n),
  });
  // Several bursts: each burst is one event-loop turn (one batch), bursts one after the other.
  const bursts = fc.array(fc.array(op, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 6 });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(bursts, async (bs) => {
      run++;
      const a = await backend.open(`batched-${run}`);
      const b = await backend.open(`serial-${run}`);
      try {
        const shape = (r: AcceptVoucherResult) =>
          r.ok ? { ok: true, accepted: r.channel.accepted, spent: r.channel.spent, floor: r.channel.floor, deposit: r.channel.deposit, block: r.channel.block } : { ok: false, code: r.code };
        for (const burst of bs) {
          const batched = await Promise.all(burst.map((o) => accept(a, chans[o.ch][o.seen], o.v, o.charge, 60n)));
          const serial: AcceptVoucherResult[] = [];
          for (const o of burst) serial.push(await accept(b, chans[o.ch][o.seen], o.v, o.charge, 60n));
          expect(batched.map(shape)).to.deep.equal(serial.map(shape));
        }
        expect(await backend.dump(a)).to.deep.equal(await backend.dump(b));
      } finally {
        await a.close();
        await b.close();
      }
    }),
    { numRuns: backend.runs },
  );
}
