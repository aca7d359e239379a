/**
 * Gasless opens on PostgreSQL (versions 210-219, issue 16; the same table as `../../sqlite/migrations/open.ts`): one row per channel the provider opens, unique by channel id;
 * the sender nonce comes from `exact_sender_nonces` (the `exact` migrations, applied first). Addresses and hex are
 * stored lowercase.
 */
import type { PgMigration } from "./types";

export const OPEN_PG_MIGRATIONS: PgMigration[] = [
  {
    version: 210,
    name: "gasless opens",
    up: `
      CREATE TABLE gasless_opens (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        channel_id    text NOT NULL UNIQUE,
        payer         text NOT NULL,
        payee         text NOT NULL,
        token         text NOT NULL,
        signer        text NOT NULL,
        amount        text NOT NULL,
        close_delay   integer NOT NULL,
        salt          text NOT NULL,
        valid_after   text NOT NULL,
        valid_before  text NOT NULL,
        signature     text NOT NULL,
        fee           text NOT NULL,
        sender        text NOT NULL,
        sender_nonce  bigint NOT NULL,
        tx_hash       text,
        raw_tx        text,
        status        text NOT NULL CHECK (status IN ('pending', 'submitted', 'confirmed', 'failed')),
        block_number  bigint,
        gas_used      text,
        error         text,
        created_at    bigint NOT NULL,
        updated_at    bigint NOT NULL,
        UNIQUE (sender, sender_nonce)
      );
      CREATE INDEX gasless_opens_open ON gasless_opens (updated_at) WHERE status IN ('pending', 'submitted');
      CREATE INDEX gasless_opens_payer ON gasless_opens (payer, created_at);
    `,
  },
];
