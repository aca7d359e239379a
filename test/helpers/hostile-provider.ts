/**
 * A malicious provider for the agent's hardening tests (issue 17): an Express app of its own (not our server) that
 * answers every request with a 402 naming the escrow it is told to (a fake one, or the real escrow), refuses every
 * paid request with the codes it is given (retryable and "channel unusable" ones, in turn), and can rotate `payTo`
 * on every 402, or drop the connection of every paid request once it has read the voucher. It records every voucher
 * it is sent: what the agent signed is what such a provider could settle.
 */
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import express from "express";
import { getAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAddress } from "viem/accounts";
import {
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_SIGNATURE,
  decodePaymentSignature,
  encodePaymentRequired,
  networkOf,
  type ChannelRequirements,
  type PaymentErrorCode,
  type VoucherPayload,
} from "@paychan/protocol";

/** How the hostile provider behaves. */
export interface HostileOptions {
  escrow: Address;
  token: Address;
  /** Price of every route (atomic units). */
  price: bigint;
  minDeposit: bigint;
  minCloseDelay: number;
  /** Codes of the refusals of paid requests, used in turn. */
  codes: PaymentErrorCode[];
  /** A new `payTo` on every 402. */
  rotatePayTo: boolean;
  /** Answer paid requests with this status (e.g. 500) instead of a 402 refusal. */
  paidStatus?: number;
  /** Reads the voucher of a paid request, then destroys the connection without answering. */
  dropPaid?: boolean;
  /** Replaces the 402's `PAYMENT-REQUIRED` value (malformed or oversized challenges). */
  rawChallenge?: () => string;
}

/** A running hostile provider. */
export interface HostileProvider {
  url: string;
  /** Every voucher received. */
  vouchers: VoucherPayload[];
  /** Every payee named in a 402. */
  payees: Set<Address>;
  /** Requests received. */
  requests: number;
  /** The highest voucher per channel: what this provider could settle. */
  signedPerChannel(): Map<Hex, bigint>;
  /** Sum of {@link signedPerChannel}. */
  signedTotal(): bigint;
  close(): Promise<void>;
}

/** Starts the hostile provider on an ephemeral loopback port. */
export async function startHostileProvider(o: HostileOptions): Promise<HostileProvider> {
  const fixedPayee = privateKeyToAddress(generatePrivateKey());
  const state = { requests: 0, refusals: 0 };
  const vouchers: VoucherPayload[] = [];
  const payees = new Set<Address>();
  const termsNow = (): ChannelRequirements => {
    const payTo = o.rotatePayTo ? privateKeyToAddress(generatePrivateKey()) : fixedPayee;
    payees.add(payTo);
    return {
      scheme: "channel",
      network: networkOf(31337),
      asset: getAddress(o.token),
      amount: o.price,
      payTo,
      maxTimeoutSeconds: 60,
      extra: { escrow: getAddress(o.escrow), name: "ChannelEscrow", version: "1", minDeposit: o.minDeposit, minCloseDelay: o.minCloseDelay },
    };
  };
  const app = express();
  app.use((req, res) => {
    state.requests++;
    let error: PaymentErrorCode = "payment_required";
    const h = req.header(HEADER_PAYMENT_SIGNATURE);
    if (h) {
      try {
        vouchers.push(decodePaymentSignature(h).payload);
      } catch {
        /* garbage is refused all the same */
      }
      error = o.codes[state.refusals++ % o.codes.length];
      if (o.dropPaid) {
        req.socket.destroy();
        return;
      }
      if (o.paidStatus) {
        res.status(o.paidStatus).json({ error: "internal_error" });
        return;
      }
    }
    const value = o.rawChallenge
      ? o.rawChallenge()
      : encodePaymentRequired({ x402Version: 2, error, resource: { url: `http://${req.headers.host}${req.url}` }, accepts: [termsNow()] });
    res.status(402).set(HEADER_PAYMENT_REQUIRED, value).type("application/problem+json").send(JSON.stringify({ error, detail: "no" }));
  });
  const server: Server = await new Promise((r) => {
    const s = app.listen(0, "127.0.0.1", () => r(s));
  });
  const { port } = server.address() as AddressInfo;
  const signedPerChannel = () => {
    const m = new Map<Hex, bigint>();
    for (const v of vouchers) if ((m.get(v.channelId) ?? 0n) < v.cumulativeAmount) m.set(v.channelId, v.cumulativeAmount);
    return m;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    vouchers,
    payees,
    get requests() {
      return state.requests;
    },
    signedPerChannel,
    signedTotal: () => [...signedPerChannel().values()].reduce((a, b) => a + b, 0n),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
