/**
 * The standalone provider server of `npm start`, built on the public API only: {@link createProvider}
 * (`@paychan/server`) and {@link createPaywall} (`@paychan/express`) in an Express app with the operational endpoints,
 * behind an HTTP listener with request limits. The test harness (`test/helpers/server.ts`) starts servers through it
 * too. A provider with an app of their own uses `createProvider` + `createPaywall` directly (README).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import express, { type Express } from "express";
import type { Transport } from "viem";
import {
  createProvider,
  httpStatusOf,
  problem,
  PROBLEM_CONTENT_TYPE,
  type Logger,
  type Provider,
  type ProviderExactOptions,
  type ProviderGaslessOpenOptions,
  type ProviderSettlementOptions,
  type ServerConfig,
  type ServerErrorCode,
} from "@paychan/server";
import { bodyLimit, createPaywall, errorHandler, limitConnections, notFound, type ConnectionGuard, type ExpressPaywall, type Paywall } from "@paychan/express";
import { localExactKey, localSettlerKey } from "./accounts";
import { chatRoutes, demoRoutes } from "./routes";

export type { ProviderSettlementOptions } from "@paychan/server";

export interface ProviderServerOptions {
  /** Validated configuration; `payee` and (`rpcUrl` or `transport`) must be set (escrow/token: or a deployments file). */
  config: ServerConfig;
  /** Registers the provider's routes (default: the demo routes). */
  routes?: (app: Express, paywall: ExpressPaywall) => void;
  logger?: Logger;
  /** A viem transport instead of `config.rpcUrl` (in-process chains). */
  transport?: Transport;
  /** Default `.data/server-<chainId>.sqlite` when `config.databaseUrl` is unset. */
  defaultDatabaseUrl?: (chainId: number) => string;
  /** Add Node process metrics (off in tests: global collectors). */
  processMetrics?: boolean;
  /**
   * Run the settlement job in this server every SETTLE_INTERVAL: `true` (npm start) or options (tests); off when
   * absent. On a local chain without SETTLER_PRIVATE_KEY the payee's Hardhat test key settles.
   */
  settlement?: boolean | ProviderSettlementOptions;
  /**
   * The x402 `exact` scheme (EXACT, EXACT_PRIVATE_KEY): `false` turns it off; on a local chain without
   * EXACT_PRIVATE_KEY, Hardhat account #19 submits the transfers.
   */
  exact?: boolean | ProviderExactOptions;
  /** Gasless opens (GASLESS_OPEN, OPEN_FEE, OPENS_PER_PAYER; docs/protocol.md § 5.9): `false` off, `true` required, options override. */
  gaslessOpen?: boolean | ProviderGaslessOpenOptions;
}

/** A running server: the provider's parts, its Express app and its listener. */
export interface ProviderServer extends Omit<Provider, "close" | "health" | "config"> {
  /** `http://host:port` */
  url: string;
  port: number;
  provider: Provider;
  app: Express;
  http: http.Server;
  /** The listener's connection limits (MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE) and what they observe. */
  connections: ConnectionGuard;
  paywall: Paywall;
  /** Stops listening (open connections are closed), then the provider. Idempotent. */
  close(): Promise<void>;
}

