/**
 * The store conformance suite: the SAME tests for every {@link ChannelStore} implementation (SQLite, PostgreSQL).
 * Each backend file of this folder (`sqlite.test.ts`, `postgres.test.ts`) calls {@link storeConformance} with a way
 * to make an empty database and open a store on it. The tests check the guarantees written in
 * `server/core/src/store/types.ts` and the accounting rules of docs/protocol.md through the store alone (no chain,
 * no HTTP). The helpers below (`snapshot`, `sig`, `binding`, `accept`) are shared with the backend-specific tests.
 */
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import fc from "fast-check";
import type { Hex } from "viem";
import { MAX_UINT128 } from "@paychan/protocol";
import { settlementStoreFor } from "@paychan/server";
import { SettlementConflictError } from "@paychan/server";
import {
  StoreBindingError,
  type AcceptVoucherResult,
  type ChainChannel,
  type ChannelStore,
  type StoreBinding,
  type StoredChannel,
} from "@paychan/server";

/** How the suite reaches one backend. */
export interface StoreBackend {
  name: string;
  /** A new, empty database (URL or path). */
  newDatabase(): Promise<string>;
  /** Opens (and migrates) a store on `url`; several stores may be open on one database at once. */
  open(url: string): Promise<ChannelStore>;
  /** Property-test runs (fewer where each operation is a network round trip). */
  propertyRuns?: number;
  /** Rows of `table` (`used_vouchers`, `reservations`) for one channel, read straight from the database. */
  countRows(store: ChannelStore, table: "used_vouchers" | "reservations", channelId: Hex): Promise<number>;
}

const hex = (bytes: number) => `0x${randomBytes(bytes).toString("hex")}` as Hex;

/** A fake 65-byte signature: the store never verifies, it only keeps the one for `accepted`. */
export const sig = (tag: bigint | number) => `0x${BigInt(tag).toString(16).padStart(64, "0")}${"ab".repeat(32)}1b` as Hex;

/** A channel snapshot as the chain view would give it. */
export function snapshot(over: Partial<ChainChannel> = {}): ChainChannel {
  return {
    channelId: hex(32),
    payer: hex(20),
    payee: hex(20),
    token: hex(20),
    signer: hex(20),
    deposit: 1_000_000n,
    settled: 0n,
    closeDelay: 86_400,
    closeRequestedAt: 0,
    closesAt: 0,
    finalized: false,
    block: 10n,
    ...over,
  };
}

export const binding = (over: Partial<StoreBinding> = {}): StoreBinding => ({
  chainId: 31337,
  escrow: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  token: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
  payee: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  genesisHash: `0x${"11".repeat(32)}`,
  ...over,
});

/** Accepts `v` reserving `max` on `chain` (a metered request), with window `window`. */
export function reserve(store: ChannelStore, chain: ChainChannel, v: bigint, max: bigint, window = 1_000_000n) {
  return store.acceptVoucher({ chain, amount: v, signature: sig(v), charge: max, window, reserve: true });
}

/** Accepts `v` paying `charge` on `chain` with window `window`. */
export function accept(store: ChannelStore, chain: ChainChannel, v: bigint, charge = 10n, window = 1_000n, signature: Hex = sig(v)) {
  return store.acceptVoucher({ chain, amount: v, signature, charge, window });
}

function expectOk(r: AcceptVoucherResult): StoredChannel {
  if (!r.ok) expect.fail(`expected ok, got ${r.code}`);
  return r.channel;
}

function expectRefused(r: AcceptVoucherResult, code: string) {
  expect(r.ok, `expected ${code}`).to.equal(false);
  if (!r.ok) expect(r.code).to.equal(code);
}

function shuffle<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** The accounting rule written from docs/protocol.md, independently of server/payments/accounting.ts. */
class ModelChannel {
  accepted = 0n;
  spent = 0n;
  floor = 0n;
  used = new Set<bigint>();
  constructor(public deposit: bigint) {}
  accept(v: bigint, charge: bigint, window: bigint): string {
    if (v > this.deposit) return "exceeds_deposit";
    if (v <= this.floor) return "voucher_too_low";
    if (this.used.has(v)) return "voucher_reused";
    const acc = v > this.accepted ? v : this.accepted;
    if (acc < this.spent + charge) return "insufficient_voucher";
    this.accepted = acc;
    this.spent += charge;
    if (acc - window > this.floor) this.floor = acc - window;
    this.used.add(v);
    for (const u of this.used) if (u <= this.floor) this.used.delete(u);
    return "ok";
  }
  release(amount: bigint) {
    this.spent = this.spent > amount ? this.spent - amount : 0n;
  }
}

