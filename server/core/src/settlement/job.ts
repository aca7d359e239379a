/**
 * The settlement job: one cycle ({@link SettlementJob.runOnce}) reconciles the transactions already recorded, picks
 * channels by policy, and submits `settle` batches and cooperative `close`s, recording every step in the
 * {@link SettlementStore} before acting on it.
 *
 * Crash safety (idempotence) comes from three rules:
 * 1. A transaction is signed locally and recorded (`built`, with hash, nonce and raw bytes) BEFORE it is broadcast.
 *    After a crash at any point the job finds it in `openTxs()` and looks its hash up: mined → record it; unknown
 *    and its nonce still free → broadcast the same bytes again (same hash: it can only land once); nonce used by
 *    another transaction → `dropped`, and its channels become candidates again.
 * 2. A channel with a `pending` item is never claimed by another transaction (except a same-nonce fee bump, which
 *    can only land instead of it).
 * 3. Claims are cumulative (`amount = spent`), and channel `settled` only moves from chain facts: the confirmed
 *    receipt's `Settled` / `Closed` logs (raised, never lowered, in the same store transaction that confirms) and
 *    chain snapshots. Re-sending a claim that already landed is skipped by the contract (`AmountNotAboveSettled`).
 *
 * Re-submission: a transaction not in the node's pool and whose nonce is still free is re-broadcast as is (dropped
 * from a mempool, or removed by a reorg: the same nonce is right, the identical bytes are still valid). A
 * transaction pending longer than `resubmitAfter` is replaced with the same calldata and nonce at ≥ 12.5 % higher
 * fees (whichever lands, the other is dropped). A transaction whose nonce was consumed by another one gets a fresh
 * nonce through a new batch, never the old one.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Hex } from "viem";
import type { ChannelRef } from "@paychan/protocol";
import type { ChainReader } from "../chain/reader";
import {
  OPEN_TX_STATUSES,
  PERMANENT_SKIP_REASONS,
  SettlementConflictError,
  type SettlementCandidate,
  type SettlementStore,
  type SettlementTx,
  type SettlementTxKind,
  type SkipReason,
} from "../store/settlement-types";
import type { ChainChannel, ChannelStore, StoredChannel } from "../store/types";
import { gasLimitFor, planBatches, plannedSettleGas } from "./batch";
import { bumpFees, decodeRawTransaction, SettlementRevertError, type CloseClaim, type Fees, type SettlementChain } from "./chain";
import type { SettlementConfig } from "./config";
import type { SettlementMetrics } from "./metrics";
import { claimable, decide, urgencyOrder, type PolicyConfig, type SelectReason, type SettlementAction } from "./policy";
import { decodeSettlementReceipt } from "./receipt";

/**
 * Points where a test can stop the job (fault injection) or observe it:
 * `batch` (claims chosen, nothing signed), `built` (recorded, not broadcast), `broadcast` (handed to the node, not
 * yet recorded as sent), `receipt` (receipt seen, not yet recorded).
 */
export type SettlementStep = "batch" | "built" | "broadcast" | "receipt";

export interface SettlementJobOptions {
  store: ChannelStore;
  settlement: SettlementStore;
  chain: SettlementChain;
  /** Chain reads of channels (snapshots applied to the store). */
  reader: ChainReader;
  config: SettlementConfig;
  /** `config.threshold` in atomic units. */
  threshold: bigint;
  /** Lease holder name (default: a random id per job). */
  holder?: string;
  logger?: Logger;
  metrics?: SettlementMetrics;
  /** Called at each {@link SettlementStep}; may throw (or kill the process) to simulate a crash. */
  onStep?: (step: SettlementStep, info: { tx?: SettlementTx; channelIds?: readonly Hex[] }) => void | Promise<void>;
  /** Called with chain snapshots the job read (the server updates its channel view with them). */
  onChannels?: (snapshots: readonly ChainChannel[]) => void;
  /** Receipt polling period while waiting, ms (default 1,000). */
  pollInterval?: number;
  /** Settler lease lifetime, ms (default: max(60 s, 2 × the wait timeout)); renewed while a cycle waits. */
  leaseTtlMs?: number;
}

