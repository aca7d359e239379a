/**
 * The `channel` command line (npm bin `channel`, run by bin/channel.js): open channels, make paid calls, show status,
 * top up, close, withdraw. See `channel --help`.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { createPublicClient, createWalletClient, defineChain, getAddress, http, isAddress, isHex, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createChannelClient, type ChannelClient, type ClientEvent, type PaymentInfo } from "./client";
import { ClientError, shortMessageOf } from "./errors";
import { amount, duration, ms, percentile, ProgressBar, shortHex, table, toJson, type TokenInfo } from "./cli-format";
import { isBytes32Hex } from "@paychan/protocol";

/** Hardhat's public test account #1: the default payer on a local chain (npm start gives it 1,000 MockUSDC). */
export const HARDHAT_ACCOUNT_1_KEY: Hex = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const LOCAL_CHAIN_IDS = [31337, 1337];

export const USAGE = `channel — pay HTTP APIs through prepaid payment channels

Usage: channel <command> [options]

Commands:
  call <url>                   paid request; prints the body, and the receipt on stderr
       -n <N>                  make N calls (progress bar, then a summary: latency, amount paid, calls/s)
       -c <C>                  with C in flight at once (default 1)
       -X <METHOD>             HTTP method (default GET, or POST with -d)
       -d <body>               request body (sent as application/json when it parses as JSON)
       -H "name: value"        extra request header (repeatable)
       -v                      with -n, print every receipt
  status                       channels: deposit, spent, settled, remaining, close state
  open <payee> <amount>        open a channel to <payee> with <amount> tokens
  top-up <channelId> <amount>  add <amount> tokens to a channel
  close <channelId>            ask the provider to close cooperatively, else requestClose on chain
       --on-chain              skip the provider: requestClose on chain
  withdraw <channelId>         after the close delay: refund the unspent deposit
  address                      the payer and session key addresses

Options:
  --key-file <path>            funding (payer) key file; else CHANNEL_PRIVATE_KEY or PRIVATE_KEY
                               (on a local chain, 31337, Hardhat's test account #1 when none is given)
  --rpc <url>                  JSON-RPC endpoint; else RPC_URL, default http://127.0.0.1:8545
  --state-dir <dir>            channels and session key; else CHANNEL_STATE_DIR, default ./.channel
  --max-price <amount>         refuse calls above this price (default 0.01; CHANNEL_MAX_PRICE)
  --max-deposit <amount>       most held unspent in one channel (default 5; CHANNEL_MAX_DEPOSIT)
  --deposit <amount>           deposit of a new channel (default: min(max-deposit, 1000 × price), ≥ the provider's minimum)
  --escrow <address>           trusted escrow (default: deployments/<chainId>.json when present, else any)
  --token <address>            token for open (default: deployments/<chainId>.json)
  --close-delay <seconds>      close delay of a new channel (default: the provider's minimum, or 1 day for open)
  --json                       machine-readable output
  -h, --help                   this help

Amounts are in token units ("0.5" USDC); channel ids may be abbreviated to a unique prefix.
Example: channel call "http://127.0.0.1:4021/v1/echo?msg=hi" -n 1000 -c 16`;

interface Deployment {
  escrow: Address;
  token: Address;
  blockNumber?: number;
}

class UsageError extends Error {}

function loadDeployment(chainId: number): Deployment | undefined {
  for (const dir of [process.env.CHANNEL_DEPLOYMENTS_DIR ?? path.join(process.cwd(), "deployments")]) {
    const f = path.join(dir, `${chainId}.json`);
    if (!existsSync(f)) continue;
    try {
      const j = JSON.parse(readFileSync(f, "utf8"));
      if (isAddress(j.escrow) && isAddress(j.token)) return { escrow: getAddress(j.escrow), token: getAddress(j.token), blockNumber: j.blockNumber };
    } catch {
      /* ignore a malformed record */
    }
  }
  return undefined;
}

