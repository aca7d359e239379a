/**
 * `channel call <url>`: one paid request (the body on stdout, the receipt on stderr), or with `-n N` a run of N calls,
 * `-c C` in flight at once, ending with a summary: failures by reason, latency percentiles, amount paid, calls/s.
 */
import { performance } from "node:perf_hooks";
import type { ChannelPaymentInfo, ExactPaymentInfo, PaymentInfo } from "../../options";
import { positiveInt } from "../args";
import type { Command, Context } from "../setup";
import { UsageError } from "../usage";

interface CallInput {
  url: string;
  /** Number of calls. */
  n: number;
  /** Calls in flight at once (≤ n). */
  c: number;
  /** One call without -n: print its body, not a summary. */
  single: boolean;
  init: RequestInit;
  /** -v: print every receipt of a run. */
  verbose: boolean;
}

/** `channel call <url> [-n N] [-c C] [-X METHOD] [-d body] [-H header] [-v]`. */
export const call: Command<CallInput> = {
  parse([url], opts) {
    if (!url) throw new UsageError("call needs a URL");
    try {
      new URL(url);
    } catch {
      throw new UsageError(`not a URL: ${url}`);
    }
    const n = positiveInt(opts.n, "-n", 1);
    const c = Math.min(positiveInt(opts.c, "-c", 1), n);
    const init = requestInit(opts.H ?? [], opts.X, opts.d);
    return { url, n, c, single: n === 1 && !opts.n, init, verbose: Boolean(opts.v) };
  },

  async run(ctx, input) {
    return input.single ? callOnce(ctx, input) : callMany(ctx, input);
  },
};

/** The request's method, headers and body: -X, -H (repeatable) and -d (JSON when it parses as JSON). */
function requestInit(headerArgs: string[], method: string | undefined, body: string | undefined): RequestInit {
  const headers = new Headers();
  for (const h of headerArgs) {
    const i = h.indexOf(":");
    if (i <= 0) throw new UsageError(`-H needs "name: value", got ${JSON.stringify(h)}`);
    headers.append(h.slice(0, i).trim(), h.slice(i + 1).trim());
  }
  const m = (method ?? (body !== undefined ? "POST" : "GET")).toUpperCase();
  if (body !== undefined && !headers.has("content-type")) {
    let isJson = true;
    try {
      JSON.parse(body);
    } catch {
      isJson = false;
    }
    headers.set("content-type", isJson ? "application/json" : "text/plain;charset=UTF-8");
  }
  return { method: m, headers, body };
}

/** Output helpers, required when a call runs (they import @paychan/protocol, hence viem): `parse` must not load them. */
const format = () => require("../format") as typeof import("../format");

async function callOnce(ctx: Context, { url, init }: CallInput): Promise<number> {
  const { toJson } = format();
  const res = await ctx.agent.fetch(url, init);
  const p = ctx.agent.paymentOf(res);
  if (p && p.scheme !== "exact" && p.stream) return streamOnce(ctx, res, p);
  const body = await res.text();
  if (ctx.json) {
    let parsed: unknown = body;
    try {
      parsed = JSON.parse(body);
    } catch {
      /* text */
    }
    ctx.out(toJson({ status: res.status, body: parsed, payment: p ?? null }));
  } else {
    ctx.out(body);
    if (p) ctx.err(await receiptLine(ctx, p));
    if (!res.ok) ctx.err(`HTTP ${res.status}`);
  }
  return res.ok ? 0 : 1;
}

