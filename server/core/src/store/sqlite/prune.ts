/**
 * Used vouchers of finalized channels (issue 17, item 9): a channel the store knows as finalized (a `Closed` or
 * `Withdrawn` snapshot, or a confirmed close) can take no voucher any more, so its used set is dropped, in the
 * transaction that finalizes it. Its `floor` first rises to `accepted`: every used amount is at or below `accepted`,
 * so replay protection holds even if a reorg brought the channel back (the floor never decreases).
 */
import type Database from "better-sqlite3";

/** Prepared statements of {@link pruneFinalized}. */
export interface FinalizedPruneStatements {
  raiseFloorFinalized: Database.Statement;
  dropUsedFinalized: Database.Statement;
}

/**
 * The statements of {@link pruneFinalized} (shared with the settlement store, which finalizes closed channels):
 * a finalized channel's floor rises to `accepted` and its used vouchers go.
 */
export function finalizedPruneStatements(db: Database.Database): FinalizedPruneStatements {
  return {
    raiseFloorFinalized: db.prepare("UPDATE channels SET floor = accepted, updated_at = ? WHERE channel_id = ? AND finalized = 1 AND floor < accepted"),
    dropUsedFinalized: db.prepare("DELETE FROM used_vouchers WHERE channel_id = ? AND EXISTS (SELECT 1 FROM channels WHERE channel_id = ? AND finalized = 1)"),
  };
}

/**
 * A channel stored as finalized keeps no used vouchers: every used amount is at or below `accepted`, so raising the
 * floor to `accepted` keeps replay protection even if a reorg brought the channel back. No-op when not finalized.
 */
export function pruneFinalized(st: FinalizedPruneStatements, id: string, now: number): void {
  st.raiseFloorFinalized.run(now, id);
  st.dropUsedFinalized.run(id, id);
}

