/**
 * The accounting rule of docs/protocol.md ("Server accounting per channel"), as one pure function that every
 * store evaluates INSIDE its transaction on the row it locked. Keeping it here means SQLite, PostgreSQL and the
 * tests share one definition.
 */

/** Accounting state before a request. */
export interface AccountingState {
  accepted: bigint;
  spent: bigint;
  floor: bigint;
  deposit: bigint;
}

export type VoucherDecision =
  | { ok: true; accepted: bigint; spent: bigint; floor: bigint; /** true when `floor` moved: prune used ≤ floor. */ prune: boolean }
  | { ok: false; code: "exceeds_deposit" | "voucher_too_low" | "voucher_reused" | "insufficient_voucher" };

/**
 * Decides a voucher `v` (signature already verified) paying `charge`, with the server's fixed `window`:
 * 1. `v <= deposit`, else `exceeds_deposit` (the caller re-reads the chain once before answering it);
 * 2. `v > floor`, else `voucher_too_low`; `v` not used, else `voucher_reused`;
 * 3. `max(accepted, v) >= spent + charge`, else `insufficient_voucher`;
 * then `accepted = max(accepted, v)`, `spent += charge`, `floor = max(floor, accepted - window)`.
 */
export function decideVoucher(s: AccountingState, v: bigint, used: boolean, charge: bigint, window: bigint): VoucherDecision {
  if (v > s.deposit) return { ok: false, code: "exceeds_deposit" };
  if (v <= s.floor) return { ok: false, code: "voucher_too_low" };
  if (used) return { ok: false, code: "voucher_reused" };
  const accepted = v > s.accepted ? v : s.accepted;
  const spent = s.spent + charge;
  if (accepted < spent) return { ok: false, code: "insufficient_voucher" };
  const low = accepted - window;
  const floor = low > s.floor ? low : s.floor;
  return { ok: true, accepted, spent, floor, prune: floor > s.floor };
}
