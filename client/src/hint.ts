/**
 * Checks of the provider's `extra.channel` hint before the client resynchronises from it (docs/protocol.md § 5.3):
 * the hint is the provider's claim, so the client only believes amounts its own session key signed, and never
 * anything that would take it past the channel's on-chain deposit.
 */
import type { Address, Hex } from "viem";
import type { ChannelHint, VoucherVerifier } from "@paychan/protocol";
import { ClientError } from "./errors";

function untrusted(channelId: Hex, why: string): ClientError {
  return new ClientError("untrusted_hint", `the provider's view of channel ${channelId} is not trustworthy: ${why}`, {
    details: "Nothing was signed because of it.",
  });
}

/**
 * Throws `untrusted_hint` unless the hint's `signature` is `signer`'s voucher for (`channelId`, `accepted`).
 * A hint without a signature is only acceptable when it claims nothing accepted.
 */
export function checkHintSignature(hint: ChannelHint, channelId: Hex, signer: Address, verifier: VoucherVerifier): void {
  if (hint.accepted === 0n && !hint.signature) return;
  if (!hint.signature) throw untrusted(channelId, "it claims an accepted amount without a signature");
  const recovered = verifier.recover(channelId, hint.accepted, hint.signature);
  if (!recovered || recovered.toLowerCase() !== signer.toLowerCase()) {
    throw untrusted(channelId, "its voucher signature is not this client's session key's");
  }
}

/** Throws `untrusted_hint` when the hint's amounts are impossible: `spent > accepted` or `accepted` above the deposit. */
export function checkHintAmounts(hint: ChannelHint, deposit: bigint): void {
  if (hint.spent > hint.accepted) throw untrusted(hint.channelId, `spent ${hint.spent} is above accepted ${hint.accepted}`);
  if (hint.accepted > deposit) throw untrusted(hint.channelId, `accepted ${hint.accepted} is above the on-chain deposit ${deposit}`);
}
