/**
 * Core schema of the server on PostgreSQL (versions 1-99), the same tables as the SQLite store's
 * (`../../sqlite/migrations/core.ts`) with native types: amounts are `numeric(39,0)` (uint128 fits; exact sums),
 * ids lowercase 0x-hex text, addresses as read from the chain (checksummed; compare case-insensitively), times `bigint` (chain seconds or unix ms, as named).
 *
 * Ids use the "C" collation: byte order, the same as JavaScript's string order (paging, lock order), whatever
 * the database's locale.
 *
 * `channels` has a fillfactor below 100 and no index on the accounting columns (accepted, spent, floor,
 * updated_at), so the voucher transaction's UPDATE is a HOT update: it writes no index entries.
 */
import type { PgMigration } from "./types";

const amount = (col: string, extra = "") => `${col} numeric(39,0) NOT NULL${extra} CHECK (${col} >= 0 AND ${col} < 340282366920938463463374607431768211456)`;
/** 0x-hex of `bytes` bytes: ids lowercase (`~`), addresses as the chain view gives them, checksummed (`~*`). */
const hex = (col: string, bytes: number, op: "~" | "~*" = "~") => `${col} text COLLATE "C" NOT NULL CHECK (${col} ${op} '^0x[0-9a-f]{${bytes * 2}}$')`;

export const CORE_PG_MIGRATIONS: PgMigration[] = [
  {
    version: 1,
    name: "channels, used vouchers, cursor, binding",
    up: `
      CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
      );

      -- One row per channel the server accepted a voucher (or a close request) for.
      CREATE TABLE channels (
        ${hex("channel_id", 32)} PRIMARY KEY,
        ${hex("payer", 20, "~*")},
        ${hex("payee", 20, "~*")},
        ${hex("token", 20, "~*")},
        ${hex("signer", 20, "~*")},
        -- chain state (from getChannel / the event follower), valid at chain_block
        ${amount("deposit")},
        ${amount("settled")},
        close_delay              bigint  NOT NULL,
        close_requested_at       bigint  NOT NULL DEFAULT 0,
        closes_at                bigint  NOT NULL DEFAULT 0,
        finalized                boolean NOT NULL DEFAULT false,
        chain_block              bigint  NOT NULL DEFAULT 0,
        -- accounting
        ${amount("accepted")},
        accepted_signature       text,
        ${amount("spent")},
        ${amount("floor")},
        -- cooperative close asked by the signer (POST /channel/close), unix seconds; 0 = not asked
        payer_close_requested_at bigint  NOT NULL DEFAULT 0,
        created_at               bigint  NOT NULL,
        updated_at               bigint  NOT NULL
      ) WITH (fillfactor = 80);
      CREATE INDEX channels_open ON channels (channel_id) WHERE NOT finalized;

      -- Voucher amounts used above the channel's floor (pruned when the floor rises).
      CREATE TABLE used_vouchers (
        channel_id text COLLATE "C" NOT NULL,
        amount     numeric(39,0)  NOT NULL,
        PRIMARY KEY (channel_id, amount)
      );

      -- Event follower position (name = 'escrow').
      CREATE TABLE cursors (
        name       text   PRIMARY KEY,
        block      bigint NOT NULL,
        block_hash text,
        updated_at bigint NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: "the payer's close request signature",
    // The CloseRequest signature of POST /channel/close (lowercase 0x-hex), shown to the escrow as the payer's consent
    // when an operator closes the channel; NULL when none was received. No default: a metadata-only change.
    up: `ALTER TABLE channels ADD COLUMN close_request_signature text CHECK (close_request_signature ~ '^0x([0-9a-f]{2})+$');`,
  },
  {
    version: 3,
    name: "metered reservations apart from spent",
    // `reserved`: the sum of open metered reservations (never claimed by settlement); one `reservations` row per
    // reservation, keyed by the voucher amount that made it, with its time (unix ms) so that abandoned ones expire.
    // A constant default: a metadata-only change, no table rewrite.
    up: `
      ALTER TABLE channels ADD COLUMN ${amount("reserved", " DEFAULT 0")};
      CREATE TABLE reservations (
        channel_id text COLLATE "C" NOT NULL,
        voucher    numeric(39,0)  NOT NULL,
        amount     numeric(39,0)  NOT NULL,
        created_at bigint         NOT NULL,
        PRIMARY KEY (channel_id, voucher)
      );
      CREATE INDEX reservations_created ON reservations (created_at);
    `,
  },
  {
    version: 4,
    name: "no used vouchers for finalized channels",
    // A finalized channel's floor rises to accepted (every used amount is at or below it), and its used set goes.
    up: `
      UPDATE channels SET floor = accepted WHERE finalized AND floor < accepted;
      DELETE FROM used_vouchers u USING channels c WHERE c.channel_id = u.channel_id AND c.finalized;
    `,
  },
  {
    version: 5,
    name: "a version token per channel row",
    // `version` names the row's state: every UPDATE that does not set a new one gets a random one from the trigger,
    // so a writer that read (or wrote) token T knows the row is unchanged while it is still T. The accept batches'
    // one-round-trip path (../accept-batch.ts) writes only if the token is the one it planned on. Existing rows
    // keep 0 (a constant default: metadata-only), new rows a random one.
    up: `
      ALTER TABLE channels ADD COLUMN version bigint NOT NULL DEFAULT 0;
      ALTER TABLE channels ALTER COLUMN version SET DEFAULT floor(random() * 9007199254740991)::bigint;
      CREATE FUNCTION channels_new_version() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.version = OLD.version THEN
          NEW.version := floor(random() * 9007199254740991)::bigint;
        END IF;
        RETURN NEW;
      END
      $$;
      CREATE TRIGGER channels_version BEFORE UPDATE ON channels FOR EACH ROW EXECUTE FUNCTION channels_new_version();
    `,
  },
];
