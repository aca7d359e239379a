/**
 * The `channel` CLI's options and the checks of arguments that need no chain (shapes of numbers, addresses, ids).
 * Light on purpose: only node:util and the protocol's hex patterns (`@paychan/protocol/hex`). Checks that need viem (address checksums) run again once the command runs.
 */
import { parseArgs } from "node:util";
import { UsageError } from "./usage";
import { isAddressHex } from "@paychan/protocol/hex";

/** Parses the command line (strict: an unknown option throws). */
export function parseArgv(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      n: { type: "string", short: "n" },
      c: { type: "string", short: "c" },
      X: { type: "string", short: "X" },
      d: { type: "string", short: "d" },
      H: { type: "string", short: "H", multiple: true },
      v: { type: "boolean", short: "v" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      "key-file": { type: "string" },
      rpc: { type: "string" },
      "state-dir": { type: "string" },
      "max-price": { type: "string" },
      "max-deposit": { type: "string" },
      "max-spend": { type: "string" },
      "max-close-delay": { type: "string" },
      "max-channels": { type: "string" },
      "max-deposit-per-provider": { type: "string" },
      "max-unserved": { type: "string" },
      "max-refusals": { type: "string" },
      deposit: { type: "string" },
      escrow: { type: "string" },
      token: { type: "string" },
      "close-delay": { type: "string" },
      "on-chain": { type: "boolean" },
      to: { type: "string" },
      scheme: { type: "string" },
      gasless: { type: "string" },
      "max-open-fee": { type: "string" },
      "max-request-spend": { type: "string" },
    },
  });
}

/** The parsed options. */
export type Opts = ReturnType<typeof parseArgv>["values"];

/** The JSON-RPC endpoint: --rpc, else RPC_URL, else the local chain of `npm start`. */
export function rpcUrlOf(opts: Opts): string {
  return opts.rpc ?? process.env.RPC_URL ?? "http://127.0.0.1:8545";
}

/** `v` as a positive integer (`dflt` when absent); `name` is the option in the error. */
export function positiveInt(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer`);
  return n;
}

/** 20 bytes of hex (the checksum of a mixed-case address is checked later, with viem). */
export function looksLikeAddress(v: string | undefined): v is string {
  return isAddressHex(v);
}

/** The options every command shares, checked before anything is loaded: addresses, integers and amounts. */
export function checkCommonOptions(opts: Opts): void {
  if (opts.escrow && !looksLikeAddress(opts.escrow)) throw new UsageError("--escrow must be an address");
  if (opts.token && !looksLikeAddress(opts.token)) throw new UsageError("--token must be an address");
  if (opts["close-delay"] !== undefined) positiveInt(opts["close-delay"], "--close-delay", 0);
  schemesOption(opts);
  gaslessOption(opts);
  for (const o of ["max-close-delay", "max-channels", "max-refusals"] as const) if (opts[o] !== undefined) positiveInt(opts[o], `--${o}`, 0);
  for (const o of ["max-price", "max-deposit", "max-spend", "max-deposit-per-provider", "max-unserved", "max-open-fee", "max-request-spend"] as const) {
    const v = opts[o];
    if (v !== undefined && !/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(v)) throw new UsageError(`--${o} must be an amount in token units, e.g. 0.5`);
  }
}

/**
 * The schemes `channel call` pays, most preferred first: --scheme, else CHANNEL_SCHEME, else `auto` (channel, then
 * exact). `channel` or `exact` alone pays only that scheme; a list (`exact,channel`) gives the order.
 */
export function schemesOption(opts: Opts): ("channel" | "exact")[] {
  const v = (opts.scheme ?? process.env.CHANNEL_SCHEME ?? "auto").trim();
  if (v === "auto") return ["channel", "exact"];
  const list = v.split(",").map((x) => x.trim());
  if (list.length === 0 || list.length > 2 || new Set(list).size !== list.length || list.some((x) => x !== "channel" && x !== "exact")) {
    throw new UsageError(`--scheme must be auto, channel, exact, or an ordered list such as exact,channel (got ${JSON.stringify(v)})`);
  }
  return list as ("channel" | "exact")[];
}

/**
 * Gasless opens (docs/protocol.md § 7.6): --gasless, else CHANNEL_GASLESS, else `auto` (the provider opens the channel
 * from the payer's signature when the payer has no gas for its own open and the provider offers it); `always`; `never`.
 */
export function gaslessOption(opts: Opts): "auto" | "always" | "never" {
  const v = (opts.gasless ?? process.env.CHANNEL_GASLESS ?? "auto").trim();
  if (v !== "auto" && v !== "always" && v !== "never") throw new UsageError(`--gasless must be auto, always or never (got ${JSON.stringify(v)})`);
  return v;
}

/** A channel id (or a prefix of one) is present; which channel it names is resolved against the store later. */
export function requireChannelId(id: string | undefined): string {
  if (!id) throw new UsageError("a channel id is required");
  return id;
}