function readKey(opts: { "key-file"?: string }): Hex | undefined {
  let raw: string | undefined;
  if (opts["key-file"]) {
    try {
      raw = readFileSync(opts["key-file"], "utf8").trim();
    } catch (e) {
      throw new UsageError(`cannot read the key file ${opts["key-file"]}: ${shortMessageOf(e)}`);
    }
  } else raw = process.env.CHANNEL_PRIVATE_KEY ?? process.env.PRIVATE_KEY;
  if (raw === undefined || raw === "") return undefined;
  const key = (raw.startsWith("0x") ? raw : `0x${raw}`) as Hex;
  if (!isHex(key) || key.length !== 66) throw new UsageError("the private key must be 32 bytes of hex");
  return key;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      n: { type: "string", short: "n" },
      c: { type: "string", short: "c" },
      X: { type: "string", short: "X" },
      d: { type: "string", short: "d" },
      H: { type: "string", short: "H", multiple: true },
      v: { type: "boolean", short: "v" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      "key-file": { type: "string" },
      rpc: { type: "string" },
      "state-dir": { type: "string" },
      "max-price": { type: "string" },
      "max-deposit": { type: "string" },
      deposit: { type: "string" },
      escrow: { type: "string" },
      token: { type: "string" },
      "close-delay": { type: "string" },
      "on-chain": { type: "boolean" },
    },
  });
}

type Opts = ReturnType<typeof parse>["values"];

