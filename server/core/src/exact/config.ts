/**
 * The `exact` scheme's variables: EXACT (on, off, auto), EXACT_PRIVATE_KEY (the account that submits the transfers;
 * never logged), FACILITATOR_URL (a facilitator submits them instead), EXACT_CONFIRM_TIMEOUT and EXACT_RECONCILE_INTERVAL.
 */
import type { Hex } from "viem";
import { isBytes32Hex } from "@paychan/protocol";

/** `auto`: offered when a sender key is known; `on`: start fails without one; `off`: never offered. */
export type ExactMode = "auto" | "on" | "off";

export interface ExactEnv {
  mode: ExactMode;
  /** Seconds a paid request waits for its transfer's receipt (then 503; the payment is reconciled). */
  confirmTimeout: number;
  /** Seconds between reconcile passes over open payments. */
  reconcileInterval: number;
  /** FACILITATOR_URL: an x402 facilitator that verifies and settles `exact` payments instead of our own key. */
  facilitatorUrl?: string;
  /** EXACT_PRIVATE_KEY, only through this function. */
  privateKey(): Hex | undefined;
}

export const EXACT_VARIABLES: ReadonlyArray<{ name: string; default: string; description: string }> = [
  {
    name: "EXACT",
    default: "auto",
    description: "offer the x402 exact scheme next to channel on fixed-price routes: on, off, or auto (on when a sender key is known)",
  },
  {
    name: "EXACT_PRIVATE_KEY",
    default: "(none; npm start on a local chain: Hardhat account #19)",
    description: "key that submits exact transfers (pays their gas; any funded account); must differ from SETTLER_PRIVATE_KEY; never logged",
  },
  {
    name: "FACILITATOR_URL",
    default: "(none: the provider submits exact transfers itself)",
    description: "an x402 facilitator (POST /verify, /settle) that submits exact transfers instead of EXACT_PRIVATE_KEY; our checks, records and replay rule still apply",
  },
  { name: "EXACT_CONFIRM_TIMEOUT", default: "30", description: "seconds a paid exact request waits for its transfer to be mined (then 503; reconciled later)" },
  { name: "EXACT_RECONCILE_INTERVAL", default: "15", description: "seconds between passes finishing exact payments left open (crash, RPC failure)" },
];

/** Reads the EXACT_* variables; problems are appended to `problems`. */
export function parseExactEnv(env: Record<string, string | undefined>, problems: string[]): ExactEnv {
  const get = (n: string) => {
    const v = env[n];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  let mode: ExactMode = "auto";
  const raw = get("EXACT");
  if (raw !== undefined) {
    if (/^(auto)$/i.test(raw)) mode = "auto";
    else if (/^(1|true|yes|on)$/i.test(raw)) mode = "on";
    else if (/^(0|false|no|off)$/i.test(raw)) mode = "off";
    else problems.push(`EXACT=${JSON.stringify(raw)} must be on, off or auto`);
  }
  const seconds = (n: string, def: number, min: number, max: number) => {
    const v = get(n);
    if (v === undefined) return def;
    if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) {
      problems.push(`${n}=${JSON.stringify(v)} must be an integer from ${min} to ${max}`);
      return def;
    }
    return Number(v);
  };
  let key: Hex | undefined;
  const rawKey = get("EXACT_PRIVATE_KEY");
  if (rawKey !== undefined) {
    const k = rawKey.startsWith("0x") ? rawKey : `0x${rawKey}`;
    if (!isBytes32Hex(k) || /^0x0{64}$/.test(k)) problems.push("EXACT_PRIVATE_KEY must be 32 bytes of hex (the value is not shown)");
    else key = k.toLowerCase() as Hex;
  }
  const facilitatorUrl = get("FACILITATOR_URL");
  if (facilitatorUrl !== undefined) {
    let ok = false;
    try {
      const u = new URL(facilitatorUrl);
      ok = u.protocol === "http:" || u.protocol === "https:";
    } catch {
      ok = false;
    }
    if (!ok) problems.push(`FACILITATOR_URL=${JSON.stringify(facilitatorUrl)} must be an http(s) URL`);
  }
  return {
    mode,
    ...(facilitatorUrl !== undefined ? { facilitatorUrl } : {}),
    confirmTimeout: seconds("EXACT_CONFIRM_TIMEOUT", 30, 1, 3_600),
    reconcileInterval: seconds("EXACT_RECONCILE_INTERVAL", 15, 1, 86_400),
    privateKey: () => key,
  };
}
