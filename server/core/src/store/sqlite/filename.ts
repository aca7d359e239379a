import { fileURLToPath } from "node:url";

/** Turns a DATABASE_URL for SQLite into a filename for better-sqlite3. */
export function sqliteFilename(url: string): string {
  if (url === ":memory:" || url === "sqlite::memory:" || url === "sqlite://:memory:") return ":memory:";
  if (url.startsWith("file:")) return fileURLToPath(url);
  if (url.startsWith("sqlite:")) {
    let rest = url.slice("sqlite:".length);
    if (rest.startsWith("//")) rest = rest.slice(2); // sqlite:///abs/path or sqlite://relative/path
    if (rest === "") throw new Error("sqlite: URL without a path");
    return rest;
  }
  return url;
}