async function callMany(ctx: Context, { url, n, c, init, verbose }: CallInput): Promise<number> {
  const { amount, ms, percentile, ProgressBar, shortHex, toJson } = format();
  const { ClientError, shortMessageOf } = require("../../errors") as typeof import("../../errors");
  const latencies: number[] = [];
  const failures = new Map<string, number>();
  let paid = 0;
  let amountPaid = 0n;
  let last: ChannelPaymentInfo | undefined;
  let lastExact: ExactPaymentInfo | undefined;
  const byScheme = { channel: 0, exact: 0 };
  let next = 0;
  const bar = new ProgressBar(n);
  if (!ctx.json) bar.start();
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      next++;
      const s = performance.now();
      let ok = false;
      try {
        const res = await ctx.agent.fetch(url, init);
        await res.arrayBuffer();
        latencies.push(performance.now() - s);
        const p = ctx.agent.paymentOf(res);
        if (p?.scheme === "exact") {
          paid++;
          byScheme.exact++;
          if (p.transaction) amountPaid += p.price; // exact: the receipt's transaction moved exactly the price
          lastExact = p;
          if (verbose && !ctx.json) ctx.err(await receiptLine(ctx, p));
        } else if (p) {
          paid++;
          byScheme.channel++;
          amountPaid += p.receipt?.amount ?? 0n;
          if (!last || (p.receipt && last.receipt && p.receipt.extra.spent > last.receipt.extra.spent) || !last.receipt) last = p;
          if (verbose && !ctx.json) ctx.err(await receiptLine(ctx, p));
        }
        ok = res.ok;
        if (!ok) failures.set(`HTTP ${res.status}`, (failures.get(`HTTP ${res.status}`) ?? 0) + 1);
      } catch (e) {
        const k = e instanceof ClientError ? e.code + (e.serverCode ? `/${e.serverCode}` : "") : shortMessageOf(e);
        failures.set(k, (failures.get(k) ?? 0) + 1);
      }
      bar.tick(ok);
    }
  };
  await Promise.all(Array.from({ length: c }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  bar.stop();
  latencies.sort((a, b) => a - b);
  const failed = [...failures.values()].reduce((a, b) => a + b, 0);
  const ch = last ? ctx.agent.channels().find((x) => x.id === last!.channelId) : undefined;
  const token = ch?.token ?? lastExact?.asset;
  const t = token ? await ctx.tokenInfo(token) : { decimals: 0, symbol: "" };
  const summary = {
    calls: n,
    concurrency: c,
    paid,
    failures: failed,
    failureReasons: Object.fromEntries(failures),
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? NaN },
    paidByScheme: byScheme,
    amountPaid,
    amountSigned: token ? (ctx.agent.stats.amountSigned[token.toLowerCase()] ?? 0n) : signedSum(ctx),
    callsPerSecond: n / elapsed,
    seconds: elapsed,
    channelId: last?.channelId,
    lastReceipt: last?.receipt,
    lastExact: lastExact ? { transaction: lastExact.transaction, payTo: lastExact.payTo, price: lastExact.price } : undefined,
    requests: ctx.agent.stats.httpRequests,
    gaslessOpens: ctx.agent.stats.gaslessOpens,
    openFees: token ? (ctx.agent.stats.openFees[token.toLowerCase()] ?? 0n) : 0n,
  };
  if (ctx.json) ctx.out(toJson(summary));
  else {
    ctx.out(`calls ${n}  paid ${paid}${byScheme.exact ? ` (channel ${byScheme.channel}, exact ${byScheme.exact})` : ""}  failures ${failed}${failed ? `  (${[...failures].map(([k, v]) => `${k}: ${v}`).join(", ")})` : ""}`);
    ctx.out(`latency p50 ${ms(summary.latencyMs.p50)}  p99 ${ms(summary.latencyMs.p99)}  max ${ms(summary.latencyMs.max)}`);
    ctx.out(`amount paid ${amount(amountPaid, t)}${last ? `  on channel ${shortHex(last.channelId)}` : ""}  (${ctx.agent.stats.httpRequests} HTTP requests)`);
    ctx.out(`amount signed ${token ? amount(summary.amountSigned, t) : `${summary.amountSigned} (atomic units)`}  (what the provider could settle; "paid" is what its receipts say)`);
    if (summary.gaslessOpens) ctx.out(`channels opened by the provider (gasless): ${summary.gaslessOpens}, open fees ${amount(summary.openFees, t)}`);
    if (last) ctx.out(`last receipt: ${await receiptLine(ctx, last)}`);
    if (lastExact) ctx.out(`last exact receipt: ${await receiptLine(ctx, lastExact)}`);
    ctx.out(`${n} calls in ${elapsed.toFixed(2)} s: ${(n / elapsed).toFixed(1)} calls/s with ${c} in flight`);
  }
  return failed === 0 ? 0 : 1;
}

