/**
 * Which key sends settlements: SETTLER_PRIVATE_KEY when set (the payee's key, or an operator the payee approved with
 * `setOperator`); on a local network without it, the payee's own key when the payee is one of Hardhat's public test
 * accounts (account #0 is the payee of `npm start`). The key is returned to the caller only; never log it.
 */
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhatAccount } from "../local/chain";
import { LOCAL_CHAIN_IDS } from "./config";

/** Hardhat's account #0 (a public test key): the payee and deployer of `npm start`. */
export const HARDHAT_ACCOUNT_0_KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

export interface SettlerKey {
  privateKey: Hex;
  address: Address;
  /** Where it came from (safe to log). */
  source: "SETTLER_PRIVATE_KEY" | "local test account";
}

/** The settler key, or null when none is configured and none can be derived (non-local chain without the variable). */
export function resolveSettlerKey(o: { privateKey?: Hex; chainId: number; payee: Address }): SettlerKey | null {
  if (o.privateKey) return { privateKey: o.privateKey, address: privateKeyToAccount(o.privateKey).address, source: "SETTLER_PRIVATE_KEY" };
  if (!LOCAL_CHAIN_IDS.includes(o.chainId)) return null;
  const payee = o.payee.toLowerCase();
  const first = privateKeyToAccount(HARDHAT_ACCOUNT_0_KEY);
  if (first.address.toLowerCase() === payee) return { privateKey: HARDHAT_ACCOUNT_0_KEY, address: first.address, source: "local test account" };
  for (const a of localAccounts()) {
    if (a.address.toLowerCase() === payee) return { privateKey: a.key, address: a.address, source: "local test account" };
  }
  return null;
}

let accounts: Array<{ address: Address; key: Hex }> | null = null;
/** Hardhat's accounts #1-#19, derived once (HD derivation is slow). */
function localAccounts(): Array<{ address: Address; key: Hex }> {
  accounts ??= Array.from({ length: 19 }, (_, i) => hardhatAccount(i + 1));
  return accounts;
}
