/**
 * The transaction lifecycle after sending: reconciliation of every open transaction with the chain, confirmation,
 * reorgs, drops, re-broadcast and fee-bump replacement, and the wait for final statuses.
 *
 * ```
 *   built ──broadcast──▶ sent ──receipt──▶ mined ──N confirmations──▶ confirmed / failed
 *     └──────────────────┴──nonce used by another transaction──▶ dropped
 * ```
 * (the states: `store/settlement-types.ts`). Nonces are read before receipts: a nonce seen as used was used by a
 * transaction mined before the receipt lookups, so "no receipt and nonce used" really means another transaction
 * took the nonce.
 *
 * Re-submission: a transaction not in the node's pool and whose nonce is still free is re-broadcast as is (dropped
 * from a mempool, or removed by a reorg: the same nonce is right, the identical bytes are still valid). A
 * transaction pending longer than `resubmitAfter` is replaced with the same calldata and nonce at ≥ 12.5 % higher
 * fees (whichever lands, the other is dropped). A transaction whose nonce was consumed by another one gets a fresh
 * nonce through a new batch, never the old one.
 */
import { OPEN_TX_STATUSES, PERMANENT_SKIP_REASONS, type SettlementTx } from "../store/settlement-types";
import { bumpFees, decodeRawTransaction } from "./chain";
import { recordedClaim } from "./claims";
import { describe, type SettlementCycle } from "./cycle";
import { SimulatedStop } from "./job-options";
import { decodeSettlementReceipt } from "./receipt";
import { refreshChannels, refsOf } from "./refresh";
import { broadcastRecorded, feesAllowed, recordedFees } from "./submit";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Moves every open transaction as far as the chain allows. */
export async function reconcile(cy: SettlementCycle): Promise<void> {
  const open = await cy.o.settlement.openTxs();
  if (open.length === 0) return;
  // Nonces first (per sender: the key may have been rotated), receipts after: a nonce seen as used was used by a
  // transaction mined before the receipt lookups.
  const nonces = new Map<string, number>();
  for (const tx of open) {
    const k = tx.sender.toLowerCase();
    if (!nonces.has(k)) nonces.set(k, await cy.o.chain.nonceOf(tx.sender, "latest"));
  }
  const head = await cy.o.chain.head();
  for (const tx of open) {
    try {
      await reconcileTx(cy, tx, open, nonces.get(tx.sender.toLowerCase())!, head.number);
    } catch (e) {
      if (e instanceof SimulatedStop) throw e;
      cy.report.failures.push(`transaction #${tx.id} (${tx.hash}): ${describe(e)}`);
      cy.log?.warn({ txId: tx.id, hash: tx.hash, err: describe(e) }, "settlement reconcile failed");
    }
  }
}

/**
 * One open transaction: mined → `mined`, then `confirmed` (or `failed`) after SETTLE_CONFIRMATIONS; a receipt gone →
 * back to `sent` (reorg); its nonce used by another transaction → `dropped`; not in the node's pool → re-broadcast;
 * pending longer than SETTLE_RESUBMIT_AFTER → replaced with higher fees.
 */
async function reconcileTx(cy: SettlementCycle, tx: SettlementTx, open: readonly SettlementTx[], latestNonce: number, head: bigint): Promise<void> {
  const s = cy.o.settlement;
  const receipt = await cy.o.chain.receipt(tx.hash);
  if (receipt) {
    await cy.step("receipt", { tx });
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
      cur = cy.touch(u);
    }
    if (head - receipt.blockNumber + 1n < BigInt(cy.o.config.confirmations)) return;
    if (receipt.status === "success") {
      const conf = decodeSettlementReceipt(receipt, {
        kind: cur.kind,
        escrow: cy.o.chain.escrow,
        token: cy.o.chain.token,
        payee: cy.o.chain.payee,
        channelIds: cur.items.map((i) => i.channelId),
      });
      const done = await s.confirmTx(cur.id, conf);
      if (done) {
        finished(cy, done);
        if (conf.amountDeferred > 0n) deferred(cy, done, conf.amountDeferred);
        // The confirmation already applied the logs; a fresh read also catches what happened since.
        await refsOf(cy, done.items.map((i) => i.channelId))
          .then((refs) => refreshChannels(cy, refs))
          .catch(() => undefined);
      }
    } else {
      const failed = await s.updateTx(cur.id, OPEN_TX_STATUSES, { status: "failed", error: "reverted on chain" });
      if (failed) {
        finished(cy, failed);
        cy.report.failures.push(`transaction #${failed.id} (${failed.hash}) reverted on chain`);
      }
    }
    return;
  }

  let cur = tx;
  if (tx.status === "mined") {
    // It was in a block that is no longer in the chain.
    const u = await s.updateTx(tx.id, ["mined"], { status: "sent", reorged: true });
    if (!u) return;
    cur = cy.touch(u);
    cy.o.metrics?.reorg();
    cy.log?.warn({ txId: tx.id, hash: tx.hash, block: String(tx.blockNumber) }, "settlement removed by a reorg; re-sending");
  }
  if (latestNonce > cur.nonce) {
    if (await cy.o.chain.receipt(cur.hash)) return; // it was this one after all; the next pass records it
    const sibling = open.find((o) => o.id !== cur.id && o.nonce === cur.nonce && o.sender === cur.sender);
    const d = await s.updateTx(cur.id, OPEN_TX_STATUSES, {
      status: "dropped",
      error: sibling ? `nonce ${cur.nonce} used by another transaction (replacement #${sibling.id} or a foreign one)` : `nonce ${cur.nonce} used by another transaction`,
    });
    if (d) finished(cy, d);
    return;
  }
  const newer = open.find((o) => o.nonce === cur.nonce && o.sender === cur.sender && o.id > cur.id);
  const pending = cur.status !== "built" && (await cy.o.chain.isPending(cur.hash));
  if (!pending && newer && cur.status !== "built") {
    // Evicted from the pool by our own fee-bump replacement: that one carries the same claims now.
    const d = await s.updateTx(cur.id, ["sent"], { status: "dropped", error: `superseded by replacement #${newer.id}` });
    if (d) finished(cy, d);
    return;
  }
  if (!pending) {
    await broadcastRecorded(cy, cur);
    return;
  }
  // Pending in the node's pool: replace it with higher fees when stuck (only the newest of its nonce group).
  const since = cur.sentAt ?? cur.createdAt;
  if (!newer && Date.now() - since >= cy.o.config.resubmitAfter * 1000) await replaceStuck(cy, cur);
}

