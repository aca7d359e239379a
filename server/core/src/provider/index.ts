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
import { parseTokenAmount } from "@paychan/protocol";
import { ChannelView } from "../chain/view";
import { ReadBudget } from "../chain/read-budget";
import { ChannelIndex } from "../chain/channel-index";
import { EventFollower } from "../chain/follower";
import { checkConfigFields, loadConfig, type ServerConfig } from "../config";
import { createLogger } from "../log";
import { createMetrics } from "../metrics";
import { PaymentCore } from "../payments/core";
import { openStore } from "../store";
import type { SettlementScheduler } from "../settlement/scheduler";
import { connectChain } from "./chain-checks";
import { checkHealth } from "./health";
import { planSettlement, startSettlement } from "./settlement";
import { ExactPlanError, planExact, startExact, type ExactScheme } from "../exact/setup";
import { GaslessOpenPlanError, planGaslessOpen, startGaslessOpens } from "../open/setup";
import type { GaslessOpens } from "../open/opens";
import { StreamRegistry } from "../stream/registry";
import { streamStoreFor } from "../stream/store";
import { createStreamMetrics } from "../stream/metrics";
import { ProviderStartError, type Provider, type ProviderOptions } from "./types";

export * from "./types";

/**
 * The configuration from `env`, with the fields of `config` on top (checked by the same rules): throws `ConfigError`
 * listing every invalid variable or field.
 */
export function providerConfig(o: Pick<ProviderOptions, "env" | "config">): ServerConfig {
  const given = Object.fromEntries(Object.entries(o.config ?? {}).filter(([, v]) => v !== undefined)) as Partial<ServerConfig>;
  const fromEnv = loadConfig(o.env ?? {});
  return { ...fromEnv, ...checkConfigFields(given) };
}

/** The host names a Host header may carry without PUBLIC_URL: ALLOWED_HOSTS and HOST unless it is a wildcard. */
function allowedHosts(config: ServerConfig): string[] {
  const host = config.host.toLowerCase();
  const listen = host === "0.0.0.0" || host === "::" || host === "[::]" ? [] : [host.includes(":") && !host.startsWith("[") ? `[${host}]` : host];
  return [...config.allowedHosts, ...listen];
}

/**
 * Builds a provider: checks the chain, the contracts and the store, starts the event follower and (by default) the
 * settlement scheduler. Fails with `ConfigError` or {@link ProviderStartError} and leaves nothing running.
 */
