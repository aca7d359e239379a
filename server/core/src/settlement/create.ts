/** Wires a settlement job from its parts: chain writer, reader, settlement store, metrics. */
import type { Registry } from "prom-client";
import type { Logger } from "pino";
import type { Address, Hex, Transport } from "viem";
import { parseTokenAmount } from "@paychan/protocol";
import { ChainReader } from "../chain/reader";
import type { ChainChannel, ChannelStore } from "../store/types";
import { SettlementChain } from "./chain";
import type { SettlementConfig } from "./config";
import { SettlementJob } from "./job";
import type { SettlementJobOptions } from "./job-options";
import { createSettlementMetrics, type SettlementMetrics } from "./metrics";
import { settlementStoreFor } from "./store";
import type { SettlementStore } from "../store/settlement-types";


export interface CreateSettlementOptions {
  config: SettlementConfig;
  /** The settler key (see `resolveSettlerKey`); kept inside the signer only. */
  privateKey: Hex;
  rpcUrl?: string;
  transport?: Transport;
  chainId: number;
  escrow: Address;
  token: Address;
  payee: Address;
  /** Token decimals (converts SETTLE_THRESHOLD). */
  decimals: number;
  store: ChannelStore;
  /** Chain reader for channel snapshots (default: a new one on `rpcUrl` / `transport`). */
  reader?: ChainReader;
  rpcTimeout?: number;
  logger?: Logger;
  /** Registers the settlement metrics here (the server's registry). */
  registry?: Registry;
  onChannels?: (snapshots: readonly ChainChannel[]) => void;
  /** Chain time (s) for the close-deadline gauge (the server passes its view's `chainNow`); default the local clock. */
  chainNow?: () => number;
  holder?: string;
  pollInterval?: number;
  leaseTtlMs?: number;
  onStep?: SettlementJobOptions["onStep"];
}

export interface Settlement {
  job: SettlementJob;
  chain: SettlementChain;
  settlement: SettlementStore;
  metrics?: SettlementMetrics;
}

/** Wires a settlement job from its parts. */
export function createSettlement(o: CreateSettlementOptions): Settlement {
  const chain = new SettlementChain({
    rpcUrl: o.rpcUrl,
    transport: o.transport,
    chainId: o.chainId,
    escrow: o.escrow,
    token: o.token,
    payee: o.payee,
    privateKey: o.privateKey,
    timeout: o.rpcTimeout,
  });
  const reader = o.reader ?? new ChainReader({ rpcUrl: o.rpcUrl, transport: o.transport, escrow: o.escrow, timeout: o.rpcTimeout });
  const settlement = settlementStoreFor(o.store);
  const metrics = o.registry ? createSettlementMetrics(o.registry) : undefined;
  metrics?.attach(o.store, settlement, o.chainNow);
  const job = new SettlementJob({
    store: o.store,
    settlement,
    chain,
    reader,
    config: o.config,
    threshold: parseTokenAmount(o.config.threshold, o.decimals),
    holder: o.holder,
    logger: o.logger,
    metrics,
    onChannels: o.onChannels,
    pollInterval: o.pollInterval,
    leaseTtlMs: o.leaseTtlMs,
    onStep: o.onStep,
  });
  return { job, chain, settlement, metrics };
}