/** Everything this run signed, over every token (atomic units; for a run in which no call was served). */
function signedSum(ctx: Context): bigint {
  return Object.values(ctx.agent.stats.amountSigned).reduce((a, b) => a + b, 0n);
}

/** `paid 0.001 USDC on 0xabcd…: spent … of …, remaining …`, or `paid 0.001 USDC with exact to 0x…: transaction 0x…` */
/**
 * A paid stream (docs/protocol.md § 7.7): each event's data on stdout as it arrives (one line per event; `--json`: one
 * JSON object at the end), then the charge on stderr from the final receipt.
 */
async function streamOnce(ctx: Context, res: Response, p: ChannelPaymentInfo): Promise<number> {
  const { toJson } = format();
  const { SseParser } = require("@paychan/protocol") as typeof import("@paychan/protocol");
  const parser = new SseParser();
  const events: string[] = [];
  const reader = res.body!.getReader();
  let failure: unknown;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let lines = "";
      for (const f of parser.push(value)) {
        if (ctx.json) events.push(f.data);
        else lines += `${f.data}\n`;
      }
      if (lines) process.stdout.write(lines);
    }
  } catch (e) {
    failure = e;
  }
  const stream = p.stream!;
  const receipt = await stream.final.catch((e) => {
    failure ??= e;
    return undefined;
  });
  if (ctx.json) {
    ctx.out(toJson({ status: res.status, events: events.map((d) => { try { return JSON.parse(d); } catch { return d; } }), payment: { ...p, stream: { ...stream, final: undefined } } }));
  } else {
    ctx.err(`${await receiptLine(ctx, p)}; stream: ${receipt ? ((receipt.extra as { stream?: { reason?: string } }).stream?.reason ?? "ended") : "interrupted"}, ${stream.topUps} top-up${stream.topUps === 1 ? "" : "s"}${stream.topUpsDeclined ? `, ${stream.topUpsDeclined} declined` : ""}`);
  }
  if (failure) throw failure;
  return res.ok ? 0 : 1;
}

async function receiptLine(ctx: Context, p: PaymentInfo): Promise<string> {
  const { amount, shortHex } = format();
  if (p.scheme === "exact") {
    const t = await ctx.tokenInfo(p.asset);
    if (!p.transaction) return `signed ${amount(p.price, t)} with exact to ${p.payTo} (no receipt)`;
    return `paid ${amount(p.price, t)} with exact to ${p.payTo}: transaction ${p.transaction}`;
  }
  const ch = ctx.agent.channels().find((c) => c.id === p.channelId);
  const t = ch ? await ctx.tokenInfo(ch.token) : { decimals: 0, symbol: "" };
  const r = p.receipt;
  // A gasless open: the provider opened the channel from the payer's signature and charged its fee with this call.
  const opened = p.open ? ` (channel opened by the provider: open fee ${amount(p.open.fee, t)} included${ch?.openTx ? `, tx ${ch.openTx}` : ""})` : "";
  if (!r) return `paid on ${shortHex(p.channelId)} with voucher ${amount(p.cumulativeAmount, t)} (no receipt)${opened}`;
  return `paid ${amount(r.amount, t)} on ${shortHex(p.channelId)}: spent ${amount(r.extra.spent, t)} of ${amount(r.extra.deposit, t)}, remaining ${amount(r.extra.remaining, t)}${opened}`;
}
