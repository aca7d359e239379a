/** What a live stream needs of its registry (kept apart so that live.ts and registry.ts do not import each other). */
import type { Logger } from "pino";
import type { Network } from "@paychan/protocol";
import type { ChannelStore } from "../store/types";
import type { StreamStore } from "../store/stream-types";
import type { StreamObserver } from "./metrics";
import type { PaymentObserver } from "../payments/core";

export interface StreamHost {
  readonly network: Network;
  readonly store: ChannelStore;
  readonly streams: StreamStore;
  readonly logger?: Logger;
  readonly observer?: StreamObserver;
  /** The payment core's hooks: a stream's end counts in the charged / released totals like any paid request's. */
  readonly paymentObserver?: PaymentObserver;
  /** The top-up path of stream `id` (a path on this server). */
  voucherPath(id: string): string;
  /** Forgets a stream (it ended): its top-ups are `stream_not_found` from now on. */
  remove(stream: { readonly id: string }): void;
}
