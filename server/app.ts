/**
 * Wiring of one provider server: chain reader and view, event follower, store, payment core, Express app with the
 * operational endpoints, and the HTTP listener with its limits. `server/main.ts` (npm start) and the test harness
 * (`test/helpers/server.ts`) both start servers through {@link startProviderServer}.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import type { Address, Hex, Transport } from "viem";
import { CLOSE_PATH, parseTokenAmount } from "../protocol";
import { ChainReader } from "./chain/reader";
import { ChannelView } from "./chain/view";
import { EventFollower } from "./chain/follower";
import type { ServerConfig } from "./config";
import { demoRoutes } from "./demo/routes";
import { createExpressPaywall, type ExpressPaywall } from "./express/paywall";
import { createLogger, type Logger } from "./log";
import { createMetrics, type ServerMetrics } from "./metrics";
import { PaymentCore } from "./payments/core";
import { httpStatusOf, problem, PROBLEM_CONTENT_TYPE, type ServerErrorCode } from "./payments/errors";
import { openStore } from "./store";
import type { ChannelStore } from "./store/types";
import {
  checkCloseDelayRule,
  createSettlement,
  resolveSettlementConfig,
  resolveSettlerKey,
  SettlementScheduler,
  type SettlementConfig,
  type SettlementJobOptions,
} from "./settlement";

export interface ProviderServerOptions {
  /** Validated configuration; `escrow`, `token`, `payee` and (`rpcUrl` or `transport`) must be set. */
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
   * Run the settlement job in this server every SETTLE_INTERVAL (issue 5): `true` (npm start) or options (tests);
   * off when absent. Settings come from `config.settlement` (SETTLE_*, SETTLER_PRIVATE_KEY) unless `SETTLE_IN_SERVER`
   * is false. Start is refused when MIN_CLOSE_DELAY fails the close-delay rule (docs/protocol.md § 9), when no
   * settler key is known, or when the key may not settle for the payee.
   */
  settlement?: boolean | ProviderSettlementOptions;
}

/** Test and embedding overrides of the in-server settlement job. */
export interface ProviderSettlementOptions {
  /** Overrides of the resolved settlement configuration. */
  config?: Partial<SettlementConfig>;
  /** Settler key instead of SETTLER_PRIVATE_KEY / the local default. */
  privateKey?: Hex;
  /** Receipt polling while a cycle waits, ms. */
  pollInterval?: number;
  /** Settler lease lifetime, ms (how long a crashed settler blocks the next one). */
  leaseTtlMs?: number;
  onStep?: SettlementJobOptions["onStep"];
}

export interface ProviderServer {
  /** `http://host:port` */
  url: string;
  port: number;
  chainId: number;
  escrow: Address;
  token: Address;
  payee: Address;
  decimals: number;
  app: Express;
  http: http.Server;
  paywall: ExpressPaywall;
  core: PaymentCore;
  store: ChannelStore;
  view: ChannelView;
  follower: EventFollower;
  reader: ChainReader;
  metrics: ServerMetrics;
  logger: Logger;
  /** The in-server settlement scheduler (null when settlement does not run in this server). */
  settlement: SettlementScheduler | null;
  /** Stops listening (open connections are closed), the follower, and the store. Idempotent. */
  close(): Promise<void>;
}

function sendProblem(res: Response, code: ServerErrorCode, detail: string) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(httpStatusOf(code, "endpoint"));
  res.setHeader("content-type", PROBLEM_CONTENT_TYPE);
  res.setHeader("cache-control", "no-store");
  res.end(JSON.stringify(problem(code, detail, "endpoint")));
}

