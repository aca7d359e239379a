/**
 * Core schema of the server (versions 1-99). Amounts are 39-digit zero-padded decimal text (see ../../amounts.ts),
 * ids are lowercase 0x-hex, addresses checksummed as read from the chain, times are integers (chain seconds or unix ms, as named).
 */
import type { SqliteMigration } from "./types";

export const CORE_MIGRATIONS: SqliteMigration[] = [
  {
    version: 1,
    name: "channels, used vouchers, cursor, binding",
    up: `
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );

      -- One row per channel the server accepted a voucher (or a close request) for.
      CREATE TABLE channels (
        channel_id               TEXT PRIMARY KEY,
        payer                    TEXT NOT NULL,
        payee                    TEXT NOT NULL,
        token                    TEXT NOT NULL,
        signer                   TEXT NOT NULL,
        -- chain state (from getChannel / the event follower), valid at chain_block
        deposit                  TEXT NOT NULL,
        settled                  TEXT NOT NULL,
        close_delay              INTEGER NOT NULL,
        close_requested_at       INTEGER NOT NULL DEFAULT 0,
        closes_at                INTEGER NOT NULL DEFAULT 0,
        finalized                INTEGER NOT NULL DEFAULT 0,
        chain_block              INTEGER NOT NULL DEFAULT 0,
        -- accounting
        accepted                 TEXT NOT NULL,
        accepted_signature       TEXT,
        spent                    TEXT NOT NULL,
        floor                    TEXT NOT NULL,
        -- cooperative close asked by the signer (POST /channel/close), unix seconds; 0 = not asked
        payer_close_requested_at INTEGER NOT NULL DEFAULT 0,
        created_at               INTEGER NOT NULL,
        updated_at               INTEGER NOT NULL
      );
      CREATE INDEX channels_unsettled ON channels (finalized, spent, settled);

      -- Voucher amounts used above the channel's floor (pruned when the floor rises).
      CREATE TABLE used_vouchers (
        channel_id TEXT NOT NULL,
        amount     TEXT NOT NULL,
        PRIMARY KEY (channel_id, amount)
      ) WITHOUT ROWID;

      -- Event follower position (name = 'escrow').
      CREATE TABLE cursors (
        name       TEXT PRIMARY KEY,
        block      INTEGER NOT NULL,
        block_hash TEXT,
        updated_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: "the payer's close request signature",
    // The CloseRequest signature of POST /channel/close (0x-hex), shown to the escrow as the payer's consent when an
    // operator closes the channel; NULL when none was received.
    up: `ALTER TABLE channels ADD COLUMN close_request_signature TEXT;`,
  },
  {
    version: 3,
    name: "metered reservations apart from spent",
    // `reserved`: the sum of open metered reservations (never claimed by settlement); one `reservations` row per
    // reservation, keyed by the voucher amount that made it (unique per channel: each accepted voucher is used once),
    // with its time (unix ms) so that abandoned ones expire.
    up: `
      ALTER TABLE channels ADD COLUMN reserved TEXT NOT NULL DEFAULT '000000000000000000000000000000000000000';
      CREATE TABLE reservations (
        channel_id TEXT NOT NULL,
        voucher    TEXT NOT NULL,
        amount     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (channel_id, voucher)
      ) WITHOUT ROWID;
      CREATE INDEX reservations_created ON reservations (created_at);
    `,
  },
  {
    version: 4,
    name: "no used vouchers for finalized channels",
    // A finalized channel's floor rises to accepted (every used amount is at or below it), and its used set goes.
    up: `
      UPDATE channels SET floor = accepted WHERE finalized = 1 AND floor < accepted;
      DELETE FROM used_vouchers WHERE channel_id IN (SELECT channel_id FROM channels WHERE finalized = 1);
    `,
  },
];
