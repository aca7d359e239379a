/**
 * Stream section of `npm run bench` (issue 14): streamed responses paid per token (docs/protocol.md § 5.10) against the
 * real provider server (a child process, `scripts/bench/stream-server.ts`, SQLite FULL) on the local chain. One token
 * producer is served unpaid (a plain event stream) and paid (`paywall.stream`, 0.00001 USDC per token, reserve and
 * top-up 0.01 = 1,000 tokens); a lean client in this process reads the events with the protocol's SSE parser and
 * answers each `payment-need-voucher` with a top-up voucher (cumulative: everything it reserved before + the top-up).
 *
 * Measured: tokens per second, paid vs unpaid, 1 and 8 concurrent streams (rounds alternate unpaid and paid; the
 * median round counts); per top-up: the client's round trip (event parsed → 200 read), the event's bytes, the request's
 * `PAYMENT-SIGNATURE` bytes and the answer's bytes (header + body; HTTP framing not counted); `signed / spent` on the
 * channel at the end. Checks: every token arrived in order and every receipt = tokens × price.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  decodeNeedVoucher,
  decodePaymentRequired,
  decodeStreamReceipt,
  encodePaymentSignature,
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_RESPONSE,
  SseParser,
  STREAM_EVENT_NEED_VOUCHER,
  STREAM_EVENT_RECEIPT,
  X402_VERSION,
  type ChannelRequirements,
} from "@paychan/protocol";
import { spawnTs, type ChildHandle } from "../../test/helpers/process";
import { fundPayer, openBenchChannel, type BenchChain, type BenchChannel } from "./chain";

export interface StreamBenchRow {
  /** SQLite synchronous mode of the server's store. */
  store: string;
  concurrency: number;
  tokensPerStream: number;
  /** Aggregate tokens per second over the concurrent streams (median round). */
  unpaid: number;
  paid: number;
  /** Top-ups per paid stream (median round). */
  topUpsPerStream: number;
}

export interface StreamBenchResults {
  rounds: number;
  rows: StreamBenchRow[];
  topUp: { count: number; p50: number; p95: number; eventBytes: number; requestBytes: number; responseBytes: number };
  signed: bigint;
  spent: bigint;
}

export interface StreamBenchOptions {
  rounds: number;
  log: (m: string) => void;
  children: Set<ChildHandle>;
}

const PRICE = 10n;
const PAYER_INDEX = 12;

interface OneRun {
  tokens: number;
  seconds: number;
  topUps: Array<{ ms: number; eventBytes: number; requestBytes: number; responseBytes: number }>;
}

/** Signs cumulative vouchers on one channel (everything reserved before + the new amount). */
class Payer {
  signed = 0n;
  constructor(
    readonly ch: BenchChannel,
    readonly terms: ChannelRequirements,
  ) {}

  header(amount: bigint): string {
    this.signed += amount;
    const v = this.ch.signer.sign(this.ch.id, this.signed);
    const accepted = { ...this.terms, extra: { ...this.terms.extra } };
    delete accepted.extra.channel;
    return encodePaymentSignature({ x402Version: X402_VERSION, accepted, payload: { channelId: v.channelId, cumulativeAmount: v.cumulativeAmount, signature: v.signature } });
  }
}

