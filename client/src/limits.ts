/**
 * The owner's spending limits and the checks a 402's terms must pass before the client signs or deposits anything.
 */
import { getAddress, isAddress, type Address } from "viem";
import { MAX_CLOSE_DELAY, networkOf, parseTokenAmount, type ChannelRequirements, type ExactRequirements } from "@paychan/protocol";
import { ClientError } from "./errors";

/** An amount: a string is in token units ("0.01"), a bigint in atomic units. */
export type Amount = string | bigint;

/** What the owner allows. Unset allow-lists allow anything (set `escrows` in production). */
export interface SpendingLimits {
  /** Highest price of one call (`amount` of the terms). */
  maxPrice: Amount;
  /**
   * Most money one channel may hold unspent: the deposit of a new channel, and the unspent rest plus a top-up,
   * are never above it.
   */
  maxDeposit: Amount;
  /** Most this client signs in total per token, over all its channels (a lifetime budget). Unset: no budget. */
  maxSpend?: Amount;
  /**
   * Longest close delay the client accepts to lock its funds for (seconds). Default {@link DEFAULT_MAX_CLOSE_DELAY},
   * 2 days: a provider asking for more is refused (`spending_limit`) before anything is deposited.
   */
  maxCloseDelay?: number;
  /**
   * Most channels the client opens by itself to one provider (one origin, or one payee), counting those not
   * finalized (opening, open, closing). Default {@link DEFAULT_MAX_CHANNELS_PER_PROVIDER} (2). Over it: `channel_limit`.
   * Channels the owner opens explicitly (`openChannel`, `channel open`) are not limited.
   */
  maxChannelsPerProvider?: number;
  /**
   * Most money held unspent (`deposit − signed`) in one provider's channels that are not finalized, including the
   * deposit of a new channel. Default 2 × `maxDeposit`. Over it: `channel_limit`.
   */
  maxDepositPerProvider?: Amount;
  /**
   * Most value signed but not (yet) served on one channel: `signed − served`, where served is the highest voucher of
   * a call the provider answered (status below 500, not 402). Default 32 × `maxPrice`. Over it: `spending_limit`.
   */
  maxUnservedPerChannel?: Amount;
  /**
   * Calls a provider (origin) may refuse in a row (402 to a paid request, or a 5xx) before this process stops signing
   * for it (`provider_refusing`); a new process (or client) starts a new count. The per-channel caps still hold.
   * Default {@link DEFAULT_MAX_CONSECUTIVE_REFUSALS} (3).
   */
  maxConsecutiveRefusals?: number;
  /**
   * Highest fee a provider may add to the first charge of a channel it opens from the payer's signature (gasless
   * open, docs/protocol.md § 7.6), token units or atomic. Default: `maxPrice`. A higher fee is refused before anything is
   * signed (`spending_limit`). The fee is also counted in `maxSpend` (it is part of the first voucher).
   */
  maxOpenFee?: Amount;
  /**
   * Most one request may cost in all (token units or atomic): a streamed route's initial reservation plus every top-up
   * the client pays for it (docs/protocol.md § 7.7). Default: `maxPrice`. An offer whose initial reservation is above
   * it is refused before signing (`spending_limit`); a top-up above it is not paid (the stream ends cleanly).
   */
  maxRequestSpend?: Amount;
  /** Allowed tokens. */
  assets?: readonly string[];
  /** Allowed CAIP-2 networks (the client's own chain is always required anyway). */
  networks?: readonly string[];
  /** Allowed escrow contracts. */
  escrows?: readonly string[];
  /** Allowed payees. */
  payees?: readonly string[];
}

/** Default {@link SpendingLimits.maxCloseDelay}: 2 days (the contract allows 30). */
export const DEFAULT_MAX_CLOSE_DELAY = 2 * 86_400;
/** Default {@link SpendingLimits.maxChannelsPerProvider}. */
export const DEFAULT_MAX_CHANNELS_PER_PROVIDER = 2;
/** Default {@link SpendingLimits.maxConsecutiveRefusals}. */
export const DEFAULT_MAX_CONSECUTIVE_REFUSALS = 3;
/** Default {@link SpendingLimits.maxUnservedPerChannel}, in prices: 32 × `maxPrice`. */
export const DEFAULT_UNSERVED_PRICES = 32n;

