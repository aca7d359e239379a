/**
 * `@paychan/demo` (private, repository only): the demo provider app of `npm start` and what local development needs:
 * the standalone server, the demo routes, a local Hardhat chain, deployment of the contracts from their committed
 * bytecode, MockUSDC and its funding, Hardhat's public test accounts. Scripts and tests import it; no published
 * package does.
 */
export * from "./app";
export * from "./routes";
export * from "./accounts";
export * from "./deploy";
export * from "./fund";
export * from "./local-chain";
export { mockUsdcAbi } from "./contracts/mockUsdc";
export { channelEscrowBytecode, mockUsdcBytecode } from "./contracts/bytecode";
