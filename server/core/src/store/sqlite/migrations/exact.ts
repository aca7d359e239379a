/**
 * `exact` payments on SQLite (versions 200-209, issue 12): one row per EIP-3009 authorization, unique by
 * (payer, authorization nonce) and by (sender, sender nonce); the next nonce of each sender key. Addresses and hex
 * are stored lowercase.
 */
import type { SqliteMigration } from "./types";

export const EXACT_MIGRATIONS: SqliteMigration[] = [
  {
    version: 200,
    name: "exact payments and sender nonces",
    up: `
      CREATE TABLE exact_payments (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        payer         TEXT NOT NULL,
        auth_nonce    TEXT NOT NULL,
        pay_to        TEXT NOT NULL,
        amount        TEXT NOT NULL,
        valid_after   TEXT NOT NULL,
        valid_before  TEXT NOT NULL,
        signature     TEXT NOT NULL,
        resource      TEXT NOT NULL,
        sender        TEXT NOT NULL,
        sender_nonce  INTEGER NOT NULL,
        tx_hash       TEXT,
        raw_tx        TEXT,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'confirmed', 'failed')),
        served        INTEGER NOT NULL DEFAULT 0,
        block_number  INTEGER,
        gas_used      TEXT,
        error         TEXT,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        UNIQUE (payer, auth_nonce),
        UNIQUE (sender, sender_nonce)
      );
      CREATE INDEX exact_payments_open ON exact_payments (updated_at) WHERE status IN ('pending', 'submitted');

      CREATE TABLE exact_sender_nonces (
        sender     TEXT PRIMARY KEY,
        next_nonce INTEGER NOT NULL
      );
    `,
  },
];