/** Limits in atomic units of one token. */
export interface TokenLimits {
  maxPrice: bigint;
  maxDeposit: bigint;
  maxSpend?: bigint;
  /** {@link SpendingLimits.maxDepositPerProvider} (default 2 × maxDeposit). */
  maxDepositPerProvider: bigint;
  /** {@link SpendingLimits.maxUnservedPerChannel} (default 32 × maxPrice). */
  maxUnserved: bigint;
  /** {@link SpendingLimits.maxOpenFee} (default maxPrice). */
  maxOpenFee: bigint;
  /** {@link SpendingLimits.maxRequestSpend} (default maxPrice). */
  maxRequestSpend: bigint;
}

/** Converts an {@link Amount} to atomic units of a token with `decimals` decimals. */
export function toAtomic(value: Amount, decimals: number, field: string): bigint {
  if (typeof value === "bigint") {
    if (value < 0n) throw new ClientError("invalid_argument", `${field} must not be negative`);
    return value;
  }
  try {
    return parseTokenAmount(value, decimals);
  } catch (cause) {
    throw new ClientError("invalid_argument", `${field} is not an amount: ${JSON.stringify(value)}`, { cause });
  }
}

/** The limits in atomic units for a token with `decimals` decimals. */
export function tokenLimits(limits: SpendingLimits, decimals: number): TokenLimits {
  const maxPrice = toAtomic(limits.maxPrice, decimals, "limits.maxPrice");
  const maxDeposit = toAtomic(limits.maxDeposit, decimals, "limits.maxDeposit");
  return {
    maxPrice,
    maxDeposit,
    maxSpend: limits.maxSpend === undefined ? undefined : toAtomic(limits.maxSpend, decimals, "limits.maxSpend"),
    maxDepositPerProvider:
      limits.maxDepositPerProvider === undefined ? 2n * maxDeposit : toAtomic(limits.maxDepositPerProvider, decimals, "limits.maxDepositPerProvider"),
    maxUnserved:
      limits.maxUnservedPerChannel === undefined ? DEFAULT_UNSERVED_PRICES * maxPrice : toAtomic(limits.maxUnservedPerChannel, decimals, "limits.maxUnservedPerChannel"),
    maxOpenFee: limits.maxOpenFee === undefined ? maxPrice : toAtomic(limits.maxOpenFee, decimals, "limits.maxOpenFee"),
    maxRequestSpend: limits.maxRequestSpend === undefined ? maxPrice : toAtomic(limits.maxRequestSpend, decimals, "limits.maxRequestSpend"),
  };
}

/** Checks an allow-list's entries are addresses (called once, at construction). */
export function validateLimits(limits: SpendingLimits): void {
  if (!limits || limits.maxPrice === undefined || limits.maxDeposit === undefined) {
    throw new ClientError("invalid_argument", "limits.maxPrice and limits.maxDeposit are required");
  }
  for (const list of ["assets", "escrows", "payees"] as const) {
    for (const a of limits[list] ?? []) {
      if (!isAddress(a, { strict: false })) throw new ClientError("invalid_argument", `limits.${list} has a non-address: ${a}`);
    }
  }
  // Amounts given as token units are checked per token later; reject obviously malformed ones now.
  for (const f of ["maxCloseDelay", "maxChannelsPerProvider", "maxConsecutiveRefusals"] as const) {
    const v = limits[f];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < (f === "maxCloseDelay" ? 0 : 1))) {
      throw new ClientError("invalid_argument", `limits.${f} must be a ${f === "maxCloseDelay" ? "non-negative" : "positive"} integer`);
    }
  }
  for (const f of ["maxPrice", "maxDeposit", "maxSpend", "maxDepositPerProvider", "maxUnservedPerChannel", "maxOpenFee", "maxRequestSpend"] as const) {
    const v = limits[f];
    if (typeof v === "string" && !/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(v.trim())) {
      throw new ClientError("invalid_argument", `limits.${f} is not an amount: ${JSON.stringify(v)}`);
    }
  }
}

