/** Prometheus metrics of paid streams (docs/protocol.md § 5.10), on the provider's registry. */
import { Counter, Gauge, type Registry } from "prom-client";

/** Hooks the stream registry calls. */
export interface StreamObserver {
  opened(): void;
  ended(reason: string, units: bigint, charged: bigint): void;
  topUp(result: string): void;
  swept(n: number, charged: bigint): void;
}

/** Registers the stream metrics on `registry`; `live()` is read at scrape time. */
export function createStreamMetrics(registry: Registry, live: () => number): StreamObserver {
  new Gauge({
    name: "channel_streams_live",
    help: "Paid streams live in this process",
    registers: [registry],
    collect() {
      this.set(live());
    },
  });
  const opened = new Counter({ name: "channel_streams_opened_total", help: "Paid streams opened (reservation accepted)", registers: [registry] });
  const ended = new Counter({
    name: "channel_streams_total",
    help: "Paid streams ended, by reason: complete, top_up_timeout, client_closed, handler_error, server_closing",
    labelNames: ["reason"],
    registers: [registry],
  });
  const topUps = new Counter({
    name: "channel_stream_top_ups_total",
    help: "Top-up side requests of paid streams, by result: accepted or the refusal code",
    labelNames: ["result"],
    registers: [registry],
  });
  const units = new Counter({ name: "channel_stream_units_total", help: "Units delivered by paid streams", registers: [registry] });
  const charged = new Counter({ name: "channel_stream_charged_total", help: "Charged by paid streams (ended or swept), atomic units", registers: [registry] });
  const swept = new Counter({ name: "channel_stream_swept_total", help: "Stream reservations of dead processes finished by the sweeper", registers: [registry] });
  return {
    opened: () => opened.inc(),
    ended(reason, u, c) {
      ended.inc({ reason });
      units.inc(Number(u));
      charged.inc(Number(c));
    },
    topUp: (result) => topUps.inc({ result }),
    swept(n, c) {
      swept.inc(n);
      charged.inc(Number(c));
    },
  };
}
