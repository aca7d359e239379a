/**
 * How the settlement job is built and driven: its parts ({@link SettlementJobOptions}), the options of one cycle
 * ({@link RunOptions}), and the test hooks ({@link SettlementStep}, {@link SimulatedStop}).
 */
import type { Logger } from "pino";
import type { Hex } from "viem";
import type { ChainReader } from "../chain/reader";
import type { SettlementStore, SettlementTx } from "../store/settlement-types";
import type { ChainChannel, ChannelStore } from "../store/types";
import type { SettlementChain } from "./chain";
import type { SettlementConfig } from "./config";
import type { SettlementMetrics } from "./metrics";

/**
 * Points where a test can stop the job (fault injection) or observe it:
 * `batch` (claims chosen, nothing signed), `built` (recorded, not broadcast), `broadcast` (handed to the node, not
 * yet recorded as sent), `receipt` (receipt seen, not yet recorded).
 */
export type SettlementStep = "batch" | "built" | "broadcast" | "receipt";

/** What a {@link SettlementStep} hook is told: the transaction concerned, or the channels of a batch. */
export interface SettlementStepInfo {
  tx?: SettlementTx;
  channelIds?: readonly Hex[];
}

/** The parts of a settlement job (`createSettlement` wires them from a configuration). */
export interface SettlementJobOptions {
  store: ChannelStore;
  settlement: SettlementStore;
  chain: SettlementChain;
  /** Chain reads of channels (snapshots applied to the store). */
  reader: ChainReader;
  config: SettlementConfig;
  /** `config.threshold` in atomic units. */
  threshold: bigint;
  /** Lease holder name (default: a random id per job). */
  holder?: string;
  logger?: Logger;
  metrics?: SettlementMetrics;
  /** Called at each {@link SettlementStep}; may throw (or kill the process) to simulate a crash. */
  onStep?: (step: SettlementStep, info: SettlementStepInfo) => void | Promise<void>;
  /** Called with chain snapshots the job read (the server updates its channel view with them). */
  onChannels?: (snapshots: readonly ChainChannel[]) => void;
  /** Receipt polling period while waiting, ms (default 1,000). */
  pollInterval?: number;
  /** Settler lease lifetime, ms (default: max(60 s, 2 × the wait timeout)); renewed while a cycle waits. */
  leaseTtlMs?: number;
}

/** Options of one cycle (`SettlementJob.runOnce`). */
export interface RunOptions {
  /** Settle everything owed, whatever the thresholds (`npm run settle --all`). */
  all?: boolean;
  /** Wait until the transactions are final (confirmed, failed or dropped), at most `waitTimeoutMs`. */
  wait?: boolean;
  waitTimeoutMs?: number;
  /** Re-read every candidate from the chain first (the one-shot command, which runs without the event follower). */
  refreshCandidates?: boolean;
  /** Show what would be done; send nothing. */
  dryRun?: boolean;
}

/** Thrown by test hooks to stop the job at a step as a crash would (the job does not catch it). */
export class SimulatedStop extends Error {
  override name = "SimulatedStop";
}