/** A same-nonce replacement of a stuck transaction: same calldata and gas, higher fees. */
async function replaceStuck(cy: SettlementCycle, tx: SettlementTx): Promise<void> {
  const old = decodeRawTransaction(tx.rawTx);
  const fees = bumpFees(old.fees, await cy.o.chain.fees());
  if (!feesAllowed(cy, fees)) return;
  const { raw, hash } = await cy.o.chain.sign({ data: old.data, nonce: tx.nonce, gas: old.gas, fees });
  const n = await cy.o.settlement.insertTx({
    kind: tx.kind,
    sender: tx.sender,
    payee: tx.payee,
    token: tx.token,
    nonce: tx.nonce,
    hash,
    rawTx: raw,
    gasLimit: old.gas,
    ...recordedFees(fees),
    replaces: tx.id,
    items: tx.items.map(recordedClaim),
  });
  cy.touch(n);
  cy.log?.warn({ txId: n.id, replaces: tx.id, hash, nonce: tx.nonce }, "settlement stuck; replacing with higher fees");
  await cy.step("built", { tx: n });
  await broadcastRecorded(cy, n);
}

/**
 * Reconciles every poll interval until no transaction is open, the job stops, `deadline` (unix ms) passes (the report
 * says `timedOut`), or the settler lease (renewed for `ttl` ms each round) is lost to another settler.
 */
export async function waitFinal(cy: SettlementCycle, deadline: number, ttl: number): Promise<void> {
  const poll = cy.o.pollInterval ?? 1_000;
  for (;;) {
    if ((await cy.o.settlement.openTxs()).length === 0) return;
    if (cy.stopping()) return;
    if (Date.now() >= deadline) {
      cy.report.timedOut = true;
      return;
    }
    await sleep(poll);
    // Renew the lease; if another settler holds it now (ours expired), stop here: it reconciles our open
    // transactions itself, and two settlers re-broadcasting the same transactions would only waste requests.
    if (!(await cy.o.settlement.tryAcquireSettlerLease(cy.holder, ttl))) {
      cy.log?.warn("settler lease lost while waiting for confirmations; leaving the rest to the new holder");
      return;
    }
    await reconcile(cy);
  }
}

/**
 * A confirmed transaction whose payout the escrow kept owed to the payee (`PaymentDeferred`: the token refused the
 * transfer): report, metric and a warning, once (after the store's compare-and-set). The channels' `settled` rose all
 * the same; the payee (not the operator) takes the money with `collect(token, to)`.
 */
function deferred(cy: SettlementCycle, tx: SettlementTx, amount: bigint): void {
  cy.report.amountDeferred += amount;
  cy.o.metrics?.deferred(amount);
  cy.log?.warn(
    { txId: tx.id, kind: tx.kind, hash: tx.hash, amount: String(amount), payee: cy.o.chain.payee, token: cy.o.chain.token },
    "the escrow could not transfer the payout and keeps it owed to the payee: the payee takes it with collect(token, to)",
  );
}

/** Records a final status in metrics and logs (called once: only after the store's compare-and-set succeeded). */
function finished(cy: SettlementCycle, tx: SettlementTx): void {
  cy.touch(tx);
  cy.o.metrics?.txFinished(tx);
  const base = { txId: tx.id, kind: tx.kind, hash: tx.hash, nonce: tx.nonce };
  if (tx.status === "confirmed") {
    const skipped = tx.items.filter((i) => i.status === "skipped");
    cy.log?.info(
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
      cy.log?.[permanent ? "error" : "info"]({ txId: tx.id, channelId: s.channelId, reason: s.skipReason }, "settlement item skipped");
    }
  } else {
    cy.log?.warn({ ...base, status: tx.status, error: tx.error }, `settlement ${tx.status}`);
  }
}

