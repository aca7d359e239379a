/**
 * Choosing the channel a call pays on: the one in use for the terms' (escrow, payee, token), else a stored one
 * (verified on chain once per process), else one recovered from the chain's events, else a new one. Concurrent calls
 * with the same terms wait for one choice, so they never open two channels.
 */
import type { Address } from "viem";
import type { ChannelRequirements } from "@paychan/protocol";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";
import { termsKey, type ChannelBook } from "./book";
import type { GaslessOpens } from "./gasless";
import { openChannelFor } from "./opening";
import { recoverChannels } from "./recovery";

/** Picks (and when needed recovers or opens) the channel for a call's terms. */
export class ChannelSelector {
  private readonly acquiring = new Map<string, Promise<ChannelRecord>>();
  /** Terms keys whose channels were already searched for on chain by this process. */
  private readonly discovered = new Set<string>();

  /** `discoverFrom`: first block of the event search for lost channels; `false` disables it. */
  constructor(
    private readonly s: ClientSession,
    private readonly book: ChannelBook,
    private readonly discoverFrom: bigint | false,
    private readonly gasless: GaslessOpens,
  ) {}

  /**
   * The channel to pay `terms` with: the current one, a stored one (verified on chain once), a recovered one, or a
   * new one. Synchronous when the current channel is usable (the steady state).
   */
  channelFor(terms: ChannelRequirements, origin: string): Promise<ChannelRecord> | ChannelRecord {
    const key = termsKey(terms);
    const cur = this.book.current.get(key);
    if (cur && this.book.usable(cur, terms)) return cur;
    let p = this.acquiring.get(key);
    if (!p) {
      p = this.acquire(terms, origin, key).finally(() => this.acquiring.delete(key));
      this.acquiring.set(key, p);
    }
    return p;
  }

  private matches(c: ChannelRecord, terms: { extra: { escrow: Address }; payTo: Address; asset: Address }): boolean {
    return (
      c.chainId === this.s.chainId &&
      c.payer === this.s.payer &&
      c.signer.toLowerCase() === this.s.signerAddress.toLowerCase() &&
      termsKey({ extra: { escrow: c.escrow }, payTo: c.payee, asset: c.token }) === termsKey(terms)
    );
  }

  private async acquire(terms: ChannelRequirements, origin: string, key: string): Promise<ChannelRecord> {
    // Stored candidates, the most room left first.
    const candidates = Object.values(this.s.state.channels)
      .filter((c) => this.matches(c, terms) && (c.status === "open" || c.status === "opening") && !this.book.flagsOf(c).excluded)
      .sort((a, b) => (b.deposit - b.signed > a.deposit - a.signed ? 1 : -1));
    for (const c of candidates) {
      // A gasless open not yet confirmed: on chain by now, or carried again (same authorization), or given up.
      if (c.status === "opening" && c.openAuthorization) await this.gasless.reconsider(c, terms);
      else await this.book.verify(c);
      if (this.book.usable(c, terms)) return this.use(key, c, origin);
    }
    if (this.discoverFrom !== false && !this.discovered.has(key)) {
      this.discovered.add(key);
      // Best effort: some RPCs refuse wide log queries.
      const found = await recoverChannels(this.s, this.book, terms, this.discoverFrom).catch(() => []);
      for (const c of found) if (this.book.usable(c, terms)) return this.use(key, c, origin);
    }
    return this.use(key, await openChannelFor(this.s, this.book, this.gasless, terms, origin), origin);
  }

  private use(key: string, ch: ChannelRecord, origin: string): ChannelRecord {
    if (!ch.origin) {
      ch.origin = origin;
      this.s.persister.schedule();
    }
    this.book.current.set(key, ch);
    return ch;
  }
}
