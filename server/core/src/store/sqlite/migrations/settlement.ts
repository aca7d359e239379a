/**
 * Settlement schema (versions 100-199, issue 5): settlement transactions, their items, and the settler lease.
 * Amounts compared with `channels` columns (`cumulative_amount`, `amount`, `previous_settled`, `settled_amount`) use
 * the same 39-digit text as `channels`; gas and fee values are plain decimal text; times are unix ms.
 */
import type { SqliteMigration } from "./types";

export const SETTLEMENT_MIGRATIONS: SqliteMigration[] = [
  {
    version: 100,
    name: "settlement transactions, items, settler lease",
    up: `
      CREATE TABLE settlement_txs (
        id                       INTEGER PRIMARY KEY AUTOINCREMENT,
        kind                     TEXT NOT NULL CHECK (kind IN ('settle', 'close')),
        status                   TEXT NOT NULL CHECK (status IN ('built', 'sent', 'mined', 'confirmed', 'failed', 'dropped')),
        sender                   TEXT NOT NULL,
        payee                    TEXT NOT NULL,
        token                    TEXT NOT NULL,
        nonce                    INTEGER NOT NULL,
        hash                     TEXT NOT NULL UNIQUE,
        raw_tx                   TEXT NOT NULL,
        gas_limit                TEXT NOT NULL,
        max_fee_per_gas          TEXT NOT NULL,
        max_priority_fee_per_gas TEXT NOT NULL,
        replaces                 INTEGER REFERENCES settlement_txs (id),
        broadcasts               INTEGER NOT NULL DEFAULT 0,
        reorgs                   INTEGER NOT NULL DEFAULT 0,
        block_number             INTEGER,
        block_hash               TEXT,
        gas_used                 TEXT,
        effective_gas_price      TEXT,
        amount_settled           TEXT,
        error                    TEXT,
        created_at               INTEGER NOT NULL,
        sent_at                  INTEGER,
        mined_at                 INTEGER,
        finished_at              INTEGER,
        updated_at               INTEGER NOT NULL
      );
      CREATE INDEX settlement_txs_open ON settlement_txs (status) WHERE status IN ('built', 'sent', 'mined');

      CREATE TABLE settlement_items (
        tx_id             INTEGER NOT NULL REFERENCES settlement_txs (id),
        channel_id        TEXT NOT NULL,
        position          INTEGER NOT NULL,  -- order in the transaction's calldata
        cumulative_amount TEXT NOT NULL,
        amount            TEXT NOT NULL,
        previous_settled  TEXT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('pending', 'settled', 'skipped', 'closed', 'failed', 'dropped')),
        skip_reason       TEXT,
        settled_amount    TEXT,
        PRIMARY KEY (tx_id, channel_id)
      ) WITHOUT ROWID;
      CREATE INDEX settlement_items_channel ON settlement_items (channel_id, status);

      -- One row ('settler'): who may settle now, until when (unix ms).
      CREATE TABLE settler_lease (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `,
  },
];
