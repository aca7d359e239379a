/**
 * The provider in one call: chain reader and view, event follower, store, payment core, metrics and (optionally) the
 * settlement scheduler, built from a configuration, with one `close()`. Framework-free: an HTTP adapter
 * (`@paychan/express`) turns `provider.core` into paid routes and `provider.health()` / `provider.metrics` into
 * endpoints, inside an app the provider owns.
 *
 * ```ts
 * const provider = await createProvider({ env: process.env });        // RPC_URL, ESCROW_ADDRESS, PAYEE_ADDRESS, ...
 * const provider = await createProvider({ config: { rpcUrl, escrow, token, payee, databaseUrl: "paid.sqlite" },
 *                                         settlement: { privateKey } });
 * ...
 * await provider.close();
 * ```
 */
import type { Address, Hex, Transport } from "viem";
import { parseTokenAmount } from "@paychan/protocol";
import { ChainReader } from "./chain/reader";
import { ChannelView } from "./chain/view";
import { EventFollower } from "./chain/follower";
import { loadConfig, type ServerConfig } from "./config";
import { readDeployment } from "./deployments";
import { createLogger, type Logger } from "./log";
import { createMetrics, type ServerMetrics } from "./metrics";
import { PaymentCore } from "./payments/core";
import { openStore } from "./store";
import type { ChannelStore } from "./store/types";
import { checkCloseDelayRule } from "./settlement/safety";
import { resolveSettlementConfig, type SettlementConfig } from "./settlement/config";
import { resolveSettlerKey } from "./settlement/key";
import { createSettlement } from "./settlement/create";
import { SettlementScheduler } from "./settlement/scheduler";
import type { SettlementJobOptions } from "./settlement/job";

type Env = Record<string, string | undefined>;

export interface ProviderOptions {
  /**
   * Environment variables to read the configuration from (usually `process.env`; README "Configuration").
   * Absent: the defaults of an empty environment.
   */
  env?: Env;
  /** Configuration fields, on top of what `env` gave. `rpcUrl` (or `transport`) and `payee` must end up set. */
  config?: Partial<ServerConfig>;
  /** A viem transport instead of `config.rpcUrl` (in-process chains). */
  transport?: Transport;
  logger?: Logger;
  /** Add Node process metrics to the registry (off when several providers share a process: global collectors). */
  processMetrics?: boolean;
  /** Database when `config.databaseUrl` is unset (default `.data/server-<chainId>.sqlite`). */
  defaultDatabaseUrl?: (chainId: number) => string;
  /**
   * The settlement job inside this process, every SETTLE_INTERVAL (default `true`): settings from SETTLE_* and the key
   * from SETTLER_PRIVATE_KEY (or `privateKey` here). `SETTLE_IN_SERVER=false` or `false` here leaves settlement to
   * cron (`channel-settle`). Start is refused when MIN_CLOSE_DELAY fails the close-delay rule (docs/protocol.md § 9),
   * when no settler key is known, or when the key may not settle for the payee.
   */
  settlement?: boolean | ProviderSettlementOptions;
}

/** Overrides of the in-process settlement job (embedding and tests). */
export interface ProviderSettlementOptions {
  /** Overrides of the resolved settlement configuration. */
  config?: Partial<SettlementConfig>;
  /** The settler key (the payee's, or an operator it approved with `setOperator`) instead of SETTLER_PRIVATE_KEY. */
  privateKey?: Hex;
  /** Where `privateKey` came from, as logs show it (default "option"). */
  keySource?: string;
  /** Receipt polling while a cycle waits, ms. */
  pollInterval?: number;
  /** Settler lease lifetime, ms (how long a crashed settler blocks the next one). */
  leaseTtlMs?: number;
  onStep?: SettlementJobOptions["onStep"];
}

/** What `/healthz` reports: the chain (reachable, head, follower lag) and the store (writable). */
export interface ProviderHealth {
  ok: boolean;
  body: Record<string, unknown>;
}

export interface Provider {
  /** The configuration in force (escrow, token and payee resolved). */
  readonly config: ServerConfig & { escrow: Address; token: Address; payee: Address };
  readonly chainId: number;
  readonly escrow: Address;
  readonly token: Address;
  readonly payee: Address;
  /** Token decimals (token-unit prices are converted with them). */
  readonly decimals: number;
  /** The framework-free payment core: `authorize`, `cooperativeClose`. */
  readonly core: PaymentCore;
  readonly store: ChannelStore;
  readonly view: ChannelView;
  readonly follower: EventFollower;
  readonly reader: ChainReader;
  readonly metrics: ServerMetrics;
  readonly logger: Logger;
  /** The in-process settlement scheduler (null when settlement runs elsewhere). */
  readonly settlement: SettlementScheduler | null;
  /** Checks the chain and the store now. */
  health(): Promise<ProviderHealth>;
  /** Stops the settlement scheduler, the follower, the payment core and the store. Idempotent. */
  close(): Promise<void>;
}

/** A provider that cannot start: the message says what to set or fix. */
export class ProviderStartError extends Error {
  override name = "ProviderStartError";
}

const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split("\n")[0];

