/**
 * Hostile input against the running server (`server/main.ts` as a child process, the real configuration path):
 *
 * 1. a fast-check fuzz of whole requests sent as raw bytes over a socket — methods, targets, repeated and oddly
 *    cased headers, PAYMENT-SIGNATURE values (replayed, truncated base64, mutated JSON with wrong types, huge
 *    numbers, unicode, oversized), bodies (JSON with wrong types, random bytes, oversized, wrong Content-Length,
 *    chunked garbage): never a 5xx, never a stack trace or a source path in an answer, and never a database write;
 * 2. a flood of 5,000 unauthenticated requests (402 challenges, vouchers for random channel ids, vouchers with
 *    forged signatures for a real channel, replays): all refused, and the database does not change or grow.
 *
 * "No write" is proven three ways on a separate read-only connection: SQLite's `data_version` (changes on any
 * commit by another connection), a dump of every table, and the sizes of the database file and its WAL.
 * The server follows the chain every 60 s only, and no block is mined during the checks, so the chain follower
 * has nothing to write either.
 */
import { expect } from "chai";
import fc from "fast-check";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { decodePaymentRequired, HEADER_PAYMENT_SIGNATURE, type ChannelRequirements } from "@paychan/protocol";
import { openSqliteProbe, type SqliteProbe } from "../helpers/db-probe";
import { deployEscrow, openChannel, USDC, type OpenedChannel } from "../helpers/escrow";
import { startServerProcess, type ServerProcess } from "../helpers/process";
import { paymentHeaders, paymentJson, rawHeader, rpcUrl, tempDatabaseUrl } from "../helpers/server";

const PRICE = 1_000n;
/** A stack frame, a source location, or an error class name leaking into an answer. */
const LEAK = /\n\s+at\s|\bat\s+\S+\s+\(|node_modules|\/work\/|\.ts:\d+|\.js:\d+|\b(Type|Range|Syntax|Reference)Error\b/;

interface RawAnswer {
  status: number | null;
  head: string;
  body: string;
}

/** Sends raw bytes, half-closes, and reads the answer until the server closes (or 10 s pass). */
function raw(port: number, data: Buffer): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, "127.0.0.1", () => s.end(data));
    const done = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      const cut = text.indexOf("\r\n\r\n");
      resolve({ status: m ? Number(m[1]) : null, head: cut >= 0 ? text.slice(0, cut) : text, body: cut >= 0 ? text.slice(cut + 4) : "" });
    };
    const timer = setTimeout(() => s.destroy(), 10_000);
    s.on("data", (d) => chunks.push(d));
    s.on("close", done);
    s.on("error", () => undefined); // reset by the server after a refusal: the answer so far is what counts
  });
}

