/**
 * An HTTP JSON-RPC proxy that counts the calls passing through it by method (batches counted per call), for tests
 * that bound how many chain reads something causes:
 *
 * ```ts
 * const rpc = await startRpcCounter(await rpcUrl());
 * const before = rpc.count("eth_call"); ...; expect(rpc.count("eth_call") - before).to.be.at.most(5);
 * ```
 * `fail(["eth_sendRawTransaction"])` makes calls of those methods fail (the connection is dropped, nothing reaches
 * the node) until `fail([])`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface RpcCounter {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Calls of `method` so far. */
  count(method: string): number;
  /** Drops the requests calling any of `methods` (not forwarded) until called again with another list. */
  fail(methods: readonly string[]): void;
  close(): Promise<void>;
}

/** Starts a counting proxy in front of the JSON-RPC URL `target`. */
export async function startRpcCounter(target: string): Promise<RpcCounter> {
  const counts = new Map<string, number>();
  let failing = new Set<string>();
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    try {
      const parsed = JSON.parse(body.toString("utf8"));
      const calls = Array.isArray(parsed) ? parsed : [parsed];
      for (const call of calls) counts.set(call?.method, (counts.get(call?.method) ?? 0) + 1);
      if (calls.some((c) => failing.has(c?.method))) {
        res.destroy();
        return;
      }
    } catch {
      /* not JSON: forwarded as is */
    }
    try {
      const up = await fetch(target, { method: "POST", headers: { "content-type": "application/json" }, body });
      res.writeHead(up.status, { "content-type": "application/json" });
      res.end(Buffer.from(await up.arrayBuffer()));
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: (m) => counts.get(m) ?? 0,
    fail: (methods) => {
      failing = new Set(methods);
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
