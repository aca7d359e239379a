/**
 * Chain-level helpers for contract tests on Hardhat's in-process network: snapshots, time, account keys.
 */
import hre from "hardhat";
import type { Hex } from "viem";
import { mnemonicToAccount } from "viem/accounts";

/** Hardhat's default test mnemonic (the `hardhat` network in hardhat.config.ts uses the default accounts). */
const HARDHAT_MNEMONIC = "test test test test test test test test test test test junk";

const keys = new Map<number, Hex>();

/** The private key of Hardhat test account `index` (same order as `hre.viem.getWalletClients()`). */
export function accountKey(index: number): Hex {
  let hex = keys.get(index);
  if (!hex) {
    const key = mnemonicToAccount(HARDHAT_MNEMONIC, { addressIndex: index }).getHdKey().privateKey;
    if (!key) throw new Error(`no key for account ${index}`);
    hex = `0x${Buffer.from(key).toString("hex")}`;
    keys.set(index, hex);
  }
  return hex;
}

/** Takes an EVM snapshot; returns its id. */
export async function snapshot(): Promise<string> {
  return (await hre.network.provider.send("evm_snapshot", [])) as string;
}

/** Reverts to snapshot `id` (which is consumed). */
export async function revertTo(id: string): Promise<void> {
  const ok = await hre.network.provider.send("evm_revert", [id]);
  if (!ok) throw new Error(`evm_revert(${id}) failed`);
}

/**
 * Mocha hooks: every test of the enclosing `describe` starts from the chain state at the end of its `before`
 * hooks and leaves nothing behind. Call inside a `describe`, after the `before` that deploys.
 */
export function isolateEachTest(): void {
  let id: string | undefined;
  beforeEach(async () => {
    id = await snapshot();
  });
  afterEach(async () => {
    if (id) await revertTo(id);
    id = undefined;
  });
}

/** Timestamp of the latest block. */
export async function latestTimestamp(): Promise<bigint> {
  const b = (await hre.network.provider.send("eth_getBlockByNumber", ["latest", false])) as { timestamp: string };
  return BigInt(b.timestamp);
}

/** Makes the next block's timestamp exactly `ts` (must be above the latest block's). */
export async function setNextTimestamp(ts: bigint | number): Promise<void> {
  await hre.network.provider.send("evm_setNextBlockTimestamp", [Number(ts)]);
}

/** Mines an empty block at exactly `ts`. */
export async function mineAt(ts: bigint | number): Promise<void> {
  await setNextTimestamp(ts);
  await hre.network.provider.send("evm_mine", []);
}

/** Whether the suite runs under solidity-coverage (instrumented bytecode: gas figures are meaningless). */
export function underCoverage(): boolean {
  return Boolean((hre as unknown as { __SOLIDITY_COVERAGE_RUNNING?: boolean }).__SOLIDITY_COVERAGE_RUNNING);
}
