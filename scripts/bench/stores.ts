/**
 * Store benchmark: paid requests per second and the added latency of a paid request (p50/p99 over the same route
 * unpaid), with the PostgreSQL store vs the SQLite store, one server process and three replicas, in one run.
 *
 *   ts-node scripts/bench/stores.ts [--requests 12000] [--concurrency 32] [--channels 8] [--latency 1500]
 *                                   [--only sqlite|postgres] [--replicas 1,3]
 *
 * Starts a local Hardhat chain in this process, deploys the contracts, opens channels, then for each configuration
 * starts N real server processes (`latency-server.ts`: the provider server plus an unpaid twin `/free/echo`)
 * on one database and measures:
 * - latency: paid and unpaid GET /echo alternately, one at a time (one keep-alive connection per replica, requests
 *   round-robin over the replicas); added = percentile(paid) - percentile(unpaid);
 * - throughput: `--requests` paid calls with `--concurrency` in flight over `--channels` channels, spread
 *   round-robin over the replicas; paid requests per second, and p50/p99 of a paid call under that load.
 * Vouchers are signed before timing starts. PostgreSQL: `BENCH_DATABASE_URL` (a database the bench may create
 * schemas in), else a throwaway server with fsync ON (test/helpers/postgres.ts) so commits pay for durability like
 * SQLite's `synchronous=FULL`. Three SQLite replicas share one database file (WAL, `BEGIN IMMEDIATE`).
 */
import { LATENCY_SERVER, startReadyChild } from "./child";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { createPublicClient, createWalletClient, defineChain, http as viemHttp, keccak256, toHex, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  channelEscrowAbi,
  computeChannelId,
  decodePaymentRequired,
  encodePaymentSignature,
  escrowDomain,
  VoucherSigner,
  X402_VERSION,
  type ChannelRequirements,
} from "@paychan/protocol";
import { hardhatAccount, startLocalChain, mockUsdcAbi } from "@paychan/demo";
import { startThrowawayPostgres, withSearchPath } from "../../test/helpers/postgres";
import { deployContracts } from "@paychan/demo";

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
};
const REQUESTS = Number(arg("--requests", "12000"));
const CONCURRENCY = Number(arg("--concurrency", "32"));
const CHANNELS = Number(arg("--channels", "8"));
const LATENCY_N = Number(arg("--latency", "1500"));
const WARMUP = 300;
const ONLY = arg("--only", "");
const REPLICAS = arg("--replicas", "1,3").split(",").map(Number);
const PRICE = 1000n;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function request(agent: http.Agent, url: string, headers: Record<string, string> = {}): Promise<{ status: number; ms: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.get(url, { agent, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - t0) / 1e6, headers: res.headers }));
    });
    req.on("error", reject);
  });
}

interface BenchChannel {
  id: Hex;
  signer: VoucherSigner;
  next: bigint;
}

