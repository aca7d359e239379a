import { subtask } from "hardhat/config";
import {
  TASK_COMPILE_SOLIDITY_GET_COMPILATION_JOB_FOR_FILE,
  TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD,
} from "hardhat/builtin-tasks/task-names";
import type { HardhatUserConfig } from "hardhat/config";
import "@nomicfoundation/hardhat-viem";
import "solidity-coverage";

/** The one compiler version, pinned in package.json as the npm `solc` package (no download). */
const SOLC_VERSION = "0.8.28";
/** The deployed build's settings: legacy pipeline, optimizer on. Coverage builds use them too (below). */
const DEPLOYED_SETTINGS = { evmVersion: "cancun", optimizer: { enabled: true, runs: 10_000 }, viaIR: false };
const COVERAGE = Boolean(process.env.SOLIDITY_COVERAGE);

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

// Coverage measures the deployed build (docs/escrow-assurance.md). solidity-coverage turns the optimizer off for
// legacy builds, because the legacy optimizer strips its markers (calls to empty functions), and the unoptimized
// legacy build runs out of stack slots. So the config tells the plugin "viaIR" (it then instruments with
// `abi.encode(<marker>)` statements, which the legacy optimizer keeps, and looks for the markers after every
// PUSH/DUP/SWAP), and this override, which runs after the plugin's, compiles the instrumented sources with
// DEPLOYED_SETTINGS again: legacy pipeline, optimizer on, runs 10,000, cancun.
if (COVERAGE) {
  subtask(TASK_COMPILE_SOLIDITY_GET_COMPILATION_JOB_FOR_FILE, async (_args, _hre, runSuper) => {
    const job = await runSuper();
    if (job && typeof job === "object" && "solidityConfig" in job) {
      const { solidityConfig } = job as { solidityConfig: { settings?: Record<string, unknown> } };
      const { optimizer: _optimizer, viaIR: _viaIR, ...rest } = solidityConfig.settings ?? {};
      solidityConfig.settings = { ...rest, ...DEPLOYED_SETTINGS, optimizer: { ...DEPLOYED_SETTINGS.optimizer } };
    }
    return job;
  });
}

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    // Under coverage, `viaIR: true` only selects solidity-coverage's instrumentation (see above); solc gets viaIR false.
    settings: { ...DEPLOYED_SETTINGS, optimizer: { ...DEPLOYED_SETTINGS.optimizer }, viaIR: COVERAGE },
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
  // HARDHAT_SOURCES / HARDHAT_ARTIFACTS / HARDHAT_CACHE point a build at another copy of the contracts (paths inside
  // the project), e.g. `npm run mutate` compiles and tests each mutant in its own folder; unset, the defaults apply.
  paths: {
    sources: process.env.HARDHAT_SOURCES || "contracts",
    tests: "test",
    artifacts: process.env.HARDHAT_ARTIFACTS || "artifacts",
    cache: process.env.HARDHAT_CACHE || "cache",
  },
};

export default config;
