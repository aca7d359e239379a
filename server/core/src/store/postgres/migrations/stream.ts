/**
 * Streamed responses paid per unit on PostgreSQL (versions 220-229, issue 14; docs/protocol.md § 5.10), as on SQLite
 * (`../../sqlite/migrations/stream.ts`): a stream's reservation is a `reservations` row with its checkpoint; NULL
 * `checkpoint_at` = an ordinary metered reservation.
 */
import type { PgMigration } from "./types";

export const STREAM_PG_MIGRATIONS: PgMigration[] = [
  {
    version: 220,
    name: "stream reservations: checkpoint and lease",
    up: `
      ALTER TABLE reservations ADD COLUMN charged numeric(39,0) CHECK (charged >= 0);
      ALTER TABLE reservations ADD COLUMN checkpoint_at bigint;
      ALTER TABLE reservations ADD COLUMN lease_ms bigint;
      CREATE INDEX reservations_streams ON reservations (checkpoint_at) WHERE checkpoint_at IS NOT NULL;
    `,
  },
];
