/**
 * Streamed responses paid per unit on SQLite (versions 220-229, issue 14; docs/protocol.md § 5.10): a stream's
 * reservation is a `reservations` row with its checkpoint. NULL `checkpoint_at` = an ordinary metered reservation.
 */
import type { SqliteMigration } from "./types";

export const STREAM_MIGRATIONS: SqliteMigration[] = [
  {
    version: 220,
    name: "stream reservations: checkpoint and lease",
    // charged: the delivered charge at the last checkpoint (39-digit amount text); checkpoint_at: unix ms;
    // lease_ms: how long after its checkpoint a sweeper may finish it (its process taken for dead).
    up: `
      ALTER TABLE reservations ADD COLUMN charged TEXT;
      ALTER TABLE reservations ADD COLUMN checkpoint_at INTEGER;
      ALTER TABLE reservations ADD COLUMN lease_ms INTEGER;
      CREATE INDEX reservations_streams ON reservations (checkpoint_at) WHERE checkpoint_at IS NOT NULL;
    `,
  },
];
