import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SqliteStore } from "@paychan/server";
import { storeConformance } from "./conformance";

const dirs: string[] = [];
after(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

storeConformance({
  name: "SQLite",
  async newDatabase() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "store-conformance-"));
    dirs.push(dir);
    return path.join(dir, "store.sqlite");
  },
  async open(url) {
    return new SqliteStore({ url, synchronous: "NORMAL" });
  },
});
