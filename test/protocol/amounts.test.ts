/**
 * Amount conversions (`protocol/amounts.ts`): wire amounts (decimal strings of atomic units, uint128) and human
 * token amounts ("0.001" USDC) — exact round trips and clear rejections.
 */
import { expect } from "chai";
import fc from "fast-check";
import { formatTokenAmount, formatWireAmount, MAX_UINT128, parseTokenAmount, parseWireAmount, PaymentError } from "@paychan/protocol";

describe("amounts", function () {
  describe("wire amounts", function () {
    it("round-trip every uint128", function () {
      fc.assert(
        fc.property(fc.oneof(fc.bigInt({ min: 0n, max: MAX_UINT128 }), fc.constantFrom(0n, 1n, MAX_UINT128)), (n) => {
          expect(parseWireAmount(formatWireAmount(n), "x")).to.equal(n);
        }),
        { numRuns: 1000 },
      );
    });

    it("agree with BigInt on canonical decimal strings and reject everything else with invalid_payload", function () {
      fc.assert(
        fc.property(fc.oneof(fc.string({ maxLength: 45 }), fc.stringOf(fc.constantFrom(..."0123456789-+.e "), { maxLength: 42 })), (s) => {
          const canonical = /^(0|[1-9][0-9]*)$/.test(s) && BigInt(s) <= MAX_UINT128;
          let out: bigint | PaymentError;
          try {
            out = parseWireAmount(s, "f");
          } catch (e) {
            expect(e).to.be.instanceOf(PaymentError);
            expect((e as PaymentError).code).to.equal("invalid_payload");
            out = e as PaymentError;
          }
          if (canonical) expect(out).to.equal(BigInt(s));
          else expect(out).to.be.instanceOf(PaymentError);
        }),
        { numRuns: 2000 },
      );
    });

    it("name the field in the error", function () {
      expect(() => parseWireAmount("-1", "payload.cumulativeAmount")).to.throw(PaymentError, "payload.cumulativeAmount");
      expect(() => parseWireAmount((1n << 128n).toString(), "amount")).to.throw(PaymentError, "2^128 - 1");
    });

    it("formatWireAmount refuses negative amounts", function () {
      expect(() => formatWireAmount(-1n)).to.throw(RangeError);
    });
  });

  describe("token amounts", function () {
    it("parse human amounts for 6-decimal USDC", function () {
      const cases: [string, bigint][] = [
        ["0", 0n],
        ["1", 1_000_000n],
        ["0.001", 1_000n],
        ["0.000001", 1n],
        ["1.5", 1_500_000n],
        ["10.25", 10_250_000n],
        ["1.500000", 1_500_000n],
        ["123456789.123456", 123_456_789_123_456n],
        [" 2.5\n", 2_500_000n], // surrounding whitespace of human input is ignored
      ];
      for (const [s, n] of cases) expect(parseTokenAmount(s, 6), s).to.equal(n);
    });

    it("format without trailing zeros", function () {
      const cases: [bigint, string][] = [
        [0n, "0"],
        [1n, "0.000001"],
        [1_000n, "0.001"],
        [1_000_000n, "1"],
        [1_500_000n, "1.5"],
        [-1_500_000n, "-1.5"],
        [123_456_789_123_456n, "123456789.123456"],
      ];
      for (const [n, s] of cases) expect(formatTokenAmount(n, 6), s).to.equal(s);
      expect(formatTokenAmount(42n, 0)).to.equal("42");
      expect(formatTokenAmount(10n ** 18n + 1n, 18)).to.equal("1.000000000000000001");
    });

    it("round-trip: parse(format(n)) = n for non-negative amounts and 0 to 18 decimals", function () {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: 1n << 200n }), fc.integer({ min: 0, max: 18 }), (n, d) => {
          expect(parseTokenAmount(formatTokenAmount(n, d), d)).to.equal(n);
        }),
        { numRuns: 1000 },
      );
    });

    it("round-trip: format(parse(s)) is s without trailing fraction zeros", function () {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: 10n ** 30n }), fc.stringOf(fc.constantFrom(..."0123456789"), { maxLength: 6 }), (whole, frac) => {
          const s = frac ? `${whole}.${frac}` : `${whole}`;
          const expected = s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
          expect(formatTokenAmount(parseTokenAmount(s, 6), 6)).to.equal(expected);
        }),
        { numRuns: 1000 },
      );
    });

    it("reject signs, exponents, leading zeros, bare points, separators, too many decimals and empty input", function () {
      const bad = ["", " ", "-1", "+1", "1e6", "1E-3", "01", "00.5", ".5", "1.", "1..5", "1.2.3", "1,5", "1_000", "0x10", "NaN", "Infinity", "1 000", "١", "0.0000001", "1.1234567"];
      for (const s of bad) expect(() => parseTokenAmount(s, 6), JSON.stringify(s)).to.throw(RangeError);
      expect(() => parseTokenAmount("5.0", 0)).to.throw(RangeError);
      expect(() => parseTokenAmount(5 as unknown as string, 6)).to.throw(RangeError);
    });

    it("reject a bad decimals argument", function () {
      for (const d of [-1, 1.5, NaN, 78]) {
        expect(() => parseTokenAmount("1", d), String(d)).to.throw(RangeError);
        expect(() => formatTokenAmount(1n, d), String(d)).to.throw(RangeError);
      }
    });
  });
});
