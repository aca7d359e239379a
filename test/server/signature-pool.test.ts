/**
 * The server's signature pool gives exactly the protocol verifier's answers, whether a check runs inline (a lone
 * request) or on the worker thread (several in progress), and keeps answering when its worker dies or it closes.
 */
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import type { Address, Hex } from "viem";
import { privateKeyToAddress } from "viem/accounts";
import { escrowDomain, SECP256K1_HALF_N, VoucherSigner, VoucherVerifier, type Voucher } from "@paychan/protocol";
import { SignaturePool } from "../../server/core/src/payments/signature-pool";

const domain = escrowDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const keyA = `0x${"a1".repeat(32)}` as Hex;
const keyB = `0x${"b2".repeat(32)}` as Hex;
const signerA = privateKeyToAddress(keyA);
const signerB = privateKeyToAddress(keyB);

/** A high-s twin of a valid signature (same r, s' = n - s, v flipped): valid ECDSA, refused by the protocol. */
function highS(sig: Hex): Hex {
  const n = SECP256K1_HALF_N * 2n + 1n;
  const s = BigInt(`0x${sig.slice(66, 130)}`);
  const v = parseInt(sig.slice(130), 16) === 27 ? 28 : 27;
  return `0x${sig.slice(2, 66)}${(n - s).toString(16).padStart(64, "0")}${v.toString(16)}` as Hex;
}

/** Valid vouchers of A, and the ways a voucher can be wrong, each paired with the signer it is checked against. */
function cases(count: number): Array<{ voucher: Voucher; signer: Address }> {
  const a = new VoucherSigner(keyA, domain);
  const b = new VoucherSigner(keyB, domain);
  const out: Array<{ voucher: Voucher; signer: Address }> = [];
  for (let i = 0; i < count; i++) {
    const id = `0x${randomBytes(32).toString("hex")}` as Hex;
    const v = a.sign(id, BigInt(i + 1) * 1_000n);
    const sig = v.signature;
    switch (i % 7) {
      case 0:
        out.push({ voucher: v, signer: signerA });
        break;
      case 1: // another key's voucher
        out.push({ voucher: b.sign(id, v.cumulativeAmount), signer: signerA });
        break;
      case 2: // checked against the wrong signer
        out.push({ voucher: v, signer: signerB });
        break;
      case 3: // amount changed after signing
        out.push({ voucher: { ...v, cumulativeAmount: v.cumulativeAmount + 1n }, signer: signerA });
        break;
      case 4: // high s
        out.push({ voucher: { ...v, signature: highS(sig) }, signer: signerA });
        break;
      case 5: // v outside {27, 28}
        out.push({ voucher: { ...v, signature: `${sig.slice(0, 130)}01` as Hex }, signer: signerA });
        break;
      default: // r = 0 (no point)
        out.push({ voucher: { ...v, signature: `0x${"00".repeat(32)}${sig.slice(66)}` as Hex }, signer: signerA });
    }
  }
  return out;
}

describe("signature pool", () => {
  const reference = new VoucherVerifier(domain);
  const expected = (c: { voucher: Voucher; signer: Address }) => reference.verify(c.voucher, c.signer);

  it("checks not offloaded run inline and answer as the verifier does", async () => {
    const pool = new SignaturePool({ verifier: new VoucherVerifier(domain), threads: 1 });
    try {
      const all = cases(21);
      expect(await Promise.all(all.map((c) => pool.verify(c.voucher, c.signer, false)))).to.deep.equal(all.map(expected));
      expect(pool.offloaded).to.equal(0);
    } finally {
      await pool.close();
    }
  });

  it("offloaded checks go to the worker and answer exactly as the verifier does", async () => {
    const pool = new SignaturePool({ verifier: new VoucherVerifier(domain), threads: 1 });
    try {
      const all = cases(350);
      const got = await Promise.all(all.map((c) => pool.verify(c.voucher, c.signer, true)));
      expect(got).to.deep.equal(all.map(expected));
      expect(got.filter(Boolean).length).to.equal(50); // one case in seven is valid
      expect(pool.offloaded).to.equal(250); // all but high-s and bad-v, which are refused before any recovery
    } finally {
      await pool.close();
    }
  });

  it("checks that trickle in, with the worker asleep in between, are all answered", async () => {
    const pool = new SignaturePool({ verifier: new VoucherVerifier(domain), threads: 1 });
    try {
      for (let round = 0; round < 25; round++) {
        await new Promise((r) => setTimeout(r, 2)); // the worker catches up and goes to sleep
        const some = cases(1 + (round % 4));
        expect(await Promise.all(some.map((c) => pool.verify(c.voucher, c.signer, true)))).to.deep.equal(some.map(expected));
      }
      expect(pool.offloaded).to.be.greaterThan(25);
    } finally {
      await pool.close();
    }
  });

  it("with no threads every check is inline, even when offloading is asked", async () => {
    const pool = new SignaturePool({ verifier: new VoucherVerifier(domain), threads: 0 });
    const all = cases(28);
    expect(await Promise.all(all.map((c) => pool.verify(c.voucher, c.signer, true)))).to.deep.equal(all.map(expected));
    expect(pool.offloaded).to.equal(0);
    await pool.close();
  });

  it("when the worker fails, pending and later checks are answered inline, still correctly", async () => {
    const pool = new SignaturePool({ verifier: new VoucherVerifier(domain), threads: 1 });
    const all = cases(140);
    const pending = Promise.all(all.map((c) => pool.verify(c.voucher, c.signer, true)));
    await pool.crashWorkersForTest();
    expect(await pending).to.deep.equal(all.map(expected));
    const later = cases(14);
    expect(await Promise.all(later.map((c) => pool.verify(c.voucher, c.signer, true)))).to.deep.equal(later.map(expected));
    await pool.close();
  });

  it("closing while the worker has a thousand recoveries in hand answers every check, and the worker stops by itself (twenty times)", async () => {
    // close() never terminates the worker (terminated inside the native recovery it can abort the process): it asks
    // it to stop, and waits until it has returned between two recoveries.
    const all = cases(1_000);
    for (let round = 0; round < 20; round++) {
      const pool = new SignaturePool({ verifier: new VoucherVerifier(domain), threads: 1 });
      const checks = all.map((c) => pool.verify(c.voucher, c.signer, true));
      await checks[0]; // the worker is running, with about a thousand recoveries (tens of ms) still to do
      await pool.close();
      expect(await Promise.all(checks)).to.deep.equal(all.map(expected));
    }
  });

  it("closing answers the checks still pending", async () => {
    const pool = new SignaturePool({ verifier: new VoucherVerifier(domain), threads: 1 });
    const all = cases(70);
    const pending = Promise.all(all.map((c) => pool.verify(c.voucher, c.signer, true)));
    await pool.close();
    expect(await pending).to.deep.equal(all.map(expected));
  });
});
