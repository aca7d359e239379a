/**
 * Issue 17, item 8: idle connections cannot use up the server's open files. With real sockets on an ephemeral port
 * (small caps configured): connections from one source beyond MAX_CONNECTIONS_PER_SOURCE are closed at accept while
 * another source is served (health, which reads the chain RPC, and a paid request); at MAX_CONNECTIONS new
 * connections are closed, the keep-alive timeout drops, and the server serves again as soon as the flood goes.
 * `/metrics` counts both refusals (`channel_connections_refused_total{reason="per_source"|"overall"}`).
 */
import { expect } from "chai";
import http from "node:http";
import net from "node:net";
import { decodePaymentRequired, HEADER_PAYMENT_REQUIRED, type ChannelRequirements } from "@paychan/protocol";
import { openChannel } from "../helpers/escrow";
import { paymentHeaders, startTestServer, type TestServer } from "../helpers/server";

const PER_SOURCE = 20;
const MAX = 40;

/** Resolves once `cond()` holds (checked every few ms), failing after `ms`. */
async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Idle TCP connections from `localAddress`; each records whether the server closed it. */
function idle(port: number, localAddress: string, n: number): Array<net.Socket & { gone?: boolean }> {
  return Array.from({ length: n }, () => {
    const s = net.connect({ port, host: "127.0.0.1", localAddress }) as net.Socket & { gone?: boolean };
    s.on("error", () => undefined);
    s.on("close", () => (s.gone = true));
    return s;
  });
}

/** A GET from `localAddress` on a new connection: status, or "closed" when the server dropped it. */
function getFrom(localAddress: string, port: number, path: string, headers: Record<string, string> = {}): Promise<number | "closed"> {
  return new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port, path, headers, localAddress, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
    });
    req.on("error", () => resolve("closed"));
    req.end();
  });
}

/** The route's offer, asked from `localAddress` on a connection closed after it (no keep-alive left behind). */
function termsFrom(localAddress: string, port: number, path: string): Promise<ChannelRequirements> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, localAddress, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(decodePaymentRequired(res.headers[HEADER_PAYMENT_REQUIRED.toLowerCase()] as string).accepts[0]));
    });
    req.on("error", reject);
    req.end();
  });
}

/** `channel_connections_refused_total` by reason, read over HTTP from `localAddress` (a source with room left). */
function refusedConnections(port: number, localAddress: string): Promise<{ perSource: number; overall: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: "/metrics", localAddress, agent: false }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        const value = (reason: string) => {
          const series = `channel_connections_refused_total{reason="${reason}"} `;
          const line = text.split("\n").find((l) => l.startsWith(series));
          if (!line) throw new Error(`no series ${series}on /metrics (status ${res.statusCode})`);
          return Number(line.slice(series.length));
        };
        try {
          resolve({ perSource: value("per_source"), overall: value("overall") });
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("server: connection limits (issue 17, item 8)", () => {
  let srv: TestServer;
  let flood: Array<net.Socket & { gone?: boolean }> = [];
  before(async () => {
    srv = await startTestServer({ config: { maxConnectionsPerSource: PER_SOURCE, maxConnections: MAX } });
  });
  afterEach(() => {
    for (const s of flood) s.destroy();
    flood = [];
  });
  after(async () => srv?.close());

  it("closes a source's connections beyond its cap at accept; another source is served, the chain RPC included", async () => {
    const c = srv.server.connections;
    const ch = await openChannel(srv.env);
    const terms = await termsFrom("127.0.0.9", srv.server.port, "/v1/echo");
    const was = await refusedConnections(srv.server.port, "127.0.0.9");
    flood = idle(srv.server.port, "127.0.0.1", PER_SOURCE + 10);
    await until(() => c.openFrom("127.0.0.1") === PER_SOURCE && flood.filter((s) => s.gone).length === 10, "20 open, 10 closed");
    expect(c.refusedPerSource).to.be.at.least(10);

    // Another source: health (reads the chain RPC and writes the store) and a paid request.
    expect(await getFrom("127.0.0.2", srv.server.port, "/healthz")).to.equal(200);
    expect(await getFrom("127.0.0.2", srv.server.port, "/v1/echo?msg=hi", paymentHeaders(terms, ch.voucher.sign(ch.id, 1000n)))).to.equal(200);
    // The flooding source itself gets nothing more until it lets go.
    expect(await getFrom("127.0.0.1", srv.server.port, "/healthz")).to.equal("closed");
    for (const s of flood.slice(0, 5)) s.destroy();
    await until(() => c.openFrom("127.0.0.1") === PER_SOURCE - 5, "the flood let 5 go");
    expect(await getFrom("127.0.0.1", srv.server.port, "/healthz")).to.equal(200);
    // /metrics counts what this test caused: the 10 flood connections over the cap and the refused GET.
    const now = await refusedConnections(srv.server.port, "127.0.0.9");
    expect([now.perSource - was.perSource, now.overall - was.overall]).to.deep.equal([11, 0]);
  });

  it("at MAX_CONNECTIONS new connections are closed and the keep-alive is shortened; served again once the flood goes", async () => {
    const c = srv.server.connections;
    const normal = srv.server.http.keepAliveTimeout;
    const was = await refusedConnections(srv.server.port, "127.0.0.9");
    await until(() => c.open === 0, "the /metrics connection closed");
    flood = [...idle(srv.server.port, "127.0.0.3", PER_SOURCE), ...idle(srv.server.port, "127.0.0.4", PER_SOURCE)];
    await until(() => c.open === MAX, `${MAX} open`);
    expect(c.underPressure).to.equal(true);
    expect(srv.server.http.keepAliveTimeout).to.be.below(normal);
    expect(await getFrom("127.0.0.5", srv.server.port, "/healthz")).to.equal("closed");
    for (const s of flood) s.destroy();
    await until(() => c.open === 0, "the flood closed");
    expect(c.underPressure).to.equal(false);
    expect(srv.server.http.keepAliveTimeout).to.equal(normal);
    expect(await getFrom("127.0.0.5", srv.server.port, "/healthz")).to.equal(200);
    // /metrics counts the one connection closed at MAX_CONNECTIONS, none per source (20 each from .3 and .4).
    const now = await refusedConnections(srv.server.port, "127.0.0.9");
    expect([now.perSource - was.perSource, now.overall - was.overall]).to.deep.equal([0, 1]);
  });
});
