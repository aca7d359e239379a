/**
 * `ChannelClient.collect`: takes what the escrow owes the payer in a token (refunds it could not transfer, see
 * owed.ts) with the escrow's `collect(token, to)`, sent from the payer, to the payer or another address — e.g. one
 * the token accepts when the payer is blacklisted.
 */
import { getAddress, isAddress, zeroAddress } from "viem";
import { readOwed } from "../chain";
import { ClientError } from "../errors";
import type { CollectParams, CollectResult } from "../options";
import type { ClientSession } from "../session";
import { collectTx } from "../transactions";
import type { ChannelBook } from "./book";
import { owedTarget } from "./owed";

/**
 * Collects everything the escrow owes the payer in the token, sent to `to` (default the payer). Checked before any
 * transaction: `invalid_recipient` for the zero address or the escrow itself, `nothing_owed` when nothing is owed
 * (the contract refuses both the same way, should the state change in between).
 */
export async function collect(s: ClientSession, book: ChannelBook, p: CollectParams = {}): Promise<CollectResult> {
  const { escrow, token } = owedTarget(s, book, p);
  if (p.to !== undefined && (typeof p.to !== "string" || !isAddress(p.to, { strict: false }))) {
    throw new ClientError("invalid_argument", `to is not an address: ${JSON.stringify(p.to)}`);
  }
  const to = p.to === undefined ? s.payer : getAddress(p.to);
  if (to === zeroAddress || to === escrow) {
    throw new ClientError("invalid_recipient", `the escrow cannot collect to ${to === zeroAddress ? "the zero address" : "itself"}; pass another address`);
  }
  const owed = await readOwed(s.ctx, escrow, token, s.payer);
  if (owed === 0n) throw new ClientError("nothing_owed", `the escrow ${escrow} owes ${s.payer} nothing in token ${token}`);
  const { receipt, amount } = await collectTx(s.ctx, escrow, token, to);
  return { escrow, token, to, amount, txHash: receipt.transactionHash };
}
