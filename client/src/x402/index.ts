/**
 * `@paychan/client/x402`: the `channel` scheme inside the stock x402 client SDK (`@x402/core`, `@x402/fetch`). The only
 * part of this package that refers to `@x402/core` (an optional peer dependency: install it to use this subpath).
 */
export { ChannelSchemeClient } from "./scheme-client";
