// solidity-coverage settings (run with `npm run coverage`, which sets SOLIDITY_COVERAGE=true as hardhat-viem needs).
// hardhat.config.ts compiles through the IR pipeline under coverage; irMinimum keeps the Yul optimizer to stack
// allocation only, so the instrumented code stays close to the source while the settle loop's assembly fits the stack.
module.exports = {
  irMinimum: true,
  skipFiles: ["interfaces/", "mocks/"],
};
