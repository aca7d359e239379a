/**
 * What the client learns when the provider refuses its voucher: it resynchronises the channel's amounts from the
 * provider's `extra.channel` hint (only when the hint carries our own session key's signature, docs/protocol.md
 * § 5.3), and stops using a channel the provider will not take any more.
 */
import { PAYMENT_ERROR_RECOVERY, VoucherVerifier, isPaymentErrorCode, type ChannelHint, type PaymentRequired } from "@paychan/protocol";
import { max } from "../bigint";
import type { ChannelBook } from "../channels/book";
import { knownCost } from "../channels/in-flight";
import { checkHintAmounts, checkHintSignature } from "../hint";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";

/** Refusals that mean this channel cannot be used with this provider any more (the protocol's classification). */
const channelUnusable = (code: string) => isPaymentErrorCode(code) && PAYMENT_ERROR_RECOVERY[code].channelUnusable;

/**
 * Learns from a refusal (`code`, with the 402 `challenge`) of a voucher on `ch`: resynchronise from the hint, re-read
 * the channel when the refusal is about its deposit or existence, and exclude a channel the provider will not take.
 */
export async function learnFromRefusal(s: ClientSession, book: ChannelBook, ch: ChannelRecord, code: string, challenge: PaymentRequired): Promise<void> {
  const hint = challenge.accepts.map((a) => a.extra.channel).find((c) => c && c.channelId.toLowerCase() === ch.id.toLowerCase());
  if (hint) await applyHint(s, book, ch, hint);
  if (code === "exceeds_deposit" || code === "unknown_channel" || channelUnusable(code)) {
    await book.verify(ch, true);
    if (channelUnusable(code) || ch.status !== "open") book.exclude(ch);
  }
}

/**
 * Resynchronises a channel from the provider's hint, after checking it: the signature must be our session key's
 * for `accepted`, `spent ≤ accepted`, and `accepted` within the on-chain deposit. Otherwise `untrusted_hint`.
 */
export async function applyHint(s: ClientSession, book: ChannelBook, ch: ChannelRecord, hint: ChannelHint): Promise<void> {
  checkHintSignature(hint, ch.id, s.signerAddress, new VoucherVerifier(s.signerFor(ch.escrow).hasher));
  if (hint.accepted > ch.deposit) await book.verify(ch, true); // the deposit may have grown (a top-up elsewhere)
  checkHintAmounts(hint, ch.deposit);
  if (hint.status === "finalized" || hint.status === "closing") await book.verify(ch, true);
  const before = max(ch.signed, ch.accepted, ch.spent);
  // The provider charged more than this client counted (vouchers of ours it forgot, or requests it cannot account
  // for). The new floor must cover every request signed so far, including those still in flight that the provider had
  // not processed when it wrote the hint (their charges stop counting once the floor moves): our highest voucher does,
  // its `accepted` alone does not (§ 7.1).
  if (hint.spent > knownCost(book, ch)) book.raiseFloor(ch, max(hint.accepted, ch.signed));
  if (hint.accepted > ch.accepted) ch.accepted = hint.accepted;
  if (hint.spent > ch.spent) ch.spent = hint.spent;
  if (hint.accepted > ch.signed) {
    // A voucher of ours we had forgotten (state lost): what the provider charged of it counts as served.
    ch.signed = hint.accepted;
    book.raiseFloor(ch, hint.accepted);
    if (ch.served === undefined || hint.spent > ch.served) ch.served = hint.spent;
  }
  if (max(ch.signed, ch.accepted, ch.spent) !== before) {
    s.emit({ type: "resynced", channelId: ch.id, accepted: ch.accepted, spent: ch.spent });
    s.persister.schedule();
  }
}
