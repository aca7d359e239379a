#!/usr/bin/env node
/**
 * Builds the workspace packages (`tsc -b tsconfig.build.json`) after removing compiled files whose source is gone.
 *
 * `tsc -b` is incremental and never deletes output: a moved or deleted `src/x.ts` would leave `dist/x.js` behind,
 * where Node (which prefers `x.js` to `x/index.js`) and npm pack would still find it. Plain JavaScript, so it runs
 * before anything is compiled (`npm ci`'s prepare, `npm start`, `npm test`, each package's prepack).
 *
 *   node scripts/build.js            prune, then build
 *   node scripts/build.js --prune    prune only
 */
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");

const ROOT = path.resolve(__dirname, "..");
const PACKAGES = ["protocol", "client", "server/core", "server/express", "server/demo"];
/** Compiled outputs and the source each comes from. */
const OUTPUT = /\.(d\.ts\.map|js\.map|d\.ts|js)$/;
/** Source maps: not produced (they would point at `src/`, which the tarballs do not ship), so any found are stale. */
const MAP = /\.map$/;

/**
 * Removes every file under `dist/` whose `src/` counterpart (`.ts`) no longer exists, and any source map; returns
 * what it removed.
 */
function prune() {
  const removed = [];
  for (const pkg of PACKAGES) {
    const dist = path.join(ROOT, pkg, "dist");
    if (!fs.existsSync(dist)) continue;
    for (const e of fs.readdirSync(dist, { withFileTypes: true, recursive: true })) {
      if (!e.isFile() || !OUTPUT.test(e.name)) continue;
      const file = path.join(e.parentPath ?? e.path, e.name);
      const rel = path.relative(dist, file).replace(OUTPUT, "");
      const src = path.join(ROOT, pkg, "src", `${rel}.ts`);
      if (MAP.test(e.name) || !fs.existsSync(src)) {
        fs.rmSync(file);
        removed.push(path.relative(ROOT, file));
      }
    }
  }
  return removed;
}

const removed = prune();
if (removed.length) console.log(`build: removed ${removed.length} stale compiled file(s) (source gone, or a source map): ${removed.join(", ")}`);
if (!process.argv.includes("--prune")) {
  execFileSync(process.execPath, [require.resolve("typescript/bin/tsc", { paths: [ROOT] }), "-b", path.join(ROOT, "tsconfig.build.json")], {
    stdio: "inherit",
  });
}
