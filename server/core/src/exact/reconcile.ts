/**
 * Finishing `exact` payments left open (`pending`, `submitted`): after a crash between recording and confirming, an
 * RPC failure while settling, or a request that stopped waiting. Each open payment ends confirmed or failed; none is
 * lost: a recorded transfer is signed if it was not yet (its nonce is reserved: the transfer fills it even if it now
 * reverts), broadcast again until the node has it, and finished from its receipt. Served stays false: the payer may
 * retry the same authorization once to be served (docs/protocol.md § 5.8).
 */
import type { Logger } from "pino";
import type { ExactPayment, ExactStore } from "../store/exact-types";
import { ExactSender } from "./sender";

export interface ExactObserver {
  /** A payment reached a status (`submitted`, `confirmed`, `failed`) or was refused before any transfer (`refused`). */
  outcome?(status: "submitted" | "confirmed" | "failed" | "refused"): void;
  /** Seconds from broadcast to the confirmed receipt of a paid request's transfer. */
  settled?(seconds: number): void;
  /** A paid request was served (its payment confirmed). */
  served?(): void;
}

/** What a reconcile pass did with one payment. */
export type ReconcileResult = "confirmed" | "failed" | "submitted" | "unchanged";

/**
 * Moves one open payment forward: sign when unsigned, finish from the receipt when mined, else broadcast (again).
 * Throws when the chain cannot be reached (the payment stays open).
 */
export async function reconcileExactPayment(p: ExactPayment, store: ExactStore, sender: ExactSender, o: { logger?: Logger; observer?: ExactObserver } = {}): Promise<ReconcileResult> {
  if (p.status !== "pending" && p.status !== "submitted") return "unchanged";
  if (p.sender.toLowerCase() === ExactSender.FACILITATOR) return reconcileFacilitated(p, store, sender, o);
  let hash = p.txHash;
  let raw = p.rawTx;
  if (!hash || !raw) {
    // Recorded, never signed (a crash in between): the nonce is ours; fill it with this transfer.
    const signed = await sender.sign({
      data: sender.transferData({ from: p.payer, to: p.payTo, value: p.amount, validAfter: p.validAfter, validBefore: p.validBefore, nonce: p.authNonce }, p.signature),
      nonce: p.senderNonce,
      fees: await sender.fees(),
    });
    // Another process may have signed it meanwhile: go on with the transaction stored first.
    const stored = await store.setExactTransaction(p.id, signed.hash, signed.raw);
    hash = stored.txHash;
    raw = stored.rawTx;
  }
  const finish = async (r: { success: boolean; blockNumber: bigint; gasUsed: bigint }): Promise<ReconcileResult> => {
    const status = r.success ? "confirmed" : "failed";
    await store.finishExactPayment(p.id, { status, blockNumber: r.blockNumber, gasUsed: r.gasUsed, ...(r.success ? {} : { error: "the transfer reverted" }) });
    o.observer?.outcome?.(status);
    o.logger?.info({ scheme: "exact", payer: p.payer, tx: hash, status }, "exact payment reconciled");
    return status;
  };
  const mined = await sender.receipt(hash);
  if (mined) return finish(mined);
  const sent = await sender.broadcast(raw);
  if (sent === "accepted" || sent === "known") {
    await store.markExactSubmitted(p.id);
    const now = await sender.receipt(hash);
    if (now) return finish(now);
    if (p.status === "pending") o.observer?.outcome?.("submitted");
    return "submitted";
  }
  if (sent === "nonce_too_low") {
    const late = await sender.receipt(hash);
    if (late) return finish(late);
    if (await sender.authorizationUsed(p.payer, p.authNonce)) {
      // The authorization was used by another transaction (its `to` is the payee, so the payee was paid): confirmed.
      await store.finishExactPayment(p.id, { status: "confirmed", error: `transferred by a transaction other than ${hash}` });
      o.observer?.outcome?.("confirmed");
      o.logger?.warn({ scheme: "exact", payer: p.payer, tx: hash }, "exact payment confirmed by the token's authorization state; its own transaction was replaced");
      return "confirmed";
    }
    // The nonce went to another transaction of this key (used outside this store): this transfer can never be mined.
    await store.finishExactPayment(p.id, { status: "failed", error: `sender nonce ${p.senderNonce} was used by another transaction` });
    o.observer?.outcome?.("failed");
    o.logger?.error({ scheme: "exact", payer: p.payer, senderNonce: p.senderNonce }, "exact transfer dropped: its sender nonce was used elsewhere");
    return "failed";
  }
  o.logger?.warn({ scheme: "exact", tx: hash, sent }, "exact transfer not taken by the node (underpriced, or an earlier nonce missing); kept for the next pass");
  return "unchanged";
}

/**
 * A payment a facilitator was settling when we lost track of it: the token's authorization state decides (used: the
 * transfer happened, to the payee; unused past `validBefore`: it never can).
 */
async function reconcileFacilitated(p: ExactPayment, store: ExactStore, sender: ExactSender, o: { logger?: Logger; observer?: ExactObserver }): Promise<ReconcileResult> {
  if (await sender.authorizationUsed(p.payer, p.authNonce)) {
    await store.finishExactPayment(p.id, { status: "confirmed", ...(p.txHash ? {} : { error: "confirmed from the token's authorization state" }) });
    o.observer?.outcome?.("confirmed");
    o.logger?.info({ scheme: "exact", payer: p.payer }, "exact payment (facilitator) reconciled: confirmed");
    return "confirmed";
  }
  const head = await sender.client.getBlock({ blockTag: "latest" });
  if (head.timestamp >= p.validBefore) {
    await store.finishExactPayment(p.id, { status: "failed", error: "the facilitator did not settle it before it expired" });
    o.observer?.outcome?.("failed");
    return "failed";
  }
  return "unchanged";
}

/**
 * One pass over the open payments last touched before `olderThanMs` ago (requests still waiting on theirs are
 * skipped by `busy`). Stops at the first chain failure (the rest wait for the next pass). Returns what was done.
 */
export async function reconcileExactPayments(
  store: ExactStore,
  sender: ExactSender,
  o: { olderThanMs: number; busy?: ReadonlySet<number>; logger?: Logger; observer?: ExactObserver; limit?: number },
): Promise<Record<ReconcileResult, number>> {
  const done: Record<ReconcileResult, number> = { confirmed: 0, failed: 0, submitted: 0, unchanged: 0 };
  const open = await store.openExactPayments(Date.now() - o.olderThanMs, o.limit ?? 200);
  for (const p of open) {
    if (o.busy?.has(p.id)) continue;
    done[await reconcileExactPayment(p, store, sender, o)]++;
  }
  return done;
}
