/**
 * Harness for settlement tests: the real escrow on Hardhat's in-process chain (over HTTP JSON-RPC), a real SQLite
 * store bound to it, an operator key approved by the payee (`setOperator`), and vouchers signed by the channels' real
 * session keys and accepted through the store's accounting transaction.
 */
import fs from "node:fs";
import path from "node:path";
import hre from "hardhat";
import { Registry } from "prom-client";
import { parseEther, toHex, type Address, type Hex } from "viem";
import { channelEscrowAbi, VoucherSigner } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { ChainReader } from "@paychan/server";
import { createLogger } from "@paychan/server";
import { createSettlement, resolveSettlementConfig, type CreateSettlementOptions, type Settlement, type SettlementConfig } from "@paychan/server";
import { SqliteStore } from "@paychan/server";
import type { StoredChannel } from "@paychan/server";
import { deployEscrow, openChannel, sessionKey, USDC, type Env, type OpenedChannel } from "./escrow";
import { rpcUrl, tempDatabaseUrl } from "./server";

export interface SettlementHarness {
  env: Env;
  rpcUrl: string;
  databaseUrl: string;
  store: SqliteStore;
  reader: ChainReader;
  payee: Address;
  operator: { key: Hex; address: Address };
  /** A settlement job (new objects each call; same store unless `store` is given). */
  settlement(config?: Partial<SettlementConfig>, extra?: Partial<CreateSettlementOptions>): Settlement & { registry: Registry };
  /** Opens a channel and has the store accept a voucher for `spent` (signed by the channel's session key). */
  paidChannel(o?: { spent?: bigint; deposit?: bigint; payerIndex?: number; closeDelay?: number; badSignature?: boolean }): Promise<OpenedChannel & { spent: bigint }>;
  tokenBalance(a: Address): Promise<bigint>;
  /** The channel as the escrow reports it (named by id and signer, as the escrow takes it). */
  channelOnChain(ch: { id: Hex; signer: Address }): Promise<{ deposit: bigint; settled: bigint; finalized: boolean; closeRequestedAt: bigint }>;
  stored(id: Hex): Promise<StoredChannel>;
  close(): Promise<void>;
}

/** Deploys fresh contracts, approves an operator, opens a store. */
export async function settlementHarness(o: { env?: Env } = {}): Promise<SettlementHarness> {
  const env = o.env ?? (await deployEscrow());
  const url = await rpcUrl();
  const databaseUrl = tempDatabaseUrl();
  const store = new SqliteStore({ url: databaseUrl, synchronous: "NORMAL" });
  const reader = new ChainReader({ rpcUrl: url, escrow: env.escrow.address });
  const genesis = await reader.block(0n);
  const payee = env.wallets[0].account.address;
  await store.bind({ chainId: env.chainId, escrow: env.escrow.address, token: env.usdc.address, payee, genesisHash: genesis.hash });
  const operator = sessionKey();
  await hre.network.provider.send("hardhat_setBalance", [operator.address, toHex(parseEther("100"))]);
  const h = await env.wallets[0].writeContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "setOperator", args: [operator.address, true] });
  await env.publicClient.waitForTransactionReceipt({ hash: h });
  const logLevel = (process.env.LOG_LEVEL as "info" | undefined) ?? "silent";

  return {
    env,
    rpcUrl: url,
    databaseUrl,
    store,
    reader,
    payee,
    operator,
    settlement(config = {}, extra = {}) {
      const registry = new Registry();
      const s = createSettlement({
        config: { ...resolveSettlementConfig({}, env.chainId), threshold: "0.000001", closeGrace: 0, ...config },
        privateKey: operator.key,
        rpcUrl: url,
        chainId: env.chainId,
        escrow: env.escrow.address,
        token: env.usdc.address,
        payee,
        decimals: 6,
        store,
        reader,
        logger: createLogger(logLevel),
        registry,
        pollInterval: 50,
        ...extra,
      });
      return { ...s, registry };
    },
    async paidChannel(p = {}) {
      const ch = await openChannel(env, { payerIndex: p.payerIndex ?? 1, deposit: p.deposit ?? USDC(10), closeDelay: p.closeDelay });
      const spent = p.spent ?? 1_000n;
      const snap = await reader.readChannel(ch.id, ch.signer);
      if (!snap) throw new Error("channel not found on chain");
      // A bad signature: a valid signature by a key that is not the channel's signer (the store trusts its caller).
      const signer = p.badSignature ? new VoucherSigner(sessionKey().key, env.domain) : ch.voucher;
      const signature = signer.sign(ch.id, spent).signature;
      const r = await store.acceptVoucher({ chain: snap, amount: spent, signature, charge: spent, window: 10_000_000n });
      if (!r.ok) throw new Error(`voucher refused: ${r.code}`);
      return { ...ch, spent };
    },
    async tokenBalance(a) {
      return env.publicClient.readContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] }) as Promise<bigint>;
    },
    async channelOnChain(ch) {
      const c = (await env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [ch.id, ch.signer] })) as {
        deposit: bigint;
        settled: bigint;
        finalized: boolean;
        closeRequestedAt: bigint;
      };
      return { deposit: c.deposit, settled: c.settled, finalized: c.finalized, closeRequestedAt: BigInt(c.closeRequestedAt) };
    },
    async stored(id) {
      const c = await store.getChannel(id);
      if (!c) throw new Error(`channel ${id} not stored`);
      return c;
    },
    async close() {
      await store.close();
      fs.rmSync(path.dirname(databaseUrl), { recursive: true, force: true });
    },
  };
}

/** Moves chain time forward by `seconds` and mines a block. */
export async function advanceTime(seconds: number): Promise<void> {
  await hre.network.provider.send("evm_increaseTime", [seconds]);
  await hre.network.provider.send("evm_mine", []);
}

/** Mines `n` empty blocks. */
export async function mine(n = 1): Promise<void> {
  await hre.network.provider.send("hardhat_mine", [toHex(n)]);
}
