/**
 * The header codec (`protocol/wire.ts`): exact JSON shape of the three headers, round trips, and strict decoding:
 * every malformed input is a PaymentError with the right code, never another exception.
 */
import { expect } from "chai";
import {
  decodePaymentRequired,
  decodePaymentResponse,
  decodePaymentSignature,
  encodePaymentRequired,
  encodePaymentResponse,
  encodePaymentSignature,
  chainIdOf,
  networkOf,
  MAX_PAYMENT_REQUIRED_BYTES,
  MAX_PAYMENT_SIGNATURE_BYTES,
  PaymentError,
  PAYMENT_ERROR_CODES,
  parseRequirements,
  type ChannelRequirements,
  type PaymentPayload,
  type PaymentRequired,
  type PaymentResponse,
  type PaymentErrorCode,
} from "@paychan/protocol";

const ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
const PAYEE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const ID = `0x${"ab".repeat(32)}` as const;
const SIG = `0x${"cd".repeat(64)}1b` as const;

const requirements: ChannelRequirements = {
  scheme: "channel",
  network: "eip155:31337",
  asset: TOKEN,
  amount: 1000n,
  payTo: PAYEE,
  maxTimeoutSeconds: 60,
  extra: { escrow: ESCROW, name: "ChannelEscrow", version: "1", minDeposit: 1_000_000n, minCloseDelay: 86_400 },
};
const required: PaymentRequired = {
  x402Version: 2,
  error: "payment_required",
  resource: { url: "http://127.0.0.1:4021/v1/echo", description: "Echo", mimeType: "application/json" },
  accepts: [
    {
      ...requirements,
      extra: {
        ...requirements.extra,
        channel: { channelId: ID, deposit: 1_000_000n, settled: 0n, accepted: 12_000n, spent: 11_000n, signature: SIG, status: "open" },
      },
    },
  ],
};
const payment: PaymentPayload = { x402Version: 2, accepted: requirements, payload: { channelId: ID, cumulativeAmount: 12_000n, signature: SIG } };
const response: PaymentResponse = {
  success: true,
  transaction: "",
  network: "eip155:31337",
  payer: PAYER,
  amount: 1000n,
  extra: { channelId: ID, accepted: 12_000n, spent: 12_000n, deposit: 1_000_000n, remaining: 988_000n },
};

/** The exact wire JSON of the examples (what another implementation must produce and accept). */
const requirementsJson = {
  scheme: "channel",
  network: "eip155:31337",
  asset: TOKEN,
  amount: "1000",
  payTo: PAYEE,
  maxTimeoutSeconds: 60,
  extra: { escrow: ESCROW, name: "ChannelEscrow", version: "1", minDeposit: "1000000", minCloseDelay: 86400 },
};
const paymentJson = () => ({
  x402Version: 2,
  accepted: structuredClone(requirementsJson) as Record<string, any>,
  payload: { channelId: ID, cumulativeAmount: "12000", signature: SIG } as Record<string, any>,
});
const requiredJson = () => ({
  x402Version: 2,
  error: "payment_required",
  resource: { url: "http://127.0.0.1:4021/v1/echo", description: "Echo", mimeType: "application/json" } as Record<string, any>,
  accepts: [
    {
      ...structuredClone(requirementsJson),
      extra: {
        ...structuredClone(requirementsJson.extra),
        channel: { channelId: ID, deposit: "1000000", settled: "0", accepted: "12000", spent: "11000", signature: SIG, status: "open" },
      } as Record<string, any>,
    } as Record<string, any>,
  ] as any[],
});
const responseJson = () => ({
  success: true,
  transaction: "",
  network: "eip155:31337",
  payer: PAYER,
  amount: "1000",
  extra: { channelId: ID, accepted: "12000", spent: "12000", deposit: "1000000", remaining: "988000" } as Record<string, any>,
});

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v), "utf8").toString("base64");
const fromB64 = (h: string) => JSON.parse(Buffer.from(h, "base64").toString("utf8"));

/** Asserts `fn` throws a PaymentError with `code` (and never anything else). */
function expectCode(fn: () => unknown, code: PaymentErrorCode, label?: string): PaymentError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `${label ?? ""}: expected a PaymentError ${code}`).to.be.instanceOf(PaymentError);
  const e = thrown as PaymentError;
  expect(e.code, `${label ?? ""}: ${e.message}`).to.equal(code);
  expect(PAYMENT_ERROR_CODES).to.include(e.code);
  return e;
}

