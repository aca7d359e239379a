/**
 * The client's channels as it knows them: the stored records, what this process learned about each (verified on
 * chain, excluded from new calls), the channel in use for each (escrow, payee, token), and their refresh from the
 * escrow, which is the truth for deposits, settlement and close state.
 */
import type { Address, Hex } from "viem";
import type { ChannelRequirements, OnchainChannel } from "@paychan/protocol";
import { readChannel } from "../chain";
import { ClientError } from "../errors";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";
import { knownCost, raiseFloor, type ChannelCosts } from "./in-flight";

/** What this process learned about a channel (not stored: a new process verifies again). */
export interface ChannelFlags extends ChannelCosts {
  /** Read from the chain by this process. */
  verified: boolean;
  /** Excluded from new calls by this process (the provider refused it for a reason that will not pass). */
  excluded: boolean;
  /**
   * A gasless open not yet seen on chain that this process carries in its paid requests (`payload.open`, § 5.9):
   * the channel may be paid on while "opening".
   */
  pendingOpen?: boolean;
  /** A call is carrying the pending open: others wait for its outcome (then pay as ordinary vouchers). */
  openGate?: Promise<void>;
  /** The pending open's authorization must be signed again (its window was refused or ran out). */
  resign?: boolean;
  /** Paid calls on this channel whose answer is not handled yet. */
  inFlight: number;
  /** A gasless channel that ran out: closed cooperatively once idle and its replacement is open (§ 5.9 top-ups). */
  replaced?: boolean;
}

/** The key of an (escrow, payee, token) triple: calls with terms of the same key share a channel. */
export function termsKey(t: { extra: { escrow: Address }; payTo: Address; asset: Address }): string {
  return `${t.extra.escrow}|${t.payTo}|${t.asset}`.toLowerCase();
}

/** The records of one client's channels, with this process's flags and choices. */
export class ChannelBook {
  /** The channel new calls use, per {@link termsKey}. */
  readonly current = new Map<string, ChannelRecord>();
  private readonly flags = new Map<string, ChannelFlags>();

  constructor(private readonly s: ClientSession) {}

  /** This process's flags of `ch` (created unverified, not excluded). */
  flagsOf(ch: ChannelRecord): ChannelFlags {
    let r = this.flags.get(ch.id);
    if (!r) {
      r = { verified: false, excluded: false, inFlight: 0, reserved: 0n, reservations: 0, floor: ch.restartBase ?? ch.signed, charged: 0n, epoch: 0 };
      this.flags.set(ch.id, r);
    }
    return r;
  }

  /**
   * Vouchers of ours up to `amount` exist that this process did not sign or forgot (lost state, a hint, the chain's
   * settled amount): their requests' outcomes are unknown, so the next vouchers cover them (§ 7.1).
   */
  raiseFloor(ch: ChannelRecord, amount: bigint): void {
    raiseFloor(this, ch, amount);
    if (ch.restartBase !== undefined) ch.restartBase = knownCost(this, ch);
  }

  /** Stops using `ch` for new calls in this process. */
  exclude(ch: ChannelRecord): void {
    this.flagsOf(ch).excluded = true;
    for (const [k, c] of this.current) if (c === ch) this.current.delete(k);
  }

  /**
   * Whether a call with `terms` may pay on `ch`: open, verified, not excluded, and closing no sooner than asked; or a
   * gasless open this process carries (pending), while the provider still offers gasless opens.
   */
  usable(ch: ChannelRecord, terms: ChannelRequirements): boolean {
    const r = this.flagsOf(ch);
    if (r.excluded || ch.closeDelay < terms.extra.minCloseDelay) return false;
    if (ch.status === "opening") return Boolean(ch.openAuthorization && r.pendingOpen && terms.extra.open);
    return ch.status === "open" && r.verified;
  }

  /** The stored channel `id` (any letter case); throws `unknown_channel`. */
  record(id: Hex): ChannelRecord {
    const ch = this.s.state.channels[id] ?? Object.values(this.s.state.channels).find((c) => c.id.toLowerCase() === id.toLowerCase());
    if (!ch) throw new ClientError("unknown_channel", `channel ${id} is not in this client's store`);
    return ch;
  }

  /** Every channel the store knows for this payer and chain (no chain reads). */
  channels(): ChannelRecord[] {
    return Object.values(this.s.state.channels).filter((c) => c.chainId === this.s.chainId && c.payer === this.s.payer);
  }

  /**
   * Re-reads a channel from the chain (once per process unless forced) and updates its record.
   * Returns the escrow's answer (null: no such channel), or undefined when it was already verified.
   */
  async verify(ch: ChannelRecord, force = false): Promise<OnchainChannel | null | undefined> {
    const r = this.flagsOf(ch);
    if (r.verified && !force) return undefined;
    const oc = await readChannel(this.s.ctx, ch.escrow, ch.id, ch.signer);
    this.applyOnchain(ch, oc);
    r.verified = true;
    this.s.persister.schedule();
    return oc;
  }

  /** Applies the escrow's answer (null: no such channel) to the record. */
  applyOnchain(ch: ChannelRecord, oc: OnchainChannel | null): void {
    if (!oc || oc.payer.toLowerCase() !== ch.payer.toLowerCase() || oc.signer.toLowerCase() !== ch.signer.toLowerCase()) {
      ch.status = "missing";
      return;
    }
    ch.deposit = oc.deposit;
    ch.settled = oc.settled;
    ch.closeDelay = oc.closeDelay;
    if (oc.finalized) ch.status = "finalized";
    else if (oc.closeRequestedAt > 0) {
      ch.status = "closing";
      ch.closesAt = oc.closeRequestedAt + oc.closeDelay;
      ch.closeMode ??= "on-chain";
    } else if (ch.status !== "closing" || ch.closeMode !== "cooperative") {
      // A cooperative close is known only to us and the provider: the chain shows it open until the provider closes.
      ch.status = "open";
      ch.closesAt = undefined;
      ch.closeMode = undefined;
    }
    // The payee settled a voucher we signed: we signed at least that much, even if the state forgot it.
    if (oc.settled > ch.signed) {
      ch.signed = oc.settled;
      this.raiseFloor(ch, oc.settled);
      if (ch.served === undefined || oc.settled > ch.served) ch.served = oc.settled;
    }
    if (oc.settled > ch.accepted) ch.accepted = oc.settled;
    if (oc.settled > ch.spent) ch.spent = oc.settled;
  }
}
