/**
 * End-to-end section of `npm run bench`: one agent (the client SDK, `createChannelClient` with its file store) makes
 * N paid calls (default 10,000, 16 in flight) to `GET /v1/echo` on the real server (SQLite `NORMAL`, a child
 * process); the first call opens the channel (the SDK's own choice: `openWithPermit` for MockUSDC). Then the real
 * settlement job (`npm run settle -- --all --json`, a child process against the server's database) settles it.
 *
 * Reports wall time and calls/s of the calls, settlement wall time (process start included), and the gas of every
 * transaction in between (read from the blocks: the chain belongs to the benchmark), per call. Checks that every
 * call was paid, that the payee's token balance grew by exactly the amount settled, and that this equals N × price.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicClient, createWalletClient, defineChain, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createChannelClient } from "@paychan/client";

import { hardhatAccount, mockUsdcAbi } from "@paychan/demo";
import { runTs, spawnTs, type ChildHandle } from "../../test/helpers/process";
import type { BenchChain } from "./chain";

export interface E2eResult {
  calls: number;
  concurrency: number;
  callsSeconds: number;
  callsPerSecond: number;
  httpRequests: number;
  settleSeconds: number;
  /** Gas of the client's transactions (channel funding: open / permit / approve / top-ups). */
  clientGas: bigint;
  clientTxs: number;
  /** Gas of the settlement transactions. */
  settleGas: bigint;
  settleTxs: number;
  totalGas: bigint;
  gasPerCall: number;
  amountSettled: bigint;
  channelsSettled: number;
  /** What the client did on chain, e.g. "openWithPermit". */
  funding: string;
}

const PRICE = 1_000n; // /v1/echo: 0.001 USDC

async function gasBetween(chain: BenchChain, from: bigint, to: bigint): Promise<{ gas: bigint; txs: number }> {
  let gas = 0n;
  let txs = 0;
  for (let b = from; b <= to; b++) {
    const block = await chain.publicClient.getBlock({ blockNumber: b });
    gas += block.gasUsed;
    txs += block.transactions.length;
  }
  return { gas, txs };
}

export async function benchE2e(
  chain: BenchChain,
  o: { calls: number; concurrency: number; log: (m: string) => void; children: Set<ChildHandle> },
): Promise<E2eResult> {
  const PAYER = 3;
  const payee = chain.account(0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-e2e-"));
  const databaseUrl = path.join(dir, "server.sqlite");
  const env = {
    RPC_URL: chain.rpcUrl,
    ESCROW_ADDRESS: chain.escrow,
    TOKEN_ADDRESS: chain.token,
    PAYEE_ADDRESS: payee,
    DATABASE_URL: databaseUrl,
    SQLITE_SYNCHRONOUS: "NORMAL",
    LOG_LEVEL: "warn",
    SETTLE_IN_SERVER: "false",
  };
  let server: ChildHandle | null = null;
  try {
    server = await spawnTs(path.join(__dirname, "http-server.ts"), { env: { ...env, PORT: "0" }, ready: /ready (http:\/\/\S+)/ });
    o.children.add(server);
    const url = server.match[1];

    const c = defineChain({ id: chain.chainId, name: "hardhat", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [chain.rpcUrl] } } });
    const account = privateKeyToAccount(hardhatAccount(PAYER).key);
    const publicClient = createPublicClient({ chain: c, transport: http(chain.rpcUrl), pollingInterval: 20 });
    const walletClient = createWalletClient({ account, chain: c, transport: http(chain.rpcUrl) });
    // 20% more than the calls need, and at least the server's minimum deposit (MIN_DEPOSIT default: 1 USDC).
    const deposit = BigInt(Math.max(1_000_000, Number((BigInt(o.calls) * PRICE * 12n) / 10n)));
    await chain.send(PAYER, chain.token, mockUsdcAbi as never, "mint", [account.address, deposit * 2n]);
    const balance = async (who: `0x${string}`) =>
      (await chain.publicClient.readContract({ address: chain.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [who] })) as bigint;

    let funding = "";
    const agent = createChannelClient({
      account,
      publicClient: publicClient as never,
      walletClient: walletClient as never,
      stateDir: path.join(dir, "agent"),
      limits: { maxPrice: "0.01", maxDeposit: (Number(deposit) / 1e6).toString(), escrows: [chain.escrow] },
      // No automatic top-up inside the run: the deposit covers every call (a top-up is measured by npm run gas).
      policy: { deposit: (Number(deposit) / 1e6).toString(), autoTopUp: false },
      // Channels only: a channel the limits refuse must fail the run, not fall back to paying `exact`.
      schemes: ["channel"],
      onEvent: (e) => {
        if (e.type === "channel_opened") funding = e.method;
        if (e.type === "topped_up") funding += " + top-up";
      },
    });

    const startBlock = (await chain.publicClient.getBlockNumber()) + 1n;
    const payeeBefore = await balance(payee);
    o.log(`end to end: ${o.calls} paid calls, ${o.concurrency} in flight...`);
    let next = 0;
    let failed = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (next < o.calls) {
          next++;
          const r = await agent.fetch(`${url}/v1/echo?msg=hi`);
          await r.arrayBuffer();
          if (r.status !== 200) failed++;
        }
      }),
    );
    const callsSeconds = (performance.now() - t0) / 1000;
    await agent.flush();
    if (failed) throw new Error(`${failed} of ${o.calls} calls were not served`);
    const afterCalls = await chain.publicClient.getBlockNumber();
    const client = await gasBetween(chain, startBlock, afterCalls);

    o.log("end to end: settling (npm run settle -- --all --json)...");
    const t1 = performance.now();
    const settle = await runTs(path.join(__dirname, "..", "settle.ts"), { args: ["--all", "--json"], env, timeoutMs: 180_000 });
    const settleSeconds = (performance.now() - t1) / 1000;
    if (settle.code !== 0) throw new Error(`npm run settle exited ${settle.code ?? settle.signal}: ${settle.stderr.slice(-600)}${settle.stdout.slice(-600)}`);
    const report = JSON.parse(settle.stdout) as { channelsSettled: number; amountSettled: string; gasUsed: string; failures: string[] };
    const afterSettle = await chain.publicClient.getBlockNumber();
    const settled = await gasBetween(chain, afterCalls + 1n, afterSettle);
    const paid = (await balance(payee)) - payeeBefore;
    const amountSettled = BigInt(report.amountSettled);
    if (paid !== amountSettled) throw new Error(`payee balance grew by ${paid}, settlement reported ${amountSettled}`);
    if (amountSettled !== BigInt(o.calls) * PRICE) throw new Error(`settled ${amountSettled}, the calls spent ${BigInt(o.calls) * PRICE}`);
    const totalGas = client.gas + settled.gas;
    return {
      calls: o.calls,
      concurrency: o.concurrency,
      callsSeconds,
      callsPerSecond: o.calls / callsSeconds,
      httpRequests: agent.stats.httpRequests,
      settleSeconds,
      clientGas: client.gas,
      clientTxs: client.txs,
      settleGas: settled.gas,
      settleTxs: settled.txs,
      totalGas,
      gasPerCall: Number(totalGas) / o.calls,
      amountSettled,
      channelsSettled: report.channelsSettled,
      funding: funding || "(none)",
    };
  } finally {
    if (server) {
      await server.stop();
      o.children.delete(server);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
