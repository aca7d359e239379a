/**
 * A TCP fault proxy in front of a JSON-RPC URL (or any TCP service on loopback), to take "the chain" away from a
 * running server in controlled ways:
 *
 * - `pass`    forward everything (the default);
 * - `refuse`  new connections are closed at once and open ones are destroyed (the node is down);
 * - `drop`    connections are accepted but nothing is forwarded either way (a black hole: callers time out);
 * - `delay`   every chunk is forwarded `delayMs` late, in order (a slow node or network).
 *
 * ```ts
 * const proxy = await startFaultProxy(await rpcUrl());
 * proxy.mode("drop"); ...; proxy.mode("delay", { delayMs: 300 }); ...; proxy.mode("pass");
 * await proxy.close();
 * ```
 * `down()` / `up()` are `mode("refuse")` / `mode("pass")` (the interface of `startRpcProxy` in ./server.ts).
 */
import net from "node:net";

export type FaultMode = "pass" | "refuse" | "drop" | "delay";

export interface FaultProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Switches the fault mode (applies to open connections too). */
  mode(mode: FaultMode, opts?: { delayMs?: number }): void;
  readonly current: FaultMode;
  /** Connections accepted so far, and how many of them were refused. */
  readonly stats: { connections: number; refused: number; droppedChunks: number };
  /**
   * How many chunks sent towards the target so far (forwarded, delayed or dropped) contain `text`, e.g.
   * `"eth_blockNumber"`: lets a test wait until its callers' requests reached the proxy, instead of sleeping.
   */
  sent(text: string): number;
  down(): void;
  up(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const targetPort = Number(t.port || (t.protocol === "https:" ? 443 : 80));
  let mode: FaultMode = "pass";
  let delayMs = 0;
  const stats = { connections: 0, refused: 0, droppedChunks: 0 };
  /** The chunks sent towards the target (the last 10,000), for {@link FaultProxy.sent}. */
  const upstreamChunks: string[] = [];
  const sockets = new Set<net.Socket>();

  const destroyAll = () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };

  /** Forwards src → dst chunk by chunk, applying the mode current when each chunk arrives. */
  const forward = (src: net.Socket, dst: net.Socket) => {
    let last = 0;
    src.on("data", (chunk: Buffer) => {
      if (mode === "drop" || mode === "refuse") {
        stats.droppedChunks++;
        return;
      }
      if (mode === "delay" && delayMs > 0) {
        // Keep the order: never schedule before the previous chunk.
        const at = Math.max(Date.now() + delayMs, last);
        last = at;
        setTimeout(() => {
          if (!dst.destroyed) dst.write(chunk);
        }, at - Date.now());
        return;
      }
      if (last > Date.now()) {
        const at = last;
        setTimeout(() => {
          if (!dst.destroyed) dst.write(chunk);
        }, at - Date.now());
        return;
      }
      dst.write(chunk);
    });
  };

  const server = net.createServer((client) => {
    stats.connections++;
    if (mode === "refuse") {
      stats.refused++;
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, t.hostname);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (chunk: Buffer) => {
      upstreamChunks.push(chunk.toString("latin1"));
      if (upstreamChunks.length > 10_000) upstreamChunks.shift();
    });
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  const port = (server.address() as net.AddressInfo).port;

  const proxy: FaultProxy = {
    url: `http://127.0.0.1:${port}`,
    port,
    get current() {
      return mode;
    },
    stats,
    sent: (text) => upstreamChunks.filter((c) => c.includes(text)).length,
    mode(m, opts = {}) {
      // Leaving "drop": the open connections lost bytes mid-stream and cannot carry anything sensible any more.
      const reset = m === "refuse" || (mode === "drop" && m !== "drop");
      mode = m;
      delayMs = opts.delayMs ?? (m === "delay" ? 200 : 0);
      if (reset) destroyAll();
    },
    down: () => proxy.mode("refuse"),
    up: () => proxy.mode("pass"),
    close: () =>
      new Promise<void>((resolve) => {
        destroyAll();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
