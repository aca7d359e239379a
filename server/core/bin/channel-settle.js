#!/usr/bin/env node
// `channel-settle [--all] [--dry-run] [--json]`: one settlement cycle for cron (see SETTLEMENT.md). Configured by the
// environment only: RPC_URL, PAYEE_ADDRESS, SETTLER_PRIVATE_KEY, DATABASE_URL, ESCROW_ADDRESS/TOKEN_ADDRESS (or
// DEPLOYMENTS_FILE, ./deployments/<chainId>.json), SETTLE_*. Exit: 0 done, 1 failed, 2 configuration, 3 pending.
"use strict";
const { runSettleCommand } = require("../dist/cli/settle.js");

runSettleCommand(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`settle failed: ${String((e && e.message) || e).split("\n")[0]}`);
    process.exit(1);
  },
);