/** The configuration from `env` and `config`: throws `ConfigError` listing every invalid variable. */
export function providerConfig(o: Pick<ProviderOptions, "env" | "config">): ServerConfig {
  return { ...loadConfig(o.env ?? {}), ...stripUndefined(o.config ?? {}) };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Builds a provider: checks the chain, the contracts and the store, starts the event follower and (by default) the
 * settlement scheduler. Fails with `ConfigError` or {@link ProviderStartError} and leaves nothing running.
 */
export async function createProvider(opts: ProviderOptions = {}): Promise<Provider> {
  let config = providerConfig(opts);
  const logger = opts.logger ?? createLogger(config.logLevel);
  if (!config.rpcUrl && !opts.transport) throw new ProviderStartError("RPC_URL is required (the JSON-RPC endpoint of the chain holding the escrow)");
  if (!config.payee) throw new ProviderStartError("PAYEE_ADDRESS is required (the address channels must pay)");

  const reader0 = new ChainReader({ rpcUrl: config.rpcUrl, transport: opts.transport, escrow: config.escrow ?? ZERO, timeout: config.rpcTimeout });
  let chainId: number;
  try {
    chainId = await reader0.chainId();
  } catch (e) {
    throw new ProviderStartError(`cannot reach the chain at ${config.rpcUrl ?? "(transport)"}: ${firstLine(e)}`);
  }
  if (config.chainId !== undefined && config.chainId !== chainId) throw new ProviderStartError(`CHAIN_ID is ${config.chainId} but the RPC serves chain ${chainId}`);
  if (!config.escrow || !config.token) {
    const d = await readDeployment(chainId, config.deploymentsFile);
    if (!d) throw new ProviderStartError(`ESCROW_ADDRESS/TOKEN_ADDRESS are not set and there is no deployments file for chain ${chainId} (${config.deploymentsFile ?? `deployments/${chainId}.json`})`);
    config = { ...config, escrow: config.escrow ?? d.escrow, token: config.token ?? d.token };
  }
  const { escrow, token, payee } = config as { escrow: Address; token: Address; payee: Address };
  const reader = new ChainReader({ rpcUrl: config.rpcUrl, transport: opts.transport, escrow, timeout: config.rpcTimeout });
  if (!(await reader.hasCode(escrow))) throw new ProviderStartError(`no contract at ESCROW_ADDRESS ${escrow} on chain ${chainId}`);
  if (!(await reader.hasCode(token))) throw new ProviderStartError(`no contract at TOKEN_ADDRESS ${token} on chain ${chainId}`);
  const decimals = await reader.tokenDecimals(token);
  const genesis = await reader.block(0n);

  // Settlement in this process: checked before anything is opened, so a bad setup fails fast and clearly.
  let settle: { config: SettlementConfig; key: Hex; address: Address; source: string; o: ProviderSettlementOptions } | null = null;
  const settlementOpt = opts.settlement ?? true;
  if (settlementOpt) {
    const o = typeof settlementOpt === "object" ? settlementOpt : {};
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
      if (!rule.ok) throw new ProviderStartError(`refusing to start: ${rule.message}`);
      const key = o.privateKey ? resolveSettlerKey({ privateKey: o.privateKey, source: o.keySource ?? "option" }) : resolveSettlerKey({ privateKey: config.settlement?.privateKey() });
      if (!key) {
        throw new ProviderStartError(
          `SETTLER_PRIVATE_KEY is required to settle on chain ${chainId} (the payee's key or an operator it approved with setOperator); ` +
            "or set SETTLE_IN_SERVER=false and settle from cron (channel-settle)",
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
      try {
        await job.preflight();
      } catch (e) {
        throw new ProviderStartError(`cannot settle with the settler key ${settle.address}: ${firstLine(e)}`);
      }
      scheduler = new SettlementScheduler(job, { intervalMs: settle.config.interval * 1000, logger });
      const s = scheduler;
      cleanup.unshift(() => s.stop());
      scheduler.start();
      logger.info({ settler: settle.address, keySource: settle.source, interval: settle.config.interval }, "settlement job started");
    }

    const health = async (): Promise<ProviderHealth> => {
      const body: Record<string, unknown> = { chainId, escrow, token, payee };
      let ok = true;
      const cursor = follower.cursor === null ? null : Number(follower.cursor);
      try {
        const head = await reader.blockNumber();
        const lag = follower.lag();
        body.chain = { reachable: true, head: Number(head), cursor, lag: lag === null ? null : Number(lag), lastError: follower.lastError };
      } catch (e) {
        ok = false;
        body.chain = { reachable: false, error: firstLine(e), cursor };
      }
      try {
        await store.ping();
        body.store = { kind: store.kind, writable: true };
      } catch (e) {
        ok = false;
        body.store = { kind: store.kind, writable: false, error: firstLine(e) };
      }
      body.status = ok ? "ok" : "degraded";
      return { ok, body };
    };

    let closing: Promise<void> | null = null;
    const close = () =>
      (closing ??= (async () => {
        for (const c of cleanup) await c().catch(() => undefined);
      })());

    return {
      config: { ...config, escrow, token, payee },
      chainId,
      escrow,
      token,
      payee,
      decimals,
      core,
      store,
      view,
      follower,
      reader,
      metrics,
      logger,
      settlement: scheduler,
      health,
      close,
    };
  } catch (e) {
    for (const c of cleanup) await c().catch(() => undefined);
    throw e;
  }
}

/** The escrow of the first reader, which only asks for the chain id (the escrow may come from a deployment record). */
const ZERO: Address = "0x0000000000000000000000000000000000000000";
