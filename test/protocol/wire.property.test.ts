/**
 * Property tests of the header codec: valid values round-trip, and arbitrary or mutated input never yields anything
 * but a decoded value or a PaymentError with a known code (never a TypeError, RangeError, SyntaxError, ...).
 * A decoded value is always well-formed: encoding it again and decoding gives the same value.
 */
import { expect } from "chai";
import fc from "fast-check";
import {
  decodePaymentRequired,
  decodePaymentResponse,
  decodePaymentSignature,
  encodePaymentRequired,
  encodePaymentResponse,
  encodePaymentSignature,
  PAYMENT_ERROR_CODES,
  PaymentError,
} from "@paychan/protocol";
import { paymentPayload, paymentRequired, paymentResponse } from "../helpers/arbitraries";

type Codec = { name: string; decode: (h: unknown) => unknown; encode: (v: any) => string; valid: () => fc.Arbitrary<any> };

const CODECS: Codec[] = [
  { name: "PAYMENT-REQUIRED", decode: decodePaymentRequired, encode: encodePaymentRequired, valid: paymentRequired },
  { name: "PAYMENT-SIGNATURE", decode: decodePaymentSignature, encode: encodePaymentSignature, valid: paymentPayload },
  { name: "PAYMENT-RESPONSE", decode: decodePaymentResponse, encode: encodePaymentResponse, valid: paymentResponse },
];

const RUNS = 1500;

/**
 * Decodes `header` and checks the outcome is allowed: a value that survives re-encoding unchanged, or a
 * PaymentError with a known code. Anything else fails the property.
 */
function checkOutcome(codec: Codec, header: unknown): "ok" | string {
  let value: unknown;
  try {
    value = codec.decode(header);
  } catch (e) {
    if (!(e instanceof PaymentError)) {
      throw new Error(`${codec.name}: ${(e as Error)?.constructor?.name} escaped the codec: ${(e as Error)?.message}`);
    }
    expect(PAYMENT_ERROR_CODES).to.include(e.code);
    expect(e.shortMessage.length).to.be.lessThan(300); // bounded, no input echoed at length
    return e.code;
  }
  expect(codec.decode(codec.encode(value))).to.deep.equal(value);
  return "ok";
}

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

/** Values that trip naive code: prototype-looking keys, toString members, huge numbers, deep nesting. */
const nasty = fc.constantFrom<unknown>(
  { toString: 1 },
  { toString: "x", valueOf: 2 },
  { __proto__: { x402Version: 2 } },
  JSON.parse('{"__proto__": {"scheme": "channel"}}'),
  { constructor: { prototype: 1 } },
  [],
  [[[[]]]],
  "",
  "0",
  "-0",
  -0,
  1e308,
  -1,
  Number.MAX_SAFE_INTEGER + 2,
  "9".repeat(200),
  "0x",
  `0x${"f".repeat(64)}`,
  `0x${"F".repeat(130)}`,
  "\u0000",
  "\ud800",
  null,
  true,
);
const anyJson = fc.oneof(fc.jsonValue({ maxDepth: 3 }), nasty);

/** Every path (list of keys) into a JSON value, the root excluded. */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof v !== "object" || v === null) return [];
  const keys = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return keys.flatMap((k) => [[...prefix, k], ...paths((v as any)[k], [...prefix, k])]);
}

type Edit = { kind: "replace"; value: unknown } | { kind: "delete" } | { kind: "add"; key: string; value: unknown };

function applyEdit(root: any, path: (string | number)[], edit: Edit): void {
  // Inserted values are copies: the same generated object inserted twice must not make the tree cyclic.
  if (edit.kind !== "delete" && typeof edit.value === "object" && edit.value !== null) edit = { ...edit, value: JSON.parse(JSON.stringify(edit.value)) };
  const parent = path.slice(0, -1).reduce((o, k) => o[k], root);
  const key = path[path.length - 1];
  if (edit.kind === "replace") parent[key] = edit.value;
  else if (edit.kind === "delete") {
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
  } else {
    const target = parent[key];
    if (typeof target === "object" && target !== null && !Array.isArray(target)) target[edit.key] = edit.value;
    else parent[key] = { [edit.key]: edit.value };
  }
}

const edit: fc.Arbitrary<Edit> = fc.oneof(
  anyJson.map((value) => ({ kind: "replace" as const, value })),
  fc.constant({ kind: "delete" as const }),
  fc.record({ key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("__proto__", "scheme", "toString", "channel")), value: anyJson }).map(
    (r) => ({ kind: "add" as const, ...r }),
  ),
);

