/**
 * What a mined settlement transaction did, read from its receipt's logs: per channel `Settled` (new cumulative
 * settled amount), `SettleSkipped` (reason), `Closed`; and the payee's payout: the escrow's token transfer to it, or,
 * when that transfer failed, the escrow's `PaymentDeferred` to it (owed, taken later with `collect`).
 */
import { decodeEventLog, erc20Abi, type Address, type Hex } from "viem";
import { channelEscrowAbi } from "@paychan/protocol";
import { SKIP_REASONS, type SettlementConfirmation, type SettlementTxKind, type SkipReason } from "../store/settlement-types";

/** The part of a receipt this needs. */
export interface ReceiptLike {
  status: "success" | "reverted";
  blockNumber: bigint;
  blockHash: Hex;
  gasUsed: bigint;
  effectiveGasPrice?: bigint;
  logs: ReadonlyArray<{ address: Address; data: Hex; topics: readonly Hex[] }>;
}

/** A skip reason by its enum value (unknown values are reported as `Unknown(n)`). */
export function skipReasonName(value: number): SkipReason {
  return (SKIP_REASONS[value] ?? (`Unknown(${value})` as SkipReason)) as SkipReason;
}

/** A decoded receipt: what the store confirms, and what the escrow kept owed to the payee. */
export interface DecodedSettlementReceipt extends SettlementConfirmation {
  /** The payee's payout the escrow could not transfer and keeps owed to it (`PaymentDeferred`); 0 when none. */
  amountDeferred: bigint;
}

/**
 * Decodes a successful receipt into a {@link SettlementConfirmation} for the given channels. A channel the logs do
 * not mention is left out (the store frees it: it did not land).
 */
export function decodeSettlementReceipt(
  r: ReceiptLike,
  o: { kind: SettlementTxKind; escrow: Address; token: Address; payee: Address; channelIds: readonly Hex[] },
): DecodedSettlementReceipt {
  const escrow = o.escrow.toLowerCase();
  const token = o.token.toLowerCase();
  const payee = o.payee.toLowerCase();
  const settled = new Map<string, bigint>();
  const skipped = new Map<string, SkipReason>();
  const closed = new Map<string, bigint>();
  // What reached the payee, in log order: transferred, or deferred (the escrow's transfer failed; owed for collect).
  const payouts: Array<{ deferred: boolean; amount: bigint }> = [];
  for (const log of r.logs) {
    const addr = log.address.toLowerCase();
    if (addr === escrow) {
      let ev;
      try {
        ev = decodeEventLog({ abi: channelEscrowAbi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
      } catch {
        continue;
      }
      const args = ev.args as Record<string, unknown>;
      const id = String(args.channelId ?? "").toLowerCase();
      if (ev.eventName === "Settled") settled.set(id, args.amount as bigint);
      else if (ev.eventName === "SettleSkipped") skipped.set(id, skipReasonName(Number(args.reason)));
      else if (ev.eventName === "Closed") closed.set(id, args.settled as bigint);
      else if (ev.eventName === "PaymentDeferred") {
        if (String(args.token).toLowerCase() === token && String(args.account).toLowerCase() === payee) payouts.push({ deferred: true, amount: args.amount as bigint });
      }
    } else if (addr === token) {
      let ev;
      try {
        ev = decodeEventLog({ abi: erc20Abi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
      } catch {
        continue;
      }
      if (ev.eventName !== "Transfer") continue;
      const a = ev.args as { from: Address; to: Address; value: bigint };
      if (a.from.toLowerCase() === escrow && a.to.toLowerCase() === payee) payouts.push({ deferred: false, amount: a.value });
    }
  }
  const items: SettlementConfirmation["items"][number][] = [];
  for (const raw of o.channelIds) {
    const id = raw.toLowerCase() as Hex;
    if (o.kind === "close") {
      if (closed.has(id)) items.push({ channelId: id, status: "closed", settledAmount: closed.get(id)! });
    } else if (settled.has(id)) items.push({ channelId: id, status: "settled", settledAmount: settled.get(id)! });
    else if (skipped.has(id)) items.push({ channelId: id, status: "skipped", skipReason: skipped.get(id)! });
  }
  let amountSettled = 0n;
  let amountDeferred = 0n;
  const add = (p: { deferred: boolean; amount: bigint }) => (p.deferred ? (amountDeferred += p.amount) : (amountSettled += p.amount));
  if (o.kind === "settle") payouts.forEach(add);
  // close: the payout (first transfer or deferral) exists only when the close settled something; the refund follows
  // it and goes to the payer (who could be the payee itself).
  else if (settled.size > 0 && payouts.length > 0) add(payouts[0]);
  return {
    blockNumber: r.blockNumber,
    blockHash: r.blockHash,
    gasUsed: r.gasUsed,
    effectiveGasPrice: r.effectiveGasPrice ?? 0n,
    amountSettled,
    amountDeferred,
    items,
  };
}