function positiveInt(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer`);
  return n;
}

/** Everything a command needs: the client and how to print. */
interface Context {
  agent: ChannelClient;
  json: boolean;
  deployment?: Deployment;
  tokens: Map<string, TokenInfo>;
  out: (s: string) => void;
  err: (s: string) => void;
}

async function setup(opts: Opts, err: (s: string) => void): Promise<Context> {
  const rpcUrl = opts.rpc ?? process.env.RPC_URL ?? "http://127.0.0.1:8545";
  const transport = http(rpcUrl, { timeout: 15_000, retryCount: 1 });
  let chainId: number;
  try {
    chainId = await createPublicClient({ transport }).getChainId();
  } catch (e) {
    throw new ClientError("chain_failure", `cannot reach the chain at ${rpcUrl}`, {
      details: "Start one with `npm start` (local chain and demo server) or set RPC_URL.",
      cause: e,
    });
  }
  const local = LOCAL_CHAIN_IDS.includes(chainId);
  let key = readKey(opts);
  if (!key) {
    if (!local) throw new UsageError("no key: set CHANNEL_PRIVATE_KEY (or PRIVATE_KEY) or pass --key-file");
    key = HARDHAT_ACCOUNT_1_KEY;
    if (!opts.json) err("(no key given: using Hardhat's public test account #1 on this local chain)");
  }
  const chain = defineChain({
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
  const account = privateKeyToAccount(key);
  const publicClient = createPublicClient({ chain, transport, pollingInterval: local ? 50 : 2_000 });
  const walletClient = createWalletClient({ chain, transport, account });
  const deployment = loadDeployment(chainId);
  const escrows = opts.escrow ? [opts.escrow] : deployment ? [deployment.escrow] : undefined;
  if (opts.escrow && !isAddress(opts.escrow)) throw new UsageError("--escrow must be an address");
  if (opts.token && !isAddress(opts.token)) throw new UsageError("--token must be an address");
  const closeDelay = opts["close-delay"] === undefined ? undefined : positiveInt(opts["close-delay"], "--close-delay", 0);
  const onEvent = (e: ClientEvent) => {
    if (opts.json) return;
    if (e.type === "channel_opened") err(`opened channel ${e.channelId} (${e.method}, tx ${shortHex(e.txHash)})`);
    else if (e.type === "channel_recovered") err(`recovered channel ${e.channelId} from the chain`);
    else if (e.type === "topped_up") err(`topped up channel ${shortHex(e.channelId)} (tx ${shortHex(e.txHash)})`);
    else if (e.type === "top_up_failed") err(`top-up of ${shortHex(e.channelId)} failed: ${shortMessageOf(e.error)}`);
    else if (e.type === "store_error") err(`state not saved: ${shortMessageOf(e.error)}`);
  };
  const agent = createChannelClient({
    account,
    publicClient,
    walletClient,
    stateDir: opts["state-dir"] ?? process.env.CHANNEL_STATE_DIR ?? ".channel",
    limits: {
      maxPrice: opts["max-price"] ?? process.env.CHANNEL_MAX_PRICE ?? "0.01",
      maxDeposit: opts["max-deposit"] ?? process.env.CHANNEL_MAX_DEPOSIT ?? "5",
      escrows,
    },
    policy: { deposit: opts.deposit, closeDelay },
    discoverFromBlock: deployment?.blockNumber !== undefined ? BigInt(deployment.blockNumber) : 0n,
    onEvent,
  });
  await agent.ready();
  return { agent, json: Boolean(opts.json), deployment, tokens: new Map(), out: (s) => process.stdout.write(s + "\n"), err };
}

async function tokenInfo(ctx: Context, token: Address): Promise<TokenInfo> {
  const k = token.toLowerCase();
  let t = ctx.tokens.get(k);
  if (!t) {
    const [decimals, symbol] = await Promise.all([
      ctx.agent.decimalsOf(token),
      ctx.agent.symbolOf(token),
    ]);
    t = { decimals, symbol };
    ctx.tokens.set(k, t);
  }
  return t;
}

function resolveChannel(ctx: Context, idOrPrefix: string | undefined): Hex {
  if (!idOrPrefix) throw new UsageError("a channel id is required");
  const p = idOrPrefix.toLowerCase();
  const matches = ctx.agent.channels().filter((c) => c.id.toLowerCase().startsWith(p));
  if (matches.length === 1) return matches[0].id;
  if (matches.length > 1) throw new UsageError(`${idOrPrefix} matches ${matches.length} channels; give more digits`);
  if (isBytes32Hex(idOrPrefix)) return idOrPrefix;
  throw new ClientError("unknown_channel", `no channel ${idOrPrefix} in this state directory`);
}

// ------------------------------------------------------------------ commands

async function cmdStatus(ctx: Context): Promise<number> {
  const channels = await ctx.agent.status();
  if (ctx.json) {
    ctx.out(toJson({ payer: ctx.agent.payerAddress, signer: ctx.agent.signerAddress, chainId: ctx.agent.chainId, channels }));
    return 0;
  }
  ctx.out(`payer ${ctx.agent.payerAddress}   session key ${ctx.agent.signerAddress}   chain ${ctx.agent.chainId}`);
  if (channels.length === 0) {
    ctx.out("no channels yet (one opens on the first paid call, or with `channel open`)");
    return 0;
  }
  const now = Math.floor(Date.now() / 1000);
  const rows = [["CHANNEL", "PAYEE", "DEPOSIT", "SPENT", "SETTLED", "REMAINING", "STATE"]];
  for (const c of channels) {
    const t = await tokenInfo(ctx, c.token);
    let state: string = c.status;
    if (c.status === "closing" && c.closesAt) state = `closing (withdraw ${c.closesAt <= now ? "now" : `in ${duration(c.closesAt - now)}`})`;
    else if (c.status === "closing") state = "closing (cooperative)";
    else if (c.status === "missing") state = "missing (not on this chain)";
    rows.push([shortHex(c.channelId), shortHex(c.payee, 4), amount(c.deposit, t), amount(c.spent, t), amount(c.settled, t), amount(c.remaining, t), state]);
  }
  ctx.out(table(rows));
  return 0;
}

async function cmdOpen(ctx: Context, opts: Opts, payee: string | undefined, value: string | undefined): Promise<number> {
  if (!payee || !isAddress(payee)) throw new UsageError("open needs a payee address");
  if (!value) throw new UsageError("open needs an amount");
  const escrow = (opts.escrow ?? ctx.deployment?.escrow) as Address | undefined;
  const token = (opts.token ?? ctx.deployment?.token) as Address | undefined;
  if (!escrow || !token) throw new UsageError("no deployment record for this chain: pass --escrow and --token");
  const closeDelay = opts["close-delay"] === undefined ? undefined : positiveInt(opts["close-delay"], "--close-delay", 0);
  const ch = await ctx.agent.openChannel({ payee: getAddress(payee), amount: value, escrow, token, closeDelay });
  const t = await tokenInfo(ctx, token);
  if (ctx.json) ctx.out(toJson({ channelId: ch.id, deposit: ch.deposit, payee: ch.payee, token: ch.token, escrow: ch.escrow, closeDelay: ch.closeDelay, tx: ch.openTx }));
  else ctx.out(`channel ${ch.id}\n  deposit ${amount(ch.deposit, t)} to ${ch.payee}, close delay ${duration(ch.closeDelay)}`);
  return 0;
}

async function cmdTopUp(ctx: Context, id: string | undefined, value: string | undefined): Promise<number> {
  const channelId = resolveChannel(ctx, id);
  if (!value) throw new UsageError("top-up needs an amount");
  const ch = await ctx.agent.topUp(channelId, value);
  const t = await tokenInfo(ctx, ch.token);
  if (ctx.json) ctx.out(toJson({ channelId: ch.id, deposit: ch.deposit, remaining: ch.deposit - ch.signed }));
  else ctx.out(`channel ${ch.id}\n  deposit ${amount(ch.deposit, t)}, remaining ${amount(ch.deposit - ch.signed, t)}`);
  return 0;
}

async function cmdClose(ctx: Context, opts: Opts, id: string | undefined): Promise<number> {
  const channelId = resolveChannel(ctx, id);
  const r = await ctx.agent.closeChannel(channelId, { mode: opts["on-chain"] ? "on-chain" : "auto" });
  if (ctx.json) ctx.out(toJson({ channelId, ...r }));
  else if (r.mode === "cooperative") ctx.out(`channel ${channelId}\n  the provider accepted a cooperative close: it settles and refunds the rest to the payer`);
  else {
    const when = r.closesAt ? new Date(r.closesAt * 1000).toISOString() : "after the close delay";
    ctx.out(`channel ${channelId}\n  close requested on chain; run \`channel withdraw ${shortHex(channelId)}\` from ${when}`);
  }
  return 0;
}

