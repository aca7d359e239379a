/**
 * Gasless opens' variables (docs/protocol.md § 5.9): GASLESS_OPEN (auto, on, off), OPEN_FEE (token units added to the
 * first charge of a channel the provider opens) and OPENS_PER_PAYER (opens one payer may have in flight or submitted
 * in the last hour).
 */

/** `auto`: on when the exact sender key is known and the token has EIP-3009; `on`: start fails otherwise; `off`: never. */
export type GaslessOpenMode = "auto" | "on" | "off";

export interface GaslessOpenEnv {
  mode: GaslessOpenMode;
  /** OPEN_FEE, token units (decimal string), converted with the token's decimals at start. */
  fee: string;
  /** OPENS_PER_PAYER. */
  opensPerPayer: number;
}

export const GASLESS_OPEN_VARIABLES: ReadonlyArray<{ name: string; default: string; description: string }> = [
  {
    name: "GASLESS_OPEN",
    default: "auto",
    description:
      "open channels from the payer's signed EIP-3009 authorization (the provider's exact sender pays the gas; § 5.9): on, off, or auto (on when EXACT_PRIVATE_KEY is known and the token has EIP-3009)",
  },
  { name: "OPEN_FEE", default: "0", description: "token units added to the first charge of a channel the provider opens (advertised in extra.open.fee)" },
  { name: "OPENS_PER_PAYER", default: "3", description: "gasless opens one payer may have in flight or submitted in the last hour; more are refused open_limit" },
];

/** Reads the gasless-open variables; problems are appended to `problems`. */
export function parseGaslessOpenEnv(env: Record<string, string | undefined>, problems: string[]): GaslessOpenEnv {
  const get = (n: string) => {
    const v = env[n];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  let mode: GaslessOpenMode = "auto";
  const raw = get("GASLESS_OPEN");
  if (raw !== undefined) {
    if (/^auto$/i.test(raw)) mode = "auto";
    else if (/^(1|true|yes|on)$/i.test(raw)) mode = "on";
    else if (/^(0|false|no|off)$/i.test(raw)) mode = "off";
    else problems.push(`GASLESS_OPEN=${JSON.stringify(raw)} must be on, off or auto`);
  }
  let fee = get("OPEN_FEE") ?? "0";
  if (!/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(fee)) {
    problems.push(`OPEN_FEE=${JSON.stringify(fee)} must be a decimal amount in token units, e.g. 0 or 0.01`);
    fee = "0";
  }
  let opensPerPayer = 3;
  const n = get("OPENS_PER_PAYER");
  if (n !== undefined) {
    if (!/^[0-9]+$/.test(n) || Number(n) < 1 || Number(n) > 1_000_000) problems.push(`OPENS_PER_PAYER=${JSON.stringify(n)} must be an integer from 1 to 1000000`);
    else opensPerPayer = Number(n);
  }
  return { mode, fee, opensPerPayer };
}
