/**
 * fast-check arbitraries for protocol values (channel ids, addresses, amounts, keys, wire objects), shared by the
 * protocol test suites. Everything generated is valid unless the name says otherwise.
 */
import fc from "fast-check";
import secp256k1 from "secp256k1";
import { bytesToHex, getAddress, type Address, type Hex } from "viem";
import { MAX_DEPOSIT, MAX_UINT128 } from "@paychan/protocol";
import type { ChannelHint, ChannelRequirements, PaymentPayload, PaymentRequired, PaymentResponse } from "@paychan/protocol";
import { PAYMENT_ERROR_CODES } from "@paychan/protocol";

/** `n` random bytes as lowercase 0x-hex. */
export const hexBytes = (n: number): fc.Arbitrary<Hex> =>
  fc.uint8Array({ minLength: n, maxLength: n }).map((b) => bytesToHex(b));

/** A 32-byte value (channel id, salt) in lowercase hex. */
export const bytes32 = (): fc.Arbitrary<Hex> => hexBytes(32);

/** A checksummed address. */
export const address = (): fc.Arbitrary<Address> => hexBytes(20).map((h) => getAddress(h));

/** The boundary amounts of the protocol: zero, one, the largest deposit and the largest voucher. */
export const EDGE_AMOUNTS: readonly bigint[] = [0n, 1n, MAX_DEPOSIT, MAX_UINT128];

/** A uint128 amount, biased to the edges (0, 1, 2^96 - 1, 2^128 - 1) and to small values. */
export const amount128 = (): fc.Arbitrary<bigint> =>
  fc.oneof(
    fc.constantFrom(...EDGE_AMOUNTS),
    fc.bigInt({ min: 0n, max: 10n ** 12n }),
    fc.bigInt({ min: 0n, max: MAX_UINT128 }),
  );

/** A valid secp256k1 private key as 0x-hex. */
export const privateKey = (): fc.Arbitrary<Hex> =>
  fc
    .uint8Array({ minLength: 32, maxLength: 32 })
    .filter((b) => secp256k1.privateKeyVerify(b))
    .map((b) => bytesToHex(b));

/** A CAIP-2 eip155 network with a safe-integer chain id. */
export const network = (): fc.Arbitrary<`eip155:${number}`> =>
  fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }).map((n) => `eip155:${n}` as const);

/** A 65-byte low-s signature-shaped value (lowercase hex; not necessarily a valid signature of anything). */
export const signatureHex = (): fc.Arbitrary<Hex> => hexBytes(65);

export const channelHint = (): fc.Arbitrary<ChannelHint> =>
  fc
    .record({
      channelId: bytes32(),
      deposit: amount128(),
      settled: amount128(),
      accepted: amount128(),
      spent: amount128(),
      signature: fc.option(signatureHex(), { nil: undefined }),
      status: fc.constantFrom("open" as const, "closing" as const, "finalized" as const),
    })
    .map((h) => {
      if (h.signature === undefined) delete h.signature;
      return h as ChannelHint;
    });

export const requirements = (): fc.Arbitrary<ChannelRequirements> =>
  fc
    .record({
      network: network(),
      asset: address(),
      amount: amount128(),
      payTo: address(),
      maxTimeoutSeconds: fc.integer({ min: 0, max: 86_400 }),
      escrow: address(),
      minDeposit: amount128(),
      minCloseDelay: fc.integer({ min: 0, max: 30 * 86_400 }),
      channel: fc.option(channelHint(), { nil: undefined }),
    })
    .map((r) => {
      const out: ChannelRequirements = {
        scheme: "channel",
        network: r.network,
        asset: r.asset,
        amount: r.amount,
        payTo: r.payTo,
        maxTimeoutSeconds: r.maxTimeoutSeconds,
        extra: { escrow: r.escrow, name: "ChannelEscrow", version: "1", minDeposit: r.minDeposit, minCloseDelay: r.minCloseDelay },
      };
      if (r.channel) out.extra.channel = r.channel;
      return out;
    });

export const paymentRequired = (): fc.Arbitrary<PaymentRequired> =>
  fc
    .record({
      error: fc.constantFrom(...PAYMENT_ERROR_CODES),
      url: fc.webUrl(),
      description: fc.option(fc.string({ maxLength: 100 }), { nil: undefined }),
      mimeType: fc.option(fc.constantFrom("application/json", "text/plain"), { nil: undefined }),
      accepts: fc.array(requirements(), { minLength: 1, maxLength: 3 }),
    })
    .map((p) => {
      const resource: PaymentRequired["resource"] = { url: p.url };
      if (p.description !== undefined) resource.description = p.description;
      if (p.mimeType !== undefined) resource.mimeType = p.mimeType;
      return { x402Version: 2 as const, error: p.error, resource, accepts: p.accepts };
    });

export const paymentPayload = (): fc.Arbitrary<PaymentPayload> =>
  fc.record({ accepted: requirements(), channelId: bytes32(), cumulativeAmount: amount128(), signature: signatureHex() }).map((p) => ({
    x402Version: 2 as const,
    accepted: p.accepted,
    payload: { channelId: p.channelId, cumulativeAmount: p.cumulativeAmount, signature: p.signature },
  }));

export const paymentResponse = (): fc.Arbitrary<PaymentResponse> =>
  fc
    .record({
      network: network(),
      payer: address(),
      amount: amount128(),
      channelId: bytes32(),
      accepted: amount128(),
      spent: amount128(),
      deposit: amount128(),
      remaining: amount128(),
    })
    .map((r) => ({
      success: true as const,
      transaction: "" as const,
      network: r.network,
      payer: r.payer,
      amount: r.amount,
      extra: { channelId: r.channelId, accepted: r.accepted, spent: r.spent, deposit: r.deposit, remaining: r.remaining },
    }));