async function cmdWithdraw(ctx: Context, id: string | undefined): Promise<number> {
  const channelId = resolveChannel(ctx, id);
  const ch = ctx.agent.channels().find((c) => c.id === channelId);
  const r = await ctx.agent.withdraw(channelId);
  const t = ch ? await tokenInfo(ctx, ch.token) : { decimals: 0, symbol: "" };
  if (ctx.json) ctx.out(toJson({ channelId, ...r }));
  else ctx.out(`channel ${channelId}\n  withdrawn: ${amount(r.refund, t)} refunded to ${ctx.agent.payerAddress} (tx ${shortHex(r.txHash)})`);
  return 0;
}

function requestInit(opts: Opts): RequestInit {
  const headers = new Headers();
  for (const h of opts.H ?? []) {
    const i = h.indexOf(":");
    if (i <= 0) throw new UsageError(`-H needs "name: value", got ${JSON.stringify(h)}`);
    headers.append(h.slice(0, i).trim(), h.slice(i + 1).trim());
  }
  const method = (opts.X ?? (opts.d !== undefined ? "POST" : "GET")).toUpperCase();
  if (opts.d !== undefined && !headers.has("content-type")) {
    let isJson = true;
    try {
      JSON.parse(opts.d);
    } catch {
      isJson = false;
    }
    headers.set("content-type", isJson ? "application/json" : "text/plain;charset=UTF-8");
  }
  return { method, headers, body: opts.d };
}

async function receiptLine(ctx: Context, p: PaymentInfo): Promise<string> {
  const ch = ctx.agent.channels().find((c) => c.id === p.channelId);
  const t = ch ? await tokenInfo(ctx, ch.token) : { decimals: 0, symbol: "" };
  const r = p.receipt;
  if (!r) return `paid on ${shortHex(p.channelId)} with voucher ${amount(p.cumulativeAmount, t)} (no receipt)`;
  return `paid ${amount(r.amount, t)} on ${shortHex(p.channelId)}: spent ${amount(r.extra.spent, t)} of ${amount(r.extra.deposit, t)}, remaining ${amount(r.extra.remaining, t)}`;
}