export interface RunOptions {
  /** Settle everything owed, whatever the thresholds (`npm run settle --all`). */
  all?: boolean;
  /** Wait until the transactions are final (confirmed, failed or dropped), at most `waitTimeoutMs`. */
  wait?: boolean;
  waitTimeoutMs?: number;
  /** Re-read every candidate from the chain first (the one-shot command, which runs without the event follower). */
  refreshCandidates?: boolean;
  /** Show what would be done; send nothing. */
  dryRun?: boolean;
}

/** One transaction in a run report. */
export interface TxSummary {
  id: number;
  kind: SettlementTxKind;
  status: SettlementTx["status"];
  hash: Hex;
  nonce: number;
  channels: number;
  /** Channels whose settled amount rose (settle) or that were closed (close). */
  settled: number;
  skipped: Array<{ channelId: Hex; reason: SkipReason }>;
  amount: bigint;
  gasUsed: bigint | null;
  error: string | null;
}

export interface SettlementRunReport {
  /** False when another settler held the lease (nothing was done). */
  leased: boolean;
  startedAt: number;
  finishedAt: number;
  /** What the policy picked, by reason. */
  selected: Partial<Record<SelectReason, number>>;
  /** In a dry run: the channels that would be settled or closed. */
  plan: Array<{ channelId: Hex; action: SettlementAction["action"]; reason: SelectReason; amount: bigint }>;
  /** Transactions this run created or moved. */
  txs: TxSummary[];
  /** Channels settled by `settle` transactions confirmed in this run. */
  channelsSettled: number;
  /** Channels closed by `close` transactions confirmed in this run. */
  channelsClosed: number;
  /** Paid to the payee by transactions confirmed in this run. */
  amountSettled: bigint;
  /** Gas of the transactions confirmed or failed in this run. */
  gasUsed: bigint;
  /** Gas of confirmed `settle` transactions / channels they settled (null when none). */
  gasPerChannel: number | null;
  skipped: Array<{ channelId: Hex; reason: SkipReason; permanent: boolean }>;
  /** Everything that went wrong (reverts, RPC errors, failed or dropped transactions, permanent skips). */
  failures: string[];
  /** Transactions still open at the end (sent but not yet confirmed). */
  pending: number;
  /** The wait for confirmations ran out. */
  timedOut: boolean;
  /** Unix ms when a close waiting for its grace period becomes due (the scheduler wakes then). */
  nextDueAt: number | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The node's own words for an RPC error (viem keeps them in `details`), for logs. */
function detailsOf(e: unknown): string | undefined {
  const d = (e as { details?: unknown })?.details;
  return typeof d === "string" ? d.slice(0, 500) : undefined;
}

function describe(e: unknown): string {
  const msg = e instanceof Error ? ((e as { shortMessage?: string }).shortMessage ?? e.message) : String(e);
  return msg.split("\n")[0].slice(0, 300);
}

/** The chain part of a stored channel (what `requestCooperativeClose` takes). */
function chainOf(c: StoredChannel): ChainChannel {
  return {
    channelId: c.channelId,
    payer: c.payer,
    payee: c.payee,
    token: c.token,
    signer: c.signer,
    deposit: c.deposit,
    settled: c.settled,
    closeDelay: c.closeDelay,
    closeRequestedAt: c.closeRequestedAt,
    closesAt: c.closesAt,
    finalized: c.finalized,
    block: c.block,
  };
}

export class SettlementJob {
  readonly holder: string;
  private readonly o: SettlementJobOptions;
  private readonly policy: PolicyConfig;
  private readonly log?: Logger;
  private stopping = false;
  /** Transactions touched by the current run, latest state. */
  private touched = new Map<number, SettlementTx>();
  private report!: SettlementRunReport;

  constructor(o: SettlementJobOptions) {
    this.o = o;
    this.holder = o.holder ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.policy = { threshold: o.threshold, maxAge: o.config.maxAge, exhaustedPercent: o.config.exhaustedPercent };
    this.log = o.logger?.child({ component: "settlement" });
  }

  /** Checks the settler may settle for the payee; throws with an operator-facing message otherwise. */
  async preflight(): Promise<void> {
    const c = this.o.chain;
    if (!(await c.authorized())) {
      throw new Error(`the settler ${c.sender} is neither the payee ${c.payee} nor an operator it approved (payee must call setOperator(${c.sender}, true))`);
    }
    const balance = await c.balance();
    if (balance === 0n) this.log?.warn({ settler: c.sender }, "the settler has no native balance to pay gas");
  }

