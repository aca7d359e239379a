/**
 * Test harness for the provider server: the REAL server (Express app, payment core, SQLite store, chain view and
 * event follower) on 127.0.0.1 with an ephemeral port, against Hardhat's in-process chain exposed over JSON-RPC.
 *
 * ```ts
 * const srv = await startTestServer();                 // deploys MockUSDC + ChannelEscrow, payee = account #0
 * const ch = await openChannel(srv.env);               // test/helpers/escrow.ts: a channel to srv.payee
 * const terms = await srv.terms("/v1/echo");           // the route's offer (from a real 402)
 * const res = await fetch(`${srv.url}/v1/echo?msg=hi`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) });
 * await srv.close();
 * ```
 * Signature kept stable for other parts' tests: startTestServer(options) → TestServer { url, rpcUrl, chainId, escrow,
 * token, payee, domain, env, databaseUrl, server, store, sync(), terms(), pay(), close() }.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import hre from "hardhat";
import type { Express } from "express";
import type { Address } from "viem";
import {
  decodePaymentRequired,
  encodePaymentSignature,
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_SIGNATURE,
  X402_VERSION,
  type ChannelRequirements,
  type EscrowDomain,
  type Voucher,
} from "@paychan/protocol";
import { startProviderServer, type ProviderServer, type ProviderServerOptions } from "@paychan/demo";
import { defaultConfig, type ServerConfig } from "@paychan/server";
import type { ExpressPaywall } from "@paychan/express";
import { createLogger } from "@paychan/server";
import type { ChannelStore } from "@paychan/server";
import { deployEscrow, type Env } from "./escrow";
import { startFaultProxy, type FaultProxy } from "./fault-proxy";

export interface TestServerOptions {
  /** Reuse these contracts (from `deployEscrow()`); default: deploy new ones. */
  env?: Env;
  /** Server configuration overrides (e.g. `minCloseDelay`, `closeSafetyMargin`, `maxInFlight`, `sqliteSynchronous`). */
  config?: Partial<ServerConfig>;
  /** Database to use (e.g. the previous server's, to test a restart); default: a new temporary SQLite file. */
  databaseUrl?: string;
  /** JSON-RPC URL the server reads the chain through; default: the shared in-process chain server ({@link rpcUrl}). */
  rpcUrl?: string;
  /** Hardhat account index of the payee (default 0). */
  payeeIndex?: number;
  /** Provider routes; default: the demo routes (`GET /v1/echo` 0.001, metered `POST /v1/infer` max 0.01). */
  routes?: (app: Express, paywall: ExpressPaywall) => void;
  /** Server log level (default "silent"; LOG_LEVEL in the environment overrides). */
  logLevel?: ServerConfig["logLevel"];
  /** Run the settlement job in the server (off by default; see `ProviderServerOptions.settlement`). */
  settlement?: ProviderServerOptions["settlement"];
  /** The x402 `exact` scheme (default: on, sent by Hardhat account #19; see `ProviderServerOptions.exact`). */
  exact?: ProviderServerOptions["exact"];
  /** Gasless opens (default: auto, on with the exact sender; see `ProviderServerOptions.gaslessOpen`). */
  gaslessOpen?: ProviderServerOptions["gaslessOpen"];
}

export interface TestServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The JSON-RPC URL of the chain (the in-process Hardhat network unless given). */
  rpcUrl: string;
  chainId: number;
  escrow: Address;
  token: Address;
  payee: Address;
  domain: EscrowDomain;
  /** The deployment handle of test/helpers/escrow.ts (wallets, contracts), for `openChannel(env)` etc. */
  env: Env;
  databaseUrl: string;
  /** The running server (core, store, view, follower, metrics, app). */
  server: ProviderServer;
  store: ChannelStore;
  /** Runs one event-follower pass now (instead of waiting for the poll interval). */
  sync(): Promise<void>;
  /** The route's offer, from a real unpaid request (GET unless `init` says otherwise). */
  terms(pathAndQuery: string, init?: RequestInit): Promise<ChannelRequirements>;
  /** Headers carrying a `PAYMENT-SIGNATURE` for `voucher` under `terms`. */
  pay(terms: ChannelRequirements, voucher: Voucher): Record<string, string>;
  /** Stops the server. The database file is deleted unless `keepDatabase` (restart tests). */
  close(opts?: { keepDatabase?: boolean }): Promise<void>;
}

let rpc: Promise<{ url: string; close(): Promise<void> }> | null = null;

/** The in-process Hardhat chain over JSON-RPC on 127.0.0.1 (one per test process, started on first use). */
export async function rpcUrl(): Promise<string> {
  rpc ??= (async () => {
    const { JsonRpcServer } = require("hardhat/internal/hardhat-network/jsonrpc/server") as typeof import("hardhat/internal/hardhat-network/jsonrpc/server");
    const s = new JsonRpcServer({ hostname: "127.0.0.1", port: 0, provider: hre.network.provider });
    const { port } = await s.listen();
    // Never keep the test process alive for it.
    (s as unknown as { _httpServer?: { unref(): void } })._httpServer?.unref();
    return { url: `http://127.0.0.1:${port}`, close: () => s.close() };
  })();
  return (await rpc).url;
}