describe("faults: hostile input and unauthenticated floods against the running server", function () {
  this.timeout(180_000);
  let server: ServerProcess;
  let databaseUrl: string;
  let probe: SqliteProbe;
  let terms: ChannelRequirements;
  let ch: OpenedChannel;
  let port: number;
  let baseline: ReturnType<SqliteProbe["snapshot"]>;

  before(async () => {
    const env = await deployEscrow();
    ch = await openChannel(env, { deposit: USDC(10) });
    databaseUrl = tempDatabaseUrl();
    server = await startServerProcess({
      RPC_URL: await rpcUrl(),
      ESCROW_ADDRESS: env.escrow.address,
      TOKEN_ADDRESS: env.usdc.address,
      PAYEE_ADDRESS: env.wallets[0].account.address,
      DATABASE_URL: databaseUrl,
      CHAIN_POLL_INTERVAL: "60000",
    });
    port = Number(new URL(server.url).port);
    const challenge = await fetch(`${server.url}/v1/echo`);
    await challenge.arrayBuffer();
    terms = decodePaymentRequired(challenge.headers.get("payment-required")).accepts[0];
    // One legitimate payment, so the channel, its used set and the cursor exist: replays target real state.
    const ok = await fetch(`${server.url}/v1/echo?msg=ok`, { headers: paymentHeaders(terms, ch.voucher.sign(ch.id, PRICE)) });
    await ok.arrayBuffer();
    expect(ok.status).to.equal(200);
    probe = openSqliteProbe(databaseUrl);
    baseline = probe.snapshot();
    expect(baseline.counts.channels).to.equal(1);
  });

  after(async () => {
    probe?.close();
    await server?.stop();
    if (databaseUrl) fs.rmSync(path.dirname(databaseUrl), { recursive: true, force: true });
  });

  const expectNoWrite = (what: string) => {
    const now = probe.snapshot();
    expect(now.dataVersion, `${what}: a transaction was committed`).to.equal(baseline.dataVersion);
    expect(now.counts, `${what}: row counts`).to.deep.equal(baseline.counts);
    expect(now.tables, `${what}: table contents`).to.deep.equal(baseline.tables);
    expect(now.sizes, `${what}: file sizes`).to.deep.equal(baseline.sizes);
  };

  it("fuzz (raw HTTP): odd methods, targets, repeated headers, mutated payments and bodies → never 5xx, no stack trace, no database write", async () => {
    const replay = paymentHeaders(terms, ch.voucher.sign(ch.id, PRICE))[HEADER_PAYMENT_SIGNATURE];
    const valid = () => paymentJson(terms, ch.voucher.sign(ch.id, PRICE)); // a used voucher: any valid form is a replay
    const weird = fc.oneof(
      fc.jsonValue(),
      fc.constantFrom("", "-1", "1e999", "0x", "NaN", "Infinity", "340282366920938463463374607431768211456", "9".repeat(200), "\u0000", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u202e"),
      fc.bigInt({ min: -(1n << 300n), max: 1n << 300n }).map(String),
      fc.double(),
      fc.fullUnicodeString({ maxLength: 50 }),
    );
    const leafPaths = (v: unknown, prefix: string[] = []): string[][] =>
      v !== null && typeof v === "object" ? Object.entries(v as object).flatMap(([k, x]) => [[...prefix, k], ...leafPaths(x, [...prefix, k])]) : [];
    const mutated = fc.tuple(fc.nat(), weird).map(([pick, value]) => {
      const p = valid();
      const paths = leafPaths(p);
      const at = paths[pick % paths.length];
      let cur: any = p;
      for (const k of at.slice(0, -1)) cur = cur[k];
      cur[at[at.length - 1]] = value;
      return rawHeader(p);
    });
    const headerValue = fc.oneof(
      { weight: 3, arbitrary: mutated },
      { weight: 2, arbitrary: fc.nat().map((n) => replay.slice(0, n % replay.length)) }, // truncated base64
      { weight: 1, arbitrary: fc.constant(replay) },
      { weight: 2, arbitrary: weird.map((w) => (typeof w === "string" ? w : JSON.stringify(w) ?? "")) },
      { weight: 1, arbitrary: weird.map((w) => Buffer.from(JSON.stringify(w) ?? "null").toString("base64")) },
      { weight: 1, arbitrary: fc.constantFrom("A".repeat(5_000), "A".repeat(20_000), "%%%", "=", "e30=", "W10=", "bnVsbA==") },
    );
    const headerName = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom("PAYMENT-SIGNATURE", "payment-signature", "Payment-Signature", "pAyMeNt-SiGnAtUrE") },
      { weight: 1, arbitrary: fc.constantFrom("content-type", "content-length", "transfer-encoding", "host", "expect", "connection", "payment-required", "x-forwarded-for", "x-payment") },
      { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}$/) },
    );
    const body = fc.oneof(
      { weight: 4, arbitrary: fc.constant(Buffer.alloc(0)) },
      { weight: 2, arbitrary: fc.jsonValue().map((j) => Buffer.from(JSON.stringify(j) ?? "")) },
      { weight: 2, arbitrary: fc.record({ channelId: weird, signature: weird, prompt: weird, maxTokens: weird }, { requiredKeys: [] }).map((j) => Buffer.from(JSON.stringify(j))) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2_000 }).map((u) => Buffer.from(u)) },
      { weight: 1, arbitrary: fc.constant(Buffer.alloc(1_100_000, 0x7b)) }, // above MAX_BODY_BYTES
    );
    const request = fc.record({
      // Mostly requests that reach the payment core (method and path of a real route); the rest probe the HTTP layer.
      route: fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(["GET", "/v1/echo?msg=hi"], ["GET", "/v1/echo"], ["POST", "/v1/infer"], ["POST", "/channel/close"]) },
        {
          weight: 3,
          arbitrary: fc.tuple(
            fc.constantFrom("GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "CONNECT", "BREW", "G\u00e9T", "get"),
            fc.oneof(
              fc.constantFrom("/v1/echo", "/v1/infer", "/channel/close", "/", "/nope", "*", "//v1/echo", "/v1/echo/../infer", "/metrics", `/v1/echo?msg=${"x".repeat(9_000)}`),
              fc.fullUnicodeString({ maxLength: 40 }).map((s) => `/v1/echo?msg=${encodeURIComponent(s)}`),
              fc.fullUnicodeString({ maxLength: 20 }).map((s) => `/v1/echo?msg=${s}`), // unencoded bytes in the target
            ),
          ),
        },
      ),
      headers: fc.array(fc.tuple(headerName, headerValue), { minLength: 0, maxLength: 4 }),
      body,
      contentLength: fc.oneof(
        { weight: 6, arbitrary: fc.constant("exact") },
        { weight: 1, arbitrary: fc.constantFrom("none", "short", "double", "negative", "huge") },
      ),
      chunked: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      contentType: fc.constantFrom("application/json", "text/plain", "application/json; charset=utf-16", ""),
    });

    const statuses = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const [method, target] = r.route;
        if (target.includes("healthz")) return; // the health check's write probe is a legitimate write
        const lines = [`${method} ${target} HTTP/1.1`, "Host: 127.0.0.1"];
        if (r.contentType) lines.push(`Content-Type: ${r.contentType}`);
        for (const [n, v] of r.headers) lines.push(`${n}: ${v.replace(/[\r\n]/g, " ")}`);
        let payload = r.body;
        if (r.chunked && r.body.length) {
          lines.push("Transfer-Encoding: chunked");
          payload = Buffer.concat([Buffer.from(`${r.body.length.toString(16)}\r\n`), r.body, Buffer.from("\r\n0\r\n\r\n")]);
        } else if (r.contentLength !== "none") {
          const n = { exact: r.body.length, short: Math.max(0, r.body.length - 3), double: r.body.length * 2, negative: -1, huge: 1e15 }[r.contentLength as "exact"];
          lines.push(`Content-Length: ${n}`);
        }
        lines.push("Connection: close");
        const bytes = Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "utf8"), payload]);
        const a = await raw(port, bytes);
        const key = a.status === null ? "no answer" : String(a.status);
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        // Only the (unpaid) metrics endpoint may answer 200: every voucher here is used, forged or malformed.
        if (a.status === 200) expect(target.split("?")[0], "200 on a paid route").to.equal("/metrics");
        if (a.status !== null) expect(a.status, `${method} ${target.slice(0, 80)} → ${a.status} ${a.body.slice(0, 300)}`).to.be.lessThan(500);
        expect(LEAK.test(a.body), `leak in body: ${a.body.slice(0, 500)}`).to.equal(false);
        expect(LEAK.test(a.head), `leak in headers: ${a.head.slice(0, 500)}`).to.equal(false);
      }),
      { numRuns: 600 },
    );
    const answered = [...statuses].filter(([k]) => k !== "no answer").reduce((n, [, c]) => n + c, 0);
    console.log(`      statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
    expect(answered, "most fuzzed requests get an answer").to.be.greaterThan(450);
    expect(statuses.get("402") ?? 0, "payments reached the payment core").to.be.greaterThan(100);
    expectNoWrite("after the fuzz");
  });

  it("a flood of 5,000 unauthenticated requests (challenges, random channels, forged signatures, replays) writes nothing", async () => {
    // Well-formed but forged: random r, a low s (so only the signer check can refuse it), v = 27.
    const forgedSignature = () => {
      const rs = randomBytes(64);
      rs[32] &= 0x7f;
      return `0x${rs.toString("hex")}1b` as `0x${string}`;
    };
    const forged = (id: string) => paymentHeaders(terms, { channelId: id as `0x${string}`, cumulativeAmount: 5n * PRICE, signature: forgedSignature() });
    const kinds: Array<() => Promise<Response>> = [
      ...Array.from({ length: 2_000 }, (_, i) => () => fetch(`${server.url}/v1/echo?msg=flood${i}`)),
      ...Array.from({ length: 500 }, () => () =>
        fetch(`${server.url}/v1/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "flood" }) }),
      ),
      ...Array.from({ length: 1_000 }, () => () => fetch(`${server.url}/v1/echo?msg=r`, { headers: forged(`0x${randomBytes(32).toString("hex")}`) })),
      ...Array.from({ length: 1_000 }, () => () => fetch(`${server.url}/v1/echo?msg=f`, { headers: forged(ch.id) })),
      ...Array.from({ length: 500 }, () => () => fetch(`${server.url}/v1/echo?msg=p`, { headers: paymentHeaders(terms, ch.voucher.sign(ch.id, PRICE)) })),
    ];
    // Shuffled, 32 in flight.
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j], kinds[i]];
    }
    const codes = new Map<string, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < kinds.length) {
          const res = await kinds[next++]();
          const body = (await res.json()) as { error?: string };
          const key = `${res.status} ${body.error}`;
          codes.set(key, (codes.get(key) ?? 0) + 1);
        }
      }),
    );
    console.log(`      answers: ${JSON.stringify(Object.fromEntries([...codes].sort()))}`);
    expect([...codes.values()].reduce((a, b) => a + b, 0)).to.equal(5_000);
    for (const k of codes.keys()) expect(k, "every flood request is refused with a 402").to.match(/^402 /);
    expect(codes.get("402 payment_required")).to.equal(2_500);
    expect(codes.get("402 unknown_channel")).to.equal(1_000);
    expect(codes.get("402 invalid_signature")).to.equal(1_000);
    expect(codes.get("402 voucher_reused")).to.equal(500);
    expectNoWrite("after the flood");
  });
});
