/**
 * The store conformance suite: the behaviour every `ChannelStore` implementation must have (accounting rules inside
 * one atomic transaction, refusals write nothing, used-voucher window and floor, releases, chain snapshots where the
 * newer block wins, cursor, cooperative close, binding, concurrency). Run it against each implementation:
 *
 * ```ts
 * describeStoreConformance("sqlite", async () => { const url = tempDatabaseUrl(); return {
 *   store: new SqliteStore({ url }), reopen: async () => new SqliteStore({ url }), destroy: async () => {} }; });
 * ```
 */
import { expect } from "chai";
import { keccak256, toHex, type Address, type Hex } from "viem";
import { StoreBindingError, type ChainChannel, type ChannelStore } from "@paychan/server";

export interface StoreUnderTest {
  store: ChannelStore;
  /** Closes nothing; opens a second handle on the same data (after `store.close()` for a restart test). */
  reopen(): Promise<ChannelStore>;
  /** Removes the data. */
  destroy(): Promise<void>;
}

const A = (n: number) => `0x${n.toString(16).padStart(40, "0")}` as Address;
const PAYEE = A(0xbee);
const TOKEN = A(0x70c);
let counter = 0;
const sig = (n: bigint) => `0x${n.toString(16).padStart(130, "a")}` as Hex;

