/**
 * `@paychan/server`: the provider side of the `channel` scheme, framework-free.
 *
 * - {@link createProvider}: store, chain view and event follower, payment core, metrics and settlement from one
 *   configuration (environment variables or an object), with one `close()`. An HTTP adapter (`@paychan/express`)
 *   mounts it in the provider's own app.
 * - The parts, for embedding and operations: {@link PaymentCore}, the stores (SQLite built in, PostgreSQL on
 *   `postgres://`; each driver is an optional peer dependency loaded only when selected), the chain reader, view and
 *   follower, and the settlement job (`runSettleCommand` is the `channel-settle` command for cron).
 */
export {
  createProvider,
  providerConfig,
  ProviderStartError,
  type Provider,
  type ProviderHealth,
  type ProviderOptions,
  type ProviderSettlementOptions,
} from "./provider";
export { checkConfigFields, CONFIG_FIELD_VARIABLES, CONFIG_VARIABLES, ConfigError, defaultConfig, loadConfig, type LogLevel, type ServerConfig, type SqliteSynchronous } from "./config";
export { deploymentPath, DeploymentFileError, readDeployment, readDeploymentFile, type Deployment } from "./deployments";
export { createLogger, type Logger } from "./log";
export { createMetrics, type ServerMetrics, type ReadRefusals, type ConnectionRefusals } from "./metrics";

export {
  Charge,
  PaymentCore,
  type PaymentCoreOptions,
  type ExactGrant,
  type PaymentDecision,
  type PaymentGrant,
  type RequestDecision,
  type PaymentObserver,
  type PaymentReply,
  type PaymentRequest,
} from "./payments/core";
export { decideVoucher, type AccountingState, type VoucherDecision } from "./payments/accounting";
export {
  httpStatusOf,
  problem,
  PROBLEM_CONTENT_TYPE,
  SERVER_ONLY_ERROR_CODES,
  type ErrorContext,
  type ProblemBody,
  type ServerErrorCode,
  type ServerOnlyErrorCode,
} from "./payments/errors";
export { maxCharge, toAtomic, type PriceInput, type RoutePricing } from "./payments/pricing";

export { CHANNEL_EVENTS, ChainReader, toChainChannel, type BlockInfo, type ChainReaderOptions, type ChannelLog } from "./chain/reader";
export { ChannelView, type ChannelViewOptions } from "./chain/view";
export { ReadBudget, sourceKey, type ReadBudgetOptions } from "./chain/read-budget";
export { EventFollower, type EventFollowerOptions } from "./chain/follower";

export * from "./store";
export * from "./settlement";
export * from "./exact";
export * from "./open";
export * from "./stream";
export {
  runSettleCommand,
  SETTLE_EXIT,
  type SettleCommandDefaults,
  type SettleCommandEnv,
  type SettleCommandOptions,
} from "./cli/settle";
