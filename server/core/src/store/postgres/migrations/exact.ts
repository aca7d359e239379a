/**
 * `exact` payments on PostgreSQL (versions 200-209, issue 12): the same tables as the SQLite store's
 * (`../../sqlite/migrations/exact.ts`). The unique keys make a replayed authorization, or a sender nonce taken twice,
 * fail across every replica sharing the database.
 */
import type { PgMigration } from "./types";

export const EXACT_PG_MIGRATIONS: PgMigration[] = [
  {
    version: 200,
    name: "exact payments and sender nonces",
    up: `
      CREATE TABLE exact_payments (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        payer         text NOT NULL,
        auth_nonce    text NOT NULL,
        pay_to        text NOT NULL,
        amount        text NOT NULL,
        valid_after   text NOT NULL,
        valid_before  text NOT NULL,
        signature     text NOT NULL,
        resource      text NOT NULL,
        sender        text NOT NULL,
        sender_nonce  bigint NOT NULL,
        tx_hash       text,
        raw_tx        text,
        status        text NOT NULL CHECK (status IN ('pending', 'submitted', 'confirmed', 'failed')),
        served        boolean NOT NULL DEFAULT false,
        block_number  bigint,
        gas_used      text,
        error         text,
        created_at    bigint NOT NULL,
        updated_at    bigint NOT NULL,
        UNIQUE (payer, auth_nonce),
        UNIQUE (sender, sender_nonce)
      );
      CREATE INDEX exact_payments_open ON exact_payments (updated_at) WHERE status IN ('pending', 'submitted');

      CREATE TABLE exact_sender_nonces (
        sender     text PRIMARY KEY,
        next_nonce bigint NOT NULL
      );
    `,
  },
];
