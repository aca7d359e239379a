/**
 * The x402 `exact` codec (protocol/src/exact.ts, and `decodeOffers` of wire.ts): round trips of offers, payloads and
 * receipts; strict failures (every malformed input a PaymentError with its code); and compatibility with the stock
 * x402 SDK pinned in devDependencies: a payload made by the stock `exact` EVM client decodes with ours and its
 * signature verifies over `exactTypedData`; a payload we encode is accepted by the stock facilitator's `verify` on the
 * local chain (and a tampered one is not).
 */
import { expect } from "chai";
import hre from "hardhat";
import { createWalletClient, custom, getAddress, publicActions, verifyTypedData, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { ExactEvmScheme as StockExactClient } from "@x402/evm/exact/client";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { x402Facilitator } from "@x402/core/facilitator";
import { decodePaymentSignatureHeader } from "@x402/core/http";
import {
  MAX_PAYMENT_SIGNATURE_BYTES,
  PaymentError,
  decodeExactPaymentResponse,
  decodeExactPaymentSignature,
  decodeOffers,
  decodePaymentRequired,
  encodeExactPaymentResponse,
  encodeExactPaymentSignature,
  encodePaymentRequired,
  exactRequirementsToJson,
  exactTypedData,
  parseExactPaymentPayload,
  paymentSignatureScheme,
  type ChannelRequirements,
  type ExactAuthorization,
  type ExactPaymentPayload,
  type ExactRequirements,
} from "@paychan/protocol";
import { mintUsdc } from "../helpers/client";
import { accountKey, revertTo, snapshot } from "../helpers/chain";

const TOKEN = getAddress("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
const PAYEE = getAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const PAYER = getAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
const NONCE = `0x${"11".repeat(32)}` as Hex;
const SIG = `0x${"cd".repeat(64)}1b` as Hex;
const TX = `0x${"ab".repeat(32)}` as Hex;

const offer: ExactRequirements = {
  scheme: "exact",
  network: "eip155:31337",
  asset: TOKEN,
  amount: 1000n,
  payTo: PAYEE,
  maxTimeoutSeconds: 60,
  extra: { name: "USD Coin", version: "2" },
};
const channelOffer: ChannelRequirements = {
  scheme: "channel",
  network: "eip155:31337",
  asset: TOKEN,
  amount: 1000n,
  payTo: PAYEE,
  maxTimeoutSeconds: 60,
  extra: { escrow: getAddress("0x5FbDB2315678afecb367f032d93F642f64180aa3"), name: "ChannelEscrow", version: "1", minDeposit: 1_000_000n, minCloseDelay: 86_400 },
};
const authorization: ExactAuthorization = { from: PAYER, to: PAYEE, value: 1000n, validAfter: 1_700_000_000n, validBefore: 1_700_000_060n, nonce: NONCE };
const payload: ExactPaymentPayload = { x402Version: 2, accepted: offer, payload: { signature: SIG, authorization } };

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64");
/** The wire JSON of `payload`, for tests that break one field. */
const wire = () => JSON.parse(Buffer.from(encodeExactPaymentSignature(payload), "base64").toString());

function expectPaymentError(f: () => unknown, code: string, match?: RegExp): void {
  try {
    f();
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(PaymentError);
    expect((e as PaymentError).code, (e as Error).message).to.equal(code);
    if (match) expect((e as Error).message).to.match(match);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe("protocol: the x402 exact codec", function () {
  describe("round trips", function () {
    it("offers: channel first, exact second in PAYMENT-REQUIRED; decodeOffers keeps both, decodePaymentRequired keeps exact aside", function () {
      const h = encodePaymentRequired({ x402Version: 2, error: "payment_required", resource: { url: "http://x/y" }, accepts: [channelOffer], exact: [offer] });
      const j = JSON.parse(Buffer.from(h, "base64").toString());
      expect(j.accepts.map((a: { scheme: string }) => a.scheme)).to.deep.equal(["channel", "exact"]);
      expect(j.accepts[1]).to.deep.equal({ scheme: "exact", network: "eip155:31337", asset: TOKEN, amount: "1000", payTo: PAYEE, maxTimeoutSeconds: 60, extra: { name: "USD Coin", version: "2" } });
      const o = decodeOffers(h);
      expect(o.accepts).to.deep.equal([channelOffer]);
      expect(o.exact).to.deep.equal([offer]);
      expect(decodePaymentRequired(h).exact).to.deep.equal([offer]);
      const withMethod = { ...offer, extra: { ...offer.extra, assetTransferMethod: "eip3009" as const } };
      expect(decodeOffers(encodePaymentRequired({ x402Version: 2, error: "payment_required", resource: { url: "u" }, accepts: [], exact: [withMethod] })).exact).to.deep.equal([withMethod]);
    });

    it("a stock server's free-text error is kept as reason when only exact is offered, refused next to channel offers", function () {
      const stock = { x402Version: 2, error: "Payment required", resource: { url: "u", mimeType: "" }, accepts: [exactRequirementsToJson(offer)] };
      const o = decodeOffers(b64(stock));
      expect(o.error).to.equal("payment_required");
      expect(o.reason).to.equal("Payment required");
      expect(o.exact).to.deep.equal([offer]);
      expectPaymentError(() => decodeOffers(b64({ ...stock, accepts: [...stock.accepts, JSON.parse(Buffer.from(encodePaymentRequired({ x402Version: 2, error: "payment_required", resource: { url: "u" }, accepts: [channelOffer] }), "base64").toString()).accepts[0]] })), "invalid_payload", /not a known code/);
      expect(decodeOffers(b64({ ...stock, error: "requirements_mismatch" })).reason).to.equal(undefined);
    });

    it("payloads and receipts", function () {
      const h = encodeExactPaymentSignature(payload);
      expect(decodeExactPaymentSignature(h)).to.deep.equal({ ...payload, payload: { ...payload.payload, authorization: { ...authorization, nonce: NONCE.toLowerCase() } } });
      expect(paymentSignatureScheme(h)).to.equal("exact");
      const w = wire();
      expect(w.payload.authorization).to.deep.equal({ from: PAYER, to: PAYEE, value: "1000", validAfter: "1700000000", validBefore: "1700000060", nonce: NONCE });
      const r = { success: true as const, transaction: TX, network: "eip155:31337" as const, payer: PAYER };
      expect(decodeExactPaymentResponse(encodeExactPaymentResponse(r))).to.deep.equal(r);
      expect(decodeExactPaymentResponse(encodeExactPaymentResponse({ ...r, amount: 1000n }))).to.deep.equal({ ...r, amount: 1000n });
    });
  });

  describe("strict decoding", function () {
    const broken = (mutate: (w: any) => void) => {
      const w = wire();
      mutate(w);
      return b64(w);
    };

    it("bad addresses, amounts, nonces, signatures and windows are invalid_payload", function () {
      const cases: Array<[string, (w: any) => void]> = [
        ["payTo", (w) => (w.accepted.payTo = "0x1234")],
        ["asset", (w) => (w.accepted.asset = 42)],
        ["from", (w) => (w.payload.authorization.from = "0xnothex000000000000000000000000000000000")],
        ["amount negative", (w) => (w.accepted.amount = "-1")],
        ["amount decimal", (w) => (w.accepted.amount = "1.5")],
        ["amount leading zero", (w) => (w.accepted.amount = "01")],
        ["amount as a number", (w) => (w.payload.authorization.value = 1000)],
        ["nonce of 31 bytes", (w) => (w.payload.authorization.nonce = `0x${"11".repeat(31)}`)],
        ["signature of 64 bytes", (w) => (w.payload.signature = `0x${"cd".repeat(64)}`)],
        ["validBefore beyond 2^40", (w) => (w.payload.authorization.validBefore = (2n ** 40n + 1n).toString())],
        ["maxTimeoutSeconds", (w) => (w.accepted.maxTimeoutSeconds = -1)],
        ["network", (w) => (w.accepted.network = "solana:mainnet")],
        ["domain name", (w) => (w.accepted.extra.name = 7)],
        ["version 1", (w) => (w.x402Version = 1)],
        ["no authorization", (w) => delete w.payload.authorization],
      ];
      for (const [what, mutate] of cases) {
        try {
          decodeExactPaymentSignature(broken(mutate));
          expect.fail(`${what}: decoded`);
        } catch (e) {
          expect(e, what).to.be.instanceOf(PaymentError);
          expect((e as PaymentError).code, what).to.equal("invalid_payload");
        }
      }
    });

    it("permit2 payloads and transfer methods are unsupported_scheme; another scheme is not exact", function () {
      expectPaymentError(() => decodeExactPaymentSignature(broken((w) => (w.payload.permit2Authorization = { from: PAYER }))), "unsupported_scheme");
      expectPaymentError(() => decodeExactPaymentSignature(broken((w) => (w.accepted.extra.assetTransferMethod = "permit2"))), "unsupported_scheme");
      expectPaymentError(() => decodeExactPaymentSignature(broken((w) => (w.accepted.scheme = "upto"))), "unsupported_scheme");
      // In a 402, an unsupported exact offer is dropped like another scheme's; none left: unsupported_scheme.
      const permit2Offer = { ...exactRequirementsToJson(offer), extra: { name: "USD Coin", version: "2", assetTransferMethod: "permit2" } };
      expectPaymentError(() => decodeOffers(b64({ x402Version: 2, resource: { url: "u" }, accepts: [permit2Offer] })), "unsupported_scheme");
      expect(decodeOffers(b64({ x402Version: 2, resource: { url: "u" }, accepts: [permit2Offer, exactRequirementsToJson(offer)] })).exact).to.deep.equal([offer]);
    });

    it("oversized, non-canonical or non-JSON headers are invalid_payload; receipts need a transaction", function () {
      expectPaymentError(() => decodeExactPaymentSignature("A".repeat(MAX_PAYMENT_SIGNATURE_BYTES + 4)), "invalid_payload", /larger than/);
      expectPaymentError(() => decodeExactPaymentSignature(broken((w) => (w.accepted.extra.name = "x".repeat(3000)))), "invalid_payload");
      expectPaymentError(() => decodeExactPaymentSignature(Buffer.from("not json").toString("base64")), "invalid_payload");
      expectPaymentError(() => decodeExactPaymentSignature(encodeExactPaymentSignature(payload) + "\u0000"), "invalid_payload");
      expectPaymentError(() => decodeExactPaymentResponse(b64({ success: true, transaction: "", network: "eip155:31337", payer: PAYER })), "invalid_payload");
      expectPaymentError(() => decodeExactPaymentResponse(b64({ success: false, transaction: TX, network: "eip155:31337", payer: PAYER })), "invalid_payload");
    });
  });

  describe("compatibility with the stock x402 SDK (@x402/evm 2.27.0)", function () {
    this.timeout(60_000);
    let snap: string;
    let token: Address;

    before(async function () {
      snap = await snapshot();
      token = (await hre.viem.deployContract("MockUSDC")).address;
    });
    after(async function () {
      await revertTo(snap);
    });

    it("a payload made by the stock exact client decodes with ours and verifies over exactTypedData", async function () {
      const account = privateKeyToAccount(accountKey(11));
      const stockClient = new StockExactClient(account);
      const requirements = { ...exactRequirementsToJson({ ...offer, asset: token }) } as never;
      const made = await stockClient.createPaymentPayload(2, requirements);
      const p = parseExactPaymentPayload({ x402Version: made.x402Version, accepted: requirements, payload: made.payload });
      expect(p.accepted).to.deep.equal({ ...offer, asset: token });
      expect(getAddress(p.payload.authorization.from)).to.equal(account.address);
      expect(p.payload.authorization.value).to.equal(1000n);
      expect(getAddress(p.payload.authorization.to)).to.equal(PAYEE);
      const ok = await verifyTypedData({ address: account.address, ...exactTypedData(p.accepted, p.payload.authorization), signature: p.payload.signature });
      expect(ok).to.equal(true);
      // The same signature does not verify under another domain version.
      const other = await verifyTypedData({
        address: account.address,
        ...exactTypedData({ ...p.accepted, extra: { name: "USD Coin", version: "1" } }, p.payload.authorization),
        signature: p.payload.signature,
      });
      expect(other).to.equal(false);
    });

    it("a payload we encode passes the stock facilitator's verify on the local chain (a tampered one does not)", async function () {
      const payer = privateKeyToAccount(accountKey(11));
      await mintUsdc(token, payer.address, 10_000n);
      const facilitatorAccount = privateKeyToAccount(accountKey(14));
      const wallet = createWalletClient({ account: facilitatorAccount, chain: hardhat, transport: custom(hre.network.provider) }).extend(publicActions);
      const facilitator = new x402Facilitator();
      registerExactEvmScheme(facilitator, { signer: toFacilitatorEvmSigner(Object.assign(wallet, { address: facilitatorAccount.address }) as never), networks: "eip155:31337" });
      const ours: ExactRequirements = { ...offer, asset: token };
      // Valid on both clocks that judge it: the facilitator's (this machine's) and the chain's (which earlier tests of
      // a whole run may have moved ahead).
      const wall = BigInt(Math.floor(Date.now() / 1000));
      const chain = (await wallet.getBlock({ blockTag: "latest" })).timestamp;
      const [earliest, latest] = wall < chain ? [wall, chain] : [chain, wall];
      const auth: ExactAuthorization = { from: payer.address, to: PAYEE, value: 1000n, validAfter: earliest - 60n, validBefore: latest + 60n, nonce: `0x${"5a".repeat(32)}` };
      const signature = await payer.signTypedData(exactTypedData(ours, auth));
      const header = encodeExactPaymentSignature({ x402Version: 2, accepted: ours, payload: { signature, authorization: auth } });
      const stockPayload = decodePaymentSignatureHeader(header);
      const requirements = exactRequirementsToJson(ours) as never;
      const v = await facilitator.verify(stockPayload, requirements);
      expect(v.isValid, JSON.stringify(v)).to.equal(true);
      expect(getAddress(v.payer!)).to.equal(payer.address);
      // One changed field: the signature no longer covers the authorization.
      const tampered = decodePaymentSignatureHeader(encodeExactPaymentSignature({ x402Version: 2, accepted: ours, payload: { signature, authorization: { ...auth, value: 999n } } }));
      const bad = await facilitator.verify(tampered, { ...(requirements as object), amount: "999" } as never);
      expect(bad.isValid).to.equal(false);
    });
  });
});
