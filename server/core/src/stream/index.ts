/** Streamed responses paid per unit (docs/protocol.md § 5.10): the framework-free part; adapters give it a sink. */
export { PaidStream, StreamEndedError, type SendOptions, type StreamOpening, type StreamSink } from "./live";
export { StreamRegistry, STREAM_VOUCHER_PREFIX, type StreamRegistryOptions, type TopUpAnswer } from "./registry";
export { streamRoute, STREAM_LEASE_MIN_MS, type StreamRoute, type StreamRouteOptions } from "./options";
export { createStreamMetrics, type StreamObserver } from "./metrics";
export { streamStoreFor } from "./store";
export type { StreamHost } from "./host";
export type { StreamCheckpoint, StreamReservation, StreamStore, StreamTopUpInput, StreamTopUpResult } from "../store/stream-types";