  /** Makes a running wait loop return early (server shutdown). */
  stop(): void {
    this.stopping = true;
  }

  /** One settlement cycle. Errors are reported in `failures`; only a {@link SimulatedStop} from a test hook is thrown. */
  async runOnce(opts: RunOptions = {}): Promise<SettlementRunReport> {
    const started = Date.now();
    this.touched = new Map();
    const r: SettlementRunReport = (this.report = {
      leased: true,
      startedAt: started,
      finishedAt: started,
      selected: {},
      plan: [],
      txs: [],
      channelsSettled: 0,
      channelsClosed: 0,
      amountSettled: 0n,
      gasUsed: 0n,
      gasPerChannel: null,
      skipped: [],
      failures: [],
      pending: 0,
      timedOut: false,
      nextDueAt: null,
    });
    const waitMs = opts.waitTimeoutMs ?? this.o.config.waitTimeout * 1000;
    const ttl = this.o.leaseTtlMs ?? Math.max(60_000, 2 * waitMs);
    let leased = false;
    try {
      leased = await this.o.settlement.tryAcquireSettlerLease(this.holder, ttl);
    } catch (e) {
      r.failures.push(`settler lease: ${describe(e)}`);
    }
    if (!leased) {
      r.leased = false;
      r.finishedAt = Date.now();
      this.o.metrics?.cycle(r.failures.length ? "failed" : "lease_busy", (r.finishedAt - started) / 1000);
      return r;
    }
    let crashed: SimulatedStop | null = null;
    try {
      await this.reconcile();
      const deadline = Date.now() + waitMs;
      // A dropped transaction frees its channels: the one-shot re-selects them (up to three rounds).
      for (let round = 0; round < (opts.wait ? 3 : 1); round++) {
        const dropsBefore = this.countDropped();
        await this.selectAndSubmit(opts);
        if (opts.dryRun || !opts.wait) break;
        await this.waitFinal(deadline, ttl);
        if (r.timedOut || this.countDropped() === dropsBefore) break;
      }
    } catch (e) {
      if (e instanceof SimulatedStop) crashed = e;
      else {
        r.failures.push(describe(e));
        this.log?.error({ err: describe(e), details: detailsOf(e) }, "settlement cycle failed");
      }
    } finally {
      // A simulated crash keeps the lease, as a killed process would (it lapses after its TTL).
      if (!crashed) await this.o.settlement.releaseSettlerLease(this.holder).catch(() => undefined);
    }
    if (crashed) throw crashed;
    try {
      r.pending = (await this.o.settlement.openTxs()).length;
    } catch {
      /* reported elsewhere */
    }
    this.summarise(r);
    r.finishedAt = Date.now();
    this.o.metrics?.cycle(r.failures.length ? "failed" : "ok", (r.finishedAt - started) / 1000);
    return r;
  }

  private countDropped(): number {
    let n = 0;
    for (const t of this.touched.values()) if (t.status === "dropped") n++;
    return n;
  }

  private async step(step: SettlementStep, info: { tx?: SettlementTx; channelIds?: readonly Hex[] }): Promise<void> {
    await this.o.onStep?.(step, info);
  }

  private touch(tx: SettlementTx): SettlementTx {
    this.touched.set(tx.id, tx);
    return tx;
  }

  /** Records a final status in metrics and logs (called once: only after the store's compare-and-set succeeded). */
  private finished(tx: SettlementTx): void {
    this.touch(tx);
    this.o.metrics?.txFinished(tx);
    const base = { txId: tx.id, kind: tx.kind, hash: tx.hash, nonce: tx.nonce };
    if (tx.status === "confirmed") {
      const skipped = tx.items.filter((i) => i.status === "skipped");
      this.log?.info(
        {
          ...base,
          block: String(tx.blockNumber),
          gasUsed: String(tx.gasUsed),
          amount: String(tx.amountSettled),
          channels: tx.items.length,
          settled: tx.items.filter((i) => i.status === "settled" || i.status === "closed").length,
          skipped: skipped.length,
        },
        "settlement confirmed",
      );
      for (const s of skipped) {
        const permanent = PERMANENT_SKIP_REASONS.includes(s.skipReason!);
        this.log?.[permanent ? "error" : "info"]({ txId: tx.id, channelId: s.channelId, reason: s.skipReason }, "settlement item skipped");
      }
    } else {
      this.log?.warn({ ...base, status: tx.status, error: tx.error }, `settlement ${tx.status}`);
    }
  }

