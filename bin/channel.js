#!/usr/bin/env node
/**
 * `channel` CLI entry point (npm bin). Runs the TypeScript CLI in client/cli.ts through ts-node (transpile only),
 * from any working directory.
 */
"use strict";
const path = require("node:path");

const root = path.resolve(__dirname, "..");
require("ts-node").register({ transpileOnly: true, project: path.join(root, "tsconfig.json") });
const { main } = require(path.join(root, "client", "cli.ts"));

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`channel: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 1;
  },
);
