/**
 * Schemes section of `npm run bench` (issue 12): one paid call by payment path on the local chain, against the real
 * provider server (a child process, SQLite `NORMAL`, `GET /bench/paid` at 0.001 USDC, whose 402 offers `channel` then
 * `exact`):
 *
 *   (1) `channel`, our SDK (`createChannelClient().fetch`): one HTTP request per call once the channel is open;
 *   (2) `channel`, the stock `@x402/fetch` with our plug-in (`@paychan/client/x402` ChannelSchemeClient): the stock
 *       wrapper sends the unpaid request first, so two requests per call;
 *   (3) `exact`, the stock x402 client (`@x402/fetch` + the `@x402/evm` exact client): two requests per call, and the
 *       server mines one `transferWithAuthorization` before it serves;
 *   (4) `exact`, our SDK with `schemes: ["exact"]`.
 *
 * Per path: one untimed warm-up call (opens the channel, loads the code paths), then N sequential calls (latency
 * p50 / p95 / mean and calls/s), then N/4 calls with C in flight (calls/s). Every call must be served (200).
 *
 * Gas per paid call by scheme, over the paid calls of this run, read from the chain: `channel` = the clients'
 * funding transactions (every transaction mined while paths 1 and 2 ran: the server sends none for `channel`) plus
 * the real settlement job's transactions (`npm run settle -- --all --json`), divided by the calls of paths 1 and 2;
 * `exact` = the sum of `gasUsed` of the transfer transactions named by the receipts (`PAYMENT-RESPONSE`) of paths 3
 * and 4, divided by their calls. Checks: one distinct mined transfer per exact call and nothing else mined meanwhile,
 * the payee's balance grew by exactly calls × price for `exact`, and the settled amount is calls × price for `channel`.
 *
 * The chain's clock: every exact call mines a block; the bench chain lets blocks share a timestamp (chain.ts), so its
 * clock follows the wall clock that both exact clients sign their windows from (the stock one from Date.now() alone).
 * The section fails if the chain's clock ends up more than 30 s away from the wall clock.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicClient, createWalletClient, defineChain, http, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { createChannelClient, type ChannelClient, type ChannelClientOptions } from "@paychan/client";
import { ChannelSchemeClient } from "@paychan/client/x402";
import { decodeExactPaymentResponse, HEADER_PAYMENT_RESPONSE, networkOf } from "@paychan/protocol";
import { hardhatAccount, mockUsdcAbi } from "@paychan/demo";
import { runTs, spawnTs, type ChildHandle } from "../../test/helpers/process";
import type { BenchChain } from "./chain";

/** Price of `/bench/paid` in atomic units (0.001 USDC, http-server.ts). */
const PRICE = 1_000n;

export type SchemePathId = 1 | 2 | 3 | 4;

/** Timings of one phase of a path. */
export interface PhaseTiming {
  calls: number;
  /** Calls in flight. */
  concurrency: number;
  seconds: number;
  callsPerSecond: number;
  /** Per-call latency, ms (request start to body read). */
  p50: number;
  p95: number;
  mean: number;
}

export interface SchemePathResult {
  id: SchemePathId;
  scheme: "channel" | "exact";
  /** Who pays, e.g. "our SDK (createChannelClient().fetch)". */
  client: string;
  /** HTTP requests sent per timed call (counted by the base fetch). */
  requestsPerCall: number;
  /** Paid calls of the path, warm-up included (all counted in the gas). */
  paidCalls: number;
  sequential: PhaseTiming;
  concurrent: PhaseTiming | null;
}

export interface SchemeGas {
  scheme: "channel" | "exact";
  /** Which paths' calls are counted. */
  paths: SchemePathId[];
  paidCalls: number;
  transactions: number;
  gas: bigint;
  gasPerCall: number;
  /** What the transactions were, e.g. "2 × openWithPermit, 1 settle batch of 2 channels". */
  detail: string;
}

export interface SchemesResults {
  /** Timed sequential calls per path (N). */
  calls: number;
  concurrency: number;
  paths: SchemePathResult[];
  gas: SchemeGas[];
  /** Chain time minus wall-clock time at the end, seconds (the latest block's timestamp). */
  chainClockAheadSeconds: number;
  notes: string[];
}

export interface SchemesOptions {
  /** Timed sequential calls per path; the concurrent phase makes calls / 4 more. */
  calls: number;
  /** Calls in flight in the concurrent phase (0: no concurrent phase). */
  concurrency: number;
  log: (m: string) => void;
  children: Set<ChildHandle>;
}

