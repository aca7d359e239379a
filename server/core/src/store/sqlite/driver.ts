/**
 * better-sqlite3, loaded when a SQLite store is opened (never when the package is imported): a provider on
 * PostgreSQL does not need it installed. It is an optional peer dependency of `@paychan/server`.
 */
import type Database from "better-sqlite3";
import { StoreDriverMissingError } from "../types";

let driver: typeof Database | null = null;

/** The better-sqlite3 constructor; {@link StoreDriverMissingError} when the package is not installed. */
export function loadSqliteDriver(): typeof Database {
  if (driver) return driver;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    driver = require("better-sqlite3") as typeof Database;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND") throw new StoreDriverMissingError("sqlite", "better-sqlite3", e);
    throw e;
  }
  return driver;
}