  // ------------------------------------------------------------------ reconcile

  /** Moves every open transaction as far as the chain allows. */
  private async reconcile(): Promise<void> {
    const open = await this.o.settlement.openTxs();
    if (open.length === 0) return;
    // Nonces first (per sender: the key may have been rotated), receipts after: a nonce seen as used was used by a
    // transaction mined before the receipt lookups.
    const nonces = new Map<string, number>();
    for (const tx of open) {
      const k = tx.sender.toLowerCase();
      if (!nonces.has(k)) nonces.set(k, await this.o.chain.nonceOf(tx.sender, "latest"));
    }
    const head = await this.o.chain.head();
    for (const tx of open) {
      try {
        await this.reconcileTx(tx, open, nonces.get(tx.sender.toLowerCase())!, head.number);
      } catch (e) {
        if (e instanceof SimulatedStop) throw e;
        this.report.failures.push(`transaction #${tx.id} (${tx.hash}): ${describe(e)}`);
        this.log?.warn({ txId: tx.id, hash: tx.hash, err: describe(e) }, "settlement reconcile failed");
      }
    }
  }

  private async reconcileTx(tx: SettlementTx, open: readonly SettlementTx[], latestNonce: number, head: bigint): Promise<void> {
    const s = this.o.settlement;
    const receipt = await this.o.chain.receipt(tx.hash);
    if (receipt) {
      await this.step("receipt", { tx });
      let cur = tx;
      if (tx.status !== "mined" || tx.blockHash !== receipt.blockHash) {
        const u = await s.updateTx(tx.id, OPEN_TX_STATUSES, {
          status: "mined",
          sentAt: tx.sentAt ?? Date.now(),
          minedAt: Date.now(),
          blockNumber: receipt.blockNumber,
          blockHash: receipt.blockHash,
          gasUsed: receipt.gasUsed,
          effectiveGasPrice: receipt.effectiveGasPrice ?? null,
        });
        if (!u) return; // moved by someone else meanwhile
        cur = this.touch(u);
      }
      if (head - receipt.blockNumber + 1n < BigInt(this.o.config.confirmations)) return;
      if (receipt.status === "success") {
        const conf = decodeSettlementReceipt(receipt, {
          kind: cur.kind,
          escrow: this.o.chain.escrow,
          token: this.o.chain.token,
          payee: this.o.chain.payee,
          channelIds: cur.items.map((i) => i.channelId),
        });
        const done = await s.confirmTx(cur.id, conf);
        if (done) {
          this.finished(done);
          // The confirmation already applied the logs; a fresh read also catches what happened since.
          await this.refsOf(done.items.map((i) => i.channelId))
            .then((refs) => this.refreshChannels(refs))
            .catch(() => undefined);
        }
      } else {
        const failed = await s.updateTx(cur.id, OPEN_TX_STATUSES, { status: "failed", error: "reverted on chain" });
        if (failed) {
          this.finished(failed);
          this.report.failures.push(`transaction #${failed.id} (${failed.hash}) reverted on chain`);
        }
      }
      return;
    }

    let cur = tx;
    if (tx.status === "mined") {
      // It was in a block that is no longer in the chain.
      const u = await s.updateTx(tx.id, ["mined"], { status: "sent", reorged: true });
      if (!u) return;
      cur = this.touch(u);
      this.o.metrics?.reorg();
      this.log?.warn({ txId: tx.id, hash: tx.hash, block: String(tx.blockNumber) }, "settlement removed by a reorg; re-sending");
    }
    if (latestNonce > cur.nonce) {
      if (await this.o.chain.receipt(cur.hash)) return; // it was this one after all; the next pass records it
      const sibling = open.find((o) => o.id !== cur.id && o.nonce === cur.nonce && o.sender === cur.sender);
      const d = await s.updateTx(cur.id, OPEN_TX_STATUSES, {
        status: "dropped",
        error: sibling ? `nonce ${cur.nonce} used by another transaction (replacement #${sibling.id} or a foreign one)` : `nonce ${cur.nonce} used by another transaction`,
      });
      if (d) this.finished(d);
      return;
    }
    const newer = open.find((o) => o.nonce === cur.nonce && o.sender === cur.sender && o.id > cur.id);
    const pending = cur.status !== "built" && (await this.o.chain.isPending(cur.hash));
    if (!pending && newer && cur.status !== "built") {
      // Evicted from the pool by our own fee-bump replacement: that one carries the same claims now.
      const d = await s.updateTx(cur.id, ["sent"], { status: "dropped", error: `superseded by replacement #${newer.id}` });
      if (d) this.finished(d);
      return;
    }
    if (!pending) {
      await this.send(cur);
      return;
    }
    // Pending in the node's pool: replace it with higher fees when stuck (only the newest of its nonce group).
    const since = cur.sentAt ?? cur.createdAt;
    if (!newer && Date.now() - since >= this.o.config.resubmitAfter * 1000) await this.replace(cur);
  }