const invalid = (fn: () => unknown, label?: string) => expectCode(fn, "invalid_payload", label);

describe("wire codec", function () {
  describe("encoding: exact JSON", function () {
    it("PAYMENT-REQUIRED is base64 of the specified JSON", function () {
      expect(fromB64(encodePaymentRequired(required))).to.deep.equal(requiredJson());
    });
    it("PAYMENT-SIGNATURE is base64 of the specified JSON", function () {
      expect(fromB64(encodePaymentSignature(payment))).to.deep.equal(paymentJson());
    });
    it("PAYMENT-RESPONSE is base64 of the specified JSON", function () {
      expect(fromB64(encodePaymentResponse(response))).to.deep.equal(responseJson());
    });
    it("uses standard base64 with padding (no base64url)", function () {
      for (const h of [encodePaymentRequired(required), encodePaymentSignature(payment), encodePaymentResponse(response)]) {
        expect(h).to.match(/^[A-Za-z0-9+/]+={0,2}$/);
        expect(h.length % 4).to.equal(0);
      }
    });
    it("omits extra.channel and its signature when absent", function () {
      const json = fromB64(encodePaymentRequired({ ...required, accepts: [requirements] }));
      expect(json.accepts[0].extra).to.not.have.property("channel");
      const noSig = { ...required.accepts[0].extra.channel! };
      delete noSig.signature;
      const json2 = fromB64(encodePaymentRequired({ ...required, accepts: [{ ...requirements, extra: { ...requirements.extra, channel: noSig } }] }));
      expect(json2.accepts[0].extra.channel).to.not.have.property("signature");
    });
  });

  describe("round trips", function () {
    it("decode(encode(x)) = x for the three headers", function () {
      expect(decodePaymentRequired(encodePaymentRequired(required))).to.deep.equal(required);
      expect(decodePaymentSignature(encodePaymentSignature(payment))).to.deep.equal(payment);
      expect(decodePaymentResponse(encodePaymentResponse(response))).to.deep.equal(response);
    });
    it("decodes a header with surrounding whitespace (HTTP optional whitespace)", function () {
      expect(decodePaymentSignature(`  ${encodePaymentSignature(payment)}\t`)).to.deep.equal(payment);
    });
    it("lowercases channel ids and signatures, keeps addresses as sent", function () {
      const j = paymentJson();
      j.payload.channelId = ID.toUpperCase().replace("0X", "0x");
      j.payload.signature = SIG.toUpperCase().replace("0X", "0x");
      j.accepted.payTo = PAYEE.toLowerCase();
      const d = decodePaymentSignature(b64(j));
      expect(d.payload.channelId).to.equal(ID);
      expect(d.payload.signature).to.equal(SIG);
      expect(d.accepted.payTo).to.equal(PAYEE.toLowerCase());
    });
    it("ignores unknown fields (x402 extensions)", function () {
      const j = paymentJson() as any;
      j.extensions = { foo: 1 };
      j.resource = { url: "http://x" };
      j.accepted.extra.future = "x";
      expect(decodePaymentSignature(b64(j))).to.deep.equal(payment);
    });
    it("networkOf / chainIdOf are inverse", function () {
      expect(networkOf(31337)).to.equal("eip155:31337");
      expect(chainIdOf("eip155:8453")).to.equal(8453);
    });
    it("an amount of 2^128 - 1 and of 0 decode exactly", function () {
      const j = paymentJson();
      j.payload.cumulativeAmount = ((1n << 128n) - 1n).toString();
      j.accepted.amount = "0";
      const d = decodePaymentSignature(b64(j));
      expect(d.payload.cumulativeAmount).to.equal((1n << 128n) - 1n);
      expect(d.accepted.amount).to.equal(0n);
    });
  });

  describe("strict base64 / JSON / size", function () {
    it("rejects a header that is not one string", function () {
      for (const h of [undefined, null, 42, [encodePaymentSignature(payment), encodePaymentSignature(payment)], {}]) {
        invalid(() => decodePaymentSignature(h), JSON.stringify(h));
      }
    });
    it("rejects empty and whitespace-only headers", function () {
      invalid(() => decodePaymentSignature(""));
      invalid(() => decodePaymentSignature("   "));
    });
    it("rejects base64url, missing padding, truncation, inner whitespace and non-base64 characters", function () {
      const good = encodePaymentSignature(payment);
      const url = Buffer.from(JSON.stringify({ ...paymentJson(), pad: "??>>" })).toString("base64url");
      expect(url).to.match(/[-_]/);
      const cases = {
        url,
        unpadded: good.replace(/=+$/, "") || `${good.slice(0, -1)}`,
        truncated: good.slice(0, -3),
        innerSpace: `${good.slice(0, 8)} ${good.slice(8)}`,
        newline: `${good.slice(0, 8)}\n${good.slice(8)}`,
        bang: `!${good.slice(1)}`,
        json: JSON.stringify(paymentJson()),
        doublePad: `${good.slice(0, -4)}A===`,
      };
      for (const [name, h] of Object.entries(cases)) invalid(() => decodePaymentSignature(h), name);
    });
    it("rejects non-canonical base64 (non-zero unused bits)", function () {
      let text = JSON.stringify(paymentJson());
      while (text.length % 3 !== 2) text += " "; // 3k + 2 bytes: the base64 ends in one "="
      const good = b64(text);
      expect(good.endsWith("=") && !good.endsWith("==")).to.equal(true);
      const last = good[good.length - 2];
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      const twisted = `${good.slice(0, -2)}${alphabet[alphabet.indexOf(last) + 1]}=`; // same bytes, a low bit set
      expect(Buffer.from(twisted, "base64").equals(Buffer.from(good, "base64"))).to.equal(true);
      expect(decodePaymentSignature(good)).to.deep.equal(payment);
      invalid(() => decodePaymentSignature(twisted));
    });
    it("rejects base64 of non-JSON, of non-UTF-8 and of JSON that is not an object", function () {
      invalid(() => decodePaymentSignature(b64("not json")), "text");
      invalid(() => decodePaymentSignature(b64(`${JSON.stringify(paymentJson())}}`)), "trailing brace");
      invalid(() => decodePaymentSignature(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString("base64")), "invalid UTF-8");
      invalid(() => decodePaymentSignature(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(paymentJson()))]).toString("base64")), "BOM");
      for (const v of [[], "x", 2, null, true]) invalid(() => decodePaymentSignature(b64(JSON.stringify(v))), JSON.stringify(v));
    });
    it("rejects deeply nested JSON without a stack overflow", function () {
      const deep = `${"[".repeat(3000)}${"]".repeat(3000)}`;
      invalid(() => decodePaymentSignature(b64(deep)));
      const j = JSON.stringify({ ...paymentJson(), accepted: "X" }).replace('"X"', deep);
      invalid(() => decodePaymentSignature(b64(j)));
    });
    it("accepts PAYMENT-SIGNATURE up to MAX_PAYMENT_SIGNATURE_BYTES and rejects one byte of JSON more", function () {
      const json = JSON.stringify(paymentJson());
      const atLimit = (MAX_PAYMENT_SIGNATURE_BYTES / 4) * 3; // JSON bytes that encode to exactly the limit
      const fits = b64(json.padEnd(atLimit, " "));
      expect(fits.length).to.equal(MAX_PAYMENT_SIGNATURE_BYTES);
      expect(decodePaymentSignature(fits)).to.deep.equal(payment);
      const over = b64(json.padEnd(atLimit + 1, " "));
      expect(over.length).to.be.greaterThan(MAX_PAYMENT_SIGNATURE_BYTES);
      invalid(() => decodePaymentSignature(over));
    });
    it("bounds PAYMENT-REQUIRED and PAYMENT-RESPONSE by MAX_PAYMENT_REQUIRED_BYTES", function () {
      const atLimit = (MAX_PAYMENT_REQUIRED_BYTES / 4) * 3;
      expect(decodePaymentRequired(b64(JSON.stringify(requiredJson()).padEnd(atLimit, " ")))).to.deep.equal(required);
      invalid(() => decodePaymentRequired(b64(JSON.stringify(requiredJson()).padEnd(atLimit + 1, " "))));
      expect(decodePaymentResponse(b64(JSON.stringify(responseJson()).padEnd(atLimit, " ")))).to.deep.equal(response);
      invalid(() => decodePaymentResponse(b64(JSON.stringify(responseJson()).padEnd(atLimit + 1, " "))));
    });
    it("rejects a huge header before decoding it (bounded work)", function () {
      const huge = "A".repeat(10_000_000);
      const t0 = process.hrtime.bigint();
      invalid(() => decodePaymentSignature(huge));
      expect(Number(process.hrtime.bigint() - t0) / 1e6).to.be.lessThan(200);
    });
  });

  describe("strict fields", function () {
    const withPayload = (mutate: (j: ReturnType<typeof paymentJson>) => void) => {
      const j = paymentJson();
      mutate(j);
      return b64(j);
    };

    it("x402Version must be the number 2", function () {
      for (const v of [1, 3, "2", 2.5, null, undefined]) {
        invalid(() => decodePaymentSignature(withPayload((j) => ((j as any).x402Version = v))), `signature ${v}`);
        const r = requiredJson() as any;
        r.x402Version = v;
        invalid(() => decodePaymentRequired(b64(r)), `required ${v}`);
      }
    });

    it("amounts are decimal strings: no sign, exponent, fraction, leading zero, whitespace or other digits", function () {
      const bad = ["-1", "+1", "1e3", "1E3", "01", "00", "1.0", "1.", ".5", " 1", "1 ", "", "0x10", "1_000", "1,000", "١٢٣", "Infinity", "NaN", "٠"];
      for (const v of bad) invalid(() => decodePaymentSignature(withPayload((j) => (j.payload.cumulativeAmount = v))), JSON.stringify(v));
      for (const v of [1000, 1e3, null, true, ["1"], { v: "1" }]) {
        invalid(() => decodePaymentSignature(withPayload((j) => (j.payload.cumulativeAmount = v))), JSON.stringify(v));
      }
    });

    it("amounts above 2^128 - 1 are rejected", function () {
      for (const v of [1n << 128n, (1n << 128n) + 1n, 10n ** 39n, 10n ** 60n]) {
        invalid(() => decodePaymentSignature(withPayload((j) => (j.payload.cumulativeAmount = v.toString()))), v.toString());
        invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.amount = v.toString()))), v.toString());
      }
    });

    it("every amount field is checked (requirements, hint and receipt)", function () {
      for (const f of ["amount"]) invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted[f] = "-1"))), f);
      invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.extra.minDeposit = "1.5"))), "minDeposit");
      for (const f of ["deposit", "settled", "accepted", "spent"]) {
        const r = requiredJson();
        r.accepts[0].extra.channel[f] = "01";
        invalid(() => decodePaymentRequired(b64(r)), `hint ${f}`);
      }
      for (const f of ["accepted", "spent", "deposit", "remaining"]) {
        const r = responseJson();
        r.extra[f] = "1e2";
        invalid(() => decodePaymentResponse(b64(r)), `receipt ${f}`);
      }
      const r = responseJson() as any;
      r.amount = 5;
      invalid(() => decodePaymentResponse(b64(r)), "receipt amount");
    });

    it("hex fields have exact lengths and 0x prefixes", function () {
      const cases: [string, (j: ReturnType<typeof paymentJson>) => void][] = [
        ["channelId 31 bytes", (j) => (j.payload.channelId = `0x${"ab".repeat(31)}`)],
        ["channelId 33 bytes", (j) => (j.payload.channelId = `0x${"ab".repeat(33)}`)],
        ["channelId odd", (j) => (j.payload.channelId = `0x${"ab".repeat(31)}a`)],
        ["channelId no prefix", (j) => (j.payload.channelId = "ab".repeat(32))],
        ["channelId 0X", (j) => (j.payload.channelId = `0X${"ab".repeat(32)}`)],
        ["channelId non-hex", (j) => (j.payload.channelId = `0x${"ag".repeat(32)}`)],
        ["signature 64 bytes", (j) => (j.payload.signature = `0x${"cd".repeat(64)}`)],
        ["signature 66 bytes", (j) => (j.payload.signature = `0x${"cd".repeat(66)}`)],
        ["signature no prefix", (j) => (j.payload.signature = SIG.slice(2))],
        ["signature non-hex", (j) => (j.payload.signature = `0x${"zz".repeat(65)}`)],
        ["asset 19 bytes", (j) => (j.accepted.asset = TOKEN.slice(0, -2))],
        ["asset 21 bytes", (j) => (j.accepted.asset = `${TOKEN}00`)],
        ["payTo no prefix", (j) => (j.accepted.payTo = PAYEE.slice(2))],
        ["escrow non-hex", (j) => (j.accepted.extra.escrow = `0x${"g".repeat(40)}`)],
        ["escrow number", (j) => (j.accepted.extra.escrow = 1)],
        ["channelId number", (j) => (j.payload.channelId = 1)],
      ];
      for (const [name, mutate] of cases) invalid(() => decodePaymentSignature(withPayload(mutate)), name);
      const r = responseJson();
      r.payer = PAYER.slice(0, 41);
      invalid(() => decodePaymentResponse(b64(r)), "payer");
      const h = requiredJson();
      h.accepts[0].extra.channel.signature = `0x${"cd".repeat(64)}`;
      invalid(() => decodePaymentRequired(b64(h)), "hint signature");
    });

    it("networks are CAIP-2 eip155 with a safe-integer chain id", function () {
      for (const n of ["eip155:0", "eip155:01", "eip155:", "eip155:abc", "eip155:-1", "eip155:1.5", "EIP155:1", "solana:5eykt4", "eip155:1 ", "eip155:9007199254740993", 31337]) {
        invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.network = n))), String(n));
        const r = responseJson() as any;
        r.network = n;
        invalid(() => decodePaymentResponse(b64(r)), `receipt ${n}`);
      }
      const max = `eip155:${Number.MAX_SAFE_INTEGER}`;
      expect(decodePaymentSignature(withPayload((j) => (j.accepted.network = max))).accepted.network).to.equal(max);
    });

    it("integers: maxTimeoutSeconds 0..86400 and minCloseDelay 0..30 days, JSON numbers only", function () {
      for (const v of [-1, 86_401, 1.5, "60", null, 1e300]) {
        invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.maxTimeoutSeconds = v))), `maxTimeoutSeconds ${v}`);
      }
      for (const v of [-1, 30 * 86_400 + 1, "86400", 0.5]) {
        invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.extra.minCloseDelay = v))), `minCloseDelay ${v}`);
      }
      // -0 is only reachable through JSON text
      const text = JSON.stringify(paymentJson()).replace('"maxTimeoutSeconds":60', '"maxTimeoutSeconds":-0');
      invalid(() => decodePaymentSignature(b64(text)), "-0 in JSON");
    });

    it("extra must name the ChannelEscrow/1 domain", function () {
      invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.extra.name = "Other"))));
      invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.extra.version = "2"))));
      invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.extra.version = 1))));
      invalid(() => decodePaymentSignature(withPayload((j) => delete j.accepted.extra)));
      invalid(() => decodePaymentSignature(withPayload((j) => (j.accepted.extra = []))));
    });

    it("missing or mistyped objects are invalid_payload", function () {
      invalid(() => decodePaymentSignature(withPayload((j) => delete (j as any).payload)));
      invalid(() => decodePaymentSignature(withPayload((j) => ((j as any).payload = [ID, "1", SIG]))));
      invalid(() => decodePaymentSignature(withPayload((j) => ((j as any).payload = null))));
      invalid(() => decodePaymentSignature(withPayload((j) => delete j.payload.signature)));
      expectCode(() => decodePaymentSignature(withPayload((j) => delete (j as any).accepted)), "invalid_payload");
    });
  });

  describe("schemes", function () {
    it("a PAYMENT-SIGNATURE for another scheme is unsupported_scheme", function () {
      const withScheme = (s: unknown) => {
        const j = paymentJson();
        j.accepted.scheme = s;
        return b64(j);
      };
      for (const s of ["exact", "Channel", "channel ", "", null, 1, ["channel"], { toString: 1 }, { toString: "x", valueOf: 2 }]) {
        expectCode(() => decodePaymentSignature(withScheme(s)), "unsupported_scheme", JSON.stringify(s));
      }
      const j = paymentJson();
      delete j.accepted.scheme;
      expectCode(() => decodePaymentSignature(b64(j)), "unsupported_scheme", "missing");
      expectCode(() => parseRequirements({ scheme: { toString: 1 } }), "unsupported_scheme", "parseRequirements");
    });

    it("PAYMENT-REQUIRED keeps only channel offers; none at all is unsupported_scheme", function () {
      const r = requiredJson();
      r.accepts.unshift({ scheme: "exact", network: "eip155:8453", whatever: [1, 2] });
      r.accepts.push({ scheme: { toString: 1 } });
      expect(decodePaymentRequired(b64(r))).to.deep.equal(required);
      const only = requiredJson();
      only.accepts = [{ scheme: "exact" }, { scheme: "upto", extra: null }];
      expectCode(() => decodePaymentRequired(b64(only)), "unsupported_scheme");
    });

    it("a malformed channel offer fails the whole PAYMENT-REQUIRED; a non-object offer too", function () {
      const r = requiredJson();
      r.accepts.push({ ...structuredClone(requirementsJson), amount: "-5" });
      invalid(() => decodePaymentRequired(b64(r)));
      const r2 = requiredJson();
      r2.accepts.push("channel");
      invalid(() => decodePaymentRequired(b64(r2)));
    });

    it("accepts must list 1 to 16 offers", function () {
      const r = requiredJson();
      r.accepts = [];
      invalid(() => decodePaymentRequired(b64(r)), "empty");
      r.accepts = Array.from({ length: 17 }, () => structuredClone(requirementsJson));
      invalid(() => decodePaymentRequired(b64(r)), "17");
      r.accepts = Array.from({ length: 16 }, () => structuredClone(requirementsJson));
      expect(decodePaymentRequired(b64(r)).accepts).to.have.length(16);
      (r as any).accepts = { 0: requirementsJson };
      invalid(() => decodePaymentRequired(b64(r)), "object");
    });
  });

  describe("PAYMENT-REQUIRED specifics", function () {
    it("error is one of the payment error codes; absent means payment_required; null is invalid", function () {
      for (const code of PAYMENT_ERROR_CODES) {
        const r = requiredJson();
        r.error = code;
        expect(decodePaymentRequired(b64(r)).error).to.equal(code);
      }
      const r = requiredJson() as any;
      delete r.error;
      expect(decodePaymentRequired(b64(r)).error).to.equal("payment_required");
      for (const e of ["internal_error", "upstream_unavailable", "PAYMENT_REQUIRED", "", null, 402]) {
        r.error = e;
        invalid(() => decodePaymentRequired(b64(r)), String(e));
      }
    });

    it("resource needs a url string; description and mimeType are optional strings", function () {
      const r = requiredJson();
      delete r.resource.description;
      delete r.resource.mimeType;
      expect(decodePaymentRequired(b64(r)).resource).to.deep.equal({ url: "http://127.0.0.1:4021/v1/echo" });
      for (const [k, v] of [
        ["url", undefined],
        ["url", 5],
        ["url", "x".repeat(2049)],
        ["description", 5],
        ["mimeType", "m".repeat(257)],
      ] as const) {
        const bad = requiredJson();
        if (v === undefined) delete bad.resource[k];
        else bad.resource[k] = v;
        invalid(() => decodePaymentRequired(b64(bad)), `${k}=${String(v).slice(0, 10)}`);
      }
      const noResource = requiredJson() as any;
      delete noResource.resource;
      invalid(() => decodePaymentRequired(b64(noResource)));
    });

    it("the channel hint: status open/closing/finalized, optional signature", function () {
      for (const status of ["open", "closing", "finalized"]) {
        const r = requiredJson();
        r.accepts[0].extra.channel.status = status;
        expect(decodePaymentRequired(b64(r)).accepts[0].extra.channel!.status).to.equal(status);
      }
      const r = requiredJson();
      r.accepts[0].extra.channel.status = "closed";
      invalid(() => decodePaymentRequired(b64(r)));
      const noSig = requiredJson();
      delete noSig.accepts[0].extra.channel.signature;
      expect(decodePaymentRequired(b64(noSig)).accepts[0].extra.channel).to.not.have.property("signature");
      const nullHint = requiredJson();
      nullHint.accepts[0].extra.channel = null;
      invalid(() => decodePaymentRequired(b64(nullHint)));
    });
  });

  describe("PAYMENT-RESPONSE specifics", function () {
    it("success must be true and transaction the empty string", function () {
      for (const [k, v] of [
        ["success", false],
        ["success", "true"],
        ["transaction", "0xabc"],
        ["transaction", null],
        ["transaction", undefined],
      ] as const) {
        const r = responseJson() as any;
        if (v === undefined) delete r[k];
        else r[k] = v;
        invalid(() => decodePaymentResponse(b64(r)), `${k}=${v}`);
      }
    });
  });
});
