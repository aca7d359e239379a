/**
 * Settlement schema on PostgreSQL (versions 100-199, issue 5): the same tables as the SQLite store's
 * (`../../sqlite/migrations/settlement.ts`) with native types. The settler lease is NOT a table here: PostgreSQL
 * holds it as a session-level advisory lock (see ../settlement.ts), which dies with the holder's connection.
 */
import type { PgMigration } from "./types";

const TX_STATUSES = "('built', 'sent', 'mined', 'confirmed', 'failed', 'dropped')";
const ITEM_STATUSES = "('pending', 'settled', 'skipped', 'closed', 'failed', 'dropped')";

export const SETTLEMENT_PG_MIGRATIONS: PgMigration[] = [
  {
    version: 100,
    name: "settlement transactions and items",
    up: `
      CREATE TABLE settlement_txs (
        id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind                     text NOT NULL CHECK (kind IN ('settle', 'close')),
        status                   text NOT NULL CHECK (status IN ${TX_STATUSES}),
        sender                   text NOT NULL,
        payee                    text NOT NULL,
        token                    text NOT NULL,
        nonce                    bigint NOT NULL,
        hash                     text COLLATE "C" NOT NULL UNIQUE,
        raw_tx                   text NOT NULL,
        gas_limit                numeric(78,0) NOT NULL,
        max_fee_per_gas          numeric(78,0) NOT NULL,
        max_priority_fee_per_gas numeric(78,0) NOT NULL,
        replaces                 bigint REFERENCES settlement_txs (id),
        broadcasts               integer NOT NULL DEFAULT 0,
        reorgs                   integer NOT NULL DEFAULT 0,
        block_number             bigint,
        block_hash               text,
        gas_used                 numeric(78,0),
        effective_gas_price      numeric(78,0),
        amount_settled           numeric(39,0),
        error                    text,
        created_at               bigint NOT NULL,
        sent_at                  bigint,
        mined_at                 bigint,
        finished_at              bigint,
        updated_at               bigint NOT NULL
      );
      CREATE INDEX settlement_txs_open ON settlement_txs (nonce, id) WHERE status IN ('built', 'sent', 'mined');

      CREATE TABLE settlement_items (
        tx_id             bigint NOT NULL REFERENCES settlement_txs (id),
        channel_id        text COLLATE "C" NOT NULL,
        position          integer NOT NULL,  -- order in the transaction's calldata
        cumulative_amount numeric(39,0) NOT NULL,
        amount            numeric(39,0) NOT NULL,
        previous_settled  numeric(39,0) NOT NULL,
        status            text NOT NULL CHECK (status IN ${ITEM_STATUSES}),
        skip_reason       text,
        settled_amount    numeric(39,0),
        PRIMARY KEY (tx_id, channel_id)
      );
      CREATE INDEX settlement_items_channel ON settlement_items (channel_id, status);
    `,
  },
];
