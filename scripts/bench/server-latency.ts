/**
 * Added latency of a paid request over the same route unpaid, on loopback, with the SQLite store at
 * `synchronous=FULL` and `NORMAL`; plus voucher verifications per second on one core.
 *
 *   ts-node scripts/bench/server-latency.ts [--requests N] [--warmup N]
 *
 * Starts a local Hardhat chain in this process, deploys the contracts, opens a channel, then for each mode runs the
 * real server in a child process (`latency-server.ts`) and sends N paid and N unpaid GET /…/echo requests,
 * interleaved, one at a time over a keep-alive connection. Vouchers are signed before timing starts, so the
 * figures are the server's cost: decode, channel view, signature recovery, the durable accounting transaction,
 * and the receipt. Added latency = percentile(paid) - percentile(unpaid).
 */
import { measureVoucherThroughput } from "./verify";
import { LATENCY_SERVER, startReadyChild } from "./child";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { createPublicClient, createWalletClient, defineChain, http as viemHttp, keccak256, toHex, type Hex } from "viem";
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
import { deployContracts, mockUsdcAbi } from "@paychan/demo";
import { hardhatAccount, startLocalChain } from "@paychan/demo";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg("--requests", 3000);
const WARMUP = arg("--warmup", 500);
const PRICE = 1000n;

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; ms: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.get(url, { agent, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - t0) / 1e6, headers: res.headers }));
    });
    req.on("error", reject);
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function main() {
  console.error(`voucher verification: measuring...`);
  const perSecond = (await measureVoucherThroughput(2)).find((r) => r.op === "verify" && r.impl.startsWith("VoucherVerifier"))!.perSecond;

  const chain = await startLocalChain({ port: 0 });
  const deployer = hardhatAccount(0);
  const payerAcc = hardhatAccount(1);
  const d = await deployContracts({ rpcUrl: chain.rpcUrl, privateKey: deployer.key, deploymentsDir: null });
  const c = defineChain({ id: d.chainId, name: "local", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [chain.rpcUrl] } } });
  const pub = createPublicClient({ chain: c, transport: viemHttp(chain.rpcUrl) });
  const payer = createWalletClient({ account: privateKeyToAccount(payerAcc.key), chain: c, transport: viemHttp(chain.rpcUrl) });
  const domain = escrowDomain(d.chainId, d.escrow);
  const deposit = 1_000_000_000n;
  const wait = async (h: Hex) => pub.waitForTransactionReceipt({ hash: h, pollingInterval: 20 });
  await wait(await payer.writeContract({ address: d.token, abi: mockUsdcAbi, functionName: "mint", args: [payerAcc.address, deposit * 2n] }));
  await wait(await payer.writeContract({ address: d.token, abi: mockUsdcAbi, functionName: "approve", args: [d.escrow, deposit * 2n] }));

  const results: Array<Record<string, string | number>> = [];
  for (const mode of ["FULL", "NORMAL"] as const) {
    const key = generatePrivateKey();
    const signerAddr = privateKeyToAccount(key).address;
    const salt = keccak256(toHex(`bench-${mode}-${Date.now()}`));
    await wait(await payer.writeContract({ address: d.escrow, abi: channelEscrowAbi, functionName: "open", args: [deployer.address, d.token, signerAddr, deposit, 86_400, salt] }));
    const channelId = computeChannelId({ chainId: d.chainId, escrow: d.escrow, payer: payerAcc.address, payee: deployer.address, token: d.token, signer: signerAddr, salt });
    const signer = new VoucherSigner(key, domain);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-latency-"));
    const { url, child } = await startReadyChild([LATENCY_SERVER], {
      RPC_URL: chain.rpcUrl,
      ESCROW_ADDRESS: d.escrow,
      TOKEN_ADDRESS: d.token,
      PAYEE_ADDRESS: deployer.address,
      DATABASE_URL: path.join(dir, "bench.sqlite"),
      SQLITE_SYNCHRONOUS: mode,
      PORT: "0",
      LOG_LEVEL: "warn",
    });
    try {
      const challenge = await get(`${url}/v1/echo?msg=hi`);
      const terms: ChannelRequirements = decodePaymentRequired(challenge.headers["payment-required"]).accepts[0];
      const headers = Array.from({ length: WARMUP + N }, (_, i) => ({
        "payment-signature": encodePaymentSignature({ x402Version: X402_VERSION, accepted: terms, payload: signer.sign(channelId, BigInt(i + 1) * PRICE) }),
      }));
      const paid: number[] = [];
      const free: number[] = [];
      for (let i = 0; i < WARMUP + N; i++) {
        const p = await get(`${url}/v1/echo?msg=hi`, headers[i]);
        const f = await get(`${url}/free/echo?msg=hi`);
        if (p.status !== 200 || f.status !== 200) throw new Error(`unexpected status paid=${p.status} free=${f.status}`);
        if (i >= WARMUP) {
          paid.push(p.ms);
          free.push(f.ms);
        }
      }
      const r = {
        synchronous: mode,
        requests: N,
        "unpaid p50 ms": +pct(free, 50).toFixed(3),
        "paid p50 ms": +pct(paid, 50).toFixed(3),
        "added p50 ms": +(pct(paid, 50) - pct(free, 50)).toFixed(3),
        "unpaid p99 ms": +pct(free, 99).toFixed(3),
        "paid p99 ms": +pct(paid, 99).toFixed(3),
        "added p99 ms": +(pct(paid, 99) - pct(free, 99)).toFixed(3),
      };
      results.push(r);
      console.error(`${mode}: done`);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  await chain.close();
  agent.destroy();
  console.log(`voucher verifications per second (one core, VoucherVerifier): ${Math.round(perSecond)}`);
  console.table(results);
  console.log(JSON.stringify({ verificationsPerSecond: Math.round(perSecond), latency: results }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
