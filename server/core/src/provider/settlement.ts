/**
 * The settlement job inside the provider's process: planned (close-delay rule, settler key) before anything is
 * opened so that a bad setup fails fast and clearly, started once the store, view and metrics exist.
 */
import type { Address, Hex } from "viem";
import type { ChainReader } from "../chain/reader";
import type { ChannelView } from "../chain/view";
import type { ServerConfig } from "../config";
import type { Logger } from "../log";
import type { ServerMetrics } from "../metrics";
import { resolveSettlementConfig, type SettlementConfig } from "../settlement/config";
import { createSettlement, type CreateSettlementOptions } from "../settlement/create";
import { resolveSettlerKey } from "../settlement/key";
import { checkCloseDelayRuleFor } from "../settlement/safety";
import { SettlementScheduler } from "../settlement/scheduler";
import { firstLine } from "./errors";
import { ProviderStartError, type ProviderOptions, type ProviderSettlementOptions } from "./types";

/** In-process settlement, checked and ready to start. */
export interface SettlementPlan {
  config: SettlementConfig;
  key: Hex;
  address: Address;
  /** Where the key came from (safe to log). */
  source: string;
  options: ProviderSettlementOptions;
}

/**
 * The plan of in-process settlement, or null when it runs elsewhere (`settlement: false`, SETTLE_IN_SERVER=false).
 * Refuses (ProviderStartError) a MIN_CLOSE_DELAY that fails the close-delay rule, or a missing settler key.
 */
export function planSettlement(config: ServerConfig, chainId: number, payee: Address, option: ProviderOptions["settlement"]): SettlementPlan | null {
  const wanted = option ?? true;
  if (!wanted) return null;
  const o = typeof wanted === "object" ? wanted : {};
  const sconfig = { ...resolveSettlementConfig(config.settlement ?? {}, chainId), ...o.config };
  if (!sconfig.inServer) return null;
  const rule = checkCloseDelayRuleFor(config, sconfig);
  if (!rule.ok) throw new ProviderStartError(`refusing to start: ${rule.message}`);
  const key = o.privateKey
    ? resolveSettlerKey({ privateKey: o.privateKey, source: o.keySource ?? "option" })
    : (resolveSettlerKey({ privateKey: config.settlement?.privateKey() }) ?? o.fallbackKey?.({ chainId, payee }) ?? null);
  if (!key) {
    throw new ProviderStartError(
      `SETTLER_PRIVATE_KEY is required to settle on chain ${chainId} (the payee's key or an operator it approved with setOperator); ` +
        "or set SETTLE_IN_SERVER=false and settle from cron (channel-settle)",
    );
  }
  return { config: sconfig, key: key.privateKey, address: key.address, source: key.source, options: o };
}

/** What the settlement job shares with the request path. */
export interface SettlementParts extends Pick<CreateSettlementOptions, "transport" | "chainId" | "escrow" | "token" | "payee" | "decimals" | "store"> {
  config: ServerConfig;
  reader: ChainReader;
  view: ChannelView;
  metrics: ServerMetrics;
  logger: Logger;
}

/**
 * Builds the job, checks that its key may settle for the payee, and returns its scheduler; started (a cycle now, then
 * every interval) unless the plan's options say `start: false`.
 */
export async function startSettlement(plan: SettlementPlan, p: SettlementParts): Promise<SettlementScheduler> {
  const { job } = createSettlement({
    config: plan.config,
    privateKey: plan.key,
    rpcUrl: p.config.rpcUrl,
    transport: p.transport,
    chainId: p.chainId,
    escrow: p.escrow,
    token: p.token,
    payee: p.payee,
    decimals: p.decimals,
    store: p.store,
    reader: p.reader,
    rpcTimeout: p.config.rpcTimeout,
    logger: p.logger,
    registry: p.metrics.registry,
    // What the job learns from the chain reaches the request path at once.
    onChannels: (snaps) => {
      const now = Date.now();
      for (const s of snaps) p.view.apply(s, now);
    },
    chainNow: () => p.view.chainNow(),
    pollInterval: plan.options.pollInterval ?? Math.min(1_000, Math.max(50, plan.config.blockTime * 250)),
    onStep: plan.options.onStep,
    leaseTtlMs: plan.options.leaseTtlMs,
  });
  try {
    await job.preflight();
  } catch (e) {
    throw new ProviderStartError(`cannot settle with the settler key ${plan.address}: ${firstLine(e)}`);
  }
  const scheduler = new SettlementScheduler(job, {
    intervalMs: plan.config.interval * 1000,
    logger: p.logger,
    onStart: () => p.logger.info({ settler: plan.address, keySource: plan.source, interval: plan.config.interval }, "settlement job started"),
  });
  if (plan.options.start !== false) scheduler.start();
  return scheduler;
}
