/**
 * Gasless section of `npm run bench` (issue 16): the provider opens the channel from the agent's signed EIP-3009
 * authorization (docs/protocol.md § 5.9). Against the real provider server (a child process, SQLite `NORMAL`,
 * `GASLESS_OPEN=on`, `GET /bench/paid` at 0.001 USDC) on the local chain:
 *
 * - K fresh agents, each a new key holding only MockUSDC (0 ETH), pay through our SDK (`gaslessOpen: "auto"` finds no
 *   gas): the first call carries the open (402, then the paid request whose open the server submits and waits for),
 *   then L later calls, each one HTTP request. Measured: the gas of every provider-submitted `openWithAuthorization`
 *   (read from the receipt of the one transaction mined during the first call, which must come from the server's
 *   sender and open that agent's channel), the first call's latency, the later calls' latency.
 * - One agent with ETH (Hardhat #14) does the same with its own open (`gaslessOpen: "never"`), for comparison.
 *
 * Half the agents hold exactly the deposit, half twice it: an open that empties the payer's token balance gets the
 * token's storage refund (4,800 gas), one that leaves a balance does not; both are reported.
 *
 * Checks: each gasless first call mines exactly one transaction, no later call mines any, every agent's ETH stays 0.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicClient, createWalletClient, decodeEventLog, decodeFunctionData, defineChain, http, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createChannelClient, type ChannelClient } from "@paychan/client";
import { channelEscrowAbi } from "@paychan/protocol";
import { hardhatAccount, mockUsdcAbi } from "@paychan/demo";
import { spawnTs, type ChildHandle } from "../../test/helpers/process";
import type { BenchChain } from "./chain";

/** Target of the issue for the provider-submitted open. */
export const GASLESS_OPEN_GAS_TARGET = 130_000n;

export interface LatencySummary {
  calls: number;
  p50: number;
  p95: number;
  mean: number;
}

export interface GaslessResults {
  agents: number;
  laterCallsPerAgent: number;
  /** Gas of each provider-submitted open, in order (the first may also register the payee/token pair). */
  openGas: bigint[];
  /** Opens by agents left with a balance after the deposit (the first open excluded when it registered the pair). */
  openGasKept: bigint[];
  /** Opens by agents whose deposit was their whole balance (the token clears the slot and refunds 4,800 gas). */
  openGasEmptied: bigint[];
  /** Transactions other than the opens mined during the first calls (none expected). */
  others: string[];
  /** Whether the first open registered the payee/token pair (first channel to it on this chain). */
  firstRegisteredPair: boolean;
  gasless: { first: LatencySummary; later: LatencySummary };
  selfFunded: { first: LatencySummary; later: LatencySummary; openTransactions: number; openGas: bigint };
}

export interface GaslessOptions {
  agents: number;
  calls: number;
  log: (m: string) => void;
  children: Set<ChildHandle>;
}

