/** The `exact` payment store for a channel store: the same database (SQLite and PostgreSQL both provide one). */
import type { ExactStore, ExactStoreProvider } from "../store/exact-types";
import type { ChannelStore } from "../store/types";

/** The exact store living next to `store` (its migrations applied on first use). */
export function exactStoreFor(store: ChannelStore): ExactStore {
  const p = store as Partial<ExactStoreProvider>;
  if (typeof p.exactStore !== "function") throw new Error(`the ${store.kind} store keeps no exact payments (implement ExactStoreProvider)`);
  return p.exactStore();
}