  /** Broadcasts a recorded transaction and records it as sent. */
  private async send(tx: SettlementTx): Promise<void> {
    const res = await this.o.chain.broadcast(tx.rawTx);
    await this.step("broadcast", { tx });
    if (res === "accepted" || res === "known") {
      const u = await this.o.settlement.updateTx(tx.id, ["built", "sent"], { status: "sent", sentAt: tx.sentAt ?? Date.now(), broadcast: true });
      if (u) this.touch(u);
      if (tx.status === "built") this.log?.info({ txId: tx.id, kind: tx.kind, hash: tx.hash, nonce: tx.nonce, channels: tx.items.length }, "settlement sent");
      else this.log?.info({ txId: tx.id, hash: tx.hash }, "settlement re-broadcast");
    } else {
      // nonce_too_low: the nonce was used (by this transaction, or another; the next pass tells which).
      // underpriced: another transaction with this nonce is in the pool (a replacement, or a foreign one).
      this.log?.warn({ txId: tx.id, hash: tx.hash, result: res }, "settlement broadcast not accepted");
    }
  }

  /** A same-nonce replacement of a stuck transaction: same calldata and gas, higher fees. */
  private async replace(tx: SettlementTx): Promise<void> {
    const old = decodeRawTransaction(tx.rawTx);
    const fees = bumpFees(old.fees, await this.o.chain.fees());
    if (!this.feesAllowed(fees)) return;
    const { raw, hash } = await this.o.chain.sign({ data: old.data, nonce: tx.nonce, gas: old.gas, fees });
    const n = await this.o.settlement.insertTx({
      kind: tx.kind,
      sender: tx.sender,
      payee: tx.payee,
      token: tx.token,
      nonce: tx.nonce,
      hash,
      rawTx: raw,
      gasLimit: old.gas,
      maxFeePerGas: fees.type === "eip1559" ? fees.maxFeePerGas : fees.gasPrice,
      maxPriorityFeePerGas: fees.type === "eip1559" ? fees.maxPriorityFeePerGas : fees.gasPrice,
      replaces: tx.id,
      items: tx.items.map((i) => ({ channelId: i.channelId, cumulativeAmount: i.cumulativeAmount, amount: i.amount, previousSettled: i.previousSettled })),
    });
    this.touch(n);
    this.log?.warn({ txId: n.id, replaces: tx.id, hash, nonce: tx.nonce }, "settlement stuck; replacing with higher fees");
    await this.step("built", { tx: n });
    await this.send(n);
  }

  private feesAllowed(fees: Fees): boolean {
    const cap = this.o.config.maxFeePerGas;
    const fee = fees.type === "eip1559" ? fees.maxFeePerGas : fees.gasPrice;
    if (cap !== undefined && fee > cap) {
      const msg = `fee ${fee} wei/gas is above SETTLE_MAX_FEE_GWEI (${cap} wei/gas); not sending`;
      this.report.failures.push(msg);
      this.log?.warn({ fee: String(fee), cap: String(cap) }, "settlement fee above the cap; not sending");
      return false;
    }
    return true;
  }

