/**
 * The fast voucher path (VoucherSigner / VoucherVerifier, native secp256k1) agrees with viem on every valid
 * voucher and refuses exactly what the contract refuses: high s, v outside {27, 28}, wrong lengths, zero r or s.
 * Also the EIP-2098 compact form and the packed `settle` item layout.
 */
import { expect } from "chai";
import fc from "fast-check";
import {
  compactSignatureToSignature,
  getAddress,
  parseCompactSignature,
  parseSignature,
  recoverTypedDataAddress,
  serializeCompactSignature,
  serializeSignature,
  signatureToCompactSignature,
  type Hex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  encodeSettleItems,
  escrowDomain,
  recoverDigestSigner,
  SECP256K1_HALF_N,
  SETTLE_ITEM_SIZE,
  toCompactSignature,
  VOUCHER_TYPES,
  VoucherHasher,
  VoucherSigner,
  VoucherVerifier,
  type SettleClaim,
} from "@paychan/protocol";
import { address, amount128, bytes32, privateKey } from "../helpers/arbitraries";
import { flipS, joinSignature, SECP256K1_N, splitSignature, withV } from "../helpers/signatures";

const domain = escrowDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const verifier = new VoucherVerifier(domain);
const viemSign = (key: Hex, channelId: Hex, cumulativeAmount: bigint) =>
  privateKeyToAccount(key).signTypedData({ domain, types: VOUCHER_TYPES, primaryType: "Voucher", message: { channelId, cumulativeAmount } });
const viemRecover = (channelId: Hex, cumulativeAmount: bigint, signature: Hex) =>
  recoverTypedDataAddress({ domain, types: VOUCHER_TYPES, primaryType: "Voucher", message: { channelId, cumulativeAmount }, signature });

/** One signed voucher, for the rejection cases. */
const KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318" as Hex;
const SIGNER = privateKeyToAccount(KEY).address;
const ID = `0x${"c4".repeat(32)}` as Hex;
const AMOUNT = 987_654_321n;
const GOOD = new VoucherSigner(KEY, domain).sign(ID, AMOUNT).signature;

