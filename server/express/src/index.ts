/**
 * `@paychan/express`: the Express adapter of the `channel` scheme (express is a peer dependency).
 *
 * ```ts
 * import express from "express";
 * import { createProvider } from "@paychan/server";
 * import { createPaywall } from "@paychan/express";
 *
 * const provider = await createProvider({ env: process.env });
 * const paywall = createPaywall(provider);
 * const app = express();
 * app.use(paywall.closeRoute());
 * app.get("/weather", paywall.charge({ price: "0.001" }), (req, res) => res.json({ sunny: true }));
 * ```
 */
export { createPaywall, type Paywall, type PaywallOptions, type PaywallProvider } from "./provider-paywall";
export {
  createExpressPaywall,
  paymentOf,
  sendReply,
  type ChargeOptions,
  type ExpressPaywall,
  type ExpressPaywallOptions,
  type MeterOptions,
  type PaymentLocals,
} from "./paywall";
export { streamOf, type StreamHandler, type StreamOptions } from "./stream";
export { bodyLimit, errorHandler, isBodyParseError, notFound, sendProblem } from "./problems";
export { limitConnections, type ConnectionGuard, type ConnectionLimitOptions } from "./connections";
