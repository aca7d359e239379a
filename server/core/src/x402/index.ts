/**
 * `@paychan/server/x402`: the `channel` scheme inside the stock x402 resource server (`@x402/core`, `@x402/express`'s
 * `paymentMiddleware`). The only part of this package that loads `@x402/core` (an optional peer dependency: install it
 * to use this subpath).
 *
 * ```ts
 * const provider = await createProvider({ env: process.env });
 * const channel = createChannelX402(provider);
 * const server = new x402ResourceServer(channel.facilitatorClient).register(channel.network, channel.server);
 * app.use(paymentMiddleware({ "GET /v1/echo": { accepts: { scheme: "channel", network: channel.network, payTo: provider.payee, price: "$0.001" } } }, server));
 * ```
 */
import type { FacilitatorClient } from "@x402/core/server";
import { ChannelSchemeFacilitator, channelFacilitatorClient } from "./facilitator";
import { PendingPayments } from "./pending";
import { ChannelSchemeServer, expressSource, type ChannelProviderParts } from "./scheme-server";

export { ChannelSchemeFacilitator, channelFacilitatorClient } from "./facilitator";
export { ChannelSchemeServer, expressSource, type ChannelProviderParts } from "./scheme-server";

/** The parts to plug one provider's `channel` scheme into the stock x402 resource server. */
export interface ChannelX402 {
  /** The provider's CAIP-2 network (`eip155:<chainId>`): register both parts on it. */
  network: `eip155:${number}`;
  /** `x402ResourceServer.register(network, server)`. */
  server: ChannelSchemeServer;
  /** `x402Facilitator.register(network, facilitator)`, when one facilitator also serves other schemes (`exact`). */
  facilitator: ChannelSchemeFacilitator;
  /** `new x402ResourceServer(facilitatorClient)`, when `channel` is the only scheme. */
  facilitatorClient: FacilitatorClient;
}

/** Options of {@link createChannelX402}. */
export interface ChannelX402Options {
  /**
   * The client's address of a paid request, from the stock server's transport context (for the per-source chain-read
   * budget). Default: `req.ip` of `@x402/express`'s request (see {@link expressSource}); requests without one share a
   * single budget.
   */
  sourceOf?: (transportContext: unknown) => string | undefined;
}

/** The `channel` scheme of `provider` (from `createProvider`) for the stock x402 resource server. */
export function createChannelX402(provider: ChannelProviderParts, opts: ChannelX402Options = {}): ChannelX402 {
  const pending = new PendingPayments();
  const facilitator = new ChannelSchemeFacilitator(provider.core, pending);
  return {
    network: provider.core.network,
    server: new ChannelSchemeServer(provider, facilitator, pending, opts.sourceOf ?? expressSource),
    facilitator,
    facilitatorClient: channelFacilitatorClient(facilitator),
  };
}
