/**
 * Settlement configuration from environment variables. Parsed in two steps: {@link parseSettlementEnv} validates what
 * is set (every problem reported at once, like the server's `loadConfig`), {@link resolveSettlementConfig} fills the
 * defaults that depend on the chain (local networks settle every 60 s with one confirmation) once its id is known.
 *
 * The settler's private key is kept out of every object that may be logged: it lives in a closure reached only
 * through `privateKey()`.
 */
import type { Hex } from "viem";
import { isBytes32Hex } from "@paychan/protocol";

/** Chain ids of local development networks (Hardhat, Ganache/Geth dev). */
export const LOCAL_CHAIN_IDS: readonly number[] = [31337, 1337];

/** Largest gas per transaction on the local chain (and Ethereum since the Osaka fork, EIP-7825). */
export const TX_GAS_CAP = 16_777_216;

/** Settlement settings after validation, before chain-dependent defaults. Undefined = use the default. */
export interface SettlementEnv {
  inServer?: boolean;
  interval?: number;
  threshold?: string;
  maxAge?: number;
  exhaustedPercent?: number;
  batchSize?: number;
  gasBudget?: number;
  confirmations?: number;
  blockTime?: number;
  resubmitAfter?: number;
  closeGrace?: number;
  reservationTtl?: number;
  rpcOutageMargin?: number;
  waitTimeout?: number;
  maxFeePerGas?: bigint;
  /** Whether SETTLER_PRIVATE_KEY was given (the key itself is only reachable through `privateKey()`). */
  hasKey: boolean;
  privateKey(): Hex | undefined;
}

/** Complete settlement settings (seconds unless named otherwise). */
export interface SettlementConfig {
  /** Run the job inside the server (SETTLE_IN_SERVER). */
  inServer: boolean;
  /** Seconds between cycles (SETTLE_INTERVAL). */
  interval: number;
  /** Settle a channel once `spent - settled` reaches this, token units (SETTLE_THRESHOLD). */
  threshold: string;
  /** Settle a channel owing anything when it was last settled (or first stored) this long ago (SETTLE_MAX_AGE). */
  maxAge: number;
  /** Settle a channel once `spent` reaches this percentage of its deposit (SETTLE_EXHAUSTED_PERCENT). */
  exhaustedPercent: number;
  /** Most channels per `settle` transaction (SETTLE_BATCH_SIZE). */
  batchSize: number;
  /** Most gas per settlement transaction (SETTLE_GAS_BUDGET, ≤ 16,777,216). */
  gasBudget: number;
  /** Blocks after which a settlement transaction is final for the job (SETTLE_CONFIRMATIONS, ≥ 1). */
  confirmations: number;
  /** Expected seconds between blocks, for the close-delay rule (SETTLE_BLOCK_TIME). */
  blockTime: number;
  /** A transaction still pending after this is re-broadcast, or replaced with 12.5 % higher fees (SETTLE_RESUBMIT_AFTER). */
  resubmitAfter: number;
  /** Time between marking a channel closing (no new charges) and closing it on chain (SETTLE_CLOSE_GRACE). */
  closeGrace: number;
  /**
   * A metered reservation whose handler has not reported after this long is dropped uncharged by the next cycle
   * (SETTLE_RESERVATION_TTL): its process crashed, or its handler never finished. Longer than any metered handler runs.
   */
  reservationTtl: number;
  /** Tolerated RPC/settler outage in the close-delay rule (SETTLE_RPC_OUTAGE_MARGIN). */
  rpcOutageMargin: number;
  /** How long the settle command (`channel-settle`, `npm run settle`) waits for confirmations before giving up (SETTLE_WAIT_TIMEOUT). */
  waitTimeout: number;
  /** Fee cap per gas, wei; nothing is sent above it (SETTLE_MAX_FEE_GWEI). */
  maxFeePerGas?: bigint;
}

/** Documentation of every settlement variable (README, `--help`). */
export const SETTLEMENT_VARIABLES: ReadonlyArray<{ name: string; default: string; description: string }> = [
  { name: "SETTLER_PRIVATE_KEY", default: "(required to settle; npm start: the payee's Hardhat key)", description: "key that sends settlements: the payee's, or an operator the payee approved with setOperator; never logged" },
  { name: "SETTLE_IN_SERVER", default: "true", description: "run the settlement job inside the server (false: use npm run settle from cron)" },
  { name: "SETTLE_INTERVAL", default: "60 (local) / 300", description: "seconds between settlement cycles (also the cron period in the close-delay rule)" },
  { name: "SETTLE_THRESHOLD", default: "1", description: "settle a channel once spent - settled reaches this, token units" },
  { name: "SETTLE_MAX_AGE", default: "3600", description: "settle a channel owing anything when last settled this many seconds ago" },
  { name: "SETTLE_EXHAUSTED_PERCENT", default: "90", description: "settle a channel once spent reaches this % of its deposit" },
  { name: "SETTLE_BATCH_SIZE", default: "500", description: "most channels per settle transaction" },
  { name: "SETTLE_GAS_BUDGET", default: "12000000", description: "most gas per settlement transaction (≤ 16777216)" },
  { name: "SETTLE_CONFIRMATIONS", default: "1 (local) / 5", description: "blocks after which a settlement is final for the job" },
  { name: "SETTLE_BLOCK_TIME", default: "1 (local) / 12", description: "expected seconds per block (close-delay rule)" },
  { name: "SETTLE_RESUBMIT_AFTER", default: "120", description: "seconds before a pending settlement is re-broadcast or fee-bumped" },
  { name: "SETTLE_CLOSE_GRACE", default: "5", description: "seconds between refusing new charges on a closing channel and closing it" },
  { name: "SETTLE_RESERVATION_TTL", default: "3600", description: "seconds after which a metered reservation whose handler never reported is dropped, uncharged" },
  { name: "SETTLE_RPC_OUTAGE_MARGIN", default: "21600", description: "seconds of RPC/settler outage the close-delay rule tolerates" },
  { name: "SETTLE_WAIT_TIMEOUT", default: "300", description: "seconds the settle command (channel-settle, npm run settle) waits for confirmations" },
  { name: "SETTLE_MAX_FEE_GWEI", default: "(none)", description: "never pay more than this fee per gas, gwei" },
];