/** A character-level change of a string: replace, insert or delete at a position. */
const charEdit = fc.record({
  kind: fc.constantFrom("flip", "insert", "delete"),
  at: fc.nat(),
  ch: fc.oneof(fc.char(), fc.constantFrom("=", "+", "/", "-", "_", " ", "\n", "\"", "{", "}", ",", ":", "0", "\\", "\u00e9")),
});
function applyCharEdits(s: string, edits: { kind: string; at: number; ch: string }[]): string {
  for (const e of edits) {
    const i = s.length === 0 ? 0 : e.at % (s.length + (e.kind === "insert" ? 1 : 0));
    if (e.kind === "flip") s = s.slice(0, i) + e.ch + s.slice(i + 1);
    else if (e.kind === "insert") s = s.slice(0, i) + e.ch + s.slice(i);
    else s = s.slice(0, i) + s.slice(i + 1);
  }
  return s;
}

describe("wire codec properties", function () {
  for (const codec of CODECS) {
    describe(codec.name, function () {
      it("round-trips every valid value: decode(encode(x)) = x", function () {
        fc.assert(
          fc.property(codec.valid(), (v) => {
            expect(codec.decode(codec.encode(v))).to.deep.equal(v);
          }),
          { numRuns: 500 },
        );
      });

      it("arbitrary strings decode to a value or a PaymentError", function () {
        fc.assert(
          fc.property(fc.oneof(fc.string(), fc.fullUnicodeString(), fc.base64String(), fc.hexaString(), fc.asciiString({ maxLength: 5000 })), (s) => {
            checkOutcome(codec, s);
          }),
          { numRuns: RUNS },
        );
      });

      it("base64 of arbitrary JSON values decodes to a value or a PaymentError", function () {
        fc.assert(
          fc.property(fc.oneof(fc.jsonValue(), fc.json()), (v) => {
            checkOutcome(codec, b64(typeof v === "string" ? v : JSON.stringify(v)));
          }),
          { numRuns: RUNS },
        );
      });

      it("base64 of header-shaped objects with arbitrary field values decodes to a value or a PaymentError", function () {
        const keys = ["x402Version", "error", "resource", "accepts", "accepted", "payload", "success", "transaction", "network", "payer", "amount", "extra"];
        const shaped = fc.dictionary(fc.constantFrom(...keys), fc.oneof(anyJson, fc.constant(2), fc.constant("channel")), { maxKeys: keys.length });
        fc.assert(
          fc.property(shaped, (o) => {
            checkOutcome(codec, b64(JSON.stringify(o)));
          }),
          { numRuns: RUNS },
        );
      });

      it("structurally mutated valid headers (replace, delete or add fields anywhere) decode to a value or a PaymentError", function () {
        fc.assert(
          fc.property(codec.valid(), fc.array(fc.tuple(fc.nat(), edit), { minLength: 1, maxLength: 4 }), (v, edits) => {
            const json = JSON.parse(Buffer.from(codec.encode(v), "base64").toString("utf8"));
            for (const [n, e] of edits) {
              const ps = paths(json);
              if (ps.length === 0) break;
              applyEdit(json, ps[n % ps.length], e);
            }
            checkOutcome(codec, b64(JSON.stringify(json)));
          }),
          { numRuns: RUNS },
        );
      });

      it("character-mutated JSON text of valid headers decodes to a value or a PaymentError", function () {
        fc.assert(
          fc.property(codec.valid(), fc.array(charEdit, { minLength: 1, maxLength: 5 }), (v, edits) => {
            const text = Buffer.from(codec.encode(v), "base64").toString("utf8");
            checkOutcome(codec, b64(applyCharEdits(text, edits)));
          }),
          { numRuns: RUNS },
        );
      });

      it("character-mutated base64 of valid headers decodes to a value or a PaymentError", function () {
        fc.assert(
          fc.property(codec.valid(), fc.array(charEdit, { minLength: 1, maxLength: 5 }), (v, edits) => {
            checkOutcome(codec, applyCharEdits(codec.encode(v), edits));
          }),
          { numRuns: RUNS },
        );
      });

      it("non-string header values are a PaymentError", function () {
        fc.assert(
          fc.property(fc.anything(), (v) => {
            fc.pre(typeof v !== "string");
            expect(checkOutcome(codec, v)).to.equal("invalid_payload");
          }),
          { numRuns: 300 },
        );
      });
    });
  }

  it("the other headers' values are refused by each decoder (no confusion between headers)", function () {
    fc.assert(
      fc.property(fc.nat({ max: 2 }), fc.nat({ max: 2 }), fc.integer(), (i, j, seed) => {
        fc.pre(i !== j);
        const [v] = fc.sample(CODECS[i].valid(), { numRuns: 1, seed });
        expect(checkOutcome(CODECS[j], CODECS[i].encode(v))).to.not.equal("ok");
      }),
      { numRuns: 60 },
    );
  });
});
