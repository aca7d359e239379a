/**
 * Finishing gasless opens left open (`pending`, `submitted`): a crash between recording and confirming, an RPC failure
 * while opening, a request that stopped waiting. Each ends `confirmed` or `failed`, none is submitted twice: an
 * unsigned one is signed with its recorded nonce, a signed one is broadcast again (its recorded bytes: `known` is
 * fine) until mined, and one whose nonce went to another transaction is decided by the escrow (the channel exists:
 * `confirmed`; else `failed`).
 */
import type { Logger } from "pino";
import type { Address } from "viem";
import type { GaslessOpen, GaslessOpenStore } from "../store/open-types";
import type { ExactSender } from "../exact/sender";
import { channelExists, openCallData } from "./chain";

/** Hooks for metrics. */
export interface GaslessOpenObserver {
  /** An open reached a status, or was refused before any transaction (`refused`). */
  outcome?(status: "submitted" | "confirmed" | "failed" | "refused"): void;
  /** Seconds from broadcast to the receipt of a paid request's open. */
  opened?(seconds: number): void;
}

export type OpenReconcileResult = "confirmed" | "failed" | "submitted" | "unchanged";

/** Moves one open forward. Throws when the chain cannot be reached (the open stays as it was). */
export async function reconcileOpen(
  o: GaslessOpen,
  store: GaslessOpenStore,
  sender: ExactSender,
  escrow: Address,
  x: { logger?: Logger; observer?: GaslessOpenObserver } = {},
): Promise<OpenReconcileResult> {
  if (o.status !== "pending" && o.status !== "submitted") return "unchanged";
  let hash = o.txHash;
  let raw = o.rawTx;
  if (!hash || !raw) {
    // Recorded, never signed (a crash in between): the nonce is ours; fill it with this open.
    const signed = await sender.sign({ data: openCallData(o), nonce: o.senderNonce, fees: await sender.fees(), to: escrow, gas: 200_000n });
    const stored = await store.setOpenTransaction(o.id, signed.hash, signed.raw);
    hash = stored.txHash;
    raw = stored.rawTx;
  }
  const log = { scheme: "channel", open: { channelId: o.channelId, payer: o.payer, senderNonce: o.senderNonce, tx: hash } };
  const finish = async (r: { success: boolean; blockNumber: bigint; gasUsed: bigint }): Promise<OpenReconcileResult> => {
    const status = r.success ? "confirmed" : "failed";
    await store.finishOpen(o.id, { status, blockNumber: r.blockNumber, gasUsed: r.gasUsed, ...(r.success ? {} : { error: "the open reverted" }) });
    x.observer?.outcome?.(status);
    x.logger?.info({ ...log, status }, "gasless open reconciled");
    return status;
  };
  const mined = await sender.receipt(hash);
  if (mined) return finish(mined);
  const sent = await sender.broadcast(raw);
  if (sent === "accepted" || sent === "known") {
    await store.markOpenSubmitted(o.id);
    const now = await sender.receipt(hash);
    if (now) return finish(now);
    if (o.status === "pending") x.observer?.outcome?.("submitted");
    return "submitted";
  }
  if (sent === "nonce_too_low") {
    const late = await sender.receipt(hash);
    if (late) return finish(late);
    // The nonce went to another transaction: the escrow says whether the channel was opened anyway (by anyone).
    if (await channelExists(sender.client, escrow, o.channelId, o.signer)) {
      await store.finishOpen(o.id, { status: "confirmed", error: `opened by a transaction other than ${hash}` });
      x.observer?.outcome?.("confirmed");
      x.logger?.warn(log, "gasless open confirmed from the escrow; its own transaction was replaced");
      return "confirmed";
    }
    await store.finishOpen(o.id, { status: "failed", error: `sender nonce ${o.senderNonce} was used by another transaction` });
    x.observer?.outcome?.("failed");
    x.logger?.error(log, "gasless open dropped: its sender nonce was used elsewhere");
    return "failed";
  }
  x.logger?.warn({ ...log, sent }, "gasless open not taken by the node (underpriced, or an earlier nonce missing); kept for the next pass");
  return "unchanged";
}

/** One pass over the opens open for more than `olderThanMs` (those this process is working on are skipped). */
export async function reconcileOpens(
  store: GaslessOpenStore,
  sender: ExactSender,
  escrow: Address,
  o: { olderThanMs: number; busy?: ReadonlySet<number>; logger?: Logger; observer?: GaslessOpenObserver; limit?: number },
): Promise<Record<OpenReconcileResult, number>> {
  const done: Record<OpenReconcileResult, number> = { confirmed: 0, failed: 0, submitted: 0, unchanged: 0 };
  for (const row of await store.openOpens(Date.now() - o.olderThanMs, o.limit ?? 200)) {
    if (o.busy?.has(row.id)) continue;
    done[await reconcileOpen(row, store, sender, escrow, o)]++;
  }
  return done;
}
