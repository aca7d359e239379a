/**
 * Hostile and malformed input: size limits, bad bodies, unknown routes, and a property test that random mutations
 * of a valid PAYMENT-SIGNATURE never yield a 500 (always a typed 4xx/402, or a 200 if the mutation is still valid).
 */
import { expect } from "chai";
import fc from "fast-check";
import net from "node:net";
import { openChannel, USDC } from "../helpers/escrow";
import { call, paymentJson, rawHeader, startTestServer, type TestServer } from "../helpers/server";

/** Sends raw bytes over TCP and returns the raw answer (for requests fetch refuses to build). */
function rawRequest(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.end(data));
    let out = "";
    s.on("data", (d) => (out += d.toString()));
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
}

const HEADER_SAFE = /^[\x20-\x7e]*$/;

describe("server: hostile and malformed input", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { maxHeaderBytes: 8192, maxBodyBytes: 4096 } });
  });
  after(async () => srv?.close());

  it("answers oversized headers with 431 and a typed JSON body", async () => {
    const raw = await rawRequest(srv.server.port, `GET /v1/echo HTTP/1.1\r\nHost: x\r\nx-big: ${"a".repeat(10_000)}\r\n\r\n`);
    expect(raw).to.match(/^HTTP\/1.1 431 /);
    expect(raw).to.contain('"error":"request_too_large"');
  });

  it("answers a malformed request line with 400 bad_request", async () => {
    const raw = await rawRequest(srv.server.port, "NOT A REQUEST\r\n\r\n");
    expect(raw).to.match(/^HTTP\/1.1 400 /);
    expect(raw).to.contain('"error":"bad_request"');
  });

  it("answers an oversized body with 413, bad JSON with 400, and an unknown route with 404, all typed", async () => {
    const big = await call(`${srv.url}/v1/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "x".repeat(5000) }) });
    expect([big.status, big.code]).to.deep.equal([413, "request_too_large"]);
    const bad = await call(`${srv.url}/v1/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
    expect([bad.status, bad.code]).to.deep.equal([400, "bad_request"]);
    const invalid = await call(`${srv.url}/v1/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"prompt":1}' });
    expect([invalid.status, invalid.code]).to.deep.equal([400, "bad_request"]);
    const missing = await call(`${srv.url}/nope`);
    expect([missing.status, missing.code]).to.deep.equal([404, "not_found"]);
    const twice = await call(`${srv.url}/v1/echo?msg=a&msg=b`);
    expect([twice.status, twice.code]).to.deep.equal([400, "bad_request"]);
  });

  it("answers an oversized PAYMENT-SIGNATURE with 402 invalid_payload", async () => {
    const a = await call(`${srv.url}/v1/echo`, { headers: { "payment-signature": "A".repeat(6000) } });
    expect([a.status, a.code]).to.deep.equal([402, "invalid_payload"]);
  });

  it("property: random mutations of a valid PAYMENT-SIGNATURE never yield a 500", async function () {
    this.timeout(120_000);
    const terms = await srv.terms("/v1/echo");
    const ch = await openChannel(srv.env, { deposit: USDC(100) });
    let next = 1000n;
    const valid = () => {
      next += 1000n;
      return paymentJson(terms, ch.voucher.sign(ch.id, next));
    };
    const statuses = new Map<number, number>();
    const send = async (header: string) => {
      if (!HEADER_SAFE.test(header) || header.length > 20_000) return;
      const a = await call(`${srv.url}/v1/echo?msg=p`, { headers: { "payment-signature": header } });
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      expect(a.status, `${a.status} ${JSON.stringify(a.body)}`).to.be.oneOf([200, 400, 402, 413, 431, 503]);
      if (a.status !== 200) {
        expect(a.body.error, JSON.stringify(a.body)).to.be.a("string");
        if (a.status === 402) expect(a.required!.error).to.equal(a.code);
      }
    };

    const leafPaths = (v: unknown, prefix: string[] = []): string[][] =>
      v !== null && typeof v === "object" ? Object.entries(v as object).flatMap(([k, x]) => [[...prefix, k], ...leafPaths(x, [...prefix, k])]) : [];
    const setPath = (o: any, path: string[], value: unknown, del: boolean) => {
      let cur = o;
      for (const k of path.slice(0, -1)) cur = cur[k];
      if (del) delete cur[path[path.length - 1]];
      else cur[path[path.length - 1]] = value;
    };
    const tricky = fc.oneof(
      fc.jsonValue(),
      fc.constantFrom("", "0", "-1", "1e3", "0x", "00", "340282366920938463463374607431768211456", "NaN", "eip155:0", "eip155:31337 "),
      fc.hexaString({ minLength: 0, maxLength: 140 }).map((h) => `0x${h}`),
      fc.bigInt({ min: 0n, max: 1n << 130n }).map((n) => n.toString()),
    );

    // 1. structural mutations of the JSON
    await fc.assert(
      fc.asyncProperty(fc.nat(), tricky, fc.boolean(), async (pick, value, del) => {
        const p = valid();
        const paths = leafPaths(p);
        setPath(p, paths[pick % paths.length], value, del);
        await send(rawHeader(p));
      }),
      { numRuns: 250 },
    );
    // 2. character-level mutations of the base64 text
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(), fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= -_.%")), { minLength: 1, maxLength: 4 }), fc.nat(), async (edits, cut) => {
        let h = rawHeader(valid()).split("");
        for (const [i, c] of edits) h[i % h.length] = c;
        if (cut % 5 === 0) h = h.slice(0, cut % h.length);
        await send(h.join(""));
      }),
      { numRuns: 200 },
    );
    // 3. arbitrary values
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 300 }), fc.base64String({ maxLength: 600 }), fc.jsonValue().map(rawHeader)), async (h) => send(h)),
      { numRuns: 150 },
    );
    expect(statuses.get(500) ?? 0).to.equal(0);
  });
});
