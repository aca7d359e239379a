/**
 * Sending a settlement transaction: sign locally, record it (`built`, with hash, nonce and raw bytes) BEFORE handing
 * it to the node, then broadcast and record it as `sent`. A crash between any two of these leaves a recorded
 * transaction that the next cycle's reconciliation finds and finishes (see `lifecycle.ts`).
 */
import type { Hex } from "viem";
import { SettlementConflictError, type SettlementTx, type SettlementTxKind } from "../store/settlement-types";
import { gasLimitFor } from "./batch";
import type { Fees } from "./chain";
import type { RecordedClaim } from "./claims";
import type { SettlementCycle } from "./cycle";

/** Whether `fees` are under SETTLE_MAX_FEE_GWEI; when not, a failure is reported and nothing may be sent. */
export function feesAllowed(cy: SettlementCycle, fees: Fees): boolean {
  const cap = cy.o.config.maxFeePerGas;
  const fee = fees.type === "eip1559" ? fees.maxFeePerGas : fees.gasPrice;
  if (cap !== undefined && fee > cap) {
    const msg = `fee ${fee} wei/gas is above SETTLE_MAX_FEE_GWEI (${cap} wei/gas); not sending`;
    cy.report.failures.push(msg);
    cy.log?.warn({ fee: String(fee), cap: String(cap) }, "settlement fee above the cap; not sending");
    return false;
  }
  return true;
}

/** The fee fields a transaction record keeps (a legacy gas price fills both). */
export function recordedFees(fees: Fees): { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } {
  return {
    maxFeePerGas: fees.type === "eip1559" ? fees.maxFeePerGas : fees.gasPrice,
    maxPriorityFeePerGas: fees.type === "eip1559" ? fees.maxPriorityFeePerGas : fees.gasPrice,
  };
}

/** The next nonce: after everything the node knows of ours, and after our own open transactions. */
async function nextNonce(cy: SettlementCycle): Promise<number> {
  const pending = await cy.o.chain.nonce("pending");
  let n = pending;
  for (const t of await cy.o.settlement.openTxs()) {
    if (t.sender.toLowerCase() === cy.o.chain.sender.toLowerCase() && t.nonce + 1 > n) n = t.nonce + 1;
  }
  return n;
}

/**
 * Signs, records (`built`), then broadcasts a new transaction calling the escrow with `data`, for the claims
 * `items`. Nothing is sent when fees are above the cap, or when another transaction already claims one of the
 * channels (the store refuses the record).
 */
export async function sendNew(cy: SettlementCycle, kind: SettlementTxKind, data: Hex, estimate: bigint, items: readonly RecordedClaim[]): Promise<void> {
  const fees = await cy.o.chain.fees();
  if (!feesAllowed(cy, fees)) return;
  const nonce = await nextNonce(cy);
  const gas = gasLimitFor(estimate, cy.o.config.gasBudget);
  const { raw, hash } = await cy.o.chain.sign({ data, nonce, gas, fees });
  let tx: SettlementTx;
  try {
    tx = await cy.o.settlement.insertTx({
      kind,
      sender: cy.o.chain.sender,
      payee: cy.o.chain.payee,
      token: cy.o.chain.token,
      nonce,
      hash,
      rawTx: raw,
      gasLimit: gas,
      ...recordedFees(fees),
      items,
    });
  } catch (e) {
    if (e instanceof SettlementConflictError) {
      cy.log?.warn({ err: e.message }, "settlement not recorded: claimed by another transaction");
      return;
    }
    throw e;
  }
  cy.touch(tx);
  await cy.step("built", { tx });
  await broadcastRecorded(cy, tx);
}

/**
 * Broadcasts a recorded transaction (its stored raw bytes) and records it as sent. A refusal because the nonce was
 * used or a same-nonce transaction is in the pool is only logged: the next reconciliation tells what happened.
 */
export async function broadcastRecorded(cy: SettlementCycle, tx: SettlementTx): Promise<void> {
  const res = await cy.o.chain.broadcast(tx.rawTx);
  await cy.step("broadcast", { tx });
  if (res === "accepted" || res === "known") {
    const u = await cy.o.settlement.updateTx(tx.id, ["built", "sent"], { status: "sent", sentAt: tx.sentAt ?? Date.now(), broadcast: true });
    if (u) cy.touch(u);
    if (tx.status === "built") cy.log?.info({ txId: tx.id, kind: tx.kind, hash: tx.hash, nonce: tx.nonce, channels: tx.items.length }, "settlement sent");
    else cy.log?.info({ txId: tx.id, hash: tx.hash }, "settlement re-broadcast");
  } else {
    // nonce_too_low: the nonce was used (by this transaction, or another; the next pass tells which).
    // underpriced: another transaction with this nonce is in the pool (a replacement, or a foreign one).
    cy.log?.warn({ txId: tx.id, hash: tx.hash, result: res }, "settlement broadcast not accepted");
  }
}