  private async waitFinal(deadline: number, ttl: number): Promise<void> {
    const poll = this.o.pollInterval ?? 1_000;
    for (;;) {
      if ((await this.o.settlement.openTxs()).length === 0) return;
      if (this.stopping) return;
      if (Date.now() >= deadline) {
        this.report.timedOut = true;
        return;
      }
      await sleep(poll);
      // Renew the lease; if another settler holds it now (ours expired), stop here: it reconciles our open
      // transactions itself, and two settlers re-broadcasting the same transactions would only waste requests.
      if (!(await this.o.settlement.tryAcquireSettlerLease(this.holder, ttl))) {
        this.log?.warn("settler lease lost while waiting for confirmations; leaving the rest to the new holder");
        return;
      }
      await this.reconcile();
    }
  }

  // ------------------------------------------------------------------ select and submit

  private async allCandidates(): Promise<SettlementCandidate[]> {
    const out: SettlementCandidate[] = [];
    let after: Hex | undefined;
    for (;;) {
      const page = await this.o.settlement.listCandidates({ limit: 2_000, after });
      out.push(...page);
      if (page.length < 2_000) return out;
      after = page[page.length - 1].channelId;
    }
  }

  /** The stored channels among `ids`, named as the escrow reads them (id and signer). */
  private async refsOf(ids: readonly Hex[]): Promise<ChannelRef[]> {
    const stored = await Promise.all(ids.map((id) => this.o.store.getChannel(id)));
    return stored.filter((c): c is StoredChannel => c !== null).map((c) => ({ channelId: c.channelId, signer: c.signer }));
  }

  /** Reads channels from the chain at the head and applies the snapshots (store and, in the server, the view). */
  private async refreshChannels(refs: readonly ChannelRef[]): Promise<Map<string, ChainChannel>> {
    const out = new Map<string, ChainChannel>();
    if (refs.length === 0) return out;
    try {
      const head = await this.o.chain.head();
      const snaps = await this.o.reader.readChannels(refs, head.number);
      await this.o.store.applyChainSnapshots(snaps);
      this.o.onChannels?.(snaps);
      for (const s of snaps) out.set(s.channelId.toLowerCase(), s);
    } catch (e) {
      this.log?.warn({ err: describe(e) }, "could not refresh channels after settlement");
      throw e;
    }
    return out;
  }

  private async selectAndSubmit(opts: RunOptions): Promise<void> {
    const r = this.report;
    let cands = await this.allCandidates();
    if (opts.refreshCandidates && cands.length > 0) {
      await this.refreshChannels(cands);
      cands = await this.allCandidates();
    }
    const nowMs = Date.now();
    const picked = cands
      .map((c) => ({ c, d: decide(c, this.policy, { nowMs, all: opts.all }) }))
      .filter((x): x is { c: SettlementCandidate; d: SettlementAction } => x.d !== null)
      .sort(urgencyOrder);
    for (const { d } of picked) r.selected[d.reason] = (r.selected[d.reason] ?? 0) + 1;
    if (opts.dryRun) {
      r.plan = picked.map(({ c, d }) => ({ channelId: c.channelId, action: d.action, reason: d.reason, amount: claimable(c) - c.settled }));
      return;
    }
    if (picked.length) this.log?.info({ selected: r.selected }, "settlement selected channels");
    for (const { c } of picked.filter((x) => x.d.action === "close")) {
      try {
        await this.submitClose(c);
      } catch (e) {
        if (e instanceof SimulatedStop) throw e;
        r.failures.push(`close ${c.channelId}: ${describe(e)}`);
      }
    }
    const settles = picked.filter((x) => x.d.action === "settle").map((x) => x.c);
    if (settles.length) await this.submitSettles(settles);
  }

