/**
 * `@x402/core` is an optional peer dependency of this package: only this subpath loads it, and says what to install
 * when it is missing (instead of Node's bare "Cannot find module").
 */
import type * as X402Server from "@x402/core/server";

/** `@x402/core/server`, loaded once; a missing package is an error naming it. */
export function x402Server(): typeof X402Server {
  try {
    return require("@x402/core/server") as typeof X402Server;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" && String((e as Error).message).includes("@x402/core")) {
      throw new Error("@paychan/server/x402 needs the @x402/core package (an optional peer dependency): npm install @x402/core", { cause: e });
    }
    throw e;
  }
}
