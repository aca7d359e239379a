/**
 * What one provider (an origin, and each payee it names) can make this client commit (docs/protocol.md § 7, issue 17):
 * - at most `maxConsecutiveRefusals` paid calls refused in a row (a 402 to a paid request, a 5xx, or its connection
 *   dropped once the voucher was sent) before nothing more is signed for it in this process (`provider_refusing`); a
 *   served paid call resets the count;
 * - at most one new channel per refusal streak (a refusal, then an open, then another refusal before anything was
 *   served: no more opens, `channel_limit`), so codes that make a channel unusable cannot loop into new channels;
 * - at most `maxChannelsPerProvider` channels not finalized and `maxDepositPerProvider` held unspent in them, counted
 *   from the stored records by origin or payee (so a `payTo` rotated on every 402 is still the same provider).
 * Counts of refusals and streaks live in this process; the channel and deposit caps are counted from the store.
 */
import type { Address } from "viem";
import { ClientError } from "./errors";
import { DEFAULT_MAX_CHANNELS_PER_PROVIDER, DEFAULT_MAX_CONSECUTIVE_REFUSALS, type SpendingLimits, type TokenLimits } from "./limits";
import type { ChannelRecord } from "./store";

/** This payer's channels of one provider (by origin or payee) that are not finalized: opening, open or closing. */
export function providerChannels(channels: ChannelRecord[], origin: string | undefined, payee: Address): ChannelRecord[] {
  const p = payee.toLowerCase();
  return channels.filter(
    (c) => ((origin !== undefined && c.origin === origin) || c.payee.toLowerCase() === p) && (c.status === "opening" || c.status === "open" || c.status === "closing"),
  );
}

/** What `channels` hold unspent: `deposit − signed` (the opening amount while opening), summed. */
export function unspentOf(channels: ChannelRecord[]): bigint {
  let unspent = 0n;
  for (const c of channels) {
    const deposit = c.status === "opening" ? c.openAmount : c.deposit;
    if (deposit > c.signed) unspent += deposit - c.signed;
  }
  return unspent;
}

/** One provider's streak in this process. */
interface Streak {
  /** Paid calls refused in a row. */
  refusedCalls: number;
  /** A paid attempt was refused since the last served call. */
  refusing: boolean;
  /** A channel was opened since that refusal. */
  openedInStreak: boolean;
}

/** Per-provider bounds of one client. */
export class ProviderGuard {
  private readonly streaks = new Map<string, Streak>();

  constructor(private readonly limits: SpendingLimits) {}

  private streak(origin: string): Streak {
    let s = this.streaks.get(origin);
    if (!s) {
      s = { refusedCalls: 0, refusing: false, openedInStreak: false };
      this.streaks.set(origin, s);
    }
    return s;
  }

  /** Throws `provider_refusing` when `origin` refused too many paid calls in a row (checked before signing). */
  assertMaySign(origin: string): void {
    const s = this.streaks.get(origin);
    const max = this.limits.maxConsecutiveRefusals ?? DEFAULT_MAX_CONSECUTIVE_REFUSALS;
    if (s && s.refusedCalls >= max) {
      throw new ClientError("provider_refusing", `${origin} refused ${s.refusedCalls} paid calls in a row; nothing more is signed for it`, {
        details: "Its vouchers were signed and not served. Raise limits.maxConsecutiveRefusals (CLI: --max-refusals) to keep trying.",
      });
    }
  }

  /** A paid attempt to `origin` was refused (the call may still retry). */
  onRefusedAttempt(origin: string): void {
    this.streak(origin).refusing = true;
  }

  /** A paid call to `origin` ended refused (or failed with a 5xx, or in transport once the voucher was sent). */
  onRefusedCall(origin: string): void {
    const s = this.streak(origin);
    s.refusing = true;
    s.refusedCalls++;
  }

  /** A paid call to `origin` was served: its streak ends. */
  onServed(origin: string): void {
    this.streaks.delete(origin);
  }

  /**
   * Throws `channel_limit` unless a new channel of `amount` to `payee` at `origin` keeps within the streak rule and the
   * per-provider caps over `channels` (this payer's records on this chain); then counts the open (synchronously, so
   * concurrent opens cannot both pass).
   */
  admitOpen(origin: string, payee: Address, amount: bigint, tl: TokenLimits, channels: ChannelRecord[]): void {
    const s = this.streak(origin);
    if (s.refusing && s.openedInStreak) {
      throw new ClientError("channel_limit", `${origin} refused the channel opened for it before serving anything; no other channel is opened for it`, {
        details: "One new channel per provider per refusal streak.",
      });
    }
    const mine = providerChannels(channels, origin, payee);
    const maxChannels = this.limits.maxChannelsPerProvider ?? DEFAULT_MAX_CHANNELS_PER_PROVIDER;
    if (mine.length >= maxChannels) {
      throw new ClientError("channel_limit", `${origin} already has ${mine.length} channels that are not finalized (maxChannelsPerProvider ${maxChannels})`, {
        details: "Close (and withdraw) one, or raise limits.maxChannelsPerProvider (CLI: --max-channels).",
      });
    }
    const unspent = unspentOf(mine);
    if (unspent + amount > tl.maxDepositPerProvider) {
      throw new ClientError("channel_limit", `a channel of ${amount} would hold ${unspent + amount} unspent for ${origin}, above maxDepositPerProvider ${tl.maxDepositPerProvider}`, {
        details: "Close (and withdraw) a channel, or raise limits.maxDepositPerProvider (CLI: --max-deposit-per-provider).",
      });
    }
    if (s.refusing) s.openedInStreak = true;
  }
}
