/**
 * Cooperative close requests (`protocol/close.ts`): EIP-712 `CloseRequest(bytes32 channelId)` in the escrow domain,
 * identical to viem's typed-data signing, and never interchangeable with a voucher signature.
 */
import { expect } from "chai";
import fc from "fast-check";
import { getAddress, hashTypedData, keccak256, toHex, bytesToHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  CLOSE_PATH,
  CLOSE_REQUEST_TYPEHASH,
  CLOSE_REQUEST_TYPES,
  closeRequestDigest,
  escrowDomain,
  recoverCloseRequestSigner,
  signCloseRequest,
  VoucherSigner,
  VoucherVerifier,
} from "@paychan/protocol";
import { bytes32, privateKey } from "../helpers/arbitraries";
import { flipS } from "../helpers/signatures";

const domain = escrowDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");

describe("cooperative close request", function () {
  it("uses the agreed path and type hash", function () {
    expect(CLOSE_PATH).to.equal("/channel/close");
    expect(CLOSE_REQUEST_TYPEHASH).to.equal(keccak256(toHex("CloseRequest(bytes32 channelId)")));
  });

  it("digest and signature equal viem's hashTypedData / signTypedData, and the signer is recovered", async function () {
    await fc.assert(
      fc.asyncProperty(privateKey(), bytes32(), async (key, channelId) => {
        const typed = { domain, types: CLOSE_REQUEST_TYPES, primaryType: "CloseRequest", message: { channelId } } as const;
        expect(bytesToHex(closeRequestDigest(domain, channelId))).to.equal(hashTypedData(typed));
        const sig = signCloseRequest(domain, channelId, key);
        expect(sig).to.equal(await privateKeyToAccount(key).signTypedData(typed));
        expect(getAddress(recoverCloseRequestSigner(domain, channelId, sig)!)).to.equal(privateKeyToAccount(key).address);
      }),
      { numRuns: 60 },
    );
  });

  it("a close request for one channel does not recover to the signer for another channel or domain", function () {
    const key = "0x0000000000000000000000000000000000000000000000000000000000000007" as Hex;
    const signer = privateKeyToAccount(key).address;
    const a = `0x${"0a".repeat(32)}` as Hex;
    const b = `0x${"0b".repeat(32)}` as Hex;
    const sig = signCloseRequest(domain, a, key);
    expect(recoverCloseRequestSigner(domain, b, sig)?.toLowerCase()).to.not.equal(signer.toLowerCase());
    expect(recoverCloseRequestSigner(escrowDomain(1, domain.verifyingContract), a, sig)?.toLowerCase()).to.not.equal(signer.toLowerCase());
  });

  it("a voucher signature is not a close request and a close request is not a voucher", function () {
    const key = "0x0000000000000000000000000000000000000000000000000000000000000007" as Hex;
    const signer = privateKeyToAccount(key).address;
    const id = `0x${"0c".repeat(32)}` as Hex;
    const voucher = new VoucherSigner(key, domain).sign(id, 0n);
    expect(recoverCloseRequestSigner(domain, id, voucher.signature)?.toLowerCase()).to.not.equal(signer.toLowerCase());
    const close = signCloseRequest(domain, id, key);
    expect(new VoucherVerifier(domain).verify({ channelId: id, cumulativeAmount: 0n, signature: close }, signer)).to.equal(false);
  });

  it("rejects malformed and high-s close request signatures", function () {
    const key = "0x0000000000000000000000000000000000000000000000000000000000000007" as Hex;
    const id = `0x${"0d".repeat(32)}` as Hex;
    const sig = signCloseRequest(domain, id, key);
    expect(recoverCloseRequestSigner(domain, id, flipS(sig))).to.equal(null);
    expect(recoverCloseRequestSigner(domain, id, sig.slice(0, -2) as Hex)).to.equal(null);
    expect(recoverCloseRequestSigner(domain, id, "0x")).to.equal(null);
  });
});