describe("voucher signing and fast verification", function () {
  describe("agreement with viem", function () {
    it("VoucherVerifier recovers the signer of viem's signTypedData signatures (random keys and vouchers)", async function () {
      await fc.assert(
        fc.asyncProperty(privateKey(), bytes32(), amount128(), async (key, id, amount) => {
          const sig = await viemSign(key, id, amount);
          const recovered = verifier.recover(id, amount, sig);
          expect(recovered && getAddress(recovered)).to.equal(privateKeyToAccount(key).address);
          expect(verifier.verify({ channelId: id, cumulativeAmount: amount, signature: sig }, privateKeyToAccount(key).address)).to.equal(true);
        }),
        { numRuns: 150 },
      );
    });

    it("VoucherSigner signs exactly what viem signs, and viem recovers its signer", async function () {
      await fc.assert(
        fc.asyncProperty(privateKey(), bytes32(), amount128(), async (key, id, amount) => {
          const ours = new VoucherSigner(key, domain).sign(id, amount);
          expect(ours).to.deep.equal({ channelId: id, cumulativeAmount: amount, signature: await viemSign(key, id, amount) });
          expect(await viemRecover(id, amount, ours.signature)).to.equal(privateKeyToAccount(key).address);
          const { s, v } = splitSignature(ours.signature);
          expect(s <= SECP256K1_HALF_N).to.equal(true);
          expect([27, 28]).to.include(v);
        }),
        { numRuns: 150 },
      );
    });

    it("a voucher verifies only for its own signer, channel, amount and domain", async function () {
      await fc.assert(
        fc.asyncProperty(privateKey(), bytes32(), bytes32(), amount128(), address(), async (key, id, otherId, amount, stranger) => {
          fc.pre(id !== otherId && stranger !== privateKeyToAccount(key).address);
          const signer = privateKeyToAccount(key).address;
          const v = new VoucherSigner(key, domain).sign(id, amount);
          expect(verifier.verify(v, signer)).to.equal(true);
          expect(verifier.verify(v, stranger)).to.equal(false);
          expect(verifier.verify({ ...v, channelId: otherId }, signer)).to.equal(false);
          const otherAmount = amount === 0n ? 1n : amount - 1n;
          expect(verifier.verify({ ...v, cumulativeAmount: otherAmount }, signer)).to.equal(false);
          const otherDomain = new VoucherVerifier(escrowDomain(1, domain.verifyingContract));
          expect(otherDomain.verify(v, signer)).to.equal(false);
        }),
        { numRuns: 100 },
      );
    });

    it("verify compares addresses case-insensitively", function () {
      const v = { channelId: ID, cumulativeAmount: AMOUNT, signature: GOOD };
      expect(verifier.verify(v, SIGNER.toLowerCase() as Hex)).to.equal(true);
      expect(verifier.verify(v, SIGNER.toUpperCase().replace("0X", "0x") as Hex)).to.equal(true);
    });

    it("VoucherSigner refuses an invalid private key", function () {
      expect(() => new VoucherSigner(`0x${"00".repeat(32)}`, domain)).to.throw(RangeError);
      expect(() => new VoucherSigner(`0x${SECP256K1_N.toString(16)}`, domain)).to.throw(RangeError);
      expect(() => new VoucherSigner("0x01", domain)).to.throw(RangeError);
    });

    it("signers and verifiers can share one VoucherHasher", function () {
      const hasher = new VoucherHasher(domain);
      const v = new VoucherSigner(KEY, hasher).sign(ID, AMOUNT);
      expect(v.signature).to.equal(GOOD);
      expect(new VoucherVerifier(hasher).verify(v, SIGNER)).to.equal(true);
    });
  });

  describe("rejections (the contract's rules)", function () {
    it("accepts the original signature (control)", function () {
      expect(getAddress(verifier.recover(ID, AMOUNT, GOOD)!)).to.equal(SIGNER);
    });

    it("rejects the high-s twin that viem still accepts", async function () {
      const twin = flipS(GOOD);
      expect(await viemRecover(ID, AMOUNT, twin)).to.equal(SIGNER); // plain ECDSA: malleable
      expect(verifier.recover(ID, AMOUNT, twin)).to.equal(null);
    });

    it("rejects high s for random signatures", function () {
      fc.assert(
        fc.property(privateKey(), bytes32(), amount128(), (key, id, amount) => {
          const v = new VoucherSigner(key, domain).sign(id, amount);
          expect(verifier.recover(id, amount, flipS(v.signature))).to.equal(null);
        }),
        { numRuns: 100 },
      );
    });

    it("accepts s = n/2 exactly and rejects s = n/2 + 1 (the boundary)", function () {
      const { r } = splitSignature(GOOD);
      // Neither is a signature of this digest, but the boundary decides whether recovery is even attempted.
      const atHalf = verifier.recover(ID, AMOUNT, joinSignature(r, SECP256K1_HALF_N, 27));
      const aboveHalf = verifier.recover(ID, AMOUNT, joinSignature(r, SECP256K1_HALF_N + 1n, 27));
      expect(atHalf).to.not.equal(null);
      expect(aboveHalf).to.equal(null);
    });

    it("rejects v outside {27, 28}, including the 0/1 parity form viem accepts", async function () {
      const { v } = splitSignature(GOOD);
      const parity = withV(GOOD, v - 27);
      expect(await viemRecover(ID, AMOUNT, parity)).to.equal(SIGNER);
      for (const bad of [0, 1, 26, 29, 35, 36, 255]) expect(verifier.recover(ID, AMOUNT, withV(GOOD, bad)), `v=${bad}`).to.equal(null);
      // the other valid v gives another key, never the signer
      const other = verifier.recover(ID, AMOUNT, withV(GOOD, v === 27 ? 28 : 27));
      expect(other === null || getAddress(other) !== SIGNER).to.equal(true);
    });

    it("rejects 64-byte (compact) signatures and any other length", function () {
      const compact = serializeCompactSignature(signatureToCompactSignature(parseSignature(GOOD)));
      expect(compact.length).to.equal(130);
      expect(verifier.recover(ID, AMOUNT, compact)).to.equal(null);
      for (const bad of [GOOD.slice(0, -2), `${GOOD}00`, `${GOOD}1`, GOOD.slice(0, -1), "0x", `0x${"00".repeat(66)}`]) {
        expect(verifier.recover(ID, AMOUNT, bad as Hex), bad).to.equal(null);
      }
    });

    it("rejects non-hex signatures of the right length", function () {
      const cases = [`0x${"zz".repeat(65)}`, `0x${GOOD.slice(2, 128)}zz${GOOD.slice(130)}`, `0x${GOOD.slice(2, 131)}g`, `0x ${GOOD.slice(3)}`];
      for (const bad of cases) {
        expect(bad.length).to.equal(132);
        expect(verifier.recover(ID, AMOUNT, bad as Hex), bad).to.equal(null);
      }
    });

    it("rejects r = 0, s = 0, r ≥ n and s ≥ n", function () {
      const { r, s, v } = splitSignature(GOOD);
      for (const [rr, ss] of [
        [0n, s],
        [r, 0n],
        [0n, 0n],
        [SECP256K1_N, s],
        [SECP256K1_N + 1n, s],
        [(1n << 256n) - 1n, s],
      ]) {
        expect(verifier.recover(ID, AMOUNT, joinSignature(rr, ss, v)), `r=${rr} s=${ss}`).to.equal(null);
      }
    });

    it("recoverDigestSigner never throws on arbitrary bytes", function () {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.string({ maxLength: 140 }), fc.uint8Array({ minLength: 65, maxLength: 65 }), (digest, str, sigBytes) => {
          for (const sig of [str, `0x${str}`, `0x${Buffer.from(sigBytes).toString("hex")}`]) {
            const out = recoverDigestSigner(digest, sig as Hex);
            expect(out === null || /^0x[0-9a-f]{40}$/.test(out)).to.equal(true);
          }
        }),
        { numRuns: 500 },
      );
    });
  });

  describe("EIP-2098 compact signatures", function () {
    it("toCompactSignature equals viem's compact form and round-trips to the 65-byte signature", function () {
      fc.assert(
        fc.property(privateKey(), bytes32(), amount128(), (key, id, amount) => {
          const sig = new VoucherSigner(key, domain).sign(id, amount).signature;
          const { r, vs } = toCompactSignature(sig);
          expect(r).to.match(/^0x[0-9a-f]{64}$/);
          expect(vs).to.match(/^0x[0-9a-f]{64}$/);
          expect(`${r}${vs.slice(2)}`).to.equal(serializeCompactSignature(signatureToCompactSignature(parseSignature(sig))));
          // back: top bit of vs is the y-parity, the rest is s
          const back = serializeSignature(compactSignatureToSignature(parseCompactSignature(`${r}${vs.slice(2)}` as Hex)));
          expect(back).to.equal(sig);
          const { s, v } = splitSignature(sig);
          expect(BigInt(vs) >> 255n).to.equal(BigInt(v - 27));
          expect(BigInt(vs) & ((1n << 255n) - 1n)).to.equal(s);
        }),
        { numRuns: 200 },
      );
    });

    it("refuses malformed signatures and v outside {27, 28}", function () {
      expect(() => toCompactSignature(GOOD.slice(0, -2) as Hex)).to.throw(RangeError);
      expect(() => toCompactSignature(`${GOOD}00` as Hex)).to.throw(RangeError);
      expect(() => toCompactSignature(`0x${"zz".repeat(65)}`)).to.throw(RangeError);
      expect(() => toCompactSignature(withV(GOOD, 0))).to.throw(RangeError);
      expect(() => toCompactSignature(withV(GOOD, 29))).to.throw(RangeError);
    });
  });

  describe("encodeSettleItems", function () {
    it("packs channelId ‖ cumulativeAmount (16) ‖ amount (16) ‖ r ‖ vs, 128 bytes per item, in order", function () {
      const claim = fc.record({ channelId: bytes32(), cumulativeAmount: amount128(), amount: amount128(), key: privateKey() });
      fc.assert(
        fc.property(fc.array(claim, { minLength: 0, maxLength: 5 }), (raw) => {
          const claims: SettleClaim[] = raw.map((c) => ({
            channelId: c.channelId,
            cumulativeAmount: c.cumulativeAmount,
            amount: c.amount,
            signature: new VoucherSigner(c.key, domain).sign(c.channelId, c.cumulativeAmount).signature,
          }));
          const packed = encodeSettleItems(claims);
          expect(packed).to.match(/^0x([0-9a-f]{2})*$/);
          expect((packed.length - 2) / 2).to.equal(claims.length * SETTLE_ITEM_SIZE);
          claims.forEach((c, i) => {
            const item = packed.slice(2 + i * 256, 2 + (i + 1) * 256);
            const { r, vs } = toCompactSignature(c.signature);
            expect(`0x${item.slice(0, 64)}`).to.equal(c.channelId);
            expect(BigInt(`0x${item.slice(64, 96)}`)).to.equal(c.cumulativeAmount);
            expect(BigInt(`0x${item.slice(96, 128)}`)).to.equal(c.amount);
            expect(`0x${item.slice(128, 192)}`).to.equal(r);
            expect(`0x${item.slice(192, 256)}`).to.equal(vs);
          });
        }),
        { numRuns: 100 },
      );
    });

    it("encodes no claims as empty calldata (which settle refuses with MalformedSettleItems)", function () {
      expect(encodeSettleItems([])).to.equal("0x");
    });

    it("refuses amounts outside uint128 and malformed signatures", function () {
      const ok: SettleClaim = { channelId: ID, cumulativeAmount: AMOUNT, amount: AMOUNT, signature: GOOD };
      expect(() => encodeSettleItems([{ ...ok, amount: 1n << 128n }])).to.throw(RangeError);
      expect(() => encodeSettleItems([{ ...ok, cumulativeAmount: 1n << 128n }])).to.throw(RangeError);
      expect(() => encodeSettleItems([{ ...ok, amount: -1n }])).to.throw(RangeError);
      expect(() => encodeSettleItems([{ ...ok, signature: GOOD.slice(0, -2) as Hex }])).to.throw(RangeError);
      expect(() => encodeSettleItems([{ ...ok, signature: withV(GOOD, 1) }])).to.throw(RangeError);
    });
  });
});