function inList(list: readonly string[] | undefined, value: string): boolean {
  if (!list || list.length === 0) return true;
  const v = value.toLowerCase();
  return list.some((x) => x.toLowerCase() === v);
}

/**
 * Checks who and what the terms name: the client's chain, then the allow-lists. Throws `untrusted_terms`.
 * Runs before anything is read from the token, signed or deposited.
 */
export function checkTrust(terms: ChannelRequirements, limits: SpendingLimits, chainId: number): void {
  const untrusted = (what: string) =>
    new ClientError("untrusted_terms", `the provider asks to pay ${what}`, { details: "Not allowed by the client's limits." });
  if (terms.network !== networkOf(chainId)) throw untrusted(`on network ${terms.network}, not this client's ${networkOf(chainId)}`);
  if (!inList(limits.networks, terms.network)) throw untrusted(`on network ${terms.network}`);
  if (!inList(limits.escrows, terms.extra.escrow)) throw untrusted(`through the unknown escrow ${getAddress(terms.extra.escrow)}`);
  if (!inList(limits.assets, terms.asset)) throw untrusted(`in the token ${getAddress(terms.asset)}`);
  if (!inList(limits.payees, terms.payTo)) throw untrusted(`to the payee ${getAddress(terms.payTo)}`);
}

/**
 * {@link checkTrust} for an `exact` offer (no escrow is involved): the client's chain, then the networks, assets and
 * payees allow-lists. Throws `untrusted_terms`.
 */
export function checkExactTrust(offer: ExactRequirements, limits: SpendingLimits, chainId: number): void {
  const untrusted = (what: string) =>
    new ClientError("untrusted_terms", `the provider asks to pay ${what}`, { details: "Not allowed by the client's limits." });
  if (offer.network !== networkOf(chainId)) throw untrusted(`on network ${offer.network}, not this client's ${networkOf(chainId)}`);
  if (!inList(limits.networks, offer.network)) throw untrusted(`on network ${offer.network}`);
  if (!inList(limits.assets, offer.asset)) throw untrusted(`in the token ${getAddress(offer.asset)}`);
  if (!inList(limits.payees, offer.payTo)) throw untrusted(`to the payee ${getAddress(offer.payTo)}`);
}

/** Checks the price and the channel terms against the limits in atomic units. Throws `spending_limit`. */
export function checkPrice(terms: ChannelRequirements, limits: SpendingLimits, tl: TokenLimits): void {
  if (terms.amount > tl.maxPrice) {
    throw new ClientError("spending_limit", `the price ${terms.amount} is above maxPrice ${tl.maxPrice} (atomic units)`);
  }
  if (terms.amount > tl.maxRequestSpend) {
    throw new ClientError("spending_limit", `the price ${terms.amount} is above maxRequestSpend ${tl.maxRequestSpend} (atomic units)`);
  }
  if (terms.extra.minDeposit > tl.maxDeposit) {
    throw new ClientError("spending_limit", `the provider's minimum deposit ${terms.extra.minDeposit} is above maxDeposit ${tl.maxDeposit}`);
  }
  const maxDelay = Math.min(limits.maxCloseDelay ?? DEFAULT_MAX_CLOSE_DELAY, MAX_CLOSE_DELAY);
  if (terms.extra.minCloseDelay > maxDelay) {
    throw new ClientError("spending_limit", `the provider's minimum close delay ${terms.extra.minCloseDelay}s is above maxCloseDelay ${maxDelay}s`);
  }
}

/** Addresses of an allow-list, checksummed (for display). */
export function allowList(list: readonly string[] | undefined): Address[] | undefined {
  return list?.map((a) => getAddress(a));
}
