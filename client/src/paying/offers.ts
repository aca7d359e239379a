/**
 * Which offer of a 402 the client pays (docs/protocol.md § 7): the schemes in the owner's order of preference
 * (`schemes` / `prefer`, default `channel` then `exact`), and within a scheme the offers in the provider's order; the
 * first offer that passes the limits and allow-lists wins. A scheme whose every offer fails (an unverified escrow, a
 * minimum deposit above `maxDeposit`, a price above `maxPrice`, …) is passed over for the next one; when none passes,
 * the refusal of the first offer tried is thrown.
 */
import type { ChannelRequirements, ExactRequirements } from "@paychan/protocol";
import type { ClientSession } from "../session";
import { assertAllowed } from "../spending";
import type { ExactPayer } from "./exact";

/** One offer of either scheme. */
export type Offer = ChannelRequirements | ExactRequirements;

/** A 402's offers, by scheme. */
export interface Offers {
  accepts: ChannelRequirements[];
  exact: ExactRequirements[];
}

/** The offers of the schemes this client pays (the others dropped); undefined when none remains. */
export function payableOffers(s: ClientSession, o: Offers): Offers | undefined {
  const accepts = s.schemes.includes("channel") ? o.accepts : [];
  const exact = s.schemes.includes("exact") ? o.exact : [];
  return accepts.length + exact.length > 0 ? { accepts, exact } : undefined;
}

/**
 * The offer to pay: the first, in the owner's order of schemes, that the limits allow. Throws the first refusal.
 * When a more preferred scheme's offers were all refused, `onPassedOver` hears which scheme and the first refusal.
 */
export async function chooseScheme(
  s: ClientSession,
  exact: ExactPayer,
  offers: Offers,
  onPassedOver?: (scheme: Offer["scheme"], error: unknown) => void,
): Promise<Offer> {
  let first: { scheme: Offer["scheme"]; error: unknown } | undefined;
  for (const scheme of s.schemes) {
    const list: Offer[] = scheme === "channel" ? offers.accepts : offers.exact;
    for (const offer of list) {
      try {
        if (offer.scheme === "channel") await assertAllowed(s, offer);
        else await exact.assertAllowed(offer);
        if (first && first.scheme !== offer.scheme) onPassedOver?.(first.scheme, first.error);
        return offer;
      } catch (e) {
        first ??= { scheme, error: e };
      }
    }
  }
  throw first?.error;
}
