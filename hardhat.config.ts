import { subtask } from "hardhat/config";
import { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } from "hardhat/builtin-tasks/task-names";
import type { HardhatUserConfig } from "hardhat/config";
import "@nomicfoundation/hardhat-viem";
import "solidity-coverage";

/** The one compiler version, pinned in package.json as the npm `solc` package (no download). */
const SOLC_VERSION = "0.8.28";

// Hardhat would download solc; this machine has no internet, so use the solcjs build from npm.
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args: { solcVersion: string }, _hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) return runSuper(args);
  const solc = require("solc");
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: solc.version() as string,
  };
});

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      evmVersion: "cancun",
      optimizer: { enabled: true, runs: 10_000 },
      // solidity-coverage compiles without the optimizer; the legacy pipeline then runs out of stack slots in the
      // settle loop's assembly, so coverage builds go through the IR pipeline (see .solcover.js).
      viaIR: Boolean(process.env.SOLIDITY_COVERAGE),
    },
  },
  networks: {
    hardhat: {
      chainId: 31337,
      // Large property suites open many channels; keep every account rich.
      accounts: { count: 20, accountsBalance: "1000000000000000000000000" },
      // Instrumented, unoptimized contracts cost more than osaka's per-transaction gas cap (2^24) to deploy.
      ...(process.env.SOLIDITY_COVERAGE ? { hardfork: "prague" } : {}),
    },
    localhost: { url: process.env.RPC_URL ?? "http://127.0.0.1:8545" },
  },
  mocha: {
    timeout: 300_000,
  },
  paths: { sources: "contracts", tests: "test", artifacts: "artifacts", cache: "cache" },
};

export default config;