  /**
   * Cooperative close: first mark the channel closing in the store (the server refuses new charges on it from then
   * on), let in-flight requests finish for `closeGrace`, then `close(channelId, accepted, spent, signature)`.
   */
  private async submitClose(c: StoredChannel): Promise<void> {
    const r = this.report;
    let ch: StoredChannel = c;
    const nowS = Math.floor(Date.now() / 1000);
    if (ch.payerCloseRequestedAt === 0) {
      ch = await this.o.store.requestCooperativeClose(chainOf(ch), nowS);
      this.log?.info({ channelId: ch.channelId, closesAt: ch.closesAt }, "close requested on chain: charges stopped, closing");
    }
    const dueAt = (ch.payerCloseRequestedAt + this.o.config.closeGrace) * 1000;
    if (Date.now() < dueAt) {
      r.nextDueAt = r.nextDueAt === null ? dueAt : Math.min(r.nextDueAt, dueAt);
      return;
    }
    const snap = (await this.refreshChannels([ch])).get(ch.channelId.toLowerCase());
    if (!snap || snap.finalized) return; // unknown (a reorged open) or already closed/withdrawn: nothing to do
    const stored = (await this.o.store.getChannel(ch.channelId))!;
    const amount = claimable({ ...stored, deposit: snap.deposit });
    const pays = amount > snap.settled;
    const claim: CloseClaim = pays
      ? { channelId: stored.channelId, signer: stored.signer, cumulativeAmount: stored.accepted, amount, signature: stored.acceptedSignature! }
      : { channelId: stored.channelId, signer: stored.signer, cumulativeAmount: 0n, amount: 0n, signature: "0x" };
    const data = this.o.chain.closeData(claim);
    let estimate: bigint;
    try {
      estimate = await this.o.chain.estimate(data);
    } catch (e) {
      if (e instanceof SettlementRevertError && e.errorName === "ChannelFinalized") return;
      throw e;
    }
    await this.sendNew("close", data, estimate, [
      { channelId: claim.channelId, cumulativeAmount: claim.cumulativeAmount, amount: claim.amount, previousSettled: snap.settled },
    ]);
  }

  /** Re-reads the chosen channels, then submits `settle` batches under the size and gas limits. */
  private async submitSettles(list: readonly SettlementCandidate[]): Promise<void> {
    const r = this.report;
    const snaps = await this.refreshChannels(list);
    const claims: Array<{ channelId: Hex; cumulativeAmount: bigint; amount: bigint; signature: Hex; previousSettled: bigint }> = [];
    for (const c of list) {
      const s = snaps.get(c.channelId.toLowerCase());
      if (!s || s.finalized) continue; // withdrawn or closed meanwhile
      if (s.closesAt > 0) {
        // A close was requested since the store last looked: it becomes a cooperative close.
        try {
          await this.submitClose({ ...c, ...s });
        } catch (e) {
          if (e instanceof SimulatedStop) throw e;
          r.failures.push(`close ${c.channelId}: ${describe(e)}`);
        }
        continue;
      }
      const amount = claimable({ ...c, deposit: s.deposit });
      if (amount <= s.settled) continue; // settled meanwhile
      claims.push({ channelId: c.channelId, cumulativeAmount: c.accepted, amount, signature: c.acceptedSignature!, previousSettled: s.settled });
    }
    for (const batch of planBatches(claims, this.o.config.batchSize, this.o.config.gasBudget)) {
      await this.submitBatch(batch);
    }
  }

  private async submitBatch(batch: Array<{ channelId: Hex; cumulativeAmount: bigint; amount: bigint; signature: Hex; previousSettled: bigint }>): Promise<void> {
    await this.step("batch", { channelIds: batch.map((b) => b.channelId) });
    const data = this.o.chain.settleData(batch);
    let estimate: bigint;
    try {
      estimate = await this.o.chain.estimate(data, BigInt(plannedSettleGas(batch.length)));
    } catch (e) {
      if (e instanceof SettlementRevertError) {
        // A settle reverts only for the whole call (caller not allowed, malformed items): no retry will help.
        this.report.failures.push(`settle batch of ${batch.length} would revert${e.errorName ? ` (${e.errorName})` : ""}`);
        this.log?.error({ channels: batch.length, error: e.errorName }, "settle batch would revert; not sent");
        return;
      }
      throw e;
    }
    if (estimate > BigInt(this.o.config.gasBudget) && batch.length > 1) {
      const half = Math.ceil(batch.length / 2);
      await this.submitBatch(batch.slice(0, half));
      await this.submitBatch(batch.slice(half));
      return;
    }
    await this.sendNew(
      "settle",
      data,
      estimate,
      batch.map((b) => ({ channelId: b.channelId, cumulativeAmount: b.cumulativeAmount, amount: b.amount, previousSettled: b.previousSettled })),
    );
  }

