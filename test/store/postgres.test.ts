/**
 * The PostgreSQL store against the conformance suites (this folder's, and the server's test/helpers/store-conformance.ts),
 * plus PostgreSQL specifics. Needs PostgreSQL: see test/helpers/postgres.ts (throwaway server or TEST_DATABASE_URL).
 */
import { PostgresStore } from "../../server/store/postgres";
import { describePostgres, newTestDatabase } from "../helpers/postgres";
import { describeStoreConformance } from "../helpers/store-conformance";
import { storeConformance } from "./conformance";

describePostgres("PostgreSQL store", function () {
  const open = (url: string) => PostgresStore.open({ url, pool: { max: 8 } });

  storeConformance({ name: "PostgreSQL", newDatabase: () => newTestDatabase("conf"), open, propertyRuns: 25 });

  describeStoreConformance("postgres (server suite)", async () => {
    const url = await newTestDatabase("srv");
    return { store: await open(url), reopen: () => open(url), destroy: async () => undefined };
  });
});
