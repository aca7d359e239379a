/**
 * Conformance checks of a {@link SettlementStore} (server/store/settlement-types.ts), shared by every store kind:
 * `settlementStoreConformance("sqlite", open)` registers a mocha `describe` block. The PostgreSQL store runs the same
 * function with its own `open`.
 */
import { expect } from "chai";
import { keccak256, toHex, type Address, type Hex } from "viem";
import type { SettlementStore } from "@paychan/server";
import type { ChainChannel, ChannelStore } from "@paychan/server";

export interface ConformanceStores {
  store: ChannelStore;
  settlement: SettlementStore;
  close(): Promise<void>;
}

const PAYEE = "0x00000000000000000000000000000000000000aa" as Address;
const TOKEN = "0x00000000000000000000000000000000000000bb" as Address;
const SENDER = "0x00000000000000000000000000000000000000cc" as Address;
const SIG = `0x${"11".repeat(65)}` as Hex;
const CLOSE_SIG = `0x${"2c".repeat(65)}` as Hex;
let n = 0;

function chain(over: Partial<ChainChannel> = {}): ChainChannel {
  n++;
  return {
    channelId: keccak256(toHex(`conformance-${n}-${Date.now()}`)),
    payer: "0x0000000000000000000000000000000000000001",
    payee: PAYEE,
    token: TOKEN,
    signer: "0x0000000000000000000000000000000000000002",
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

/** A stored channel with `spent` charged (one voucher of `spent`). */
async function paid(store: ChannelStore, spent: bigint, over: Partial<ChainChannel> = {}): Promise<ChainChannel> {
  const c = chain(over);
  const r = await store.acceptVoucher({ chain: c, amount: spent, signature: SIG, charge: spent, window: 1_000n });
  if (!r.ok) throw new Error(`acceptVoucher refused: ${r.code}`);
  return c;
}

let nonce = 1000;
function newTx(channels: ReadonlyArray<{ channelId: Hex; amount: bigint }>, o: { nonce?: number; replaces?: number; kind?: "settle" | "close" } = {}) {
  const hash = keccak256(toHex(`tx-${++nonce}-${Math.random()}`));
  return {
    kind: o.kind ?? ("settle" as const),
    sender: SENDER,
    payee: PAYEE,
    token: TOKEN,
    nonce: o.nonce ?? nonce,
    hash,
    rawTx: `0x02${hash.slice(2)}` as Hex,
    gasLimit: 100_000n,
    maxFeePerGas: 2_000_000_000n,
    maxPriorityFeePerGas: 1_000_000_000n,
    replaces: o.replaces,
    items: channels.map((c) => ({ channelId: c.channelId, cumulativeAmount: c.amount, amount: c.amount, previousSettled: 0n })),
  };
}

const ids = async (s: SettlementStore) => (await s.listCandidates({ limit: 10_000 })).map((c) => c.channelId.toLowerCase());

export function settlementStoreConformance(kind: string, open: () => Promise<ConformanceStores>): void {
  describe(`settlement store conformance: ${kind}`, () => {
    let h: ConformanceStores;
    beforeEach(async () => {
      h = await open();
    });
    afterEach(async () => h?.close());

    it("gives the settler lease to one holder at a time, renews it, and lets another take it after release or expiry", async () => {
      const s = h.settlement;
      expect(await s.tryAcquireSettlerLease("a", 60_000)).to.equal(true);
      expect(await s.tryAcquireSettlerLease("b", 60_000)).to.equal(false);
      expect(await s.tryAcquireSettlerLease("a", 60_000)).to.equal(true);
      await s.releaseSettlerLease("b"); // not the holder: no effect
      expect(await s.tryAcquireSettlerLease("b", 60_000)).to.equal(false);
      await s.releaseSettlerLease("a");
      expect(await s.tryAcquireSettlerLease("b", 50)).to.equal(true);
      await new Promise((r) => setTimeout(r, 120));
      if (kind === "sqlite") expect(await s.tryAcquireSettlerLease("c", 60_000)).to.equal(true); // expired
    });

    it("lists exactly the channels that owe something or were asked to close, not finalized, paged by id", async () => {
      const owes = await paid(h.store, 500n);
      const even = await paid(h.store, 500n, { settled: 500n });
      const done = await paid(h.store, 500n, { finalized: true });
      const asked = chain();
      await h.store.requestCooperativeClose(asked, 1_700_000_000, CLOSE_SIG);
      const got = await ids(h.settlement);
      expect(got).to.include(owes.channelId);
      expect(got).to.include(asked.channelId);
      expect(got).not.to.include(even.channelId);
      expect(got).not.to.include(done.channelId);
      const sorted = [...got].sort();
      expect(got).to.deep.equal(sorted);
      const first = await h.settlement.listCandidates({ limit: 1 });
      expect(first).to.have.length(1);
      const rest = await h.settlement.listCandidates({ limit: 100, after: first[0].channelId });
      expect(rest.map((c) => c.channelId)).to.deep.equal(got.slice(1));
      const c = (await h.settlement.listCandidates({ limit: 100 })).find((x) => x.channelId === owes.channelId)!;
      expect(c).to.include({ spent: 500n, accepted: 500n, settled: 0n, lastSettledAt: 0, closeRequestSignature: null });
      expect(c.acceptedSignature).to.equal(SIG);
      // The payer's close request signature comes with the candidate (the close shows it to the escrow as consent).
      const a = (await h.settlement.listCandidates({ limit: 100 })).find((x) => x.channelId === asked.channelId)!;
      expect(a).to.include({ payerCloseRequestedAt: 1_700_000_000, closeRequestSignature: CLOSE_SIG });
    });

    it("records a built transaction with pending items, hides its channels, and refuses a second claim or nonce", async () => {
      const a = await paid(h.store, 700n);
      const b = await paid(h.store, 800n);
      const tx = await h.settlement.insertTx(newTx([{ channelId: a.channelId, amount: 700n }], { nonce: 7 }));
      expect(tx).to.include({ status: "built", nonce: 7, broadcasts: 0, reorgs: 0, replaces: null, kind: "settle" });
      expect(tx.items).to.have.length(1);
      expect(tx.items[0]).to.include({ status: "pending", amount: 700n, cumulativeAmount: 700n, skipReason: null, settledAmount: null });
      expect(await ids(h.settlement)).not.to.include(a.channelId);
      let err: unknown;
      try {
        await h.settlement.insertTx(newTx([{ channelId: b.channelId, amount: 800n }, { channelId: a.channelId, amount: 700n }]));
      } catch (e) {
        err = e;
      }
      expect((err as Error)?.name).to.equal("SettlementConflictError");
      expect(await ids(h.settlement)).to.include(b.channelId); // nothing of the refused one was written
      err = undefined;
      try {
        await h.settlement.insertTx(newTx([{ channelId: b.channelId, amount: 800n }], { nonce: 7 }));
      } catch (e) {
        err = e;
      }
      expect((err as Error)?.name).to.equal("SettlementConflictError");
      // A fee-bump replacement may reuse the nonce and the channels of the transaction it replaces.
      const r = await h.settlement.insertTx(newTx([{ channelId: a.channelId, amount: 700n }], { nonce: 7, replaces: tx.id }));
      expect(r.replaces).to.equal(tx.id);
      expect((await h.settlement.openTxs()).map((t) => t.id)).to.deep.equal([tx.id, r.id]);
    });

    it("moves a transaction only from an expected status (compare-and-set); a reorg clears the block; drop frees the channels", async () => {
      const a = await paid(h.store, 900n);
      const tx = await h.settlement.insertTx(newTx([{ channelId: a.channelId, amount: 900n }]));
      const sent = await h.settlement.updateTx(tx.id, ["built"], { status: "sent", sentAt: 123, broadcast: true });
      expect(sent).to.include({ status: "sent", sentAt: 123, broadcasts: 1 });
      expect(await h.settlement.updateTx(tx.id, ["built"], { status: "sent" })).to.equal(null);
      const blockHash = keccak256(toHex("block"));
      const mined = await h.settlement.updateTx(tx.id, ["sent"], { status: "mined", blockNumber: 42n, blockHash, minedAt: 456, gasUsed: 60_000n, effectiveGasPrice: 7n });
      expect(mined).to.include({ status: "mined", blockNumber: 42n, blockHash, minedAt: 456, gasUsed: 60_000n, effectiveGasPrice: 7n });
      const back = await h.settlement.updateTx(tx.id, ["mined"], { status: "sent", reorged: true });
      expect(back).to.include({ status: "sent", blockNumber: null, blockHash: null, minedAt: null, gasUsed: null, reorgs: 1 });
      expect(await ids(h.settlement)).not.to.include(a.channelId);
      const dropped = await h.settlement.updateTx(tx.id, ["sent", "mined"], { status: "dropped", error: "nonce used by another transaction" });
      expect(dropped).to.include({ status: "dropped", error: "nonce used by another transaction" });
      expect(dropped!.finishedAt).to.be.a("number");
      expect(dropped!.items[0].status).to.equal("dropped");
      expect(await ids(h.settlement)).to.include(a.channelId);
      expect((await h.settlement.openTxs()).map((t) => t.id)).not.to.include(tx.id);
    });

    it("confirms once, raising settled (never lowering it) and finalizing closed channels in the same transaction", async () => {
      const a = await paid(h.store, 1_000n);
      const b = await paid(h.store, 2_000n);
      const tx = await h.settlement.insertTx(newTx([{ channelId: a.channelId, amount: 1_000n }, { channelId: b.channelId, amount: 2_000n }]));
      const blockHash = keccak256(toHex("b"));
      const conf = {
        blockNumber: 50n,
        blockHash,
        gasUsed: 80_000n,
        effectiveGasPrice: 1n,
        amountSettled: 1_000n,
        items: [
          { channelId: a.channelId, status: "settled" as const, settledAmount: 1_000n },
          { channelId: b.channelId, status: "skipped" as const, skipReason: "AmountNotAboveSettled" as const },
        ],
      };
      const done = await h.settlement.confirmTx(tx.id, conf);
      expect(done).to.include({ status: "confirmed", amountSettled: 1_000n, gasUsed: 80_000n, blockNumber: 50n });
      expect(done!.items.map((i) => [i.status, i.skipReason, i.settledAmount])).to.deep.equal([
        ["settled", null, 1_000n],
        ["skipped", "AmountNotAboveSettled", null],
      ]);
      expect(await h.settlement.confirmTx(tx.id, conf)).to.equal(null);
      expect((await h.store.getChannel(a.channelId))!.settled).to.equal(1_000n);
      expect((await h.store.getChannel(b.channelId))!.settled).to.equal(0n);
      const listed = await h.settlement.listCandidates({ limit: 100 });
      expect(listed.map((c) => c.channelId)).not.to.include(a.channelId);
      // b is still owed (the skip reason is not permanent): candidate again
      expect(listed.map((c) => c.channelId)).to.include(b.channelId);

      // A confirmation with a lower amount never lowers settled; a close finalizes.
      const tx2 = await h.settlement.insertTx(newTx([{ channelId: b.channelId, amount: 2_000n }], { kind: "close" }));
      await h.settlement.confirmTx(tx2.id, { ...conf, items: [{ channelId: b.channelId, status: "closed", settledAmount: 2_000n }] });
      const tx3 = await h.settlement.insertTx(newTx([{ channelId: a.channelId, amount: 1_000n }]));
      await h.settlement.confirmTx(tx3.id, { ...conf, items: [{ channelId: a.channelId, status: "settled", settledAmount: 400n }] });
      expect((await h.store.getChannel(a.channelId))!.settled).to.equal(1_000n);
      const bb = (await h.store.getChannel(b.channelId))!;
      expect(bb).to.include({ settled: 2_000n, finalized: true });
      const c = (await h.settlement.getTx(tx2.id))!;
      expect(c.finishedAt).to.be.a("number");
    });

    it("stops offering a channel whose claim was skipped for a permanent reason until its amounts change", async () => {
      const c = await paid(h.store, 3_000n);
      const tx = await h.settlement.insertTx(newTx([{ channelId: c.channelId, amount: 3_000n }]));
      await h.settlement.confirmTx(tx.id, {
        blockNumber: 1n,
        blockHash: keccak256(toHex("x")),
        gasUsed: 1n,
        effectiveGasPrice: 1n,
        amountSettled: 0n,
        items: [{ channelId: c.channelId, status: "skipped", skipReason: "InvalidSignature" }],
      });
      expect(await ids(h.settlement)).not.to.include(c.channelId);
      const r = await h.store.acceptVoucher({ chain: c, amount: 3_500n, signature: SIG, charge: 500n, window: 1_000n });
      expect(r.ok).to.equal(true);
      expect(await ids(h.settlement)).to.include(c.channelId);
    });

    it("reports lastSettledAt from the latest confirmed settlement of a channel", async () => {
      const c = await paid(h.store, 100n);
      const before = Date.now();
      const tx = await h.settlement.insertTx(newTx([{ channelId: c.channelId, amount: 100n }]));
      await h.settlement.confirmTx(tx.id, {
        blockNumber: 1n,
        blockHash: keccak256(toHex("y")),
        gasUsed: 1n,
        effectiveGasPrice: 1n,
        amountSettled: 100n,
        items: [{ channelId: c.channelId, status: "settled", settledAmount: 60n }],
      });
      const cand = (await h.settlement.listCandidates({ limit: 100 })).find((x) => x.channelId === c.channelId)!;
      expect(cand.settled).to.equal(60n);
      expect(cand.lastSettledAt).to.be.at.least(before);
    });

    it("finds the earliest pending close deadline", async () => {
      expect(await h.settlement.earliestCloseDeadline()).to.equal(null);
      const a = await paid(h.store, 10n);
      const b = await paid(h.store, 10n);
      await h.store.applyChainSnapshots([
        { ...a, closeRequestedAt: 1_000, closesAt: 90_000, block: 20n },
        { ...b, closeRequestedAt: 1_000, closesAt: 50_000, block: 20n },
      ]);
      expect(await h.settlement.earliestCloseDeadline()).to.deep.equal({ channelId: b.channelId.toLowerCase(), closesAt: 50_000 });
    });

    it("lists recent transactions newest first", async () => {
      const a = await paid(h.store, 10n);
      const b = await paid(h.store, 10n);
      const t1 = await h.settlement.insertTx(newTx([{ channelId: a.channelId, amount: 10n }]));
      const t2 = await h.settlement.insertTx(newTx([{ channelId: b.channelId, amount: 10n }]));
      expect((await h.settlement.recentTxs(10)).map((t) => t.id)).to.deep.equal([t2.id, t1.id]);
      expect((await h.settlement.getTx(t1.id))!.hash).to.equal(t1.hash);
    });
  });
}
