/**
 * `ChannelClient.owed`: what the escrow owes the payer — refunds (and, for a payer that is also a payee, payouts) it
 * could not transfer because the token refused (paused, payer blacklisted), kept until `collect` (collecting.ts).
 * Also which escrow and token a call means when it names none: the client's own, when it has exactly one.
 */
import { getAddress, isAddress, type Address } from "viem";
import { readOwed } from "../chain";
import { ClientError } from "../errors";
import type { OwedTarget } from "../options";
import type { ClientSession } from "../session";
import type { ChannelBook } from "./book";

/** The escrow and token `t` names, or the client's own (see {@link OwedTarget}); `invalid_argument` otherwise. */
export function owedTarget(s: ClientSession, book: ChannelBook, t: OwedTarget = {}): { escrow: Address; token: Address } {
  const escrow = t.escrow !== undefined ? checked(t.escrow, "escrow") : only(s.limits.escrows, book.channels().map((c) => c.escrow), "escrow");
  if (s.limits.escrows?.length && !s.limits.escrows.some((e) => e.toLowerCase() === escrow.toLowerCase())) {
    throw new ClientError("invalid_argument", `escrow ${escrow} is not in limits.escrows`);
  }
  const onEscrow = book.channels().filter((c) => c.escrow.toLowerCase() === escrow.toLowerCase());
  const token = t.token !== undefined ? checked(t.token, "token") : only(s.limits.assets, onEscrow.map((c) => c.token), "token");
  return { escrow, token };
}

/** What `escrow` owes the payer in `token` (atomic units; 0n when nothing). */
export async function owedToPayer(s: ClientSession, book: ChannelBook, t: OwedTarget = {}): Promise<bigint> {
  const { escrow, token } = owedTarget(s, book, t);
  return readOwed(s.ctx, escrow, token, s.payer);
}

function checked(a: string, what: string): Address {
  if (typeof a !== "string" || !isAddress(a, { strict: false })) throw new ClientError("invalid_argument", `${what} is not an address: ${JSON.stringify(a)}`);
  return getAddress(a);
}

/** The one address of the allow-list, else the one the channels use; `invalid_argument` when none or several. */
function only(allowed: readonly string[] | undefined, used: readonly string[], what: "escrow" | "token"): Address {
  const list = allowed?.length ? allowed : used;
  const distinct = [...new Set(list.map((a) => a.toLowerCase()))];
  if (distinct.length === 1) return getAddress(distinct[0]);
  const why = distinct.length === 0 ? "the client knows none yet" : `the client uses ${distinct.length}`;
  throw new ClientError("invalid_argument", `which ${what}? ${why}: pass ${what}`);
}