/** A chain snapshot of a new channel. */
export function chainChannel(over: Partial<ChainChannel> = {}): ChainChannel {
  counter++;
  return {
    channelId: keccak256(toHex(`conformance-${counter}-${Math.random()}`)),
    payer: A(0x1000 + counter),
    payee: PAYEE,
    token: TOKEN,
    signer: A(0x2000 + counter),
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

export function describeStoreConformance(name: string, make: () => Promise<StoreUnderTest>): void {
  describe(`store conformance: ${name}`, () => {
    let t: StoreUnderTest;
    let s: ChannelStore;
    const W = 64_000n; // window
    const accept = (chain: ChainChannel, amount: bigint, charge = 1000n, window = W) =>
      s.acceptVoucher({ chain, amount, signature: sig(amount), charge, window });

    beforeEach(async () => {
      t = await make();
      s = t.store;
    });
    afterEach(async () => {
      await s.close().catch(() => undefined);
      await t.destroy();
    });

    it("knows nothing before the first accepted voucher", async () => {
      expect(await s.getChannel(chainChannel().channelId)).to.equal(null);
      expect(await s.getCursor()).to.equal(null);
      expect(await s.activeChannels()).to.deep.equal([]);
    });

    it("accepts a voucher: stores chain state, accepted with its signature, spent, floor, used amount", async () => {
      const c = chainChannel();
      const r = await accept(c, 5000n);
      expect(r.ok).to.equal(true);
      const got = (await s.getChannel(c.channelId))!;
      expect(got).to.deep.include({ channelId: c.channelId, accepted: 5000n, spent: 1000n, floor: 0n, acceptedSignature: sig(5000n), deposit: 1_000_000n, closeDelay: 86_400 });
      expect(got.payer.toLowerCase()).to.equal(c.payer.toLowerCase());
      expect(got.signer.toLowerCase()).to.equal(c.signer.toLowerCase());
      expect((await accept(c, 5000n)).ok).to.equal(false);
    });

    it("applies the rule order: exceeds_deposit, voucher_too_low, voucher_reused, insufficient_voucher; refusals write nothing", async () => {
      const c = chainChannel({ deposit: 200_000n });
      expect(await accept(c, 500n)).to.deep.include({ ok: false, code: "insufficient_voucher", channel: null });
      expect(await s.getChannel(c.channelId)).to.equal(null);
      expect(await accept(c, 200_001n)).to.deep.include({ ok: false, code: "exceeds_deposit" });
      expect((await accept(c, 100_000n)).ok).to.equal(true); // floor = 100000 - 64000 = 36000
      const before = await s.getChannel(c.channelId);
      expect((await accept(c, 36_000n)) as { code?: string }).to.include({ code: "voucher_too_low" });
      expect((await accept(c, 100_000n)) as { code?: string }).to.include({ code: "voucher_reused" });
      expect((await accept(c, 50_000n, 99_001n)) as { code?: string }).to.include({ code: "insufficient_voucher" });
      const after = await s.getChannel(c.channelId);
      expect({ ...after, updatedAt: 0 }).to.deep.equal({ ...before, updatedAt: 0 });
    });

    it("keeps the signature of the highest voucher; lower unused vouchers above the floor still pay", async () => {
      const c = chainChannel();
      expect((await accept(c, 5000n)).ok).to.equal(true);
      expect((await accept(c, 3000n)).ok).to.equal(true);
      const got = (await s.getChannel(c.channelId))!;
      expect(got).to.deep.include({ accepted: 5000n, spent: 2000n, acceptedSignature: sig(5000n) });
    });

    it("raises the floor to accepted - window, never lowers it, and a pruned amount is too low (not reusable)", async () => {
      const c = chainChannel();
      expect((await accept(c, 10_000n)).ok).to.equal(true);
      expect((await accept(c, 100_000n)).ok).to.equal(true);
      expect((await s.getChannel(c.channelId))!.floor).to.equal(36_000n);
      expect((await accept(c, 10_000n)) as { code?: string }).to.include({ code: "voucher_too_low" });
      // a wider window later does not lower the floor
      expect((await accept(c, 90_000n, 1000n, 1_000_000n)).ok).to.equal(true);
      expect((await s.getChannel(c.channelId))!.floor).to.equal(36_000n);
    });

    it("releases charges (never below zero); the voucher stays used", async () => {
      const c = chainChannel();
      expect((await accept(c, 5000n, 3000n)).ok).to.equal(true);
      expect((await s.releaseCharge(c.channelId, 1000n))!.spent).to.equal(2000n);
      expect((await s.releaseCharge(c.channelId, 9999n))!.spent).to.equal(0n);
      expect(await s.releaseCharge(chainChannel().channelId, 1n)).to.equal(null);
      expect((await accept(c, 5000n)) as { code?: string }).to.include({ code: "voucher_reused" });
    });

    it("applies chain snapshots to stored channels only, newer block wins, and moves the cursor in the same transaction", async () => {
      const c = chainChannel({ block: 10n });
      const stranger = chainChannel();
      expect((await accept(c, 5000n)).ok).to.equal(true);
      await s.applyChainSnapshots([{ ...c, deposit: 2_000_000n, settled: 3000n, closeRequestedAt: 100, closesAt: 86_500, block: 12n }, stranger], { block: 12n, hash: `0x${"11".repeat(32)}` });
      expect(await s.getChannel(stranger.channelId)).to.equal(null);
      expect((await s.getChannel(c.channelId))!).to.deep.include({ deposit: 2_000_000n, settled: 3000n, closesAt: 86_500, block: 12n });
      expect(await s.getCursor()).to.deep.equal({ block: 12n, hash: `0x${"11".repeat(32)}` });
      await s.applyChainSnapshots([{ ...c, deposit: 1_000_000n, block: 11n }]); // older: ignored
      expect((await s.getChannel(c.channelId))!.deposit).to.equal(2_000_000n);
      // after a reorg the new chain's state replaces the old one whatever its block number
      await s.applyChainSnapshots([{ ...c, deposit: 1_500_000n, block: 11n }], { block: 11n }, { force: true });
      expect((await s.getChannel(c.channelId))!).to.deep.include({ deposit: 1_500_000n, block: 11n });
      expect((await s.getCursor())!.block).to.equal(11n);
      await s.applyChainSnapshots([{ ...c, deposit: 2_000_000n, settled: 3000n, closeRequestedAt: 100, closesAt: 86_500, block: 12n }]);
      // an accept carrying an older snapshot does not roll chain state back
      expect((await accept({ ...c, closesAt: 0, closeRequestedAt: 0, block: 11n }, 6000n)).ok).to.equal(true);
      expect((await s.getChannel(c.channelId))!.closesAt).to.equal(86_500);
      expect(await s.listUnsettled(10)).to.have.length(0); // spent 2000 <= settled 3000
    });

    it("refuses vouchers on finalized channels and on channels whose payer asked for a cooperative close", async () => {
      const c = chainChannel();
      expect((await accept(c, 5000n)).ok).to.equal(true);
      await s.applyChainSnapshots([{ ...c, finalized: true, block: 20n }]);
      expect((await accept(c, 6000n)) as { code?: string }).to.include({ code: "channel_finalized" });
      const d = chainChannel();
      expect((await accept(d, 5000n)).ok).to.equal(true);
      const closed = await s.requestCooperativeClose(d, 1234);
      expect(closed.payerCloseRequestedAt).to.equal(1234);
      expect((await s.requestCooperativeClose(d, 9999)).payerCloseRequestedAt).to.equal(1234); // idempotent
      expect((await accept(d, 6000n)) as { code?: string }).to.include({ code: "channel_closing" });
      const e = chainChannel();
      expect((await s.requestCooperativeClose(e, 77))).to.deep.include({ accepted: 0n, spent: 0n, acceptedSignature: null, payerCloseRequestedAt: 77 });
    });

    it("lists unsettled channels (pending closes first), active ids, and totals", async () => {
      const a = chainChannel();
      const b = chainChannel();
      expect((await accept(a, 10_000n, 5000n)).ok).to.equal(true);
      expect((await accept(b, 10_000n, 2000n)).ok).to.equal(true);
      await s.applyChainSnapshots([{ ...b, closeRequestedAt: 5, closesAt: 86_405, block: 11n }]);
      const list = await s.listUnsettled(10);
      expect(list.map((c) => c.channelId)).to.deep.equal([b.channelId, a.channelId]);
      const refs = (await s.activeChannels()).map((r) => `${r.channelId}|${r.signer.toLowerCase()}`);
      expect(refs.sort()).to.deep.equal([a, b].map((c) => `${c.channelId}|${c.signer.toLowerCase()}`).sort());
      expect(await s.totals()).to.deep.equal({ channels: 2, accepted: 20_000n, spent: 7000n, settled: 0n, unsettled: 7000n });
    });

    it("binds to one deployment and refuses another", async () => {
      const binding = { chainId: 31337, escrow: A(1), token: TOKEN, payee: PAYEE, genesisHash: `0x${"ab".repeat(32)}` as Hex };
      await s.bind(binding);
      await s.bind(binding);
      await s.bind({ ...binding, escrow: A(2) }).then(
        () => expect.fail("bound"),
        (e) => expect(e).to.be.instanceOf(StoreBindingError),
      );
    });

    it("serialises concurrent accepts: 50 copies of one voucher → one ok; 32 distinct → all ok", async () => {
      const c = chainChannel();
      const same = await Promise.all(Array.from({ length: 50 }, () => accept(c, 1000n)));
      expect(same.filter((r) => r.ok)).to.have.length(1);
      const d = chainChannel();
      const many = await Promise.all(Array.from({ length: 32 }, (_, k) => accept(d, BigInt(32 - k) * 1000n)));
      expect(many.every((r) => r.ok)).to.equal(true);
      expect((await s.getChannel(d.channelId))!).to.deep.include({ accepted: 32_000n, spent: 32_000n });
    });

    it("keeps everything across a close and reopen", async () => {
      const c = chainChannel();
      expect((await accept(c, 100_000n)).ok).to.equal(true);
      await s.applyChainSnapshots([], { block: 99n });
      const before = await s.getChannel(c.channelId);
      await s.close();
      s = await t.reopen();
      expect(await s.getChannel(c.channelId)).to.deep.equal(before);
      expect((await s.getCursor())!.block).to.equal(99n);
      expect((await accept(c, 100_000n)) as { code?: string }).to.include({ code: "voucher_reused" });
    });

    it("stores amounts up to 2^128 - 1 exactly", async () => {
      const max = (1n << 128n) - 1n;
      const c = chainChannel({ deposit: max });
      expect((await accept(c, max, max, max)).ok).to.equal(true);
      expect((await s.getChannel(c.channelId))!).to.deep.include({ accepted: max, spent: max, deposit: max, floor: 0n });
    });
  });
}
