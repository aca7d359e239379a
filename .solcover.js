// solidity-coverage settings (run with `npm run coverage`, which sets SOLIDITY_COVERAGE=true as hardhat-viem needs).
// Coverage is measured on the deployed build's compiler settings (legacy pipeline, optimizer on, runs 10,000,
// cancun): hardhat.config.ts has the plugin instrument with its IR-style markers (`abi.encode(<marker>)`, which the
// legacy optimizer keeps) and then compiles with the deployed settings. Hence no irMinimum and no
// configureYulOptimizer here: either would change the compiler settings. See docs/escrow-assurance.md.
module.exports = {
  skipFiles: ["interfaces/", "mocks/"],
};