/** Starts a provider server. Fails (with a clear message) when the chain, contracts or store are not usable. */
export async function startProviderServer(opts: ProviderServerOptions): Promise<ProviderServer> {
  const config = opts.config;
  if (!config.payee) throw new Error("PAYEE_ADDRESS must be known to start the server");
  const provider = await createProvider({
    config,
    transport: opts.transport,
    logger: opts.logger,
    processMetrics: opts.processMetrics,
    defaultDatabaseUrl: opts.defaultDatabaseUrl,
    settlement: demoSettlement(opts),
    exact: opts.exact === false ? false : { fallbackKey: localExactKey, ...(typeof opts.exact === "object" ? opts.exact : {}) },
    gaslessOpen: opts.gaslessOpen,
  });
  try {
    const { app, paywall } = buildApp(provider, opts.routes);
    const { server, connections } = await listen(app, config);
    provider.metrics.attachConnections(connections);
    const port = (server.address() as AddressInfo).port;
    const hostForUrl = config.host.includes(":") ? `[${config.host}]` : config.host === "0.0.0.0" ? "127.0.0.1" : config.host;
    const url = `http://${hostForUrl}:${port}`;

    let closing: Promise<void> | null = null;
    const close = () =>
      (closing ??= (async () => {
        await provider.streams.close(); // live streams end with their receipts (server_closing) before the listener goes
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          setTimeout(() => server.closeAllConnections(), 2_000).unref();
        });
        await provider.close();
      })());

    const { chainId, escrow, token, payee, store } = provider;
    provider.logger.info({ url, chainId, escrow, token, payee, store: store.kind }, "server listening");
    provider.settlement?.start();
    // The provider's parts at the top level (tests and scripts reach them as server.store, server.core, ...).
    const { close: _close, health: _health, config: _config, ...parts } = provider;
    return { ...parts, url, port, provider, app, http: server, connections, paywall, close };
  } catch (e) {
    await provider.close();
    throw e;
  }
}

/**
 * The settlement option of the demo app: on a local chain without SETTLER_PRIVATE_KEY the payee's Hardhat key settles
 * (the package itself knows no key), and the scheduler starts once the server listens.
 */
function demoSettlement(opts: ProviderServerOptions): false | ProviderSettlementOptions {
  if (!opts.settlement) return false;
  const o = typeof opts.settlement === "object" ? opts.settlement : {};
  return { fallbackKey: localSettlerKey, ...o, start: false };
}

/** The Express app: body limit, operational endpoints, the cooperative-close route, the routes, 404 and errors. */
function buildApp(provider: Provider, routes: ProviderServerOptions["routes"]): { app: Express; paywall: Paywall } {
  const { config, logger } = provider;
  const paywall = createPaywall(provider);
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("query parser", "simple");

  // Access log at debug level: method, path (no query), status, time. Never headers.
  if (logger.isLevelEnabled("debug")) {
    app.use((req, res, next) => {
      const t0 = process.hrtime.bigint();
      res.once("finish", () => logger.debug({ method: req.method, path: req.path, status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, "request"));
      next();
    });
  }
  // Declared bodies over the limit are refused before any route reads them (parsers bound chunked bodies).
  app.use(bodyLimit(config.maxBodyBytes));
  app.get("/healthz", paywall.healthz());
  app.get("/metrics", paywall.metrics());
  app.use(paywall.closeRoute());
  (routes ??
    ((a, p) => {
      demoRoutes(a, p, { bodyLimit: Math.min(config.maxBodyBytes, 64 * 1024) });
      chatRoutes(a, p, { bodyLimit: Math.min(config.maxBodyBytes, 64 * 1024) });
    }))(app, paywall);
  app.use(notFound());
  app.use(errorHandler({ logger }));
  return { app, paywall };
}

/**
 * Listens with the configured header, request, keep-alive and connection limits (overall and per source, with a
 * shorter keep-alive under pressure: @paychan/express `limitConnections`); malformed requests get a problem body.
 */
async function listen(app: Express, config: ServerConfig): Promise<{ server: http.Server; connections: ConnectionGuard }> {
  const server = http.createServer(
    { maxHeaderSize: config.maxHeaderBytes, requestTimeout: config.requestTimeout, headersTimeout: Math.min(config.requestTimeout, 60_000), keepAliveTimeout: 5_000 },
    app,
  );
  const connections = limitConnections(server, { max: config.maxConnections, perSource: config.maxConnectionsPerSource });
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || (socket as unknown as { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const code: ServerErrorCode = err.code === "HPE_HEADER_OVERFLOW" ? "request_too_large" : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "request_timeout" : "bad_request";
    const status = code === "request_too_large" ? 431 : httpStatusOf(code, "endpoint");
    const body = JSON.stringify(problem(code, code === "request_too_large" ? "the request headers are over the limit" : "malformed HTTP request", "endpoint"));
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return { server, connections };
}
