/**
 * The local checks of an `exact` payment (docs/protocol.md § 5.8), before any chain read: the offer the payer
 * accepted is ours, the authorization pays exactly the price to the payee inside a window that cannot run out while
 * the transfer is mined, and it is signed (ECDSA, EIP-712) by its `from`.
 */
import { parseSignature, recoverTypedDataAddress, type Hex } from "viem";
import { exactTypedData, type ExactPaymentPayload, type ExactRequirements, type PaymentErrorCode } from "@paychan/protocol";

/** A refusal: a stable code and a one-line detail. */
export interface ExactRefusal {
  code: PaymentErrorCode;
  detail: string;
}

/**
 * Seconds an authorization must still be valid when it arrives (`validBefore − now`): the transfer is submitted and
 * mined inside them. Shorter windows are refused `authorization_expired`.
 */
export const EXACT_VALIDITY_MARGIN = 6;

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * Checks `p` against our offer `offer` (whose `amount` is this request's price) at chain time `now` (s). Returns the
 * first refusal, or null when the payment may go on to the chain checks.
 */
export async function checkExactPayment(p: ExactPaymentPayload, offer: ExactRequirements, now: number, margin = EXACT_VALIDITY_MARGIN): Promise<ExactRefusal | null> {
  const a = p.accepted;
  if (a.network !== offer.network) return { code: "network_mismatch", detail: `this server takes payments on ${offer.network}, not ${a.network}` };
  if (!same(a.asset, offer.asset) || !same(a.payTo, offer.payTo)) return { code: "requirements_mismatch", detail: "asset or payTo differ from this server's exact offer" };
  if (a.amount !== offer.amount) return { code: "requirements_mismatch", detail: `this request costs ${offer.amount}; the payment accepted ${a.amount}` };
  if (a.extra.name !== offer.extra.name || a.extra.version !== offer.extra.version) {
    return { code: "requirements_mismatch", detail: `the token's EIP-712 domain is ${JSON.stringify(offer.extra.name)} version ${JSON.stringify(offer.extra.version)}` };
  }
  const auth = p.payload.authorization;
  if (!same(auth.to, offer.payTo)) return { code: "authorization_recipient_mismatch", detail: `the authorization pays ${auth.to}, not ${offer.payTo}` };
  if (auth.value !== offer.amount) return { code: "authorization_value_mismatch", detail: `the authorization is for ${auth.value}; this request costs exactly ${offer.amount}` };
  // EIP-3009: valid strictly after validAfter and strictly before validBefore (block time).
  if (auth.validAfter >= BigInt(now)) return { code: "authorization_not_yet_valid", detail: `the authorization is valid after ${auth.validAfter}; chain time is ${now}` };
  if (auth.validBefore < BigInt(now + margin)) {
    return { code: "authorization_expired", detail: `the authorization expires at ${auth.validBefore}; it must stay valid at least ${margin} s after ${now}` };
  }
  let signer: string;
  try {
    signer = await recoverTypedDataAddress({ ...exactTypedData(offer, auth), signature: p.payload.signature });
  } catch {
    return { code: "authorization_signature_invalid", detail: "the signature could not be recovered" };
  }
  if (!same(signer, auth.from)) {
    return { code: "authorization_signature_invalid", detail: `the authorization is not signed by its from ${auth.from} (only key (ECDSA) signatures are accepted)` };
  }
  return null;
}

/** `v, r, s` of a 65-byte (or compact 64-byte) signature, for `transferWithAuthorization(…, v, r, s)`. */
export function splitSignature(signature: Hex): { v: number; r: Hex; s: Hex } {
  const s = parseSignature(signature);
  const v = s.v !== undefined ? Number(s.v) : 27 + (s.yParity ?? 0);
  return { v: v < 27 ? v + 27 : v, r: s.r, s: s.s };
}