function summary(lat: number[]): LatencySummary {
  const s = [...lat].sort((a, b) => a - b);
  const pct = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { calls: s.length, p50: pct(50), p95: pct(95), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

/** Measures gasless opens on `chain` (Hardhat #0 payee; #19 the server's sender; #14 the self-funded agent). */
export async function benchGasless(chain: BenchChain, o: GaslessOptions): Promise<GaslessResults> {
  const payee = chain.account(0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-gasless-"));
  const env = {
    RPC_URL: chain.rpcUrl,
    ESCROW_ADDRESS: chain.escrow,
    TOKEN_ADDRESS: chain.token,
    PAYEE_ADDRESS: payee,
    DATABASE_URL: path.join(dir, "server.sqlite"),
    SQLITE_SYNCHRONOUS: "NORMAL",
    LOG_LEVEL: "warn",
    SETTLE_IN_SERVER: "false",
    EXACT: "on",
    GASLESS_OPEN: "on",
    OPENS_PER_PAYER: "3",
  };
  const c = defineChain({ id: chain.chainId, name: "hardhat", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [chain.rpcUrl] } } });
  const publicClient = createPublicClient({ chain: c, transport: http(chain.rpcUrl), pollingInterval: 20 });
  const agents: ChannelClient[] = [];
  const agentOf = (key: Hex, mode: "auto" | "never", name: string) => {
    const account = privateKeyToAccount(key);
    const a = createChannelClient({
      account,
      publicClient: publicClient as never,
      walletClient: createWalletClient({ account, chain: c, transport: http(chain.rpcUrl) }) as never,
      stateDir: path.join(dir, name),
      limits: { maxPrice: "0.01", maxDeposit: "1", escrows: [chain.escrow], assets: [chain.token] },
      policy: { deposit: "1", autoTopUp: false, gaslessOpen: mode },
    });
    agents.push(a);
    return a;
  };
  /** Paid calls of `url` by `agent`: the first timed alone, then `n` more; returns latencies and what was mined meanwhile. */
  const run = async (agent: ChannelClient, url: string, n: number) => {
    const call = async () => {
      const t = performance.now();
      const res = await agent.fetch(url);
      const body = await res.text();
      if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${body.slice(0, 300)}`);
      return performance.now() - t;
    };
    const b0 = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
    const first = await call();
    const b1 = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
    const later: number[] = [];
    for (let i = 0; i < n; i++) later.push(await call());
    const b2 = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
    const firstTxs: Hex[] = [];
    for (let b = b0 + 1n; b <= b1; b++) firstTxs.push(...(await chain.publicClient.getBlock({ blockNumber: b })).transactions);
    return { first, later, firstTxs, laterBlocks: Number(b2 - b1) };
  };

  let server: ChildHandle | null = null;
  try {
    server = await spawnTs(path.join(__dirname, "http-server.ts"), { env: { ...env, PORT: "0" }, ready: /ready (http:\/\/\S+)/ });
    o.children.add(server);
    const url = `${server.match[1]}/bench/paid`;
    const sender = privateKeyToAccount(hardhatAccount(19).key).address;

    const openGas: bigint[] = [];
    const openGasKept: bigint[] = [];
    const others: string[] = [];
    const openGasEmptied: bigint[] = [];
    // The escrow registers a payee/token pair with its first channel (one-time storage, no event of its own): the
    // first open here pays for it when no channel to this payee and token was opened before.
    const earlier = await chain.publicClient.getContractEvents({ address: chain.escrow, abi: channelEscrowAbi, eventName: "ChannelOpened", fromBlock: 0n });
    const firstRegisteredPair = !earlier.some((e) => {
      const a = e.args as { payee?: Address; token?: Address };
      return a.payee?.toLowerCase() === payee.toLowerCase() && a.token?.toLowerCase() === chain.token.toLowerCase();
    });
    const firstLat: number[] = [];
    const laterLat: number[] = [];
    o.log(`gasless: ${o.agents} fresh USDC-only agents, 1 + ${o.calls} calls each...`);
    for (let i = 0; i < o.agents; i++) {
      const key = generatePrivateKey();
      const who = privateKeyToAccount(key).address;
      // Odd agents hold exactly the deposit (the open empties their balance: the token refunds 4,800 gas for the
      // cleared slot), even ones twice it (a balance remains): the two real cases of an open's gas.
      const emptied = i % 2 === 1;
      await chain.send(0, chain.token, mockUsdcAbi as never, "mint", [who, emptied ? 1_000_000n : 2_000_000n]);
      if ((await chain.publicClient.getBalance({ address: who })) !== 0n) throw new Error("a fresh agent holds ETH");
      const agent = agentOf(key, "auto", `gasless-${i}`);
      const r = await run(agent, url, o.calls);
      if (r.laterBlocks !== 0) throw new Error(`gasless agent ${i}: ${r.laterBlocks} blocks mined during its later calls`);
      const txs = await Promise.all(r.firstTxs.map((hash) => chain.publicClient.getTransaction({ hash })));
      const opens = txs.filter((t) => t.from.toLowerCase() === sender.toLowerCase() && t.to?.toLowerCase() === chain.escrow.toLowerCase());
      if (opens.length !== 1) throw new Error(`gasless agent ${i}: ${opens.length} transactions from the server's sender to the escrow during its first call (expected its open)`);
      for (const t of txs) {
        if (t === opens[0]) continue;
        let fn = t.input.slice(0, 10);
        try {
          fn = decodeFunctionData({ abi: channelEscrowAbi, data: t.input }).functionName;
        } catch {
          // not an escrow call
        }
        others.push(`agent ${i}'s first call: also mined ${t.hash}, ${fn} from ${t.from} to ${t.to}`);
      }
      const receipt = await chain.publicClient.getTransactionReceipt({ hash: opens[0].hash });
      const names = receipt.logs
        .filter((l) => l.address.toLowerCase() === chain.escrow.toLowerCase())
        .map((l) => {
          try {
            return decodeEventLog({ abi: channelEscrowAbi, data: l.data, topics: l.topics });
          } catch {
            return null;
          }
        })
        .filter((e) => e !== null);
      const opened = names.find((e) => e!.eventName === "ChannelOpened") as { args: { payer: Address } } | undefined;
      if (receipt.status !== "success" || !opened || opened.args.payer.toLowerCase() !== who.toLowerCase()) throw new Error(`gasless agent ${i}: the transaction mined did not open its channel`);
      openGas.push(receipt.gasUsed);
      (emptied ? openGasEmptied : openGasKept).push(receipt.gasUsed);
      firstLat.push(r.first);
      laterLat.push(...r.later);
      await agent.flush();
      if ((await chain.publicClient.getBalance({ address: who })) !== 0n) throw new Error(`gasless agent ${i}: its ETH balance moved`);
    }

    o.log("gasless: one self-funded agent (its own open) for comparison...");
    const own = agentOf(hardhatAccount(14).key, "never", "self-funded");
    await chain.send(0, chain.token, mockUsdcAbi as never, "mint", [chain.account(14), 2_000_000n]);
    const r = await run(own, url, o.calls);
    let ownGas = 0n;
    for (const h of r.firstTxs) ownGas += (await chain.publicClient.getTransactionReceipt({ hash: h })).gasUsed;
    await own.flush();

    return {
      agents: o.agents,
      laterCallsPerAgent: o.calls,
      openGas,
      openGasKept: firstRegisteredPair ? openGasKept.slice(1) : openGasKept,
      openGasEmptied,
      firstRegisteredPair,
      others,
      gasless: { first: summary(firstLat), later: summary(laterLat) },
      selfFunded: { first: summary([r.first]), later: summary(r.later), openTransactions: r.firstTxs.length, openGas: ownGas },
    };
  } finally {
    for (const a of agents) await a.close().catch(() => {});
    if (server) {
      await server.stop();
      o.children.delete(server);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
