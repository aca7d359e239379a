/**
 * The gasless-open codec (protocol/src/open.ts, docs/protocol.md § 5.9): offers with `extra.open` and payloads with
 * `payload.open` round-trip; malformed ones are `invalid_payload`; and a payload signed over `openTypedData` opens
 * exactly the channel `openChannelId` names when a relayer submits it to the real escrow on the local chain (the
 * test helper's independent EIP-3009 signer gives the same signature).
 */
import { expect } from "chai";
import { getAddress, hexToBytes, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  PaymentError,
  VoucherSigner,
  authorizationNonce,
  decodePaymentRequired,
  decodePaymentSignature,
  encodePaymentRequired,
  encodePaymentSignature,
  openChannelId,
  openTypedData,
  parseOpenAuthorization,
  recoverDigestSigner,
  type ChannelRequirements,
  type OpenAuthorization,
  type PaymentPayload,
} from "@paychan/protocol";
import { deployEscrow, DAY, nextSalt, USDC, type Env } from "../helpers/escrow";
import { isolateEachTest } from "../helpers/chain";
import { signAuthorization, USDC_DOMAIN_NAME, USDC_DOMAIN_VERSION } from "../helpers/usdc";

const TOKEN = getAddress("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
const ESCROW = getAddress("0x5FbDB2315678afecb367f032d93F642f64180aa3");
const PAYEE = getAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const PAYER = getAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
const SIGNER = getAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
const SIG = `0x${"cd".repeat(64)}1b` as Hex;

const offer: ChannelRequirements = {
  scheme: "channel",
  network: "eip155:31337",
  asset: TOKEN,
  amount: 1000n,
  payTo: PAYEE,
  maxTimeoutSeconds: 60,
  extra: { escrow: ESCROW, name: "ChannelEscrow", version: "1", minDeposit: 1_000_000n, minCloseDelay: DAY, open: { method: "eip3009", fee: 250n } },
};

const open: OpenAuthorization = {
  method: "eip3009",
  payer: PAYER,
  payee: PAYEE,
  token: TOKEN,
  signer: SIGNER,
  amount: 5_000_000n,
  closeDelay: DAY,
  salt: `0x${"07".repeat(32)}`,
  validAfter: 0n,
  validBefore: 1_767_225_600n,
  signature: SIG,
};

function withOpen(o: unknown): string {
  const p: PaymentPayload = { x402Version: 2, accepted: offer, payload: { channelId: openChannelId(open, 31337, ESCROW), cumulativeAmount: 1250n, signature: SIG, open } };
  const json = JSON.parse(Buffer.from(encodePaymentSignature(p), "base64").toString("utf8"));
  json.payload.open = o;
  return Buffer.from(JSON.stringify(json), "utf8").toString("base64");
}

function invalid(f: () => unknown): PaymentError {
  try {
    f();
  } catch (e) {
    expect(e).to.be.instanceOf(PaymentError);
    expect((e as PaymentError).code).to.equal("invalid_payload");
    return e as PaymentError;
  }
  throw new Error("expected invalid_payload");
}

describe("protocol: gasless opens (open.ts)", () => {
  it("an offer's extra.open and a payload's open round-trip through the header codecs", () => {
    const header = encodePaymentRequired({ x402Version: 2, error: "payment_required", resource: { url: "http://x/y" }, accepts: [offer] });
    expect(decodePaymentRequired(header).accepts[0]).to.deep.equal(offer);
    const p: PaymentPayload = { x402Version: 2, accepted: offer, payload: { channelId: openChannelId(open, 31337, ESCROW), cumulativeAmount: 1250n, signature: SIG, open } };
    expect(decodePaymentSignature(encodePaymentSignature(p))).to.deep.equal({ ...p, payload: { ...p.payload, channelId: p.payload.channelId.toLowerCase(), open: { ...open, salt: open.salt.toLowerCase() } } });
  });

  it("a payload without open and an offer without extra.open stay as they were (no new fields)", () => {
    const { open: _o, ...extra } = offer.extra;
    const plain = { ...offer, extra };
    const header = encodePaymentRequired({ x402Version: 2, error: "payment_required", resource: { url: "http://x/y" }, accepts: [plain] });
    expect(decodePaymentRequired(header).accepts[0].extra).to.not.have.property("open");
    const sig = decodePaymentSignature(encodePaymentSignature({ x402Version: 2, accepted: plain, payload: { channelId: `0x${"01".repeat(32)}`, cumulativeAmount: 1n, signature: SIG } }));
    expect(sig.payload).to.not.have.property("open");
  });

  it("refuses malformed opens with invalid_payload: other method, zero or oversized amount, close delay out of bounds, empty window, non-decimal times, bad addresses, short signature", () => {
    const json = JSON.parse(JSON.stringify({ ...open, amount: "5000000", validAfter: "0", validBefore: "1767225600" }));
    const cases: Array<[string, Record<string, unknown>]> = [
      ["method", { method: "permit" }],
      ["amount zero", { amount: "0" }],
      ["amount above MAX_DEPOSIT", { amount: (2n ** 96n).toString() }],
      ["close delay below the contract's minimum", { closeDelay: 60 }],
      ["close delay above the contract's maximum", { closeDelay: 31 * DAY }],
      ["validBefore not after validAfter", { validAfter: "100", validBefore: "100" }],
      ["time as a number", { validBefore: 1767225600 }],
      ["time with a sign", { validBefore: "-1" }],
      ["time out of range", { validBefore: (2n ** 41n).toString() }],
      ["payer", { payer: "0x1234" }],
      ["salt", { salt: "0x07" }],
      ["signature", { signature: "0xcd" }],
      ["missing signer", { signer: undefined }],
    ];
    for (const [name, change] of cases) {
      const e = invalid(() => decodePaymentSignature(withOpen({ ...json, ...change })));
      expect(e.message, name).to.match(/payload\.open/);
    }
    invalid(() => decodePaymentSignature(withOpen("open")));
    const badOffer = { ...offer, extra: { ...offer.extra, open: { method: "eip3009", fee: "-1" } } } as unknown as ChannelRequirements;
    invalid(() => decodePaymentRequired(Buffer.from(JSON.stringify({ x402Version: 2, resource: { url: "u" }, accepts: [{ ...badOffer, amount: "1000", extra: { ...badOffer.extra, minDeposit: "1000000" } }] })).toString("base64")));
    expect(parseOpenAuthorization(json)).to.deep.equal({ ...open, salt: open.salt.toLowerCase() });
  });

  describe("on the local chain", () => {
    let env: Env;
    before(async () => {
      env = await deployEscrow();
    });
    isolateEachTest();

    it("a relayer submits the signed open: openWithAuthorization opens exactly openChannelId's channel for a payer holding no native coin, and its first voucher verifies", async () => {
      const payerKey = generatePrivateKey();
      const payer = privateKeyToAccount(payerKey);
      const session = generatePrivateKey();
      const token = getAddress(env.usdc.address);
      const escrow = getAddress(env.escrow.address);
      const payee = getAddress(env.wallets[0].account.address);
      await env.usdc.write.mint([payer.address, USDC(5)]);
      const unsigned = { method: "eip3009" as const, payer: payer.address, payee, token, signer: privateKeyToAccount(session).address, amount: USDC(5), closeDelay: DAY, salt: nextSalt(), validAfter: 0n, validBefore: 2n ** 40n };
      const td = openTypedData(unsigned, { chainId: env.chainId, escrow, domain: { name: USDC_DOMAIN_NAME, version: USDC_DOMAIN_VERSION } });
      const signature = await payer.signTypedData(td);
      const id = openChannelId({ ...unsigned, signature }, env.chainId, escrow);
      // The independent EIP-3009 signer of the contract tests signs the same message to the same bytes.
      const independent = await signAuthorization(payerKey, env.chainId, token, { to: escrow, value: USDC(5), validAfter: 0n, validBefore: 2n ** 40n, nonce: authorizationNonce(id, DAY) });
      expect(signature).to.equal(independent);
      expect(td.message.nonce).to.equal(await env.escrow.read.authorizationNonce([id, DAY]));
      expect(await env.escrow.read.computeChannelId([payer.address, payee, token, unsigned.signer, unsigned.salt])).to.equal(id);

      await env.escrow.write.openWithAuthorization([payer.address, payee, token, unsigned.signer, USDC(5), DAY, unsigned.salt, 0n, 2n ** 40n, signature], { account: env.wallets[3].account });
      const ch = (await env.escrow.read.getChannel([id, unsigned.signer])) as { payer: Address; deposit: bigint };
      expect([ch.payer, ch.deposit]).to.deep.equal([payer.address, USDC(5)]);
      expect(await env.publicClient.getBalance({ address: payer.address })).to.equal(0n);
      const voucher = new VoucherSigner(session, env.domain).sign(id, 1250n);
      const digest = (await env.escrow.read.voucherDigest([id, 1250n])) as Hex;
      expect(getAddress(recoverDigestSigner(hexToBytes(digest), voucher.signature)!)).to.equal(unsigned.signer);
    });
  });
});
