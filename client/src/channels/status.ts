/**
 * `ChannelClient.status`: every channel of this payer, refreshed from the chain (one read per escrow).
 */
import { max } from "../bigint";
import { readChannels } from "../chain";
import type { ChannelStatusInfo } from "../options";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";
import type { ChannelBook } from "./book";
import type { GaslessOpens } from "./gasless";

/** Every channel of this payer and chain, with its open channels re-read from their escrows. */
export async function channelStatus(s: ClientSession, book: ChannelBook, gasless: GaslessOpens): Promise<ChannelStatusInfo[]> {
  const mine = book.channels();
  const byEscrow = new Map<string, ChannelRecord[]>();
  // The transaction of a provider's open is read from its ChannelOpened event (best effort; once).
  await Promise.all(mine.filter((c) => c.openedBy === "provider" && !c.openTx && c.status !== "opening").map((c) => gasless.findOpenTx(c).catch(() => undefined)));
  for (const c of mine) {
    // A pending gasless open is not on chain yet: reading it would mark it missing.
    if (c.status === "finalized" || c.status === "missing" || (c.status === "opening" && c.openAuthorization)) continue;
    const k = c.escrow.toLowerCase();
    byEscrow.set(k, [...(byEscrow.get(k) ?? []), c]);
  }
  for (const cs of byEscrow.values()) {
    const ocs = await readChannels(s.ctx, cs[0].escrow, cs.map((c) => ({ channelId: c.id, signer: c.signer })));
    cs.forEach((c, i) => {
      book.applyOnchain(c, ocs[i]);
      book.flagsOf(c).verified = true;
    });
  }
  if (byEscrow.size) s.persister.schedule();
  return mine.map((c) => ({
    channelId: c.id,
    escrow: c.escrow,
    payee: c.payee,
    token: c.token,
    signer: c.signer,
    deposit: c.deposit,
    settled: c.settled,
    signed: c.signed,
    spent: c.spent,
    accepted: c.accepted,
    remaining: c.status === "finalized" || c.status === "missing" || c.status === "opening" ? 0n : c.deposit - max(c.signed, c.spent),
    status: c.status,
    closesAt: c.closesAt,
    closeDelay: c.closeDelay,
    origin: c.origin,
    openedBy: c.openedBy ?? "payer",
    openFee: c.openFee ?? 0n,
    openTx: c.openTx,
  }));
}
