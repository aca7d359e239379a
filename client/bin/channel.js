#!/usr/bin/env node
/**
 * `channel` CLI entry point (npm bin): the compiled CLI in ../dist. It loads viem, the chain and the native addons
 * only for commands that need them, so `channel --help` and argument errors answer at once.
 */
"use strict";
const { main } = require("../dist/cli.js");

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`channel: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 1;
  },
);