  /** The next nonce: after everything the node knows of ours, and after our own open transactions. */
  private async nextNonce(): Promise<number> {
    const pending = await this.o.chain.nonce("pending");
    let n = pending;
    for (const t of await this.o.settlement.openTxs()) {
      if (t.sender.toLowerCase() === this.o.chain.sender.toLowerCase() && t.nonce + 1 > n) n = t.nonce + 1;
    }
    return n;
  }

  /** Signs, records (`built`), then broadcasts a new transaction. */
  private async sendNew(
    kind: SettlementTxKind,
    data: Hex,
    estimate: bigint,
    items: Array<{ channelId: Hex; cumulativeAmount: bigint; amount: bigint; previousSettled: bigint }>,
  ): Promise<void> {
    const fees = await this.o.chain.fees();
    if (!this.feesAllowed(fees)) return;
    const nonce = await this.nextNonce();
    const gas = gasLimitFor(estimate, this.o.config.gasBudget);
    const { raw, hash } = await this.o.chain.sign({ data, nonce, gas, fees });
    let tx: SettlementTx;
    try {
      tx = await this.o.settlement.insertTx({
        kind,
        sender: this.o.chain.sender,
        payee: this.o.chain.payee,
        token: this.o.chain.token,
        nonce,
        hash,
        rawTx: raw,
        gasLimit: gas,
        maxFeePerGas: fees.type === "eip1559" ? fees.maxFeePerGas : fees.gasPrice,
        maxPriorityFeePerGas: fees.type === "eip1559" ? fees.maxPriorityFeePerGas : fees.gasPrice,
        items,
      });
    } catch (e) {
      if (e instanceof SettlementConflictError) {
        this.log?.warn({ err: e.message }, "settlement not recorded: claimed by another transaction");
        return;
      }
      throw e;
    }
    this.touch(tx);
    await this.step("built", { tx });
    await this.send(tx);
  }

  // ------------------------------------------------------------------ report

  private summarise(r: SettlementRunReport): void {
    let settleGas = 0n;
    let settleChannels = 0;
    for (const t of this.touched.values()) {
      const settled = t.items.filter((i) => i.status === "settled" || i.status === "closed").length;
      const skipped = t.items.filter((i) => i.status === "skipped").map((i) => ({ channelId: i.channelId, reason: i.skipReason! }));
      r.txs.push({
        id: t.id,
        kind: t.kind,
        status: t.status,
        hash: t.hash,
        nonce: t.nonce,
        channels: t.items.length,
        settled,
        skipped,
        amount: t.amountSettled ?? 0n,
        gasUsed: t.gasUsed,
        error: t.error,
      });
      if (t.status === "confirmed") {
        r.amountSettled += t.amountSettled ?? 0n;
        if (t.kind === "settle") {
          r.channelsSettled += settled;
          settleChannels += settled;
          settleGas += t.gasUsed ?? 0n;
        } else r.channelsClosed += settled;
        for (const s of skipped) {
          const permanent = PERMANENT_SKIP_REASONS.includes(s.reason);
          r.skipped.push({ ...s, permanent });
          if (permanent) r.failures.push(`channel ${s.channelId} was skipped: ${s.reason} (its voucher cannot be settled)`);
        }
      }
      if ((t.status === "confirmed" || t.status === "failed") && t.gasUsed !== null) r.gasUsed += t.gasUsed;
      if (t.status === "dropped" && !this.touchedReplacementOf(t)) r.failures.push(`transaction #${t.id} (${t.hash}) dropped: ${t.error}`);
    }
    r.txs.sort((a, b) => a.id - b.id);
    r.gasPerChannel = settleChannels > 0 ? Math.round(Number(settleGas) / settleChannels) : null;
  }

  /** Whether a dropped transaction was superseded by a same-nonce replacement that landed (not a failure). */
  private touchedReplacementOf(t: SettlementTx): boolean {
    for (const o of this.touched.values()) {
      if (o.id !== t.id && o.nonce === t.nonce && o.sender === t.sender && o.status !== "dropped" && o.status !== "failed") return true;
    }
    return false;
  }
}

/** Thrown by test hooks to stop the job at a step as a crash would (the job does not catch it). */
export class SimulatedStop extends Error {
  override name = "SimulatedStop";
}