type Env = Record<string, string | undefined>;

/** Validates the settlement variables of `env`; appends one line per problem to `problems`. */
export function parseSettlementEnv(env: Env, problems: string[]): SettlementEnv {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const int = (name: string, min: number, max: number): number | undefined => {
    const raw = get(name);
    if (raw === undefined) return undefined;
    if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be an integer from ${min} to ${max}`);
      return undefined;
    }
    return Number(raw);
  };
  const seconds = (name: string, min: number, max: number): number | undefined => {
    const raw = get(name);
    if (raw === undefined) return undefined;
    if (!/^[0-9]+(\.[0-9]+)?$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be a number of seconds from ${min} to ${max}`);
      return undefined;
    }
    return Number(raw);
  };
  let inServer: boolean | undefined;
  const rawIn = get("SETTLE_IN_SERVER");
  if (rawIn !== undefined) {
    if (/^(1|true|yes|on)$/i.test(rawIn)) inServer = true;
    else if (/^(0|false|no|off)$/i.test(rawIn)) inServer = false;
    else problems.push(`SETTLE_IN_SERVER=${JSON.stringify(rawIn)} must be true or false`);
  }
  const threshold = get("SETTLE_THRESHOLD");
  if (threshold !== undefined && !/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(threshold)) {
    problems.push(`SETTLE_THRESHOLD=${JSON.stringify(threshold)} must be a decimal amount in token units, e.g. 1 or 0.5`);
  }
  let maxFeePerGas: bigint | undefined;
  const fee = get("SETTLE_MAX_FEE_GWEI");
  if (fee !== undefined) {
    const m = /^([0-9]+)(?:\.([0-9]{1,9}))?$/.exec(fee);
    if (!m || (m[1] === "0" && !/[1-9]/.test(m[2] ?? ""))) problems.push(`SETTLE_MAX_FEE_GWEI=${JSON.stringify(fee)} must be a positive number of gwei`);
    else maxFeePerGas = BigInt(m[1]) * 1_000_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
  }
  // The key: checked for shape only; never echoed.
  let key: Hex | undefined;
  const rawKey = get("SETTLER_PRIVATE_KEY");
  if (rawKey !== undefined) {
    const k = rawKey.startsWith("0x") ? rawKey : `0x${rawKey}`;
    if (!isBytes32Hex(k) || /^0x0{64}$/.test(k)) problems.push("SETTLER_PRIVATE_KEY must be 32 bytes of hex (the value is not shown)");
    else key = k.toLowerCase() as Hex;
  }
  const out: SettlementEnv = {
    inServer,
    interval: seconds("SETTLE_INTERVAL", 1, 86_400),
    threshold: threshold !== undefined && /^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(threshold) ? threshold : undefined,
    maxAge: seconds("SETTLE_MAX_AGE", 1, 365 * 86_400),
    exhaustedPercent: int("SETTLE_EXHAUSTED_PERCENT", 1, 100),
    batchSize: int("SETTLE_BATCH_SIZE", 1, 1_300),
    gasBudget: int("SETTLE_GAS_BUDGET", 100_000, TX_GAS_CAP),
    confirmations: int("SETTLE_CONFIRMATIONS", 1, 1_000),
    blockTime: seconds("SETTLE_BLOCK_TIME", 0, 3_600),
    resubmitAfter: seconds("SETTLE_RESUBMIT_AFTER", 0, 86_400),
    closeGrace: seconds("SETTLE_CLOSE_GRACE", 0, 3_600),
    reservationTtl: seconds("SETTLE_RESERVATION_TTL", 1, 7 * 86_400),
    rpcOutageMargin: seconds("SETTLE_RPC_OUTAGE_MARGIN", 0, 30 * 86_400),
    waitTimeout: seconds("SETTLE_WAIT_TIMEOUT", 1, 86_400),
    maxFeePerGas,
    hasKey: key !== undefined,
    privateKey: () => key,
  };
  return out;
}

/** Fills chain-dependent defaults. */
export function resolveSettlementConfig(e: Omit<SettlementEnv, "hasKey" | "privateKey"> | Partial<SettlementConfig>, chainId: number): SettlementConfig {
  const local = LOCAL_CHAIN_IDS.includes(chainId);
  return {
    inServer: e.inServer ?? true,
    interval: e.interval ?? (local ? 60 : 300),
    threshold: e.threshold ?? "1",
    maxAge: e.maxAge ?? 3_600,
    exhaustedPercent: e.exhaustedPercent ?? 90,
    batchSize: e.batchSize ?? 500,
    gasBudget: e.gasBudget ?? 12_000_000,
    confirmations: e.confirmations ?? (local ? 1 : 5),
    blockTime: e.blockTime ?? (local ? 1 : 12),
    resubmitAfter: e.resubmitAfter ?? 120,
    closeGrace: e.closeGrace ?? 5,
    reservationTtl: e.reservationTtl ?? 3_600,
    rpcOutageMargin: e.rpcOutageMargin ?? 21_600,
    waitTimeout: e.waitTimeout ?? 300,
    maxFeePerGas: e.maxFeePerGas,
  };
}