async function cmdCall(ctx: Context, opts: Opts, url: string | undefined): Promise<number> {
  if (!url) throw new UsageError("call needs a URL");
  try {
    new URL(url);
  } catch {
    throw new UsageError(`not a URL: ${url}`);
  }
  const n = positiveInt(opts.n, "-n", 1);
  const c = Math.min(positiveInt(opts.c, "-c", 1), n);
  const init = requestInit(opts);

  if (n === 1 && !opts.n) {
    const res = await ctx.agent.fetch(url, init);
    const body = await res.text();
    const p = ctx.agent.paymentOf(res);
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

  const latencies: number[] = [];
  const failures = new Map<string, number>();
  let paid = 0;
  let amountPaid = 0n;
  let last: PaymentInfo | undefined;
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
        if (p) {
          paid++;
          amountPaid += p.receipt?.amount ?? 0n;
          if (!last || (p.receipt && last.receipt && p.receipt.extra.spent > last.receipt.extra.spent) || !last.receipt) last = p;
          if (opts.v && !ctx.json) ctx.err(await receiptLine(ctx, p));
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
  const t = ch ? await tokenInfo(ctx, ch.token) : { decimals: 0, symbol: "" };
  const summary = {
    calls: n,
    concurrency: c,
    paid,
    failures: failed,
    failureReasons: Object.fromEntries(failures),
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? NaN },
    amountPaid,
    callsPerSecond: n / elapsed,
    seconds: elapsed,
    channelId: last?.channelId,
    lastReceipt: last?.receipt,
    requests: ctx.agent.stats.httpRequests,
  };
  if (ctx.json) ctx.out(toJson(summary));
  else {
    ctx.out(`calls ${n}  paid ${paid}  failures ${failed}${failed ? `  (${[...failures].map(([k, v]) => `${k}: ${v}`).join(", ")})` : ""}`);
    ctx.out(`latency p50 ${ms(summary.latencyMs.p50)}  p99 ${ms(summary.latencyMs.p99)}  max ${ms(summary.latencyMs.max)}`);
    ctx.out(`amount paid ${amount(amountPaid, t)}${last ? `  on channel ${shortHex(last.channelId)}` : ""}  (${ctx.agent.stats.httpRequests} HTTP requests)`);
    if (last) ctx.out(`last receipt: ${await receiptLine(ctx, last)}`);
    ctx.out(`${n} calls in ${elapsed.toFixed(2)} s: ${(n / elapsed).toFixed(1)} calls/s with ${c} in flight`);
  }
  return failed === 0 ? 0 : 1;
}

async function cmdAddress(ctx: Context): Promise<number> {
  const out = { payer: ctx.agent.payerAddress, signer: ctx.agent.signerAddress, chainId: ctx.agent.chainId };
  if (ctx.json) ctx.out(toJson(out));
  else ctx.out(`payer        ${out.payer}\nsession key  ${out.signer}\nchain        ${out.chainId}`);
  return 0;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const err = (s: string) => process.stderr.write(s + "\n");
  let opts: Opts;
  let positionals: string[];
  try {
    ({ values: opts, positionals } = parse(argv));
  } catch (e) {
    err(`channel: ${shortMessageOf(e)}\nRun \`channel --help\` for usage.`);
    return 2;
  }
  const [command, ...args] = positionals;
  if (opts.help || !command || command === "help") {
    process.stdout.write(USAGE + "\n");
    return command || opts.help ? 0 : 2;
  }
  const known = ["call", "status", "open", "top-up", "topup", "close", "withdraw", "address"];
  if (!known.includes(command)) {
    err(`channel: unknown command ${JSON.stringify(command)}\nRun \`channel --help\` for usage.`);
    return 2;
  }
  let ctx: Context | undefined;
  try {
    ctx = await setup(opts, err);
    switch (command) {
      case "call":
        return await cmdCall(ctx, opts, args[0]);
      case "status":
        return await cmdStatus(ctx);
      case "open":
        return await cmdOpen(ctx, opts, args[0], args[1]);
      case "top-up":
      case "topup":
        return await cmdTopUp(ctx, args[0], args[1]);
      case "close":
        return await cmdClose(ctx, opts, args[0]);
      case "withdraw":
        return await cmdWithdraw(ctx, args[0]);
      default:
        return await cmdAddress(ctx);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`channel: ${e.message}\nRun \`channel --help\` for usage.`);
      return 2;
    }
    if (opts.json) {
      const ce = e instanceof ClientError ? e : undefined;
      process.stdout.write(toJson({ error: { code: ce?.code ?? "error", message: ce?.shortMessage ?? shortMessageOf(e), details: ce?.details, serverCode: ce?.serverCode } }) + "\n");
    } else if (e instanceof ClientError) {
      err(`channel: ${e.shortMessage} [${e.code}${e.serverCode ? `/${e.serverCode}` : ""}]${e.details ? `\n  ${e.details}` : ""}`);
    } else {
      err(`channel: ${shortMessageOf(e)}`);
    }
    return 1;
  } finally {
    await ctx?.agent.flush().catch((e) => err(`channel: state not saved: ${shortMessageOf(e)}`));
  }
}
