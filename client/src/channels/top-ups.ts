/**
 * Top-ups: automatic ones in the background when a channel runs low (never blocking the call that noticed), one that
 * a call waits for when the deposit is short, and the owner's explicit `topUp`. At most one top-up of a channel is in
 * flight; every other caller waits for it.
 */
import type { Hex } from "viem";
import { max, min } from "../bigint";
import { readChannel } from "../chain";
import { ClientError } from "../errors";
import { toAtomic, type Amount } from "../limits";
import { providerChannels, unspentOf } from "../provider-guard";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";
import { topUpTx } from "../transactions";
import type { ChannelBook } from "./book";

/** Tops channels up under the policy (`autoTopUp`, `topUpThreshold`, `topUpAmount`) and `maxDeposit`. */
export class TopUps {
  /** The top-up in flight, per channel id. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(
    private readonly s: ClientSession,
    private readonly book: ChannelBook,
  ) {}

  /** Starts a background top-up when the channel runs low (never blocks the call that noticed). */
  maybeTopUp(ch: ChannelRecord, price: bigint): void {
    // A channel the provider opened (gasless) is not topped up in the background: the payer may have no gas. When it
    // runs out, a call replaces it with a new gasless channel, or tops it up when the payer pays gas (vouchers.ts).
    if (this.s.policy.autoTopUp === false || this.inFlight.get(ch.id) || ch.openedBy === "provider") return;
    const d = this.s.tokens.knownDecimals(ch.token);
    if (d === undefined) return;
    if (ch.deposit - ch.signed >= this.threshold(ch, price, d)) return;
    this.start(ch, 0n).catch((error) => this.s.emit({ type: "top_up_failed", channelId: ch.id, error }));
  }

  /** Waits for (or starts) a top-up that makes room for `needed`; throws when the policy or limits do not allow one. */
  async fund(ch: ChannelRecord, needed: bigint): Promise<void> {
    const running = this.inFlight.get(ch.id);
    if (running) return running.catch(() => this.start(ch, needed));
    if (this.s.policy.autoTopUp === false) {
      throw new ClientError("insufficient_funds", `channel ${ch.id} is exhausted (${ch.deposit - ch.signed} left) and automatic top-up is off`);
    }
    return this.start(ch, needed);
  }

  /** The owner's top-up of `amount` (atomic units, or token units as a string); waits for one in flight first. */
  async topUp(channelId: Hex, amount: Amount): Promise<ChannelRecord> {
    const ch = this.book.record(channelId);
    const atomic = toAtomic(amount, await this.s.tokens.decimalsOf(ch.token), "amount");
    if (atomic <= 0n) throw new ClientError("invalid_argument", "the top-up must be positive");
    await this.book.verify(ch, true);
    if (ch.status === "finalized" || ch.status === "missing") throw new ClientError("channel_closed", `channel ${ch.id} is ${ch.status}`);
    for (let running = this.inFlight.get(ch.id); running; running = this.inFlight.get(ch.id)) await running.catch(() => undefined);
    const p = this.send(ch, atomic);
    this.inFlight.set(ch.id, p);
    try {
      await p;
    } finally {
      if (this.inFlight.get(ch.id) === p) this.inFlight.delete(ch.id);
      // The owner put money in: the channel may serve again even if a refusal excluded it.
      this.book.flagsOf(ch).excluded = false;
    }
    return ch;
  }

  private threshold(ch: ChannelRecord, price: bigint, decimals: number): bigint {
    if (this.s.policy.topUpThreshold !== undefined) return toAtomic(this.s.policy.topUpThreshold, decimals, "policy.topUpThreshold");
    return max(ch.openAmount / 5n, 32n * price);
  }

  private start(ch: ChannelRecord, needed: bigint): Promise<void> {
    const running = this.inFlight.get(ch.id);
    if (running) return running;
    const p = (async () => {
      const decimals = await this.s.tokens.decimalsOf(ch.token);
      const tl = await this.s.tokens.limitsOf(ch.token);
      const unspent = ch.deposit - max(ch.signed, ch.spent);
      const want = this.s.policy.topUpAmount !== undefined ? toAtomic(this.s.policy.topUpAmount, decimals, "policy.topUpAmount") : ch.openAmount;
      const byChannel = min(want, tl.maxDeposit - unspent);
      // Also within maxDepositPerProvider, over this provider's other channels (closing ones included).
      const others = unspentOf(providerChannels(this.book.channels(), ch.origin, ch.payee).filter((c) => c.id !== ch.id));
      const byProvider = tl.maxDepositPerProvider - others - unspent;
      const amount = min(byChannel, byProvider);
      if (amount <= 0n || amount < needed) {
        if (byProvider < byChannel) {
          throw new ClientError("channel_limit", `a top-up of channel ${ch.id} would hold more than maxDepositPerProvider ${tl.maxDepositPerProvider} unspent over the provider's channels (${others + unspent} now)`, {
            details: "Close (and withdraw) a channel, or raise limits.maxDepositPerProvider (CLI: --max-deposit-per-provider).",
          });
        }
        throw new ClientError("spending_limit", `a top-up of channel ${ch.id} would hold more than maxDeposit ${tl.maxDeposit} unspent`);
      }
      await this.send(ch, amount);
    })().finally(() => {
      if (this.inFlight.get(ch.id) === p) this.inFlight.delete(ch.id);
    });
    this.inFlight.set(ch.id, p);
    return p;
  }

  /** Sends the top-up transaction and takes the new deposit from the chain (else adds `amount`). */
  private async send(ch: ChannelRecord, amount: bigint): Promise<void> {
    const receipt = await topUpTx(this.s.ctx, ch.escrow, ch.token, { channelId: ch.id, signer: ch.signer }, amount);
    const oc = await readChannel(this.s.ctx, ch.escrow, ch.id, ch.signer).catch(() => undefined);
    if (oc !== undefined) this.book.applyOnchain(ch, oc);
    else {
      ch.deposit += amount;
      ch.status = "open";
    }
    this.s.stats.topUps++;
    this.s.persister.schedule();
    this.s.emit({ type: "topped_up", channelId: ch.id, amount, deposit: ch.deposit, txHash: receipt.transactionHash });
  }
}
