/** What a live stream needs of its registry (kept apart so that live.ts and registry.ts do not import each other). */
import type { Logger } from "pino";
import type { Network } from "@paychan/protocol";
import type { ChannelStore } from "../store/types";
import type { StreamStore } from "../store/stream-types";
import type { StreamObserver } from "./metrics";

export interface StreamHost {
  readonly network: Network;
  readonly store: ChannelStore;
  readonly streams: StreamStore;
  readonly logger?: Logger;
  readonly observer?: StreamObserver;
  /** The top-up path of stream `id` (a path on this server). */
  voucherPath(id: string): string;
  /** Forgets a stream (it ended): its top-ups are `stream_not_found` from now on. */
  remove(stream: { readonly id: string }): void;
}
