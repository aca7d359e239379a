/**
 * Gasless opens on SQLite (versions 210-219, issue 16): one row per channel the provider opens, unique by channel id;
 * the sender nonce comes from `exact_sender_nonces` (the `exact` migrations, applied first). Addresses and hex are
 * stored lowercase.
 */
import type { SqliteMigration } from "./types";

export const OPEN_MIGRATIONS: SqliteMigration[] = [
  {
    version: 210,
    name: "gasless opens",
    up: `
      CREATE TABLE gasless_opens (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id    TEXT NOT NULL UNIQUE,
        payer         TEXT NOT NULL,
        payee         TEXT NOT NULL,
        token         TEXT NOT NULL,
        signer        TEXT NOT NULL,
        amount        TEXT NOT NULL,
        close_delay   INTEGER NOT NULL,
        salt          TEXT NOT NULL,
        valid_after   TEXT NOT NULL,
        valid_before  TEXT NOT NULL,
        signature     TEXT NOT NULL,
        fee           TEXT NOT NULL,
        sender        TEXT NOT NULL,
        sender_nonce  INTEGER NOT NULL,
        tx_hash       TEXT,
        raw_tx        TEXT,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'confirmed', 'failed')),
        block_number  INTEGER,
        gas_used      TEXT,
        error         TEXT,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        UNIQUE (sender, sender_nonce)
      );
      CREATE INDEX gasless_opens_open ON gasless_opens (updated_at) WHERE status IN ('pending', 'submitted');
      CREATE INDEX gasless_opens_payer ON gasless_opens (payer, created_at);
    `,
  },
];
