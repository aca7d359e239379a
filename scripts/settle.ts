/**
 * `npm run settle [-- --all] [--dry-run] [--json]`: the package's `channel-settle` command (`runSettleCommand` of
 * `@paychan/server`, documented there) with this repository's local defaults, so that with no configuration it works
 * against `npm start`: RPC http://127.0.0.1:8545, the repository's deployments/<chainId>.json, the payee Hardhat
 * account #0 and its key on a local chain, and the database of `npm start` (`.data/local-<chainId>.sqlite`) or of the
 * server (`.data/server-<chainId>.sqlite`; this one first when RPC_URL is set).
 *
 * Exit: 0 done, 1 something failed, 2 configuration problem, 3 confirmations still pending (run again).
 */
import { runSettleCommand, type SettleCommandDefaults } from "@paychan/server";
import { DEFAULT_DEPLOYMENTS_DIR, DEFAULT_RPC_URL, hardhatAccount, LOCAL_CHAIN_IDS, localSettlerKey } from "@paychan/demo";

/** The repository's local defaults (a local Hardhat chain and its public test accounts; never real money). */
const LOCAL_DEFAULTS: SettleCommandDefaults = {
  rpcUrl: DEFAULT_RPC_URL,
  deploymentsDir: DEFAULT_DEPLOYMENTS_DIR,
  // npm start's payee, on a local chain only.
  payee: (chainId) => (LOCAL_CHAIN_IDS.includes(chainId) ? hardhatAccount(0).address : undefined),
  // The payee's own Hardhat test key, on a local chain only.
  settlerKey: localSettlerKey,
  // npm start's database, else the server's (the server's first when RPC_URL is set: a server, not npm start).
  databaseCandidates: (chainId, env) => {
    const candidates = [`.data/local-${chainId}.sqlite`, `.data/server-${chainId}.sqlite`];
    return env.RPC_URL?.trim() ? candidates.reverse() : candidates;
  },
};

runSettleCommand(process.argv.slice(2), process.env, {
  defaults: LOCAL_DEFAULTS,
  usageLine: "usage: npm run settle [-- --all] [--dry-run] [--json]",
  holder: `npm-run-settle:${process.pid}`,
}).then((code) => process.exit(code));