/** Starts a provider server. Fails (with a clear message) when the chain, contracts or store are not usable. */
export async function startProviderServer(opts: ProviderServerOptions): Promise<ProviderServer> {
  const config = opts.config;
  const logger = opts.logger ?? createLogger(config.logLevel);
  const { escrow, token, payee } = config;
  if (!escrow || !token || !payee) throw new Error("ESCROW_ADDRESS, TOKEN_ADDRESS and PAYEE_ADDRESS must be known to start the server");
  if (!config.rpcUrl && !opts.transport) throw new Error("RPC_URL is required");

  const reader = new ChainReader({ rpcUrl: config.rpcUrl, transport: opts.transport, escrow, timeout: config.rpcTimeout });
  let chainId: number;
  try {
    chainId = await reader.chainId();
  } catch (e) {
    throw new Error(`cannot reach the chain at ${config.rpcUrl ?? "(transport)"}: ${(e as Error).message}`);
  }
  if (config.chainId !== undefined && config.chainId !== chainId) throw new Error(`CHAIN_ID is ${config.chainId} but the RPC serves chain ${chainId}`);
  if (!(await reader.hasCode(escrow))) throw new Error(`no contract at ESCROW_ADDRESS ${escrow} on chain ${chainId}`);
  if (!(await reader.hasCode(token))) throw new Error(`no contract at TOKEN_ADDRESS ${token} on chain ${chainId}`);
  const decimals = await reader.tokenDecimals(token);
  const genesis = await reader.block(0n);

  // Settlement inside the server: checked before anything is opened, so a bad setup fails fast and clearly.
  let settle: { config: SettlementConfig; key: Hex; address: Address; source: string; o: ProviderSettlementOptions } | null = null;
  if (opts.settlement) {
    const o = typeof opts.settlement === "object" ? opts.settlement : {};
    const sconfig = { ...resolveSettlementConfig(config.settlement ?? {}, chainId), ...o.config };
    if (sconfig.inServer) {
      const rule = checkCloseDelayRule({
        minCloseDelay: config.minCloseDelay,
        settleInterval: sconfig.interval,
        chainPollInterval: config.chainPollInterval / 1000,
        followerConfirmations: config.confirmations,
        settleConfirmations: sconfig.confirmations,
        blockTime: sconfig.blockTime,
        resubmitAfter: sconfig.resubmitAfter,
        closeGrace: sconfig.closeGrace,
        rpcOutageMargin: sconfig.rpcOutageMargin,
      });
      if (!rule.ok) throw new Error(`refusing to start: ${rule.message}`);
      const key = resolveSettlerKey({ privateKey: o.privateKey ?? config.settlement?.privateKey(), chainId, payee });
      if (!key) {
        throw new Error(
          `SETTLER_PRIVATE_KEY is required to settle on chain ${chainId} (the payee's key or an operator it approved with setOperator); ` +
            "or set SETTLE_IN_SERVER=false and run npm run settle from cron",
        );
      }
      settle = { config: sconfig, key: key.privateKey, address: key.address, source: key.source, o };
    }
  }

  const databaseUrl = config.databaseUrl ?? opts.defaultDatabaseUrl?.(chainId) ?? `.data/server-${chainId}.sqlite`;
  const store = await openStore({ url: databaseUrl, sqliteSynchronous: config.sqliteSynchronous });
  const cleanup: Array<() => Promise<void>> = [() => store.close()];
  try {
    await store.bind({ chainId, escrow, token, payee, genesisHash: genesis.hash });

    const metrics = createMetrics({ defaults: opts.processMetrics });
    const view = new ChannelView({ reader, store, unknownTtl: config.unknownChannelTtl });
    const follower = new EventFollower({
      reader,
      store,
      view,
      interval: config.chainPollInterval,
      blockRange: config.logBlockRange,
      confirmations: config.confirmations,
      refreshEvery: Math.max(1, Math.round(300_000 / config.chainPollInterval)),
      logger,
    });
    await follower.start();
    cleanup.unshift(() => follower.stop());
    metrics.attach(store, follower);

    const core = new PaymentCore({
      chainId,
      escrow,
      token,
      payee,
      view,
      store,
      minDeposit: parseTokenAmount(config.minDeposit, decimals),
      minCloseDelay: config.minCloseDelay,
      closeSafetyMargin: config.closeSafetyMargin,
      maxInFlight: config.maxInFlight,
      window: config.paymentWindow !== undefined ? parseTokenAmount(config.paymentWindow, decimals) : undefined,
      verifyThreads: config.verifyThreads,
      maxPendingPayments: config.maxPendingPayments,
      maxTimeoutSeconds: config.maxTimeoutSeconds,
      publicUrl: config.publicUrl,
      logger,
      observer: metrics.observer,
    });
    cleanup.unshift(() => core.close());
    const paywall = createExpressPaywall(core, { decimals, handlerTimeout: config.handlerTimeout });

    let scheduler: SettlementScheduler | null = null;
    if (settle) {
      const { job } = createSettlement({
        config: settle.config,
        privateKey: settle.key,
        rpcUrl: config.rpcUrl,
        transport: opts.transport,
        chainId,
        escrow,
        token,
        payee,
        decimals,
        store,
        reader,
        rpcTimeout: config.rpcTimeout,
        logger,
        registry: metrics.registry,
        onChannels: (snaps) => {
          const now = Date.now();
          for (const s of snaps) view.apply(s, now);
        },
        chainNow: () => view.chainNow(),
        pollInterval: settle.o.pollInterval ?? Math.min(1_000, Math.max(50, settle.config.blockTime * 250)),
        onStep: settle.o.onStep,
        leaseTtlMs: settle.o.leaseTtlMs,
      });
      await job.preflight();
      scheduler = new SettlementScheduler(job, { intervalMs: settle.config.interval * 1000, logger });
      const s = scheduler;
      cleanup.unshift(() => s.stop());
    }

    const app = express();
    app.disable("x-powered-by");
    app.set("etag", false);
    app.set("query parser", "simple");

    // Access log at debug level: method, path (no query), status, time. Never headers.
    if (logger.isLevelEnabled("debug")) {
      app.use((req, res, next) => {
        const t0 = process.hrtime.bigint();
        res.once("finish", () =>
          logger.debug({ method: req.method, path: req.path, status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, "request"),
        );
        next();
      });
    }

    // Declared bodies over the limit are refused before any route reads them (parsers bound chunked bodies).
    app.use((req, res, next) => {
      const len = Number(req.headers["content-length"] ?? 0);
      if (len > config.maxBodyBytes) return sendProblem(res, "request_too_large", `the body is over ${config.maxBodyBytes} bytes`);
      next();
    });

    app.get("/healthz", async (_req, res) => {
      const out: Record<string, unknown> = { chainId, escrow, token, payee };
      let ok = true;
      try {
        const head = await reader.blockNumber();
        out.chain = { reachable: true, head: Number(head), cursor: follower.cursor === null ? null : Number(follower.cursor), lag: follower.lag() === null ? null : Number(follower.lag()), lastError: follower.lastError };
      } catch (e) {
        ok = false;
        out.chain = { reachable: false, error: (e as Error).message.split("\n")[0], cursor: follower.cursor === null ? null : Number(follower.cursor) };
      }
      try {
        await store.ping();
        out.store = { kind: store.kind, writable: true };
      } catch (e) {
        ok = false;
        out.store = { kind: store.kind, writable: false, error: (e as Error).message.split("\n")[0] };
      }
      out.status = ok ? "ok" : "degraded";
      res.status(ok ? 200 : 503).setHeader("cache-control", "no-store");
      res.json(out);
    });

    app.get("/metrics", async (_req, res) => {
      res.setHeader("content-type", metrics.registry.contentType);
      res.end(await metrics.registry.metrics());
    });

    app.post(CLOSE_PATH, express.json({ limit: 4096, strict: true, type: () => true }), paywall.closeHandler());

    (opts.routes ?? ((a, p) => demoRoutes(a, p, { bodyLimit: Math.min(config.maxBodyBytes, 64 * 1024) })))(app, paywall);

    app.use((_req: Request, res: Response) => sendProblem(res, "not_found", "no such route"));
    app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      const e = err as { type?: string; status?: number; message?: string; stack?: string };
      if (e?.type === "entity.too.large") return sendProblem(res, "request_too_large", "the body is over the limit");
      if (e?.type === "entity.parse.failed" || e?.type === "encoding.unsupported" || e?.type === "charset.unsupported") {
        return sendProblem(res, req.path === CLOSE_PATH ? ("invalid_payload" as ServerErrorCode) : "bad_request", "the body is not valid JSON");
      }
      if (typeof e?.status === "number" && e.status >= 400 && e.status < 500) return sendProblem(res, "bad_request", "the request could not be read");
      logger.error({ err: e?.message, stack: e?.stack, path: req.path }, "handler error");
      sendProblem(res, "internal_error", "internal error");
    });

    const server = http.createServer(
      { maxHeaderSize: config.maxHeaderBytes, requestTimeout: config.requestTimeout, headersTimeout: Math.min(config.requestTimeout, 60_000), keepAliveTimeout: 5_000 },
      app,
    );
    server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable || (socket as unknown as { _httpMessage?: unknown })._httpMessage) {
        socket.destroy();
        return;
      }
      const code: ServerErrorCode =
        err.code === "HPE_HEADER_OVERFLOW" ? "request_too_large" : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "request_timeout" : "bad_request";
      const status = code === "request_too_large" ? 431 : httpStatusOf(code, "endpoint");
      const body = JSON.stringify(problem(code, code === "request_too_large" ? "the request headers are over the limit" : "malformed HTTP request", "endpoint"));
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    const hostForUrl = config.host.includes(":") ? `[${config.host}]` : config.host === "0.0.0.0" ? "127.0.0.1" : config.host;

    let closing: Promise<void> | null = null;
    const close = () =>
      (closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          setTimeout(() => server.closeAllConnections(), 2_000).unref();
        });
        for (const c of cleanup) await c().catch(() => undefined);
      })());

    logger.info({ url: `http://${hostForUrl}:${port}`, chainId, escrow, token, payee, store: store.kind }, "server listening");
    if (scheduler && settle) {
      scheduler.start();
      logger.info({ settler: settle.address, keySource: settle.source, interval: settle.config.interval }, "settlement job started");
    }
    return {
      url: `http://${hostForUrl}:${port}`,
      port,
      chainId,
      escrow,
      token,
      payee,
      decimals,
      app,
      http: server,
      paywall,
      core,
      store,
      view,
      follower,
      reader,
      metrics,
      logger,
      settlement: scheduler,
      close,
    };
  } catch (e) {
    for (const c of cleanup) await c().catch(() => undefined);
    throw e;
  }
}
