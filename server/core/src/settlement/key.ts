/**
 * Which key sends settlements: SETTLER_PRIVATE_KEY (the payee's key, or an operator the payee approved with
 * `setOperator`), or a key the embedding application passes. The key is returned to the caller only; never log it.
 * (The repository's demo app and settle script add a local-chain default on top of this; the package has none.)
 */
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";

export interface SettlerKey {
  privateKey: Hex;
  address: Address;
  /** Where it came from (safe to log). */
  source: string;
}

/** The settler key, or null when none is configured. `source` (default "SETTLER_PRIVATE_KEY") is what logs show. */
export function resolveSettlerKey(o: { privateKey?: Hex; source?: string }): SettlerKey | null {
  if (!o.privateKey) return null;
  return { privateKey: o.privateKey, address: privateKeyToAccount(o.privateKey).address, source: o.source ?? "SETTLER_PRIVATE_KEY" };
}

/** Where a key comes from when SETTLER_PRIVATE_KEY is unset, once the chain and payee are known (null: none). */
export type SettlerKeyFallback = (o: { chainId: number; payee: Address }) => SettlerKey | null;
