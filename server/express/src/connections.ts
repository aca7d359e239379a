/**
 * Connection limits for the HTTP listener, so idle or hostile connections cannot use up the process's open files
 * (and with them the database, the chain RPC and every other client):
 *
 * - at most `max` open connections overall (Node's `server.maxConnections`: more are closed at accept);
 * - at most `perSource` from one client address (IPv6: one /64); more are closed at accept;
 * - under pressure (open connections at 3/4 of `max` or more), the keep-alive timeout drops to `pressureKeepAlive`
 *   and idle keep-alive connections are closed (at most once a second); below half of `max` it is restored.
 *
 * Both refusals are counted ({@link ConnectionGuard}); `provider.metrics.attachConnections(guard)` exports them as
 * `channel_connections_refused_total{reason="per_source"|"overall"}`.
 *
 * Behind a reverse proxy every connection comes from the proxy: give the proxy its own limits per client, and raise
 * `perSource` to `max` here (server/core/README.md, "Behind a reverse proxy").
 */
import type http from "node:http";
import type { Socket } from "node:net";
import { sourceKey } from "@paychan/server";

export interface ConnectionLimitOptions {
  /** Open connections at once. */
  max: number;
  /** Open connections from one source at once. */
  perSource: number;
  /** Keep-alive timeout outside pressure, ms (default: the server's current one). */
  keepAlive?: number;
  /** Keep-alive timeout under pressure, ms (default 1000). */
  pressureKeepAlive?: number;
}

/** What the limits observe (tests and metrics). */
export interface ConnectionGuard {
  /** Connections open now. */
  readonly open: number;
  /** Connections closed at accept because their source was at its limit. */
  readonly refusedPerSource: number;
  /** Connections closed at accept because `max` were open (Node's `drop` event). */
  readonly refusedOverall: number;
  /** Open connections of one source (an address, as {@link sourceKey} groups it). */
  openFrom(address: string): number;
  /** Whether the keep-alive timeout is shortened now. */
  readonly underPressure: boolean;
}

/** Applies the limits to `server` (call before `listen`); see the file comment. */
export function limitConnections(server: http.Server, o: ConnectionLimitOptions): ConnectionGuard {
  if (!(o.max >= 1) || !(o.perSource >= 1)) throw new RangeError("connection limits must be at least 1");
  const normal = o.keepAlive ?? server.keepAliveTimeout;
  const short = Math.min(o.pressureKeepAlive ?? 1_000, normal);
  const bySource = new Map<string, number>();
  let open = 0;
  let refusedPerSource = 0;
  let refusedOverall = 0;
  let pressure = false;
  let lastSweep = 0;
  server.maxConnections = o.max;

  const update = () => {
    if (!pressure && open >= Math.ceil((o.max * 3) / 4)) {
      pressure = true;
      server.keepAliveTimeout = short;
    } else if (pressure && open < Math.floor(o.max / 2)) {
      pressure = false;
      server.keepAliveTimeout = normal;
    }
    if (pressure && Date.now() - lastSweep >= 1_000) {
      lastSweep = Date.now();
      server.closeIdleConnections();
    }
  };

  server.on("drop", () => {
    refusedOverall++;
  });
  server.on("connection", (socket: Socket) => {
    const key = sourceKey(socket.remoteAddress);
    const n = (bySource.get(key) ?? 0) + 1;
    if (n > o.perSource) {
      refusedPerSource++;
      socket.destroy();
      return;
    }
    bySource.set(key, n);
    open++;
    update();
    socket.once("close", () => {
      open--;
      const left = (bySource.get(key) ?? 1) - 1;
      if (left <= 0) bySource.delete(key);
      else bySource.set(key, left);
      update();
    });
  });

  return {
    get open() {
      return open;
    },
    get refusedPerSource() {
      return refusedPerSource;
    },
    get refusedOverall() {
      return refusedOverall;
    },
    openFrom: (address) => bySource.get(sourceKey(address)) ?? 0,
    get underPressure() {
      return pressure;
    },
  };
}