export async function createProvider(opts: ProviderOptions = {}): Promise<Provider> {
  const config = providerConfig(opts);
  const logger = opts.logger ?? createLogger(config.logLevel);
  if (!config.rpcUrl && !opts.transport) throw new ProviderStartError("RPC_URL is required (the JSON-RPC endpoint of the chain holding the escrow)");
  const payee = config.payee;
  if (!payee) throw new ProviderStartError("PAYEE_ADDRESS is required (the address channels must pay)");
  const { reader, chainId, escrow, token, decimals, genesisHash } = await connectChain(config, opts.transport);
  const settlement = planSettlement(config, chainId, payee, opts.settlement);
  let exactPlan;
  try {
    exactPlan = planExact(config.exact, chainId, opts.exact, settlement?.key ?? config.settlement?.privateKey());
  } catch (e) {
    if (e instanceof ExactPlanError) throw new ProviderStartError(`refusing to start: ${e.message}`);
    throw e;
  }
  let openPlan;
  try {
    openPlan = planGaslessOpen(config.gaslessOpen, opts.gaslessOpen, exactPlan);
  } catch (e) {
    if (e instanceof GaslessOpenPlanError) throw new ProviderStartError(`refusing to start: ${e.message}`);
    throw e;
  }

  const databaseUrl = config.databaseUrl ?? opts.defaultDatabaseUrl?.(chainId) ?? `.data/server-${chainId}.sqlite`;
  const store = await openStore({ url: databaseUrl, sqliteSynchronous: config.sqliteSynchronous });
  // Stopped in reverse order of start: scheduler, payment core, follower, store.
  const cleanup: Array<() => Promise<void>> = [() => store.close()];
  const stopAll = async () => {
    for (const c of cleanup) await c().catch(() => undefined);
  };
  try {
    await store.bind({ chainId, escrow, token, payee, genesisHash });

    const metrics = createMetrics({ defaults: opts.processMetrics, perChannel: config.metricsPerChannel });
    const budget = new ReadBudget({ perSource: config.chainReadsPerSource, global: config.chainReadsGlobal });
    const view = new ChannelView({ reader, store, unknownTtl: config.unknownChannelTtl, budget });
    const index = new ChannelIndex({ reader, escrow, payee, scanBlocks: config.channelIndexBlocks, blockRange: config.logBlockRange, logger });
    const follower = new EventFollower({
      reader,
      store,
      view,
      interval: config.chainPollInterval,
      blockRange: config.logBlockRange,
      confirmations: config.confirmations,
      refreshEvery: Math.max(1, Math.round(300_000 / config.chainPollInterval)),
      logger,
      index,
    });
    view.index = { signerOf: (id) => index.signerOf(id), sync: () => follower.nextPass(), current: () => index.complete && follower.lag() === 0n };
    await follower.start();
    cleanup.unshift(() => follower.stop());
    metrics.attach(store, follower, budget);

    let exact: ExactScheme | null = null;
    if (exactPlan) {
      const x = await startExact(exactPlan, {
        rpcUrl: config.rpcUrl,
        transport: opts.transport,
        rpcTimeout: config.rpcTimeout,
        chainId,
        token,
        payee,
        maxTimeoutSeconds: config.maxTimeoutSeconds,
        store,
        now: () => view.chainNow(),
        logger,
        observer: metrics.exactObserver,
      });
      exact = x;
      cleanup.unshift(() => x.stop());
      metrics.attachExact(x.store);
    }

    const minDeposit = parseTokenAmount(config.minDeposit, decimals);
    let opens: GaslessOpens | null = null;
    if (openPlan && exact && exactPlan) {
      try {
        opens = await startGaslessOpens(openPlan, {
          exact,
          exactPlan,
          chainId,
          escrow,
          token,
          payee,
          decimals,
          minDeposit,
          minCloseDelay: config.minCloseDelay,
          store,
          now: () => view.chainNow(),
          logger,
          observer: metrics.openObserver,
        });
      } catch (e) {
        if (e instanceof GaslessOpenPlanError) throw new ProviderStartError(`refusing to start: ${e.message}`);
        throw e;
      }
      if (opens) metrics.attachOpens(opens.store);
    }

    const core = new PaymentCore({
      chainId,
      escrow,
      token,
      payee,
      view,
      store,
      minDeposit,
      minCloseDelay: config.minCloseDelay,
      closeSafetyMargin: config.closeSafetyMargin,
      maxInFlight: config.maxInFlight,
      window: config.paymentWindow !== undefined ? parseTokenAmount(config.paymentWindow, decimals) : undefined,
      verifyThreads: config.verifyThreads,
      maxPendingPayments: config.maxPendingPayments,
      maxTimeoutSeconds: config.maxTimeoutSeconds,
      publicUrl: config.publicUrl,
      allowedHosts: allowedHosts(config),
      logger,
      observer: metrics.observer,
      ...(exact ? { exact: exact.payments } : {}),
      ...(opens ? { opens } : {}),
    });
    cleanup.unshift(() => core.close());

    // Paid streams: their stream reservations are swept at start (dead processes' streams charged their checkpoints).
    const streams: StreamRegistry = new StreamRegistry({ core, store, streams: streamStoreFor(store), logger, observer: createStreamMetrics(metrics.registry, (): number => streams.size) });
    await streams.start();
    cleanup.unshift(() => streams.close());

    let scheduler: SettlementScheduler | null = null;
    if (settlement) {
      const parts = { config, transport: opts.transport, chainId, escrow, token, payee, decimals, store, reader, view, metrics, logger };
      const s = await startSettlement(settlement, parts);
      scheduler = s;
      cleanup.unshift(() => s.stop());
    }

    let closing: Promise<void> | null = null;
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
      streams,
      exact,
      opens,
      health: () => checkHealth({ ids: { chainId, escrow, token, payee }, reader, follower, store }),
      close: () => (closing ??= stopAll()),
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
