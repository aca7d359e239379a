/**
 * The in-process facilitator of the `channel` scheme for the stock x402 resource server (`@x402/core`'s
 * `x402ResourceServer`, under `@x402/express`'s `paymentMiddleware`): a `SchemeNetworkFacilitator` (register it on an
 * `x402Facilitator`, next to `exact`) and, for a server that takes one facilitator object, {@link channelFacilitatorClient}.
 *
 * - **verify** decides the voucher through our payment core ({@link PaymentCore.authorizePayment}: the same strict
 *   decode, signature, channel checks and ONE durable charge in our store as our own paywall), before the handler,
 *   as the `channel` scheme requires. A refusal is `isValid: false` with our code as `invalidReason` (the stock 402's
 *   `error`); the chain or store being unavailable is a `FacilitatorResponseError` (the stock middleware answers 502,
 *   not a 402 that would blame the payment).
 * - **settle** (after the handler succeeded) finishes the charge and returns our receipt (`transaction: ""`): nothing
 *   is sent on chain here; the provider's batch settler claims what was charged.
 * - a cancelled payment (the handler failed or answered ≥ 400: the stock middleware does not settle it) releases the
 *   charge ({@link ChannelSchemeFacilitator.cancel}, called by the scheme server's hook).
 */
import type { FacilitatorClient } from "@x402/core/server";
import type { PaymentPayload as X402Payload, PaymentRequirements, SchemeNetworkFacilitator, SettleResponse, SupportedResponse, VerifyResponse } from "@x402/core/types";
import {
  BaseError,
  decodePaymentResponse,
  decodePaymentSignature,
  HEADER_PAYMENT_RESPONSE,
  parseWireAmount,
  paymentResponseToJson,
  SCHEME,
  X402_VERSION,
  type PaymentPayload,
} from "@paychan/protocol";
import type { PaymentCore } from "../payments/core";
import { x402Server } from "./peer";
import { voucherKey, type PendingPayments } from "./pending";

// Loaded with the subpath, so a missing optional peer is reported when it is imported, by name.
const { FacilitatorResponseError } = x402Server();

/** The `channel` scheme's facilitator over one provider's payment core. */
export class ChannelSchemeFacilitator implements SchemeNetworkFacilitator {
  readonly scheme = SCHEME;
  readonly caipFamily = "eip155:*";

  constructor(
    private readonly core: PaymentCore,
    private readonly pending: PendingPayments,
  ) {}

  /** Nothing the client needs from the facilitator: the offer's `extra` says everything (escrow, minimums). */
  getExtra(): undefined {
    return undefined;
  }

  /** No facilitator key: settlement is the provider's own batch settler. */
  getSigners(): string[] {
    return [];
  }

  /** Decides and charges the voucher (see the file comment). */
  async verify(payload: X402Payload, requirements: PaymentRequirements): Promise<VerifyResponse> {
    if (requirements.scheme !== SCHEME) return invalid("unsupported_scheme", `this facilitator takes the channel scheme, not ${String(requirements.scheme)}`);
    if (requirements.network !== this.core.network) return invalid("network_mismatch", `this facilitator takes payments on ${this.core.network}`);
    let payment: PaymentPayload;
    try {
      // Our strict decoder (shapes, bounds, size) on the parts of the stock payload that are ours.
      const wire = { x402Version: payload.x402Version, accepted: payload.accepted, payload: payload.payload };
      payment = decodePaymentSignature(Buffer.from(JSON.stringify(wire), "utf8").toString("base64"));
    } catch (e) {
      if (e instanceof BaseError) return invalid(e.code, e.shortMessage);
      return invalid("invalid_payload", "the payment could not be decoded");
    }
    // The price is the route's (the matched requirements are the resource server's own, built by our scheme server).
    const price = parseWireAmount(requirements.amount, "requirements.amount");
    const key = voucherKey(payload.payload)!;
    // The client's address for the per-source chain-read budget, as the scheme's before-verify hook saw it.
    const d = await this.core.authorizePayment(payment, { kind: "fixed", price }, this.pending.takeSource(key));
    if (d.kind === "serve") {
      this.pending.hold(key, d.charge);
      return { isValid: true, payer: d.charge.payer };
    }
    if (d.status !== 402) throw new FacilitatorResponseError(`${d.code}: ${d.body.detail}`);
    if (d.hint) this.pending.hint(key, d.hint);
    return invalid(d.code, d.body.detail);
  }

  /** Finishes the charge of a served request and returns its receipt; on chain nothing happens here. */
  async settle(payload: X402Payload, requirements: PaymentRequirements): Promise<SettleResponse> {
    const charge = this.pending.take(voucherKey(payload.payload));
    if (!charge) {
      return { success: false, errorReason: "internal_error", errorMessage: "no verified charge for this voucher", transaction: "", network: requirements.network };
    }
    await charge.finish(200);
    const receipt = decodePaymentResponse(charge.receiptHeaders()[HEADER_PAYMENT_RESPONSE]);
    return paymentResponseToJson(receipt) as SettleResponse;
  }

  /** Releases the charge of a verified request that is not paid after all (the handler failed). */
  async cancel(payload: unknown, status: number | undefined): Promise<void> {
    await this.pending.take(voucherKey(payload))?.finish(status ?? 500, true);
  }

  /** What {@link channelFacilitatorClient} reports as supported. */
  supported(): SupportedResponse {
    return { kinds: [{ x402Version: X402_VERSION, scheme: SCHEME, network: this.core.network }], extensions: [], signers: {} };
  }
}

function invalid(code: string, message: string): VerifyResponse {
  return { isValid: false, invalidReason: code, invalidMessage: message };
}

/**
 * The facilitator as the `FacilitatorClient` object a stock `x402ResourceServer` takes, for a server that offers only
 * `channel` (with `exact` too, register {@link ChannelSchemeFacilitator} on an `x402Facilitator` instead).
 */
export function channelFacilitatorClient(f: ChannelSchemeFacilitator): FacilitatorClient {
  return {
    verify: (p, r) => f.verify(p, r),
    settle: (p, r) => f.settle(p, r),
    getSupported: async () => f.supported(),
  };
}
