/** The stream store of a channel store: the same database (SQLite and PostgreSQL both have one). */
import type { Hex } from "viem";
import type Database from "better-sqlite3";
import type { StoredChannel, ChannelStore } from "../store/types";
import type { StreamStore } from "../store/stream-types";
import { SqliteStreamStore } from "../store/sqlite/stream";
import { PgStreamStore, type PgStreamHost } from "../store/postgres/stream";

/** The stream store living next to `store` (its migration, 220, is applied with the store's own). */
export function streamStoreFor(store: ChannelStore): StreamStore {
  if (store.kind === "sqlite") return new SqliteStreamStore(store as ChannelStore & { db: Database.Database; filename?: string; getChannel(id: Hex): Promise<StoredChannel | null> });
  if (store.kind === "postgres") return new PgStreamStore(store as unknown as PgStreamHost);
  throw new Error(`the ${store.kind} store keeps no streams`);
}