/** A paid call: resolves when the body is read; throws when it was not served. Returns the response's headers. */
type PaidCall = () => Promise<Headers>;

/** A fetch that counts the requests it sends. */
function countingFetch(): { fetch: typeof fetch; count: () => number } {
  let n = 0;
  return {
    fetch: (input, init) => {
      n++;
      return fetch(input, init);
    },
    count: () => n,
  };
}

function timing(lat: number[], seconds: number, concurrency: number): PhaseTiming {
  const s = [...lat].sort((a, b) => a - b);
  const pct = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return {
    calls: s.length,
    concurrency,
    seconds,
    callsPerSecond: s.length / seconds,
    p50: pct(50),
    p95: pct(95),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

/** Runs `n` calls with `c` in flight; `onHeaders` sees every response's headers. */
async function phase(n: number, c: number, call: PaidCall, onHeaders: (h: Headers) => void): Promise<PhaseTiming> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(c, n) }, async () => {
      while (next < n) {
        next++;
        const s = performance.now();
        const h = await call();
        lat.push(performance.now() - s);
        onHeaders(h);
      }
    }),
  );
  return timing(lat, (performance.now() - t0) / 1000, c);
}

/** Wraps a paying fetch into a paid call of `url` that must be served (200). */
function paidCall(pay: (url: string) => Promise<Response>, url: string, label: string): PaidCall {
  return async () => {
    const res = await pay(url);
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${label}: HTTP ${res.status}: ${body.slice(0, 300)}`);
    return res.headers;
  };
}

async function gasOfBlocks(chain: BenchChain, from: bigint, to: bigint): Promise<{ gas: bigint; txs: number }> {
  let gas = 0n;
  let txs = 0;
  for (let b = from; b <= to; b++) {
    const block = await chain.publicClient.getBlock({ blockNumber: b });
    gas += block.gasUsed;
    txs += block.transactions.length;
  }
  return { gas, txs };
}

/** Measures the four paths on `chain` (Hardhat accounts #0 payee, #10 – #13 payers; #19 is the server's exact sender). */
export async function benchSchemes(chain: BenchChain, o: SchemesOptions): Promise<SchemesResults> {
  const N = o.calls;
  const M = o.concurrency > 0 ? Math.max(1, Math.floor(N / 4)) : 0;
  const perPath = 1 + N + M;
  const payee = chain.account(0);
  const network = networkOf(chain.chainId);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-schemes-"));
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
  };
  const c = defineChain({ id: chain.chainId, name: "hardhat", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [chain.rpcUrl] } } });
  const publicClient = createPublicClient({ chain: c, transport: http(chain.rpcUrl), pollingInterval: 20 });
  const balance = async (who: Address) => (await chain.publicClient.readContract({ address: chain.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [who] })) as bigint;
  // 20% more than the path needs, and at least the server's minimum deposit (MIN_DEPOSIT default: 1 USDC).
  const depositAtomic = BigInt(Math.max(1_000_000, Number((BigInt(perPath) * PRICE * 12n) / 10n)));
  const deposit = (Number(depositAtomic) / 1e6).toFixed(6);
  const agents: ChannelClient[] = [];
  /** Our SDK for Hardhat account `index` (its own state directory), with `extra` options. */
  const agentOf = (index: number, base: typeof fetch, funding: string[], extra: Partial<ChannelClientOptions> = {}) => {
    const account = privateKeyToAccount(hardhatAccount(index).key);
    const a = createChannelClient({
      account,
      publicClient: publicClient as never,
      walletClient: createWalletClient({ account, chain: c, transport: http(chain.rpcUrl) }) as never,
      stateDir: path.join(dir, `agent-${index}`),
      limits: { maxPrice: "0.01", maxDeposit: deposit, escrows: [chain.escrow], assets: [chain.token] },
      policy: { deposit, autoTopUp: false }, // the deposit covers every call: no top-up inside the run
      fetch: base,
      onEvent: (e) => {
        if (e.type === "channel_opened") funding.push(e.method);
      },
      ...extra,
    });
    agents.push(a);
    return a;
  };

  let server: ChildHandle | null = null;
  try {
    server = await spawnTs(path.join(__dirname, "http-server.ts"), { env: { ...env, PORT: "0" }, ready: /ready (http:\/\/\S+)/ });
    o.children.add(server);
    const url = `${server.match[1]}/bench/paid`;
    const PAYERS = { 1: 10, 2: 11, 3: 12, 4: 13 } as const;
    for (const index of Object.values(PAYERS)) {
      await chain.send(index, chain.token, mockUsdcAbi as never, "mint", [chain.account(index), depositAtomic * 2n]);
    }

    const paths: SchemePathResult[] = [];
    const exactHashes: Hex[] = [];
    const channelFunding: string[] = [];
    let channelClientGas = 0n;
    let channelClientTxs = 0;
    const fundingByPath: string[] = [];
    let exactBlocks = { gas: 0n, txs: 0 };
    let exactPayeeGain = 0n;

    const run = async (id: SchemePathId, scheme: "channel" | "exact", client: string, pay: (u: string) => Promise<Response>, counter: () => number) => {
      o.log(`schemes (${id}) ${scheme}, ${client}: warm-up, ${N} sequential, ${M} with ${o.concurrency} in flight...`);
      const label = `path ${id}`;
      const call = paidCall(pay, url, label);
      const seen = (h: Headers) => {
        if (scheme !== "exact") return;
        const r = decodeExactPaymentResponse(h.get(HEADER_PAYMENT_RESPONSE));
        if (!r.success || !r.transaction) throw new Error(`${label}: an exact call was served without a transaction in its receipt`);
        exactHashes.push(r.transaction);
      };
      const startBlock = (await chain.publicClient.getBlockNumber()) + 1n;
      const payeeBefore = await balance(payee);
      seen(await call()); // warm-up: opens the channel; not timed
      const r0 = counter();
      const sequential = await phase(N, 1, call, seen);
      const requestsPerCall = (counter() - r0) / N;
      const concurrent = M > 0 ? await phase(M, o.concurrency, call, seen) : null;
      const endBlock = await chain.publicClient.getBlockNumber();
      const blocks = await gasOfBlocks(chain, startBlock, endBlock);
      if (scheme === "channel") {
        // One channel per path, funded in one transaction (openWithPermit) or two (approve + open); nothing else.
        if (blocks.txs > 2) throw new Error(`${label}: ${blocks.txs} transactions mined during a channel path (expected the channel's funding only)`);
        channelClientGas += blocks.gas;
        channelClientTxs += blocks.txs;
        fundingByPath.push(`(${id}) ${blocks.gas.toLocaleString("en-US")}`);
      } else {
        exactBlocks = { gas: exactBlocks.gas + blocks.gas, txs: exactBlocks.txs + blocks.txs };
        exactPayeeGain += (await balance(payee)) - payeeBefore;
      }
      paths.push({ id, scheme, client, requestsPerCall, paidCalls: perPath, sequential, concurrent });
      o.log(
        `schemes (${id}): p50 ${sequential.p50.toFixed(2)} ms, ${sequential.callsPerSecond.toFixed(0)} calls/s sequential` +
          (concurrent ? `, ${concurrent.callsPerSecond.toFixed(0)} with ${o.concurrency} in flight` : ""),
      );
    };

    // (1) channel, our SDK.
    {
      const base = countingFetch();
      const agent = agentOf(PAYERS[1], base.fetch, channelFunding, { schemes: ["channel"] });
      await run(1, "channel", "our SDK (`createChannelClient().fetch`)", (u) => agent.fetch(u), base.count);
      await agent.flush();
    }
    // (2) channel, stock @x402/fetch + our plug-in.
    {
      const base = countingFetch();
      const agent = agentOf(PAYERS[2], base.fetch, channelFunding, { schemes: ["channel"] });
      const plugin = new ChannelSchemeClient(agent);
      const x402 = new x402Client().register(network, plugin).setSpendControls({ allowedAssets: [{ network, asset: chain.token }] });
      const pay = wrapFetchWithPayment(base.fetch, plugin.attach(new x402HTTPClient(x402)));
      await run(2, "channel", "stock `@x402/fetch` + our plug-in (`@paychan/client/x402`)", (u) => pay(u), base.count);
      await agent.flush();
    }
    // (3) exact, the stock x402 client.
    {
      const base = countingFetch();
      const x402 = new x402Client();
      registerExactEvmScheme(x402, { signer: privateKeyToAccount(hardhatAccount(PAYERS[3]).key), networks: [network] });
      x402.setSpendControls({ allowedAssets: [{ network, asset: chain.token }] } as never);
      const pay = wrapFetchWithPayment(base.fetch, x402);
      await run(3, "exact", "stock `@x402/fetch` + `@x402/evm` exact client", (u) => pay(u), base.count);
    }
    // (4) exact, our SDK.
    {
      const base = countingFetch();
      const agent = agentOf(PAYERS[4], base.fetch, [], { schemes: ["exact"] });
      await run(4, "exact", 'our SDK (`createChannelClient({ schemes: ["exact"] }).fetch`)', (u) => agent.fetch(u), base.count);
      await agent.flush();
    }
    for (const a of agents.splice(0)) await a.close();

    // ---- gas: exact, from the transfers' receipts.
    const exactCalls = paths.filter((p) => p.scheme === "exact").reduce((a, p) => a + p.paidCalls, 0);
    const notes: string[] = [];
    if (new Set(exactHashes).size !== exactCalls) throw new Error(`${exactCalls} exact calls, ${new Set(exactHashes).size} distinct transfer transactions`);
    let exactGas = 0n;
    for (let i = 0; i < exactHashes.length; i += 50) {
      const receipts = await Promise.all(exactHashes.slice(i, i + 50).map((hash) => chain.publicClient.getTransactionReceipt({ hash })));
      for (const r of receipts) {
        if (r.status !== "success") throw new Error(`exact transfer ${r.transactionHash} reverted`);
        exactGas += r.gasUsed;
      }
    }
    if (exactBlocks.txs !== exactCalls || exactBlocks.gas !== exactGas) {
      notes.push(`while the exact paths ran the chain mined ${exactBlocks.txs} transactions (${exactBlocks.gas} gas), the receipts name ${exactCalls} (${exactGas} gas)`);
    }
    if (exactPayeeGain !== BigInt(exactCalls) * PRICE) throw new Error(`the payee gained ${exactPayeeGain} from ${exactCalls} exact calls of ${PRICE}`);

    // ---- gas: channel, the clients' funding + the real settlement job.
    o.log("schemes: settling the channels (npm run settle -- --all --json)...");
    const beforeSettle = await chain.publicClient.getBlockNumber();
    const settle = await runTs(path.join(__dirname, "..", "settle.ts"), { args: ["--all", "--json"], env, timeoutMs: 180_000 });
    if (settle.code !== 0) throw new Error(`npm run settle exited ${settle.code ?? settle.signal}: ${settle.stderr.slice(-600)}${settle.stdout.slice(-600)}`);
    const report = JSON.parse(settle.stdout) as { channelsSettled: number; amountSettled: string };
    const settled = await gasOfBlocks(chain, beforeSettle + 1n, await chain.publicClient.getBlockNumber());
    const channelCalls = paths.filter((p) => p.scheme === "channel").reduce((a, p) => a + p.paidCalls, 0);
    if (BigInt(report.amountSettled) !== BigInt(channelCalls) * PRICE) throw new Error(`settled ${report.amountSettled}, the channel calls spent ${BigInt(channelCalls) * PRICE}`);
    const channelGas = channelClientGas + settled.gas;

    const block = await chain.publicClient.getBlock();
    const chainClockAheadSeconds = Number(block.timestamp) - Math.floor(Date.now() / 1000);
    if (Math.abs(chainClockAheadSeconds) > 30) throw new Error(`the chain's clock is ${chainClockAheadSeconds} s away from the wall clock (blocks with the same timestamp not allowed?)`);
    return {
      calls: N,
      concurrency: o.concurrency,
      paths,
      gas: [
        {
          scheme: "channel",
          paths: [1, 2],
          paidCalls: channelCalls,
          transactions: channelClientTxs + settled.txs,
          gas: channelGas,
          gasPerCall: Number(channelGas) / channelCalls,
          detail:
            `${channelFunding.length} channel(s) funded by the SDK (${channelFunding.join(", ")}: ${channelClientTxs} transaction(s), ` +
            `${channelClientGas.toLocaleString("en-US")} gas: ${fundingByPath.join(", ")}; the first channel to a payee/token pair also registers the pair), ` +
            `settled by \`npm run settle\` (${report.channelsSettled} channel(s) in ${settled.txs} transaction(s), ${settled.gas.toLocaleString("en-US")} gas)`,
        },
        {
          scheme: "exact",
          paths: [3, 4],
          paidCalls: exactCalls,
          transactions: exactHashes.length,
          gas: exactGas,
          gasPerCall: Number(exactGas) / exactCalls,
          detail: "one `transferWithAuthorization` per call, sent by the server's exact sender key (the receipts' gasUsed)",
        },
      ],
      chainClockAheadSeconds,
      notes,
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
