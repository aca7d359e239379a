/**
 * The terms of each route paid (`METHOD origin/path`), remembered in the state so the next call, in this process or
 * the next, pays on its first attempt instead of waiting for a 402.
 */
import type { ChannelRequirements } from "@paychan/protocol";
import type { ClientSession } from "../session";
import { requirementsToJson } from "../store";

/** The terms without the provider's `extra.channel` hint: that belongs to one 402, not to the route. */
export function stripHint(r: ChannelRequirements): ChannelRequirements {
  if (!r.extra.channel) return r;
  const { channel: _hint, ...extra } = r.extra;
  return { ...r, extra };
}

/** Remembers `offer` as the terms of the route `key` (saved only when they changed). */
export function rememberRoute(s: ClientSession, key: string, offer: ChannelRequirements): void {
  const terms = stripHint(offer);
  const old = s.routes.get(key);
  if (old && JSON.stringify(requirementsToJson(old)) === JSON.stringify(requirementsToJson(terms))) return;
  s.routes.set(key, terms);
  s.state.routes[key] = { requirements: terms, updatedAt: Date.now() };
  s.persister.schedule();
}
