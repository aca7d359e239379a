/**
 * The settlement store for a channel store: the same database, the interface of `store/settlement-types.ts`.
 * A store kind provides it by implementing {@link SettlementStoreProvider} (SQLite and PostgreSQL both do).
 */
import type { SettlementStore, SettlementStoreProvider } from "../store/settlement-types";
import type { ChannelStore } from "../store/types";

export * from "../store/settlement-types";

const cache = new WeakMap<ChannelStore, SettlementStore>();

/** The settlement store living next to `store` (one per channel store; migrations applied on first use). */
export function settlementStoreFor(store: ChannelStore): SettlementStore {
  const hit = cache.get(store);
  if (hit) return hit;
  let s: SettlementStore;
  if (typeof (store as Partial<SettlementStoreProvider>).settlementStore === "function") {
    s = (store as unknown as SettlementStoreProvider).settlementStore();
  } else {
    throw new Error(`the ${store.kind} store has no settlement store (implement SettlementStoreProvider)`);
  }
  cache.set(store, s);
  return s;
}