async function main() {
  const startLoad = os.loadavg().map((x) => x.toFixed(2)).join(" ");
  const chain = await startLocalChain({ port: 0 });
  const deployer = hardhatAccount(0);
  const d = await deployContracts({ rpcUrl: chain.rpcUrl, privateKey: deployer.key, deploymentsDir: null });
  const c = defineChain({ id: d.chainId, name: "local", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [chain.rpcUrl] } } });
  const pub = createPublicClient({ chain: c, transport: viemHttp(chain.rpcUrl) });
  const domain = escrowDomain(d.chainId, d.escrow);
  const deposit = 1_000_000_000n; // 1,000 USDC per channel
  const wait = async (h: Hex) => pub.waitForTransactionReceipt({ hash: h, pollingInterval: 20 });

  /** Opens `n` channels (payers #1..#8), fresh session keys. */
  let opened = 0;
  async function openChannels(n: number): Promise<BenchChannel[]> {
    const out: BenchChannel[] = [];
    for (let i = 0; i < n; i++) {
      const acc = hardhatAccount(1 + ((opened + i) % 8));
      const payer = createWalletClient({ account: privateKeyToAccount(acc.key), chain: c, transport: viemHttp(chain.rpcUrl) });
      await wait(await payer.writeContract({ address: d.token, abi: mockUsdcAbi, functionName: "mint", args: [acc.address, deposit] }));
      await wait(await payer.writeContract({ address: d.token, abi: mockUsdcAbi, functionName: "approve", args: [d.escrow, deposit] }));
      const key = generatePrivateKey();
      const signerAddr = privateKeyToAccount(key).address;
      const salt = keccak256(toHex(`bench-stores-${opened + i}-${Date.now()}`));
      await wait(await payer.writeContract({ address: d.escrow, abi: channelEscrowAbi, functionName: "open", args: [deployer.address, d.token, signerAddr, deposit, 86_400, salt] }));
      const id = computeChannelId({ chainId: d.chainId, escrow: d.escrow, payer: acc.address as Address, payee: deployer.address, token: d.token, signer: signerAddr, salt });
      out.push({ id, signer: new VoucherSigner(key, domain), next: 1n });
    }
    opened += n;
    return out;
  }

  // PostgreSQL: given, or a throwaway server with fsync on.
  let pgBase = process.env.BENCH_DATABASE_URL ?? "";
  let pgServer: Awaited<ReturnType<typeof startThrowawayPostgres>> | null = null;
  if (ONLY !== "sqlite" && !pgBase) {
    console.error("starting a throwaway PostgreSQL (fsync on)...");
    pgServer = await startThrowawayPostgres({ fsync: true, settings: { shared_buffers: "128MB" } });
    pgBase = pgServer.url;
  }
  let schemaN = 0;
  async function newPgDatabase(): Promise<string> {
    const schema = `bench_${process.pid}_${++schemaN}`;
    const cl = new pg.Client({ connectionString: pgBase });
    await cl.connect();
    await cl.query(`CREATE SCHEMA ${schema}`);
    await cl.end();
    return withSearchPath(pgBase, schema);
  }

  const configs: Array<{ store: "sqlite" | "postgres"; replicas: number }> = [];
  for (const n of REPLICAS) for (const store of ["sqlite", "postgres"] as const) if (!ONLY || ONLY === store) configs.push({ store, replicas: n });

  const results: Array<Record<string, string | number>> = [];
  for (const cfg of configs) {
    const label = `${cfg.store} x${cfg.replicas}`;
    console.error(`${label}: starting ${cfg.replicas} server process(es)...`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-stores-"));
    const databaseUrl = cfg.store === "sqlite" ? path.join(dir, "bench.sqlite") : await newPgDatabase();
    const base = {
      RPC_URL: chain.rpcUrl,
      ESCROW_ADDRESS: d.escrow,
      TOKEN_ADDRESS: d.token,
      PAYEE_ADDRESS: deployer.address,
      DATABASE_URL: databaseUrl,
      SQLITE_SYNCHRONOUS: "FULL",
      PORT: "0",
      LOG_LEVEL: "warn",
      PG_POOL_MAX: "16",
      SETTLE_IN_SERVER: "false",
    };
    // Start the first alone (it creates the schema), then the others.
    const servers = [await startReadyChild([LATENCY_SERVER], base)];
    servers.push(...(await Promise.all(Array.from({ length: cfg.replicas - 1 }, () => startReadyChild([LATENCY_SERVER], base)))));
    const urls = servers.map((s) => s.url);
    try {
      const seqAgents = urls.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
      const challenge = await request(seqAgents[0], `${urls[0]}/v1/echo?msg=hi`);
      const terms: ChannelRequirements = decodePaymentRequired(challenge.headers["payment-required"] as string).accepts[0];
      const header = (ch: BenchChannel) => {
        const v = ch.next++ * PRICE;
        return { "payment-signature": encodePaymentSignature({ x402Version: X402_VERSION, accepted: terms, payload: ch.signer.sign(ch.id, v) }) };
      };

      // Latency: sequential, paid and unpaid alternately.
      const [lat] = await openChannels(1);
      const latHeaders = Array.from({ length: WARMUP + LATENCY_N }, () => header(lat));
      const paid: number[] = [];
      const free: number[] = [];
      for (let i = 0; i < WARMUP + LATENCY_N; i++) {
        const k = i % urls.length;
        const p = await request(seqAgents[k], `${urls[k]}/v1/echo?msg=hi`, latHeaders[i]);
        const f = await request(seqAgents[k], `${urls[k]}/free/echo?msg=hi`);
        if (p.status !== 200 || f.status !== 200) throw new Error(`${label}: unexpected status paid=${p.status} free=${f.status}`);
        if (i >= WARMUP) {
          paid.push(p.ms);
          free.push(f.ms);
        }
      }

      // Throughput: CONCURRENCY in flight over CHANNELS channels, round-robin over the replicas.
      const chans = await openChannels(CHANNELS);
      const perChannel = Math.ceil(REQUESTS / CHANNELS);
      const queues = chans.map((ch) => Array.from({ length: perChannel }, () => header(ch)));
      // Warm every replica and channel (first sight of a channel reads the chain).
      for (const [i, q] of queues.entries()) {
        const r = await request(seqAgents[i % urls.length], `${urls[i % urls.length]}/v1/echo?msg=w`, q.shift()!);
        if (r.status !== 200) throw new Error(`${label}: warm-up status ${r.status}`);
      }
      const loadAgents = urls.map(() => new http.Agent({ keepAlive: true, maxSockets: Math.ceil(CONCURRENCY / urls.length) + 2 }));
      const lat2: number[] = [];
      let sent = 0;
      let bad = 0;
      const t0 = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async (_, w) => {
          const q = queues[w % queues.length];
          for (;;) {
            const h = q.shift();
            if (!h) return;
            const k = sent++ % urls.length;
            const r = await request(loadAgents[k], `${urls[k]}/v1/echo?msg=x`, h);
            if (r.status !== 200) bad++;
            lat2.push(r.ms);
          }
        }),
      );
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      if (bad > 0) console.error(`${label}: ${bad} requests were not served`);
      const r = {
        store: cfg.store,
        replicas: cfg.replicas,
        "paid req/s": Math.round((lat2.length - bad) / secs),
        "load p50 ms": +pct(lat2, 50).toFixed(2),
        "load p99 ms": +pct(lat2, 99).toFixed(2),
        "added p50 ms": +(pct(paid, 50) - pct(free, 50)).toFixed(3),
        "added p99 ms": +(pct(paid, 99) - pct(free, 99)).toFixed(3),
        "unpaid p50 ms": +pct(free, 50).toFixed(3),
        "paid p50 ms": +pct(paid, 50).toFixed(3),
        refused: bad,
      };
      results.push(r);
      console.error(`${label}: ${r["paid req/s"]} paid req/s, added p50 ${r["added p50 ms"]} ms, p99 ${r["added p99 ms"]} ms`);
      for (const a of [...seqAgents, ...loadAgents]) a.destroy();
    } finally {
      for (const s of servers) s.child.kill("SIGTERM");
      await Promise.all(servers.map((s) => (s.child.exitCode === null ? new Promise((r) => s.child.once("exit", r)) : undefined)));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  await pgServer?.stop();
  await chain.close();
  console.log(
    `paid requests: ${REQUESTS} per configuration, ${CONCURRENCY} in flight over ${CHANNELS} channels; latency: ${LATENCY_N} sequential paid/unpaid pairs; SQLite synchronous=FULL, PostgreSQL synchronous_commit=on${pgServer ? " (throwaway server, fsync on)" : ""}; ${os.cpus().length} CPUs shared by the load generator, the chain, the database and every server process; load average at start ${startLoad}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`,
  );
  console.table(results);
  console.log(JSON.stringify({ stores: results }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