/** Defines the conformance tests for one backend. */
export function storeConformance(backend: StoreBackend): void {
  describe(`store conformance: ${backend.name}`, function () {
    this.timeout(60_000);
    const open: ChannelStore[] = [];
    let store: ChannelStore;
    let url: string;

    async function openStore(u: string): Promise<ChannelStore> {
      const s = await backend.open(u);
      open.push(s);
      return s;
    }

    beforeEach(async () => {
      url = await backend.newDatabase();
      store = await openStore(url);
    });
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close().catch(() => undefined);
    });

    describe("binding and migrations", () => {
      it("records the first binding and accepts the same binding again", async () => {
        await store.bind(binding());
        await store.bind(binding());
        const again = await openStore(url);
        await again.bind(binding());
      });

      for (const [field, value] of [
        ["chainId", 1],
        ["escrow", "0x0000000000000000000000000000000000000001"],
        ["token", "0x0000000000000000000000000000000000000002"],
        ["payee", "0x0000000000000000000000000000000000000003"],
        ["genesisHash", `0x${"22".repeat(32)}`],
      ] as const) {
        it(`refuses a binding with another ${field} (StoreBindingError naming it)`, async () => {
          await store.bind(binding());
          const err = await store.bind(binding({ [field]: value })).then(
            () => null,
            (e: unknown) => e,
          );
          expect(err).to.be.instanceOf(StoreBindingError);
          const key = { chainId: "chain_id", genesisHash: "genesis_hash" }[field as string] ?? field;
          expect((err as Error).message).to.include(key);
        });
      }

      it("compares addresses case-insensitively", async () => {
        await store.bind(binding());
        const b = binding();
        await store.bind({ ...b, escrow: b.escrow.toLowerCase() as Hex, payee: b.payee.toUpperCase().replace("0X", "0x") as Hex });
      });

      it("several stores binding one empty database at once all succeed", async () => {
        const stores = await Promise.all([1, 2, 3, 4].map(() => openStore(url)));
        await Promise.all(stores.map((s) => s.bind(binding())));
      });

      it("a reopened database keeps channels, accounting, used vouchers and the cursor", async () => {
        const c = snapshot();
        expectOk(await accept(store, c, 100n));
        await store.applyChainSnapshots([], { block: 42n, hash: `0x${"ee".repeat(32)}` });
        const before = await store.getChannel(c.channelId);
        await store.close();
        const again = await openStore(url);
        const got = await again.getChannel(c.channelId);
        expect(got).to.include({ accepted: 100n, spent: 10n });
        expect(got).to.deep.equal(before);
        expectRefused(await accept(again, c, 100n), "voucher_reused");
        expect(await again.getCursor()).to.deep.equal({ block: 42n, hash: `0x${"ee".repeat(32)}` });
      });
    });

    describe("accepting vouchers", () => {
      it("stores nothing for a channel until its first voucher is accepted, then the snapshot and the accounting", async () => {
        const c = snapshot({ deposit: 5_000n, settled: 7n, closeDelay: 3_600, block: 77n });
        expect(await store.getChannel(c.channelId)).to.equal(null);
        const before = Date.now();
        const ch = expectOk(await accept(store, c, 300n, 25n, 1_000n, sig(300)));
        expect(ch).to.deep.include({
          channelId: c.channelId,
          payer: c.payer,
          payee: c.payee,
          token: c.token,
          signer: c.signer,
          deposit: 5_000n,
          settled: 7n,
          closeDelay: 3_600,
          closeRequestedAt: 0,
          closesAt: 0,
          finalized: false,
          block: 77n,
          accepted: 300n,
          acceptedSignature: sig(300),
          spent: 25n,
          floor: 0n,
          payerCloseRequestedAt: 0,
          closeRequestSignature: null,
        });
        expect(ch.createdAt).to.be.within(before - 1, Date.now() + 1);
        expect(ch.updatedAt).to.be.at.least(ch.createdAt);
        expect(await store.getChannel(c.channelId)).to.deep.equal(ch);
      });

      it("stores ids in lowercase (found by a mixed-case id) and addresses as given", async () => {
        const id = `0x${"Ab".repeat(32)}` as Hex;
        const c = snapshot({ channelId: id, payer: `0x${"Cd".repeat(20)}` as Hex });
        const ch = expectOk(await accept(store, c, 100n));
        expect(ch.channelId).to.equal(id.toLowerCase());
        expect(ch.payer.toLowerCase()).to.equal(c.payer.toLowerCase());
        expect((await store.getChannel(id.toUpperCase().replace("0X", "0x") as Hex))?.accepted).to.equal(100n);
      });

      it("a refused first voucher stores nothing", async () => {
        const c = snapshot({ deposit: 100n });
        const over = await accept(store, c, 101n);
        expectRefused(over, "exceeds_deposit");
        expect(over.channel).to.equal(null);
        const short = await accept(store, c, 5n, 10n);
        expectRefused(short, "insufficient_voucher");
        expect(short.channel).to.equal(null);
        expect(await store.getChannel(c.channelId)).to.equal(null);
        expect((await store.totals()).channels).to.equal(0);
      });

      it("refuses a voucher above the deposit (exceeds_deposit) and writes nothing", async () => {
        const c = snapshot({ deposit: 1_000n });
        const first = expectOk(await accept(store, c, 100n));
        const r = await accept(store, c, 1_001n);
        expectRefused(r, "exceeds_deposit");
        expect(r.channel).to.deep.equal(first);
        expect(await store.getChannel(c.channelId)).to.deep.equal(first);
        expectOk(await accept(store, c, 1_000n));
      });

      it("decides the deposit as the larger of the stored one and the snapshot's (a stale snapshot does not refuse)", async () => {
        const c = snapshot({ deposit: 1_000n, block: 20n });
        expectOk(await accept(store, c, 100n));
        await store.applyChainSnapshots([{ ...c, deposit: 5_000n, block: 30n }]);
        const ch = expectOk(await accept(store, { ...c, deposit: 1_000n, block: 25n }, 4_000n));
        expect(ch.deposit).to.equal(5_000n);
        expect(ch.block).to.equal(30n);
        // and a newer snapshot's larger deposit counts before it is stored
        expectOk(await accept(store, { ...c, deposit: 9_000n, block: 40n }, 8_000n));
        expect((await store.getChannel(c.channelId))?.deposit).to.equal(9_000n);
      });

      it("refuses a used voucher above the floor (voucher_reused) and writes nothing", async () => {
        const c = snapshot();
        expectOk(await accept(store, c, 100n));
        const ch = expectOk(await accept(store, c, 200n));
        const r = await accept(store, c, 100n);
        expectRefused(r, "voucher_reused");
        expect(await store.getChannel(c.channelId)).to.deep.equal(ch);
      });

      it("ranks voucher_reused before insufficient_voucher", async () => {
        const c = snapshot();
        expectOk(await accept(store, c, 100n, 100n));
        // 100 is used AND would not cover spent (100) + 50
        expectRefused(await accept(store, c, 100n, 50n), "voucher_reused");
        expectRefused(await accept(store, c, 120n, 50n), "insufficient_voucher");
      });

      it("refuses a voucher that does not cover spent + charge (insufficient_voucher) and writes nothing", async () => {
        const c = snapshot();
        const ch = expectOk(await accept(store, c, 100n, 60n));
        expectRefused(await accept(store, c, 110n, 60n), "insufficient_voucher");
        expect(await store.getChannel(c.channelId)).to.deep.equal(ch);
        // the refused amount is not marked used
        expectOk(await accept(store, c, 110n, 10n));
      });

      it("accepts a lower voucher above the floor that still covers (out-of-order arrival) and keeps the highest one's signature", async () => {
        const c = snapshot();
        expectOk(await accept(store, c, 300n, 10n, 1_000n, sig(300)));
        const ch = expectOk(await accept(store, c, 200n, 10n, 1_000n, sig(200)));
        expect(ch).to.include({ accepted: 300n, spent: 20n, acceptedSignature: sig(300) });
        const higher = expectOk(await accept(store, c, 400n, 10n, 1_000n, sig(400)));
        expect(higher).to.include({ accepted: 400n, spent: 30n, acceptedSignature: sig(400) });
      });

      it("raises the floor to accepted - window, refuses vouchers at or below it (voucher_too_low, writing nothing) and forgets used ones below it", async () => {
        const c = snapshot();
        const window = 100n;
        expectOk(await accept(store, c, 50n, 10n, window));
        expect((await store.getChannel(c.channelId))?.floor).to.equal(0n);
        const ch = expectOk(await accept(store, c, 250n, 10n, window));
        expect(ch.floor).to.equal(150n);
        expectRefused(await accept(store, c, 150n, 10n, window), "voucher_too_low");
        expectRefused(await accept(store, c, 50n, 10n, window), "voucher_too_low"); // pruned: too low, not "reused"
        expect(await store.getChannel(c.channelId)).to.deep.equal(ch);
        expectOk(await accept(store, c, 151n, 10n, window));
        expectRefused(await accept(store, c, 151n, 10n, window), "voucher_reused");
        // a lower voucher never lowers the floor, nor does a wider window
        const after = expectOk(await accept(store, c, 200n, 10n, window));
        expect(after.floor).to.equal(150n);
        const wider = expectOk(await accept(store, c, 220n, 10n, 10n * window));
        expect(wider.floor).to.equal(150n);
      });

      it("refuses vouchers on a finalized channel (channel_finalized) and after the payer's close request (channel_closing)", async () => {
        const a = snapshot();
        expectOk(await accept(store, a, 100n));
        await store.applyChainSnapshots([{ ...a, finalized: true, block: 11n }]);
        expectRefused(await accept(store, { ...a, block: 11n }, 200n), "channel_finalized");
        const b = snapshot();
        expectOk(await accept(store, b, 100n));
        await store.requestCooperativeClose(b, 1_700_000_000);
        const r = await accept(store, b, 200n);
        expectRefused(r, "channel_closing");
        expect(r.channel?.payerCloseRequestedAt).to.equal(1_700_000_000);
      });

      it("handles the largest amounts (uint128)", async () => {
        const c = snapshot({ deposit: MAX_UINT128, settled: MAX_UINT128 - 5n });
        const ch = expectOk(await accept(store, c, MAX_UINT128, MAX_UINT128, MAX_UINT128));
        expect(ch).to.include({ deposit: MAX_UINT128, accepted: MAX_UINT128, spent: MAX_UINT128, settled: MAX_UINT128 - 5n, floor: 0n });
        const t = await store.totals();
        expect(t).to.include({ accepted: MAX_UINT128, spent: MAX_UINT128, unsettled: 5n });
      });

      it("follows the protocol's accounting rule for any sequence of vouchers and releases (model-based)", async function () {
        this.timeout(120_000);
        const op = fc.oneof(
          { weight: 5, arbitrary: fc.record({ kind: fc.constant("accept" as const), v: fc.bigInt({ min: 0n, max: 400n }), charge: fc.bigInt({ min: 0n, max: 40n }) }) },
          { weight: 1, arbitrary: fc.record({ kind: fc.constant("release" as const), amount: fc.bigInt({ min: 0n, max: 50n }) }) },
        );
        await fc.assert(
          fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), fc.bigInt({ min: 1n, max: 120n }), async (ops, window) => {
            const c = snapshot({ deposit: 350n });
            const model = new ModelChannel(350n);
            let stored = false;
            for (const o of ops) {
              if (o.kind === "accept") {
                const want = model.accept(o.v, o.charge, window);
                const r = await accept(store, c, o.v, o.charge, window);
                expect(r.ok ? "ok" : r.code, `accept ${o.v} charge ${o.charge}`).to.equal(want);
                if (r.ok) stored = true;
              } else {
                model.release(o.amount);
                const r = await store.releaseCharge(c.channelId, o.amount);
                expect(r === null).to.equal(!stored);
              }
              const ch = await store.getChannel(c.channelId);
              if (ch) expect({ accepted: ch.accepted, spent: ch.spent, floor: ch.floor }).to.deep.equal({ accepted: model.accepted, spent: model.spent, floor: model.floor });
            }
          }),
          { numRuns: backend.propertyRuns ?? 40 },
        );
      });
    });

    describe("releasing charges", () => {
      it("gives back a charge (spent -= amount) and keeps the voucher used", async () => {
        const c = snapshot();
        expectOk(await accept(store, c, 100n, 30n));
        const ch = await store.releaseCharge(c.channelId, 20n);
        expect(ch).to.include({ spent: 10n, accepted: 100n });
        expectRefused(await accept(store, c, 100n, 1n), "voucher_reused");
      });

      it("never goes below zero", async () => {
        const c = snapshot();
        expectOk(await accept(store, c, 100n, 30n));
        expect((await store.releaseCharge(c.channelId, 1_000n))?.spent).to.equal(0n);
        expect((await store.releaseCharge(c.channelId, 0n))?.spent).to.equal(0n);
      });

      it("returns null for an unknown channel and refuses a negative amount", async () => {
        expect(await store.releaseCharge(hex(32), 5n)).to.equal(null);
        const c = snapshot();
        expectOk(await accept(store, c, 100n, 30n));
        let err: unknown;
        try {
          await store.releaseCharge(c.channelId, -1n);
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(RangeError);
        expect((await store.getChannel(c.channelId))?.spent).to.equal(30n);
      });
    });

    describe("metered reservations (issue 17, item 6)", () => {
      it("a metered request reserves its maximum apart from spent; the rule counts it (spent + reserved + charge <= max(accepted, v))", async () => {
        const c = snapshot();
        expect(expectOk(await reserve(store, c, 10_000n, 10_000n))).to.include({ accepted: 10_000n, spent: 0n, reserved: 10_000n });
        expect(await store.getChannel(c.channelId)).to.include({ spent: 0n, reserved: 10_000n });
        expect(await backend.countRows(store, "reservations", c.channelId)).to.equal(1);
        expectRefused(await accept(store, c, 10_500n, 1_000n, 1_000_000n), "insufficient_voucher");
        expect(expectOk(await accept(store, c, 11_000n, 1_000n, 1_000_000n))).to.include({ spent: 1_000n, reserved: 10_000n });
        expectRefused(await reserve(store, c, 20_000n, 10_000n), "insufficient_voucher");
        expect(expectOk(await reserve(store, c, 21_000n, 10_000n))).to.include({ spent: 1_000n, reserved: 20_000n, accepted: 21_000n });
        // Nothing but spent is owed: the open reservations are never a settlement claim.
        expect((await store.listUnsettled(10)).map((x) => x.channelId)).to.deep.equal([c.channelId]);
        expect((await store.totals()).unsettled).to.equal(1_000n);
      });

      it("finishing charges what the handler reported, once; a charge above the reservation is refused and changes nothing", async () => {
        const c = snapshot();
        expectOk(await reserve(store, c, 10_000n, 10_000n));
        let err: unknown;
        try {
          await store.finishReservation(c.channelId, 10_000n, 10_001n);
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(RangeError);
        expect(await store.getChannel(c.channelId)).to.include({ spent: 0n, reserved: 10_000n });
        const r = await store.finishReservation(c.channelId, 10_000n, 1_000n);
        expect(r.finished).to.equal(true);
        expect(r.channel).to.include({ spent: 1_000n, reserved: 0n, accepted: 10_000n });
        const again = await store.finishReservation(c.channelId, 10_000n, 1_000n);
        expect(again.finished).to.equal(false);
        expect(await store.getChannel(c.channelId)).to.include({ spent: 1_000n, reserved: 0n });
        expect(await backend.countRows(store, "reservations", c.channelId)).to.equal(0);
        expectRefused(await reserve(store, c, 10_000n, 1n), "voucher_reused");
        expect(await store.finishReservation(hex(32), 1n, 0n)).to.deep.equal({ finished: false, channel: null });
        // A failed handler: the reservation ends with no charge.
        expectOk(await reserve(store, c, 20_000n, 10_000n));
        expect((await store.finishReservation(c.channelId, 20_000n, 0n)).channel).to.include({ spent: 1_000n, reserved: 0n });
      });

      it("reservations older than the bound expire uncharged, younger ones stay; a finish after expiry charges nothing", async () => {
        const c = snapshot();
        expectOk(await reserve(store, c, 10_000n, 10_000n));
        const t = Date.now();
        while (Date.now() <= t) await new Promise((r) => setImmediate(r));
        expectOk(await reserve(store, c, 20_000n, 10_000n));
        expect(await store.expireReservations(t + 1)).to.equal(1);
        expect(await store.getChannel(c.channelId)).to.include({ spent: 0n, reserved: 10_000n });
        expect((await store.finishReservation(c.channelId, 10_000n, 5_000n)).finished).to.equal(false);
        expect((await store.finishReservation(c.channelId, 20_000n, 2_000n)).channel).to.include({ spent: 2_000n, reserved: 0n });
        expect(await store.expireReservations(Date.now() + 1_000)).to.equal(0);
      });

      it("a finish racing the expiry of its reservation (two stores): exactly one ends it", async () => {
        const other = await openStore(url);
        const channels = Array.from({ length: 10 }, () => snapshot());
        for (const c of channels) expectOk(await reserve(store, c, 10_000n, 10_000n));
        const [finishes] = await Promise.all([
          Promise.all(channels.map((c) => store.finishReservation(c.channelId, 10_000n, 3_000n))),
          other.expireReservations(Date.now() + 60_000),
        ]);
        for (const [i, c] of channels.entries()) {
          const ch = (await store.getChannel(c.channelId))!;
          expect(ch.reserved).to.equal(0n);
          expect(ch.spent).to.equal(finishes[i].finished ? 3_000n : 0n);
        }
      });

      it("concurrent metered requests and finishes over two stores keep spent + reserved <= accepted and end exact", async () => {
        const other = await openStore(url);
        const c = snapshot({ deposit: 10_000_000n });
        const max = 1_000n;
        const vs = shuffle(Array.from({ length: 30 }, (_, k) => BigInt(k + 1) * max));
        const results = await Promise.all(vs.map((v, i) => reserve(i % 2 ? store : other, c, v, max)));
        for (const r of results) {
          const ch = expectOk(r);
          expect(ch.spent + ch.reserved <= ch.accepted).to.equal(true);
        }
        await Promise.all(vs.map((v, i) => (i % 2 ? other : store).finishReservation(c.channelId, v, 100n)));
        expect(await store.getChannel(c.channelId)).to.include({ spent: 3_000n, reserved: 0n, accepted: 30_000n });
      });
    });

    describe("finalized channels keep no used vouchers (issue 17, item 9)", () => {
      it("a Closed / Withdrawn snapshot drops the channel's used vouchers and raises its floor to accepted; a reorg that brings it back still refuses them", async () => {
        const c = snapshot({ block: 10n });
        for (let k = 1n; k <= 5n; k++) expectOk(await accept(store, c, k * 10n, 10n, 1_000n));
        const keep = snapshot({ block: 10n });
        expectOk(await accept(store, keep, 10n, 10n, 1_000n));
        expect(await backend.countRows(store, "used_vouchers", c.channelId)).to.equal(5);
        await store.applyChainSnapshots([{ ...c, block: 11n, finalized: true, settled: 50n }, { ...keep, block: 11n }]);
        expect(await store.getChannel(c.channelId)).to.include({ finalized: true, floor: 50n, accepted: 50n, spent: 50n });
        expect(await backend.countRows(store, "used_vouchers", c.channelId)).to.equal(0);
        expect(await backend.countRows(store, "used_vouchers", keep.channelId)).to.equal(1);
        // After a reorg that un-finalizes it, every amount it used is at or below the floor.
        await store.applyChainSnapshots([{ ...c, block: 10n, finalized: false }], undefined, { force: true });
        expectRefused(await accept(store, c, 30n, 10n, 1_000n), "voucher_too_low");
        expectOk(await accept(store, c, 60n, 10n, 1_000n));
      });

      it("a confirmed close drops the channel's used vouchers in the same transaction", async () => {
        const c = snapshot();
        for (let k = 1n; k <= 3n; k++) expectOk(await accept(store, c, k * 10n, 10n, 1_000n));
        const ss = settlementStoreFor(store);
        const tx = await ss.insertTx({
          kind: "close",
          sender: c.payee,
          payee: c.payee,
          token: c.token,
          nonce: 7,
          hash: hex(32),
          rawTx: hex(64),
          gasLimit: 1n,
          maxFeePerGas: 1n,
          maxPriorityFeePerGas: 1n,
          items: [{ channelId: c.channelId, cumulativeAmount: 30n, amount: 30n, previousSettled: 0n }],
        });
        expect(await backend.countRows(store, "used_vouchers", c.channelId)).to.equal(3);
        await ss.confirmTx(tx.id, {
          blockNumber: 12n,
          blockHash: hex(32),
          gasUsed: 1n,
          effectiveGasPrice: 1n,
          amountSettled: 30n,
          items: [{ channelId: c.channelId, status: "closed", settledAmount: 30n }],
        });
        expect(await store.getChannel(c.channelId)).to.include({ finalized: true, settled: 30n, floor: 30n });
        expect(await backend.countRows(store, "used_vouchers", c.channelId)).to.equal(0);
      });
    });

    describe("concurrency", () => {
      it("50 concurrent copies of one voucher on a new channel, over two stores on one database: exactly one accepted", async () => {
        const other = await openStore(url);
        const c = snapshot();
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => accept(i % 2 ? store : other, c, 500n, 10n)));
        expect(results.filter((r) => r.ok)).to.have.length(1);
        for (const r of results.filter((x) => !x.ok)) expectRefused(r, "voucher_reused");
        expect(await store.getChannel(c.channelId)).to.include({ accepted: 500n, spent: 10n });
      });

      it("50 concurrent copies of one voucher on an existing channel, over two stores on one database: exactly one accepted", async () => {
        const other = await openStore(url);
        const c = snapshot();
        expectOk(await accept(store, c, 100n, 10n));
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => accept(i % 2 ? store : other, c, 500n, 10n)));
        expect(results.filter((r) => r.ok)).to.have.length(1);
        expect(results.filter((r) => !r.ok && r.code === "voucher_reused")).to.have.length(49);
        expect(await store.getChannel(c.channelId)).to.include({ accepted: 500n, spent: 20n });
      });

      it("50 concurrent distinct vouchers (base + k x price, shuffled) over two stores: all accepted, spent = 50 x price", async () => {
        const other = await openStore(url);
        const c = snapshot({ deposit: 10_000_000n });
        const price = 1_000n;
        const ks = shuffle(Array.from({ length: 50 }, (_, k) => BigInt(k + 1)));
        const results = await Promise.all(ks.map((k, i) => accept(i % 2 ? store : other, c, k * price, price, 64n * price, sig(k * price))));
        expect(results.filter((r) => !r.ok).map((r) => (r.ok ? "" : r.code))).to.deep.equal([]);
        const ch = await store.getChannel(c.channelId);
        expect(ch).to.include({ spent: 50n * price, accepted: 50n * price, acceptedSignature: sig(50n * price) });
        expect(ch!.spent <= ch!.accepted && ch!.accepted <= ch!.deposit).to.equal(true);
      });

      it("concurrent vouchers on many channels and releases keep every channel's books exact", async () => {
        const other = await openStore(url);
        const channels = Array.from({ length: 8 }, () => snapshot({ deposit: 1_000_000n }));
        const jobs: Array<() => Promise<unknown>> = [];
        for (const c of channels) {
          for (let k = 1n; k <= 12n; k++) jobs.push(() => accept(k % 2n ? store : other, c, k * 100n, 100n, 10_000n));
        }
        const accepted = await Promise.all(shuffle(jobs).map((j) => j()));
        expect(accepted.every((r) => (r as AcceptVoucherResult).ok)).to.equal(true);
        await Promise.all(channels.flatMap((c) => [store.releaseCharge(c.channelId, 30n), other.releaseCharge(c.channelId, 70n)]));
        for (const c of channels) expect(await store.getChannel(c.channelId)).to.include({ accepted: 1_200n, spent: 1_100n });
        expect(await store.totals()).to.include({ channels: 8, accepted: 8n * 1_200n, spent: 8n * 1_100n });
      });
    });

    describe("chain snapshots and the cursor", () => {
      it("has no cursor at first, then keeps the last one written (with or without a hash)", async () => {
        expect(await store.getCursor()).to.equal(null);
        await store.applyChainSnapshots([], { block: 5n });
        expect(await store.getCursor()).to.deep.equal({ block: 5n, hash: undefined });
        await store.applyChainSnapshots([], { block: 9n, hash: `0x${"ab".repeat(32)}` });
        expect(await store.getCursor()).to.deep.equal({ block: 9n, hash: `0x${"ab".repeat(32)}` });
      });

      it("ignores snapshots of channels it does not store (writes nothing)", async () => {
        const c = snapshot();
        await store.applyChainSnapshots([c], { block: 12n });
        expect(await store.getChannel(c.channelId)).to.equal(null);
        expect((await store.totals()).channels).to.equal(0);
        expect((await store.getCursor())?.block).to.equal(12n);
      });

      it("applies a newer (or same-block) snapshot and ignores an older one, leaving the accounting alone", async () => {
        const c = snapshot({ block: 10n, deposit: 1_000n });
        expectOk(await accept(store, c, 100n, 40n));
        await store.applyChainSnapshots([{ ...c, block: 20n, deposit: 2_000n, settled: 30n, closeRequestedAt: 500, closesAt: 90_000 }], { block: 20n });
        let ch = await store.getChannel(c.channelId);
        expect(ch).to.include({ block: 20n, deposit: 2_000n, settled: 30n, closeRequestedAt: 500, closesAt: 90_000, accepted: 100n, spent: 40n });
        await store.applyChainSnapshots([{ ...c, block: 15n, deposit: 1_500n, settled: 0n }]);
        ch = await store.getChannel(c.channelId);
        expect(ch).to.include({ block: 20n, deposit: 2_000n, settled: 30n });
        await store.applyChainSnapshots([{ ...c, block: 20n, deposit: 2_000n, settled: 40n, closeRequestedAt: 0, closesAt: 0 }]);
        expect(await store.getChannel(c.channelId)).to.include({ block: 20n, settled: 40n, closesAt: 0 });
      });

      it("settled raised by a confirmed settlement is not lowered, nor finalized undone, by a snapshot of the same block", async () => {
        const c = snapshot({ block: 10n });
        expectOk(await accept(store, c, 1_000n, 1_000n));
        const d = snapshot({ block: 10n });
        expectOk(await accept(store, d, 1_000n, 1_000n));
        const ss = settlementStoreFor(store);
        const tx = await ss.insertTx({
          kind: "settle",
          sender: c.payee,
          payee: c.payee,
          token: c.token,
          nonce: 1,
          hash: hex(32),
          rawTx: hex(64),
          gasLimit: 1n,
          maxFeePerGas: 1n,
          maxPriorityFeePerGas: 1n,
          items: [c, d].map((x) => ({ channelId: x.channelId, cumulativeAmount: 1_000n, amount: 1_000n, previousSettled: 0n })),
        });
        await ss.confirmTx(tx.id, {
          blockNumber: 12n,
          blockHash: hex(32),
          gasUsed: 1n,
          effectiveGasPrice: 1n,
          amountSettled: 2_000n,
          items: [
            { channelId: c.channelId, status: "settled", settledAmount: 1_000n },
            { channelId: d.channelId, status: "closed", settledAmount: 1_000n },
          ],
        });
        // Another replica's cached view still has the block-10 state (settled 0, open).
        expectOk(await accept(store, c, 2_000n, 1_000n));
        await store.applyChainSnapshots([c, d]);
        expect(await store.getChannel(c.channelId)).to.include({ settled: 1_000n, spent: 2_000n });
        expect(await store.getChannel(d.channelId)).to.include({ settled: 1_000n, finalized: true });
        expect((await store.totals()).unsettled).to.equal(1_000n);
      });

      it("a voucher carrying an older snapshot does not move chain fields back", async () => {
        const c = snapshot({ block: 10n, deposit: 1_000n });
        expectOk(await accept(store, c, 100n));
        await store.applyChainSnapshots([{ ...c, block: 30n, deposit: 3_000n, settled: 50n, closeRequestedAt: 100, closesAt: 86_500 }]);
        const ch = expectOk(await accept(store, { ...c, block: 10n }, 200n));
        expect(ch).to.include({ block: 30n, deposit: 3_000n, settled: 50n, closeRequestedAt: 100, closesAt: 86_500 });
        const newer = expectOk(await accept(store, { ...c, block: 40n, deposit: 4_000n, settled: 60n }, 300n));
        expect(newer).to.include({ block: 40n, deposit: 4_000n, settled: 60n });
      });

      it("a forced snapshot (after a reorg) replaces the stored chain state even from a lower block, and only for stored channels", async () => {
        const c = snapshot({ block: 10n });
        expectOk(await accept(store, c, 100n, 40n));
        await store.applyChainSnapshots([{ ...c, block: 30n, deposit: 5_000n, settled: 40n, closeRequestedAt: 9, closesAt: 99 }]);
        const stranger = snapshot();
        await store.applyChainSnapshots([{ ...c, block: 25n, deposit: 2_000n, settled: 0n, closeRequestedAt: 0, closesAt: 0 }, stranger], { block: 25n }, { force: true });
        expect(await store.getChannel(c.channelId)).to.include({ block: 25n, deposit: 2_000n, settled: 0n, closesAt: 0, accepted: 100n, spent: 40n });
        expect(await store.getChannel(stranger.channelId)).to.equal(null);
        expect((await store.getCursor())?.block).to.equal(25n);
      });

      it("takes the newest of several snapshots of one channel in one call", async () => {
        const c = snapshot({ block: 10n });
        expectOk(await accept(store, c, 100n));
        await store.applyChainSnapshots([
          { ...c, block: 50n, settled: 50n },
          { ...c, block: 30n, settled: 30n },
        ]);
        expect((await store.getChannel(c.channelId))?.settled).to.equal(50n);
      });

      it("updates many stored channels in one call (unknown ones skipped) and moves the cursor with them", async () => {
        const known = Array.from({ length: 20 }, () => snapshot({ block: 10n }));
        for (const c of known) expectOk(await accept(store, c, 100n));
        const unknown = Array.from({ length: 5 }, () => snapshot());
        await store.applyChainSnapshots(shuffle([...known.map((c) => ({ ...c, block: 11n, settled: 7n })), ...unknown]), { block: 11n });
        for (const c of known) expect((await store.getChannel(c.channelId))?.settled).to.equal(7n);
        for (const c of unknown) expect(await store.getChannel(c.channelId)).to.equal(null);
        expect((await store.getCursor())?.block).to.equal(11n);
      });

      it("concurrent snapshot batches (two followers) and vouchers do not deadlock or lose updates", async () => {
        const other = await openStore(url);
        const chans = Array.from({ length: 10 }, () => snapshot({ block: 1n }));
        for (const c of chans) expectOk(await accept(store, c, 100n));
        const work: Promise<unknown>[] = [];
        for (let b = 2n; b <= 12n; b++) {
          work.push(store.applyChainSnapshots(shuffle(chans.map((c) => ({ ...c, block: b, settled: b }))), { block: b }));
          work.push(other.applyChainSnapshots(shuffle(chans.map((c) => ({ ...c, block: b, settled: b }))), { block: b }));
          for (const c of chans) work.push(accept(b % 2n ? store : other, c, 100n + b, 1n));
        }
        await Promise.all(work);
        for (const c of chans) expect(await store.getChannel(c.channelId)).to.include({ block: 12n, settled: 12n, accepted: 112n });
      });
    });

    describe("cooperative close requests", () => {
      it("stores a new channel with the request time, and is idempotent (the first time stays)", async () => {
        const c = snapshot({ deposit: 900n, block: 8n });
        const ch = await store.requestCooperativeClose(c, 1_700_000_000);
        expect(ch).to.deep.include({ channelId: c.channelId, deposit: 900n, accepted: 0n, spent: 0n, floor: 0n, acceptedSignature: null, payerCloseRequestedAt: 1_700_000_000 });
        const again = await store.requestCooperativeClose({ ...c, block: 9n, deposit: 950n }, 1_800_000_000);
        expect(again).to.include({ payerCloseRequestedAt: 1_700_000_000, deposit: 950n, block: 9n });
        expectRefused(await accept(store, c, 100n), "channel_closing");
      });

      it("on a stored channel keeps the accounting and merges the snapshot (newer block wins)", async () => {
        const c = snapshot({ block: 10n });
        expectOk(await accept(store, c, 300n, 50n));
        const ch = await store.requestCooperativeClose({ ...c, block: 5n, deposit: 1n }, 1_700_000_000);
        expect(ch).to.include({ accepted: 300n, spent: 50n, acceptedSignature: sig(300), block: 10n, deposit: c.deposit, payerCloseRequestedAt: 1_700_000_000 });
      });

      it("keeps the payer's close request signature (the first one stays; a later one fills an empty one), across a reopen", async () => {
        const first = sig(0xa1);
        const later = sig(0xb2);
        // A new channel, asked with a signature: stored (lowercase), and a later request does not replace it.
        const a = snapshot();
        expect(await store.requestCooperativeClose(a, 1_700_000_000, first)).to.include({ closeRequestSignature: first, payerCloseRequestedAt: 1_700_000_000 });
        expect(await store.requestCooperativeClose(a, 1_800_000_000, later)).to.include({ closeRequestSignature: first, payerCloseRequestedAt: 1_700_000_000 });
        expect(await store.requestCooperativeClose(a, 1_800_000_000)).to.include({ closeRequestSignature: first });
        // A paid channel marked closing without a signature (the settlement job's mark for an on-chain close): none
        // stored; the payer's later request fills it, uppercase hex stored lowercase, and the first time stays.
        const b = snapshot();
        expectOk(await accept(store, b, 300n, 50n));
        expect(await store.requestCooperativeClose(b, 1_700_000_000)).to.include({ closeRequestSignature: null, payerCloseRequestedAt: 1_700_000_000 });
        const upper = `0x${later.slice(2).toUpperCase()}` as Hex;
        expect(await store.requestCooperativeClose(b, 1_800_000_000, upper)).to.include({
          closeRequestSignature: later,
          payerCloseRequestedAt: 1_700_000_000,
          accepted: 300n,
          spent: 50n,
        });
        expect(await store.requestCooperativeClose(b, 1_900_000_000, first)).to.include({ closeRequestSignature: later });
        // A channel with only vouchers has none.
        const c = snapshot();
        expect(expectOk(await accept(store, c, 10n, 1n)).closeRequestSignature).to.equal(null);
        const reopened = await openStore(url);
        expect((await reopened.getChannel(a.channelId))?.closeRequestSignature).to.equal(first);
        expect((await reopened.getChannel(b.channelId))?.closeRequestSignature).to.equal(later);
        expect((await reopened.getChannel(c.channelId))?.closeRequestSignature).to.equal(null);
      });

      it("concurrent close requests and vouchers: once the request is stored no voucher is accepted", async () => {
        const c = snapshot();
        expectOk(await accept(store, c, 10n, 1n));
        const results = await Promise.all([
          ...Array.from({ length: 10 }, (_, i) => accept(store, c, 100n + BigInt(i), 1n)),
          store.requestCooperativeClose(c, 1_700_000_000),
          ...Array.from({ length: 10 }, (_, i) => accept(store, c, 200n + BigInt(i), 1n)),
        ]);
        const okCount = results.filter((r) => "ok" in r && r.ok).length;
        const ch = await store.getChannel(c.channelId);
        expect(ch?.spent).to.equal(1n + BigInt(okCount));
        expectRefused(await accept(store, c, 1_000n, 1n), "channel_closing");
      });
    });

    describe("settlement records across stores on one database (replicas, or a server and `npm run settle`)", () => {
      const newTx = (channels: Array<{ channelId: Hex; amount: bigint }>, nonce: number) => ({
        kind: "settle" as const,
        sender: "0x00000000000000000000000000000000000000cc" as Hex,
        payee: "0x00000000000000000000000000000000000000aa" as Hex,
        token: "0x00000000000000000000000000000000000000bb" as Hex,
        nonce,
        hash: hex(32),
        rawTx: hex(100),
        gasLimit: 100_000n,
        maxFeePerGas: 2n,
        maxPriorityFeePerGas: 1n,
        items: channels.map((c) => ({ channelId: c.channelId, cumulativeAmount: c.amount, amount: c.amount, previousSettled: 0n })),
      });

      it("one settler at a time: of six stores trying at once exactly one holds the lease; after its release another takes it", async () => {
        const stores = [store, ...(await Promise.all([1, 2, 3, 4, 5].map(() => openStore(url))))];
        const got = await Promise.all(stores.map((s, i) => settlementStoreFor(s).tryAcquireSettlerLease(`holder-${i}`, 60_000)));
        expect(got.filter(Boolean)).to.have.length(1);
        const w = got.indexOf(true);
        const others = stores.map((_, i) => i).filter((i) => i !== w);
        for (const i of others) expect(await settlementStoreFor(stores[i]).tryAcquireSettlerLease(`holder-${i}`, 60_000)).to.equal(false);
        await settlementStoreFor(stores[w]).releaseSettlerLease(`holder-${w}`);
        const again = await Promise.all(others.map((i) => settlementStoreFor(stores[i]).tryAcquireSettlerLease(`holder-${i}`, 60_000)));
        expect(again.filter(Boolean)).to.have.length(1);
      });

      it("two settlers claiming the same channel at once: exactly one claim is recorded", async () => {
        const other = await openStore(url);
        const c = snapshot();
        expectOk(await accept(store, c, 500n, 500n));
        const results = await Promise.allSettled([
          settlementStoreFor(store).insertTx(newTx([{ channelId: c.channelId, amount: 500n }], 1)),
          settlementStoreFor(other).insertTx(newTx([{ channelId: c.channelId, amount: 500n }], 2)),
        ]);
        expect(results.filter((r) => r.status === "fulfilled")).to.have.length(1);
        const refused = results.find((r): r is PromiseRejectedResult => r.status === "rejected")!;
        expect(refused.reason).to.be.instanceOf(SettlementConflictError);
        expect(await settlementStoreFor(other).openTxs()).to.have.length(1);
      });

      it("a confirmation raising settled while vouchers are accepted loses neither (same channel rows)", async () => {
        const other = await openStore(url);
        const c = snapshot({ deposit: 10_000_000n });
        expectOk(await accept(store, c, 1_000n, 1_000n));
        const tx = await settlementStoreFor(other).insertTx(newTx([{ channelId: c.channelId, amount: 1_000n }], 3));
        const work: Promise<unknown>[] = [];
        for (let k = 2n; k <= 21n; k++) work.push(accept(k % 2n ? store : other, c, k * 1_000n, 1_000n, 1_000_000n));
        work.push(
          settlementStoreFor(other).confirmTx(tx.id, {
            blockNumber: 5n,
            blockHash: hex(32),
            gasUsed: 50_000n,
            effectiveGasPrice: 1n,
            amountSettled: 1_000n,
            items: [{ channelId: c.channelId, status: "settled", settledAmount: 1_000n }],
          }),
        );
        await Promise.all(work);
        expect(await store.getChannel(c.channelId)).to.include({ spent: 21_000n, accepted: 21_000n, settled: 1_000n });
        expect((await settlementStoreFor(store).getTx(tx.id))?.status).to.equal("confirmed");
      });
    });

    describe("queries for the follower, settlement and metrics", () => {
      it("lists active (not finalized) channels with their signers", async () => {
        expect(await store.activeChannels()).to.deep.equal([]);
        const a = snapshot();
        const b = snapshot();
        expectOk(await accept(store, a, 100n));
        expectOk(await accept(store, b, 100n));
        await store.applyChainSnapshots([{ ...b, finalized: true, block: 99n }]);
        expect((await store.activeChannels()).map((r) => [r.channelId, r.signer.toLowerCase()])).to.deep.equal([[a.channelId, a.signer.toLowerCase()]]);
      });

      it("lists unsettled channels, pending closes first (payer request, then earliest deadline), then the largest spent, up to a limit", async () => {
        const mk = async (spent: bigint, over: Partial<ChainChannel> = {}) => {
          const c = snapshot(over);
          expectOk(await accept(store, c, spent, spent));
          return c;
        };
        const small = await mk(100n);
        const big = await mk(900n);
        const closingLate = await mk(50n, { closeRequestedAt: 1_000, closesAt: 90_000 });
        const closingSoon = await mk(60n, { closeRequestedAt: 1_000, closesAt: 80_000 });
        const payerAsked = await mk(70n);
        await store.requestCooperativeClose(payerAsked, 1_700_000_000);
        const settledAll = await mk(300n);
        await store.applyChainSnapshots([{ ...settledAll, settled: 300n, block: 11n }]);
        const overSettled = await mk(200n); // settled above spent (another server's voucher)
        await store.applyChainSnapshots([{ ...overSettled, settled: 250n, block: 11n }]);
        const finalized = await mk(400n);
        await store.applyChainSnapshots([{ ...finalized, finalized: true, block: 11n }]);
        const nothingSpent = snapshot();
        expectOk(await accept(store, nothingSpent, 100n, 0n));

        const ids = (await store.listUnsettled(100)).map((c) => c.channelId);
        expect(ids).to.deep.equal([payerAsked, closingSoon, closingLate, big, small].map((c) => c.channelId));
        expect((await store.listUnsettled(2)).map((c) => c.channelId)).to.deep.equal([payerAsked.channelId, closingSoon.channelId]);
      });

      it("sums accepted, spent and settled, and the unsettled exposure of open channels", async () => {
        expect(await store.totals()).to.deep.equal({ channels: 0, accepted: 0n, spent: 0n, settled: 0n, unsettled: 0n });
        const a = snapshot();
        const b = snapshot();
        const f = snapshot();
        expectOk(await accept(store, a, 500n, 200n));
        expectOk(await accept(store, b, 300n, 300n));
        expectOk(await accept(store, f, 100n, 100n));
        await store.applyChainSnapshots([
          { ...a, settled: 50n, block: 11n },
          { ...b, settled: 400n, block: 11n }, // settled above spent (another server's voucher): no negative exposure
          { ...f, settled: 0n, finalized: true, block: 11n },
        ]);
        expect(await store.totals()).to.deep.equal({ channels: 3, accepted: 900n, spent: 600n, settled: 450n, unsettled: 150n });
      });

      it("answers a write probe, and refuses calls once closed", async () => {
        await store.ping();
        await store.close();
        await store.close();
        let err: unknown;
        try {
          await store.getChannel(hex(32));
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(Error);
      });
    });
  });
}