let dbCounter = 0;
/** A new temporary SQLite path (nothing created yet). */
export function tempDatabaseUrl(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-server-"));
  return path.join(dir, `store-${process.pid}-${++dbCounter}.sqlite`);
}

/** Headers carrying a `PAYMENT-SIGNATURE` for `voucher` under `terms`. */
export function paymentHeaders(terms: ChannelRequirements, voucher: Voucher): Record<string, string> {
  const accepted = { ...terms, extra: { ...terms.extra } };
  delete accepted.extra.channel;
  return {
    [HEADER_PAYMENT_SIGNATURE]: encodePaymentSignature({
      x402Version: X402_VERSION,
      accepted,
      payload: { channelId: voucher.channelId, cumulativeAmount: voucher.cumulativeAmount, signature: voucher.signature },
    }),
  };
}

/** Starts the real server on an ephemeral port; see the file comment. */
export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const env = opts.env ?? (await deployEscrow());
  const url = opts.rpcUrl ?? (await rpcUrl());
  const payee = env.wallets[opts.payeeIndex ?? 0].account.address;
  const databaseUrl = opts.databaseUrl ?? tempDatabaseUrl();
  const level = (process.env.LOG_LEVEL as ServerConfig["logLevel"] | undefined) ?? opts.logLevel ?? "silent";
  const config = defaultConfig({
    rpcUrl: url,
    escrow: env.escrow.address,
    token: env.usdc.address,
    payee,
    databaseUrl,
    host: "127.0.0.1",
    port: 0,
    chainPollInterval: 250,
    logLevel: level,
    ...opts.config,
  });
  const server = await startProviderServer({ config, routes: opts.routes, logger: createLogger(level), settlement: opts.settlement, exact: opts.exact, gaslessOpen: opts.gaslessOpen });
  return {
    url: server.url,
    rpcUrl: url,
    chainId: server.chainId,
    escrow: server.escrow,
    token: server.token,
    payee: server.payee,
    domain: env.domain,
    env,
    databaseUrl,
    server,
    store: server.store,
    sync: () => server.follower.sync(),
    async terms(pathAndQuery, init) {
      const res = await fetch(`${server.url}${pathAndQuery}`, init);
      await res.arrayBuffer();
      const h = res.headers.get(HEADER_PAYMENT_REQUIRED);
      if (res.status !== 402 || !h) throw new Error(`expected a 402 with ${HEADER_PAYMENT_REQUIRED} from ${pathAndQuery}, got ${res.status}`);
      return decodePaymentRequired(h).accepts[0];
    },
    pay: paymentHeaders,
    async close(o = {}) {
      await server.close();
      if (!o.keepDatabase && opts.databaseUrl === undefined) {
        for (const f of [databaseUrl, `${databaseUrl}-wal`, `${databaseUrl}-shm`]) fs.rmSync(f, { force: true });
        fs.rmSync(path.dirname(databaseUrl), { recursive: true, force: true });
      }
    },
  };
}

/** Base64 JSON header value from any object (for malformed or foreign payloads). */
export function rawHeader(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64");
}

/** The wire form of a payment (`PAYMENT-SIGNATURE` JSON before base64), for tests that mutate it. */
export function paymentJson(terms: ChannelRequirements, voucher: Voucher): Record<string, unknown> {
  const h = paymentHeaders(terms, voucher)[HEADER_PAYMENT_SIGNATURE];
  return JSON.parse(Buffer.from(h, "base64").toString("utf8"));
}

/** A decoded error answer: status, `error` code of the body, and the `PAYMENT-REQUIRED` header when present. */
export interface Answer {
  status: number;
  code?: string;
  body: any;
  headers: Headers;
  required?: ReturnType<typeof decodePaymentRequired>;
}

/** fetch + decode of the problem body and `PAYMENT-REQUIRED` (for assertions). */
export async function call(url: string, init?: RequestInit): Promise<Answer> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  const h = res.headers.get(HEADER_PAYMENT_REQUIRED);
  return { status: res.status, code: body?.error, body, headers: res.headers, required: h ? decodePaymentRequired(h) : undefined };
}

/**
 * A TCP proxy in front of a JSON-RPC URL that can be switched off (connections reset) and on again: lets tests
 * take "the chain" away from a running server. It is a {@link FaultProxy} (./fault-proxy.ts), which can also
 * black-hole (`mode("drop")`) or delay (`mode("delay", { delayMs })`) the traffic.
 */
export async function startRpcProxy(target: string): Promise<FaultProxy> {
  return startFaultProxy(target);
}
