/**
 * The `channel` scheme's `SchemeNetworkServer` for the stock x402 resource server: turns a route's price into our
 * offer (asset = the provider's token, `extra` = escrow, EIP-712 name/version and the provider's minimums, exactly as
 * our own 402 says them), declares the `authorization` flow (verify — our durable charge — before the handler, settle
 * after it), adds the channel hint to the 402 that answers a refused voucher, and releases the charge of a cancelled
 * payment.
 */
import type {
  AssetAmount,
  Network as X402Network,
  PaymentRequirements,
  Price,
  SchemeNetworkServer,
  SchemePaymentRequiredContext,
  SupportedKind,
  VerifiedPaymentCanceledContext,
  VerifyContext,
} from "@x402/core/types";
import { isPaymentErrorCode, parseTokenAmount, requirementsToJson, SCHEME } from "@paychan/protocol";
import type { PaymentCore } from "../payments/core";
import type { ChannelSchemeFacilitator } from "./facilitator";
import { voucherKey, type PendingPayments } from "./pending";

/**
 * The client's address under `@x402/express`: the Express request's `req.ip` (which follows the app's `trust proxy`
 * setting), else its socket's address. Other frameworks: pass `sourceOf` to `createChannelX402`.
 */
export function expressSource(transportContext: unknown): string | undefined {
  const req = (transportContext as { request?: { adapter?: { req?: { ip?: unknown; socket?: { remoteAddress?: unknown } } } } } | undefined)?.request?.adapter?.req;
  const ip = req?.ip ?? req?.socket?.remoteAddress;
  return typeof ip === "string" && ip !== "" ? ip : undefined;
}

/** The provider facts the scheme server needs (a `Provider` from `createProvider` has them all). */
export interface ChannelProviderParts {
  core: PaymentCore;
  token: `0x${string}`;
  payee: `0x${string}`;
  decimals: number;
}

/** The `channel` scheme on the stock x402 resource server. */
export class ChannelSchemeServer implements SchemeNetworkServer {
  readonly scheme = SCHEME;
  /** The scheme has no asset-transfer methods on the wire (the SDK's placeholder). */
  readonly defaultAssetTransferMethod = "default";
  readonly paymentFlows = { default: { supported: ["authorization"] as const, default: "authorization" as const } };
  /** The hint of a refusal is not part of the terms a payment must echo. */
  readonly dynamicExtraFields = ["channel"];
  readonly schemeHooks = {
    onBeforeVerify: async (ctx: VerifyContext) => this.noteSource(ctx),
    onVerifiedPaymentCanceled: (ctx: VerifiedPaymentCanceledContext) => this.facilitator.cancel(ctx.paymentPayload.payload, ctx.responseStatus),
  };

  constructor(
    private readonly p: ChannelProviderParts,
    private readonly facilitator: ChannelSchemeFacilitator,
    private readonly pending: PendingPayments,
    private readonly sourceOf: (transportContext: unknown) => string | undefined = expressSource,
  ) {}

  /** The client's address of a paid request, kept for verify (the per-source chain-read budget, docs/protocol.md § 10). */
  private noteSource(ctx: VerifyContext): void {
    const key = voucherKey(ctx.paymentPayload.payload);
    const source = key === undefined ? undefined : this.sourceOf(ctx.transportContext);
    if (key !== undefined && source) this.pending.source(key, source);
  }

  /**
   * A route's price as our offer's amount: `{ amount, asset }` in atomic units of the provider's token, or money
   * (`"$0.001"`, `"0.001"`, a number) read as token units of the provider's token (a USD stablecoin).
   */
  async parsePrice(price: Price, network: X402Network): Promise<AssetAmount> {
    this.assertNetwork(network);
    let amount: bigint;
    if (typeof price === "object" && price !== null) {
      if (price.asset.toLowerCase() !== this.p.token.toLowerCase()) throw new Error(`the channel scheme here is paid in ${this.p.token}, not ${price.asset}`);
      if (!/^[1-9][0-9]*$/.test(price.amount)) throw new Error(`price amount ${JSON.stringify(price.amount)} must be a positive integer of atomic units`);
      amount = BigInt(price.amount);
    } else {
      const text = typeof price === "number" ? String(price) : price.trim().replace(/^\$/, "");
      amount = parseTokenAmount(text, this.p.decimals);
      if (amount <= 0n) throw new Error("a price must be above zero");
    }
    return { amount: amount.toString(), asset: this.p.token };
  }

  /** The provider's token decimals (for `$` settlement overrides). */
  getAssetDecimals(asset: string): number | undefined {
    return asset.toLowerCase() === this.p.token.toLowerCase() ? this.p.decimals : undefined;
  }

  /** The offer as our own 402 gives it: our asset, payee and `extra`. A route paying someone else is a configuration error. */
  async enhancePaymentRequirements(r: PaymentRequirements, _kind: SupportedKind, _extensions: string[]): Promise<PaymentRequirements> {
    this.assertNetwork(r.network);
    if (r.payTo.trim() !== "" && r.payTo.toLowerCase() !== this.p.payee.toLowerCase()) {
      throw new Error(`a channel route must pay the provider's payee ${this.p.payee}, not ${r.payTo}`);
    }
    const ours = requirementsToJson(this.p.core.requirements({ kind: "fixed", price: BigInt(r.amount) }));
    return { ...r, asset: this.p.token, payTo: this.p.payee, extra: { ...r.extra, ...(ours.extra as Record<string, unknown>) } };
  }

  /**
   * A 402 offering `channel` speaks our codes (docs/protocol.md § 5.3, § 5.6): the stock server's texts become codes
   * ("Payment required" → `payment_required`, "No matching payment requirements" → `requirements_mismatch`), a
   * refusal's `error` is already ours (verify's `invalidReason`). The 402 answering a refused voucher carries the
   * channel hint, as our own 402 does.
   */
  async enrichPaymentRequiredResponse(ctx: SchemePaymentRequiredContext): Promise<PaymentRequirements[] | void> {
    const res = ctx.paymentRequiredResponse;
    if (typeof res.error !== "string" || !isPaymentErrorCode(res.error)) {
      res.error = res.error === "No matching payment requirements" ? "requirements_mismatch" : "payment_required";
    }
    const hint = this.pending.takeHint(voucherKey(ctx.paymentPayload?.payload));
    if (!hint) return;
    const withHint = requirementsToJson(this.p.core.requirements({ kind: "fixed", price: 1n }, hint)).extra as Record<string, unknown>;
    return ctx.requirements.map((r) => (r.scheme === SCHEME && r.network === this.p.core.network ? { ...r, extra: { ...r.extra, channel: withHint.channel } } : r));
  }

  private assertNetwork(network: string): void {
    if (network !== this.p.core.network) throw new Error(`this provider's channel scheme is on ${this.p.core.network}, not ${network}`);
  }
}
