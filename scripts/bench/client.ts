/**
 * Agent client benchmark: paid calls per second from one client process against the real provider server on a
 * local chain, sequential and with 16 in flight, compared with unpaid calls to the same handler in the same run;
 * plus voucher signatures per second (VoucherSigner vs viem's signTypedData) and the client's CPU per call.
 *
 *   npx ts-node scripts/bench/client.ts [--calls N] [--concurrency C] [--synchronous FULL,NORMAL]
 *
 * Runs a Hardhat chain and the real server (scripts/bench/latency-server.ts: demo routes plus the unpaid twin
 * `/free/echo` of the same handler) in child processes, so this process's CPU is the client's alone. For each
 * server SQLite mode it pays `GET /v1/echo` (0.001 USDC) with `createChannelClient` and its default file store:
 * the first call opens a channel; warm-up calls are not timed. Unpaid calls use the same global fetch.
 */
import { measureVoucherThroughput } from "./verify";
import { LATENCY_SERVER, startReadyChild } from "./child";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createPublicClient, createWalletClient, defineChain, http, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { createChannelClient } from "@paychan/client";
import { deployContracts, mockUsdcAbi } from "@paychan/demo";
import { hardhatAccount } from "@paychan/demo";

const { values: args } = parseArgs({
  options: {
    calls: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "16" },
    synchronous: { type: "string", default: "FULL,NORMAL" },
  },
});
const CALLS = Number(args.calls);
const CONCURRENCY = Number(args.concurrency);

/** Starts `node -r ts-node/register <args>` and resolves with the URL of its `ready <url>` line. */
/** Runs `n` calls of `call` with `c` in flight; returns calls/s, latency percentiles and client CPU µs per call. */
async function run(n: number, c: number, call: () => Promise<void>) {
  const lat: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) {
        next++;
        const s = performance.now();
        await call();
        lat.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)];
  return {
    "calls/s": Math.round(n / seconds),
    "p50 ms": +pct(50).toFixed(2),
    "p99 ms": +pct(99).toFixed(2),
    "client CPU µs/call": Math.round((cpu.user + cpu.system) / n),
  };
}

const CHAIN_SCRIPT = `require("./server/local/chain").startLocalChain({ port: 0 }).then((c) => console.log("ready " + c.rpcUrl))`;

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
}

async function main() {
  console.error("signing: measuring...");
  const rates = await measureVoucherThroughput(2);
  const rate = (impl: string) => rates.find((r) => r.op === "sign" && r.impl.startsWith(impl))!.perSecond;
  const sign = { native: rate("VoucherSigner"), viem: rate("viem") };

  const { url: rpcUrl, child: chainProcess } = await startReadyChild(["-e", CHAIN_SCRIPT]);
  const chain = { rpcUrl };
  const deployer = hardhatAccount(0);
  const payerAcc = hardhatAccount(1);
  const d = await deployContracts({ rpcUrl: chain.rpcUrl, privateKey: deployer.key, deploymentsDir: null });
  const c = defineChain({ id: d.chainId, name: "local", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [chain.rpcUrl] } } });
  const publicClient = createPublicClient({ chain: c, transport: http(chain.rpcUrl), pollingInterval: 20 });
  const walletClient = createWalletClient({ account: privateKeyToAccount(payerAcc.key), chain: c, transport: http(chain.rpcUrl) });
  const mint = await walletClient.writeContract({ address: d.token, abi: mockUsdcAbi, functionName: "mint", args: [payerAcc.address, 1_000_000_000n] });
  await publicClient.waitForTransactionReceipt({ hash: mint as Hex });

  const modes = args.synchronous!.split(",").map((m) => m.trim().toUpperCase());
  const all: Record<string, Record<string, number>> = {};
  let requestsPerCall = 0;
  try {
    for (const mode of modes) {
      const dbDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-client-server-"));
      const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-client-state-"));
      const { url, child } = await startReadyChild([LATENCY_SERVER], {
        RPC_URL: chain.rpcUrl,
        ESCROW_ADDRESS: d.escrow,
        TOKEN_ADDRESS: d.token,
        PAYEE_ADDRESS: deployer.address,
        DATABASE_URL: path.join(dbDir, "bench.sqlite"),
        SQLITE_SYNCHRONOUS: mode,
        PORT: "0",
        LOG_LEVEL: "warn",
      });
      try {
        const agent = createChannelClient({
          account: walletClient.account,
          publicClient,
          walletClient,
          stateDir,
          limits: { maxPrice: "0.01", maxDeposit: "100", escrows: [d.escrow] },
          policy: { deposit: "50" },
        });
        const paid = async () => {
          const r = await agent.fetch(`${url}/v1/echo?msg=hi`);
          await r.arrayBuffer();
          if (r.status !== 200) throw new Error(`paid call: HTTP ${r.status}`);
        };
        const free = async () => {
          const r = await fetch(`${url}/free/echo?msg=hi`);
          await r.arrayBuffer();
          if (r.status !== 200) throw new Error(`unpaid call: HTTP ${r.status}`);
        };
        await run(300, 4, paid); // opens the channel, learns the route, warms the connection pool and JIT
        await run(300, 4, free);
        const requestsBefore = agent.stats.httpRequests;
        all[`${mode}: paid, sequential`] = await run(CALLS, 1, paid);
        all[`${mode}: unpaid, sequential`] = await run(CALLS, 1, free);
        all[`${mode}: paid, ${CONCURRENCY} in flight`] = await run(CALLS * 2, CONCURRENCY, paid);
        all[`${mode}: unpaid, ${CONCURRENCY} in flight`] = await run(CALLS * 2, CONCURRENCY, free);
        requestsPerCall = (agent.stats.httpRequests - requestsBefore) / (CALLS * 3);
        await agent.flush();
      } finally {
        await stop(child);
        fs.rmSync(dbDir, { recursive: true, force: true });
        fs.rmSync(stateDir, { recursive: true, force: true });
      }
    }
    console.log(`${os.cpus().length} cores shared by client, server and chain; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
    console.log(`voucher signatures per second (one core): VoucherSigner ${Math.round(sign.native)}, viem signTypedData ${Math.round(sign.viem)} (${(sign.native / sign.viem).toFixed(1)}x)`);
    console.table(all);
    console.log(`HTTP requests per paid call (steady state): ${requestsPerCall.toFixed(3)}`);
    console.log(JSON.stringify({ signing: sign, results: all }));
  } finally {
    await stop(chainProcess);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
