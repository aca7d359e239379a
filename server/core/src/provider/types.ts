/** The provider's public types: options, the running provider, its health report, its start error. */
import type { Address, Hex, Transport } from "viem";
import type { ChainReader } from "../chain/reader";
import type { ChannelView } from "../chain/view";
import type { EventFollower } from "../chain/follower";
import type { ServerConfig } from "../config";
import type { Logger } from "../log";
import type { ServerMetrics } from "../metrics";
import type { PaymentCore } from "../payments/core";
import type { ChannelStore } from "../store/types";
import type { SettlementConfig } from "../settlement/config";
import type { SettlementJobOptions } from "../settlement/job";
import type { SettlerKeyFallback } from "../settlement/key";
import type { SettlementScheduler } from "../settlement/scheduler";
import type { ExactScheme, ProviderExactOptions } from "../exact/setup";
import type { GaslessOpens } from "../open/opens";
import type { ProviderGaslessOpenOptions } from "../open/setup";
import type { StreamRegistry } from "../stream/registry";

/** Environment variables (usually `process.env`). */
export type Env = Record<string, string | undefined>;

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
  /**
   * The x402 `exact` scheme next to `channel` on fixed-price routes (docs/protocol.md § 5.8): EXACT (auto: on when a
   * sender key is known), EXACT_PRIVATE_KEY; `false` here turns it off, `true` requires it, options override.
   * Start is refused when the sender key is the settler key.
   */
  exact?: boolean | ProviderExactOptions;
  /**
   * Gasless opens (docs/protocol.md § 5.9): GASLESS_OPEN (auto: on when the `exact` scheme has its own sender key and
   * the token has EIP-3009), OPEN_FEE, OPENS_PER_PAYER; `false` here turns them off, `true` requires them (start is
   * refused without the sender key or EIP-3009), options override the fee and the per-payer bound.
   */
  gaslessOpen?: boolean | ProviderGaslessOpenOptions;
}

/** Overrides of the in-process settlement job (embedding and tests). */
export interface ProviderSettlementOptions {
  /** Overrides of the resolved settlement configuration. */
  config?: Partial<SettlementConfig>;
  /** The settler key (the payee's, or an operator it approved with `setOperator`) instead of SETTLER_PRIVATE_KEY. */
  privateKey?: Hex;
  /** Where `privateKey` came from, as logs show it (default "option"). */
  keySource?: string;
  /**
   * A key for when neither `privateKey` nor SETTLER_PRIVATE_KEY is given, chosen once the chain is known (the demo app
   * uses the payee's Hardhat key on a local chain); null: none.
   */
  fallbackKey?: SettlerKeyFallback;
  /**
   * Start the scheduler inside `createProvider` (default true). `false`: `provider.settlement.start()` later, e.g.
   * once the HTTP listener is up.
   */
  start?: boolean;
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
  /** The `exact` scheme (null when it is off): its payments (`reconcile()`), sender address, reconciler. */
  readonly exact: ExactScheme | null;
  /** Gasless opens (null when off): their store (`reconcile()`; the exact reconciler runs them too). */
  readonly opens: GaslessOpens | null;
  /** Paid streams of this process (docs/protocol.md § 5.10): routes, top-ups, the sweeper of dead processes' streams. */
  readonly streams: StreamRegistry;
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