async function runStream(url: string, route: string, n: number, payer: Payer | null): Promise<OneRun> {
  const t0 = performance.now();
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (payer) headers["payment-signature"] = payer.header(payer.terms.amount);
  const res = await fetch(`${url}${route}`, { method: "POST", headers, body: JSON.stringify({ n }) });
  if (res.status !== 200) throw new Error(`${route}: ${res.status} ${await res.text()}`);
  const parser = new SseParser();
  const topUps: OneRun["topUps"] = [];
  const pending: Promise<void>[] = [];
  let tokens = 0;
  let last = t0;
  let receipt = null;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    for (const f of parser.push(chunk)) {
      if (f.event === STREAM_EVENT_NEED_VOUCHER && payer) {
        const need = decodeNeedVoucher(f.data);
        const sent = performance.now();
        const h = payer.header(need.amount);
        pending.push(
          fetch(`${url}${need.url}`, { method: "POST", headers: { "payment-signature": h } }).then(async (a) => {
            const body = await a.text();
            if (a.status !== 200) throw new Error(`top-up refused: ${a.status} ${body}`);
            topUps.push({
              ms: performance.now() - sent,
              eventBytes: Buffer.byteLength(`event: ${f.event}\ndata: ${f.data}\n\n`),
              requestBytes: h.length + need.url.length,
              responseBytes: (a.headers.get(HEADER_PAYMENT_RESPONSE) ?? "").length + Buffer.byteLength(body),
            });
          }),
        );
      } else if (f.event === STREAM_EVENT_RECEIPT) {
        receipt = decodeStreamReceipt(f.data);
      } else {
        const t = JSON.parse(f.data) as { i: number };
        if (t.i !== tokens) throw new Error(`token ${t.i} arrived as the ${tokens}th`);
        tokens++;
        last = performance.now();
      }
    }
  }
  await Promise.all(pending);
  if (tokens !== n) throw new Error(`${route}: ${tokens} of ${n} tokens`);
  if (payer && (!receipt || receipt.amount !== BigInt(n) * PRICE)) throw new Error(`${route}: receipt ${receipt?.amount} for ${n} tokens`);
  return { tokens, seconds: (last - t0) / 1000, topUps };
}

