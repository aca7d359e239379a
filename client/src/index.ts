/**
 * The agent side of the `channel` scheme: a fetch-compatible paying client, its stores and typed errors.
 * Imports protocol/ only (never server/).
 */
export { createChannelClient, ChannelClient } from "./client";
export { DEFAULT_EXACT_MAX_TIMEOUT_SECONDS } from "./options";
export type {
  ChannelClientOptions,
  ChannelPolicy,
  ClientEvent,
  PaymentInfo,
  ChannelPaymentInfo,
  ExactPaymentInfo,
  PaymentScheme,
  ClientStats,
  ChannelStatusInfo,
  WithdrawResult,
  OwedTarget,
  CollectParams,
  CollectResult,
} from "./options";
export { readReceipt } from "./paying/receipts";
export { routeKey, normalizeRequest, type FetchInput } from "./request";
export { checkHintSignature, checkHintAmounts } from "./hint";
export { ClientError, CLIENT_ERROR_CODES, isClientError, type ClientErrorCode } from "./errors";
export {
  type SpendingLimits,
  type Amount,
  toAtomic,
  DEFAULT_MAX_CLOSE_DELAY,
  DEFAULT_MAX_CHANNELS_PER_PROVIDER,
  DEFAULT_MAX_CONSECUTIVE_REFUSALS,
  DEFAULT_UNSERVED_PRICES,
} from "./limits";
export {
  MemoryStore,
  emptyState,
  stateToJson,
  stateFromJson,
  type ChannelStore,
  type ChannelRecord,
  type ExactTotals,
  type ClientState,
  type SessionKeyRecord,
  type RouteTerms,
} from "./store";
export { FileStore, writeFileAtomic, STATE_FILE, SESSION_KEY_FILE, type FileStoreOptions } from "./file-store";
export { LOCK_FILE } from "./dir-lock";
export { detectPermit } from "./permit";
