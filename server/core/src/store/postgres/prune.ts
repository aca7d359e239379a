/**
 * Used vouchers of finalized channels (issue 17, item 9), on PostgreSQL: the same rule as the SQLite store's
 * (`../sqlite/prune.ts`). In the transaction that stores channels as finalized (a `Closed` / `Withdrawn` snapshot, or
 * a confirmed close), each finalized one's `floor` rises to `accepted` (every used amount is at or below it, so replay
 * protection holds even if a reorg brought the channel back) and its used vouchers are deleted. The caller holds the
 * channels' row locks.
 */

/** `$1`: channel ids (text[]); only those stored as finalized are touched. */
export const PRUNE_FINALIZED_SQL = `
  WITH f AS (
    UPDATE channels SET floor = GREATEST(floor, accepted) WHERE channel_id = ANY($1::text[]) AND finalized RETURNING channel_id
  )
  DELETE FROM used_vouchers u USING f WHERE u.channel_id = f.channel_id`;