/** Aggregate tokens per second of `c` concurrent streams of `n` tokens. */
async function concurrent(url: string, route: string, n: number, c: number, payer: Payer | null): Promise<{ tps: number; runs: OneRun[] }> {
  const runs = await Promise.all(Array.from({ length: c }, () => runStream(url, route, n, payer)));
  const seconds = Math.max(...runs.map((r) => r.seconds)) || 1e-9;
  return { tps: (n * c) / seconds, runs };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

export async function benchStream(chain: BenchChain, o: StreamBenchOptions): Promise<StreamBenchResults> {
  const out: StreamBenchResults = { rounds: o.rounds, rows: [], topUp: { count: 0, p50: 0, p95: 0, eventBytes: 0, requestBytes: 0, responseBytes: 0 }, signed: 0n, spent: 0n };
  const all: OneRun["topUps"] = [];
  for (const sync of (process.env.BENCH_STREAM_SYNC ?? "FULL,NORMAL").split(",")) {
    const r = await benchStreamOn(chain, o, sync, all);
    out.rows.push(...r.rows);
    out.signed += r.signed;
    out.spent += r.spent;
  }
  const ms = all.map((t) => t.ms);
  out.topUp = {
    count: all.length,
    p50: median(ms),
    p95: pct(ms, 0.95),
    eventBytes: median(all.map((t) => t.eventBytes)),
    requestBytes: median(all.map((t) => t.requestBytes)),
    responseBytes: median(all.map((t) => t.responseBytes)),
  };
  return out;
}

async function benchStreamOn(chain: BenchChain, o: StreamBenchOptions, sync: string, allTopUps: OneRun["topUps"]): Promise<{ rows: StreamBenchRow[]; signed: bigint; spent: bigint }> {
  const payee = chain.account(0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-stream-"));
  const server = await spawnTs(path.join(__dirname, "stream-server.ts"), {
    env: {
      RPC_URL: chain.rpcUrl,
      ESCROW_ADDRESS: chain.escrow,
      TOKEN_ADDRESS: chain.token,
      PAYEE_ADDRESS: payee,
      DATABASE_URL: path.join(dir, "bench.sqlite"),
      PORT: "0",
      LOG_LEVEL: "warn",
      SETTLE_IN_SERVER: "false",
      SQLITE_SYNCHRONOUS: sync,
    },
    ready: /ready (http:\/\/\S+)/,
    nodeArgs: process.env.BENCH_SERVER_NODE_ARGS ? process.env.BENCH_SERVER_NODE_ARGS.split(" ") : undefined,
  });
  o.children.add(server);
  try {
    const url = server.match[1];
    const deposit = 50_000_000n;
    await fundPayer(chain, PAYER_INDEX, deposit);
    const ch = await openBenchChannel(chain, { payerIndex: PAYER_INDEX, payee, deposit });
    const challenge = await fetch(`${url}/bench/stream-paid`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    await challenge.arrayBuffer();
    const terms = decodePaymentRequired(challenge.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
    const payer = new Payer(ch, terms);
    // warm-up: both paths once
    await runStream(url, "/bench/stream-free", 2_000, null);
    await runStream(url, "/bench/stream-paid", 2_000, payer);
    let spent = 2_000n * PRICE;
    const rows: StreamBenchRow[] = [];
    for (const [c, n] of [
      [1, 20_000],
      [8, 10_000],
    ] as const) {
      const unpaid: number[] = [];
      const paid: number[] = [];
      const topUps: number[] = [];
      for (let round = 0; round < o.rounds; round++) {
        unpaid.push((await concurrent(url, "/bench/stream-free", n, c, null)).tps);
        const p = await concurrent(url, "/bench/stream-paid", n, c, payer);
        paid.push(p.tps);
        spent += BigInt(n * c) * PRICE;
        topUps.push(p.runs.reduce((s, r) => s + r.topUps.length, 0) / c);
        for (const r of p.runs) allTopUps.push(...r.topUps);
        o.log(`stream (SQLite ${sync}): ${c} × ${n} tokens, round ${round + 1}: unpaid ${Math.round(unpaid.at(-1)!)} tokens/s, paid ${Math.round(paid.at(-1)!)} tokens/s`);
      }
      rows.push({ store: `SQLite ${sync}`, concurrency: c, tokensPerStream: n, unpaid: median(unpaid), paid: median(paid), topUpsPerStream: median(topUps) });
    }
    return { rows, signed: payer.signed, spent };
  } finally {
    await server.stop();
    o.children.delete(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The section's Markdown (appended to the report). */
export function renderStream(r: StreamBenchResults, loadNote: string): string {
  const s: string[] = [];
  const int = (n: number | bigint) => (typeof n === "bigint" ? n : BigInt(Math.round(n))).toLocaleString("en-US");
  s.push("## Streamed responses paid per token (issue 14)");
  s.push("");
  s.push(
    "The real server (one process; SQLite FULL, then NORMAL) runs one token producer twice: unpaid (a plain event stream) and paid " +
      "(`paywall.stream`, 0.00001 USDC per token, reserve and top-up 0.01 = 1,000 tokens, checkpoints every 1,000 tokens or 1 s). " +
      "A client in the benchmark process reads the events and answers each `payment-need-voucher` with a top-up on the side " +
      `request. Tokens per second over all streams, median of ${r.rounds} rounds (unpaid and paid alternate).`,
  );
  s.push("");
  s.push("| store | streams | tokens each | unpaid tokens/s | paid tokens/s | paid / unpaid | top-ups per paid stream |");
  s.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const row of r.rows) {
    s.push(`| ${row.store} | ${row.concurrency} | ${int(row.tokensPerStream)} | ${int(row.unpaid)} | ${int(row.paid)} | ${((row.paid / row.unpaid) * 100).toFixed(0)}% | ${row.topUpsPerStream} |`);
  }
  s.push("");
  const t = r.topUp;
  s.push(
    `Per top-up (${int(t.count)}): round trip ${t.p50.toFixed(2)} ms p50, ${t.p95.toFixed(2)} ms p95 (event parsed → answer read, while the stream goes on); ` +
      `${int(t.eventBytes)} B of \`payment-need-voucher\` event, ${int(t.requestBytes)} B of request (\`PAYMENT-SIGNATURE\` + path), ` +
      `${int(t.responseBytes)} B of answer (\`PAYMENT-RESPONSE\` + body), HTTP framing not counted. ` +
      `signed / spent on the channel at the end: ${int(r.signed)} / ${int(r.spent)} = ${(Number(r.signed) / Number(r.spent)).toFixed(3)} ` +
      "(the client signs each stream's reserve and every top-up asked; unused reservations are released, never charged). " +
      `Target: paid ≥ 80% of unpaid. ${loadNote}`,
  );
  s.push("");
  return s.join("\n");
}
