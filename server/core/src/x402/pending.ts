/**
 * What the `channel` plug-in of the stock x402 resource server keeps between the SDK's calls of one paid request:
 * the client's address (seen by the scheme's before-verify hook, used by verify), the charge committed at verify
 * (finished at settle, released at cancel), and the channel hint of a refusal (added to the 402 the stock server
 * answers with). Keyed by the voucher (channel id, amount, signature): one voucher pays for
 * at most one request, so a key names one request in progress.
 */
import type { ChannelHint } from "@paychan/protocol";
import type { Charge } from "../payments/core";

/** How long an entry waits for its settle or cancel before it is dropped (the charge stays committed). */
const TTL_MS = 10 * 60_000;
/** Refusal hints kept at most (each is read once, by the 402 that answers the refused request). */
const MAX_HINTS = 1024;

/** The voucher of a payment payload as a key; undefined when the payload is not a voucher. */
export function voucherKey(payload: unknown): string | undefined {
  const p = payload as { channelId?: unknown; cumulativeAmount?: unknown; signature?: unknown } | undefined;
  if (!p || typeof p.channelId !== "string" || typeof p.cumulativeAmount !== "string" || typeof p.signature !== "string") return undefined;
  return `${p.channelId.toLowerCase()}:${p.cumulativeAmount}:${p.signature.toLowerCase()}`;
}

/** Charges between verify and settle/cancel, and hints between a refusal and its 402. */
export class PendingPayments {
  private readonly charges = new Map<string, { charge: Charge; at: number }>();
  private readonly hints = new Map<string, ChannelHint>();
  private readonly sources = new Map<string, string>();

  /** Keeps `charge` until {@link take}. */
  hold(key: string, charge: Charge): void {
    this.sweep();
    this.charges.set(key, { charge, at: Date.now() });
  }

  /** The charge held for `key`, removed. */
  take(key: string | undefined): Charge | undefined {
    if (key === undefined) return undefined;
    const e = this.charges.get(key);
    this.charges.delete(key);
    return e?.charge;
  }

  /** Keeps the hint of a refused voucher until the 402 is built. */
  hint(key: string, hint: ChannelHint): void {
    if (this.hints.size >= MAX_HINTS) this.hints.delete(this.hints.keys().next().value as string);
    this.hints.set(key, hint);
  }

  /** The hint of a refused voucher, removed. */
  takeHint(key: string | undefined): ChannelHint | undefined {
    if (key === undefined) return undefined;
    const h = this.hints.get(key);
    this.hints.delete(key);
    return h;
  }

  /** Keeps the client's address of a voucher about to be verified (the facilitator does not see the request). */
  source(key: string, source: string): void {
    if (this.sources.size >= MAX_HINTS) this.sources.delete(this.sources.keys().next().value as string);
    this.sources.set(key, source);
  }

  /** The client's address of a voucher being verified, removed. */
  takeSource(key: string): string | undefined {
    const s = this.sources.get(key);
    this.sources.delete(key);
    return s;
  }

  /** Charges in progress (tests, metrics). */
  get size(): number {
    return this.charges.size;
  }

  /** Drops entries whose request never settled nor cancelled (a handler that never answered). */
  private sweep(): void {
    const old = Date.now() - TTL_MS;
    for (const [k, e] of this.charges) {
      if (e.at >= old) break; // insertion order: the rest are newer
      this.charges.delete(k);
    }
  }
}
