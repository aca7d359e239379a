/**
 * What the owner's limits and policy let this client accept and commit: which offered terms it may pay, the deposit
 * and close delay of a new channel, and the total signed per token (checked against `maxSpend`, a lifetime budget).
 * Every check runs before anything is signed or deposited; an escrow must be allow-listed or verified by its code.
 */
import type { Address } from "viem";
import { MAX_CLOSE_DELAY, MIN_CLOSE_DELAY, type ChannelRequirements } from "@paychan/protocol";
import { max, min } from "./bigint";
import { ClientError } from "./errors";
import { DEFAULT_MAX_CLOSE_DELAY, checkPrice, checkTrust, toAtomic, type TokenLimits } from "./limits";
import type { ClientSession } from "./session";

/** Throws `untrusted_terms` / `spending_limit` unless the owner's limits allow these terms; returns the token's limits. */
export async function assertAllowed(s: ClientSession, terms: ChannelRequirements): Promise<TokenLimits> {
  checkTrust(terms, s.limits, s.chainId);
  await assertEscrow(s, terms.extra.escrow);
  const tl = await s.tokens.limitsOf(terms.asset);
  checkPrice(terms, s.limits, tl);
  return tl;
}

/**
 * Throws `unverified_escrow` unless `escrow` is allow-listed (`limits.escrows`, checked by checkTrust) or is the
 * released ChannelEscrow by its code and EIP-712 domain (checked once per chain and address).
 */
export async function assertEscrow(s: ClientSession, escrow: Address): Promise<void> {
  if (s.limits.escrows && s.limits.escrows.length > 0) return; // the owner's allow-list decides (checkTrust)
  await s.escrows.assertVerified(s.chainId, escrow);
}

/** The first offer of a 402 that passes the allow-lists and limits; otherwise throws the first offer's refusal. */
export async function chooseOffer(s: ClientSession, accepts: ChannelRequirements[]): Promise<ChannelRequirements> {
  let first: unknown;
  for (const offer of accepts) {
    try {
      await assertAllowed(s, offer);
      return offer;
    } catch (e) {
      first ??= e;
    }
  }
  throw first;
}

/**
 * The total this client signed in `token` on this chain, over all its channels and its `exact` authorizations (what
 * `maxSpend` bounds).
 */
export function signedTotal(s: ClientSession, token: Address): bigint {
  let total = 0n;
  const t = token.toLowerCase();
  for (const c of Object.values(s.state.channels)) {
    if (c.token.toLowerCase() === t && c.payer === s.payer && c.chainId === s.chainId) total += c.signed;
  }
  total += s.state.exact?.[exactKey(s, token)]?.signed ?? 0n;
  return total;
}

/** The key of `token`'s {@link ExactTotals} in the state. */
export function exactKey(s: ClientSession, token: Address): string {
  return `${s.chainId}:${s.payer}:${token}`.toLowerCase();
}

/** The deposit of a new channel for `terms` under the policy and limits. */
export async function depositFor(s: ClientSession, terms: ChannelRequirements, tl: TokenLimits): Promise<bigint> {
  const decimals = await s.tokens.decimalsOf(terms.asset);
  let amount = s.policy.deposit !== undefined ? toAtomic(s.policy.deposit, decimals, "policy.deposit") : min(tl.maxDeposit, 1000n * terms.amount);
  amount = max(amount, terms.extra.minDeposit, terms.amount);
  if (amount > tl.maxDeposit) {
    throw new ClientError("spending_limit", `a channel for these terms needs a deposit of ${amount}, above maxDeposit ${tl.maxDeposit}`);
  }
  return amount;
}

/** The close delay of a new channel for `terms`: the policy's, raised to the provider's minimum, within `maxCloseDelay`. */
export function closeDelayFor(s: ClientSession, terms: ChannelRequirements): number {
  const d = Math.max(s.policy.closeDelay ?? 0, terms.extra.minCloseDelay, MIN_CLOSE_DELAY);
  const limit = Math.min(s.limits.maxCloseDelay ?? DEFAULT_MAX_CLOSE_DELAY, MAX_CLOSE_DELAY);
  if (d > limit) throw new ClientError("spending_limit", `the close delay ${d}s is above maxCloseDelay ${limit}s`);
  return d;
}
