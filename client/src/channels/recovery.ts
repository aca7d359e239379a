/**
 * Recovery of channels after the state was lost but the session key kept: this payer's `ChannelOpened` events with
 * our session key as signer are read from the chain, and the channels found are added to the store.
 */
import { getAddress } from "viem";
import type { ChannelRequirements } from "@paychan/protocol";
import { discoverChannels, readChannels } from "../chain";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";
import type { ChannelBook } from "./book";

/**
 * Finds this payer's channels for `terms` (escrow, payee, token) signed by our session key, from `fromBlock`, and adds
 * the ones the store does not know. Returns them with their on-chain state (open or not).
 */
export async function recoverChannels(s: ClientSession, book: ChannelBook, terms: ChannelRequirements, fromBlock: bigint): Promise<ChannelRecord[]> {
  const found = await discoverChannels(s.ctx, {
    escrow: terms.extra.escrow,
    payee: terms.payTo,
    token: terms.asset,
    signer: s.signerAddress,
    fromBlock,
  });
  const out: ChannelRecord[] = [];
  const fresh = found.filter((d) => !s.state.channels[d.id]);
  const onchain = await readChannels(s.ctx, terms.extra.escrow, fresh.map((d) => ({ channelId: d.id, signer: d.signer })));
  fresh.forEach((d, i) => {
    const ch: ChannelRecord = {
      id: d.id,
      chainId: s.chainId,
      escrow: getAddress(terms.extra.escrow),
      payer: s.payer,
      payee: getAddress(d.payee),
      token: getAddress(d.token),
      signer: getAddress(d.signer),
      closeDelay: d.closeDelay,
      deposit: d.deposit,
      settled: 0n,
      openAmount: d.deposit,
      signed: 0n,
      accepted: 0n,
      spent: 0n,
      status: "open",
      openedAt: Date.now(),
    };
    book.applyOnchain(ch, onchain[i]);
    book.flagsOf(ch).verified = true;
    s.state.channels[ch.id] = ch;
    out.push(ch);
    if (ch.status === "open") s.emit({ type: "channel_recovered", channelId: ch.id, deposit: ch.deposit });
  });
  if (out.length) s.persister.schedule();
  return out;
}
