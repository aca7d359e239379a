/**
 * The accounting rule of docs/protocol.md ("Server accounting per channel"), as one pure function that every
 * store evaluates INSIDE its transaction on the row it locked. Keeping it here means SQLite, PostgreSQL and the
 * tests share one definition.
 */

/** Accounting state before a request. */
export interface AccountingState {
  accepted: bigint;
  /** What served requests were charged (settlement claims this, never more). */
  spent: bigint;
  /** Open metered reservations (maximums of handlers still running); never claimed. Default 0. */
  reserved?: bigint;
  floor: bigint;
  deposit: bigint;
}

export type VoucherDecision =
  | {
      ok: true;
      accepted: bigint;
      spent: bigint;
      /** Open reservations after this request (raised by `charge` when it reserves). */
      reserved: bigint;
      floor: bigint;
      /** true when `floor` moved: prune used ≤ floor. */
      prune: boolean;
    }
  | { ok: false; code: "exceeds_deposit" | "voucher_too_low" | "voucher_reused" | "insufficient_voucher" };

/**
 * Decides a voucher `v` (signature already verified) paying `charge`, with the server's fixed `window`:
 * 1. `v <= deposit`, else `exceeds_deposit` (the caller re-reads the chain once before answering it);
 * 2. `v > floor`, else `voucher_too_low`; `v` not used, else `voucher_reused`;
 * 3. `max(accepted, v) >= spent + reserved + charge`, else `insufficient_voucher`;
 * then `accepted = max(accepted, v)`, `floor = max(floor, accepted - window)`, and `spent += charge` (a fixed
 * price, charged now) or, with `reserve` (a metered route's maximum, charged when its handler reports),
 * `reserved += charge`. `spent + reserved <= accepted` holds after every accepted request.
 */
export function decideVoucher(s: AccountingState, v: bigint, used: boolean, charge: bigint, window: bigint, reserve = false): VoucherDecision {
  if (v > s.deposit) return { ok: false, code: "exceeds_deposit" };
  if (v <= s.floor) return { ok: false, code: "voucher_too_low" };
  if (used) return { ok: false, code: "voucher_reused" };
  const accepted = v > s.accepted ? v : s.accepted;
  const held = s.reserved ?? 0n;
  if (accepted < s.spent + held + charge) return { ok: false, code: "insufficient_voucher" };
  const spent = reserve ? s.spent : s.spent + charge;
  const reserved = reserve ? held + charge : held;
  const low = accepted - window;
  const floor = low > s.floor ? low : s.floor;
  return { ok: true, accepted, spent, reserved, floor, prune: floor > s.floor };
}
