/**
 * Re-reading channels from the chain during a cycle: before claiming (a claim is sized against the chain's `settled`
 * and `deposit`, not the store's), and after a confirmation (to catch what happened since). The snapshots go to the
 * store and, in the server, to its channel view (`onChannels`).
 */
import type { Hex } from "viem";
import type { ChannelRef } from "@paychan/protocol";
import type { ChainChannel, StoredChannel } from "../store/types";
import { describe, type SettlementCycle } from "./cycle";

/** The stored channels among `ids`, named as the escrow reads them (id and signer); unknown ids are left out. */
export async function refsOf(cy: SettlementCycle, ids: readonly Hex[]): Promise<ChannelRef[]> {
  const stored = await Promise.all(ids.map((id) => cy.o.store.getChannel(id)));
  return stored.filter((c): c is StoredChannel => c !== null).map((c) => ({ channelId: c.channelId, signer: c.signer }));
}

/**
 * Reads channels from the chain at the head and applies the snapshots (store and, in the server, the view).
 * Returns them by lowercase channel id (channels the chain does not know are absent); throws when the read fails.
 */
export async function refreshChannels(cy: SettlementCycle, refs: readonly ChannelRef[]): Promise<Map<string, ChainChannel>> {
  const out = new Map<string, ChainChannel>();
  if (refs.length === 0) return out;
  try {
    const head = await cy.o.chain.head();
    const snaps = await cy.o.reader.readChannels(refs, head.number);
    await cy.o.store.applyChainSnapshots(snaps);
    cy.o.onChannels?.(snaps);
    for (const s of snaps) out.set(s.channelId.toLowerCase(), s);
  } catch (e) {
    cy.log?.warn({ err: describe(e) }, "could not refresh channels after settlement");
    throw e;
  }
  return out;
}
