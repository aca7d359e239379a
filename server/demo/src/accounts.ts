/**
 * Hardhat's public test accounts (a well-known mnemonic: local chains only, never real money): the deployer, payee
 * and settler of `npm start` (#0) and its funded payers (#1-#9). Repository code only; no package a provider or an
 * agent installs contains these keys.
 */
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import type { Address, Hex } from "viem";
import { LOCAL_CHAIN_IDS, resolveSettlerKey, type SettlerKey } from "@paychan/server";

/** Hardhat's account #19 (public test key): the sender of `exact` transfers on the local chain (no test pays with it). */
export const HARDHAT_ACCOUNT_19_KEY: Hex = "0xdf57089febbacf7ba0bc227dafbffa9fc08a93fdc68e1e42411a14efcf23656e";

/** The `exact` sender key of a local chain (31337, 1337) when EXACT_PRIVATE_KEY is unset: Hardhat account #19. */
export function localExactKey(o: { chainId: number }): Hex | null {
  return LOCAL_CHAIN_IDS.includes(o.chainId) ? HARDHAT_ACCOUNT_19_KEY : null;
}

/** Hardhat's default test mnemonic (public; local chains only). */
export const HARDHAT_MNEMONIC = "test test test test test test test test test test test junk";

/** Hardhat's account #0 (public test key): deployer, payee and settler of `npm start`. */
export const HARDHAT_ACCOUNT_0_KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/** Hardhat's account #1 (public test key): the payer the README's CLI examples use on the local chain. */
export const HARDHAT_ACCOUNT_1_KEY: Hex = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/** Hardhat test account `index`: address and (public, well-known) private key. */
export function hardhatAccount(index: number): { address: Address; key: Hex } {
  const acc = mnemonicToAccount(HARDHAT_MNEMONIC, { addressIndex: index });
  return { address: acc.address, key: `0x${Buffer.from(acc.getHdKey().privateKey!).toString("hex")}` };
}

let accounts: Array<{ address: Address; key: Hex }> | null = null;
/** Hardhat's accounts #1-#19, derived once (HD derivation is slow). */
function localAccounts(): Array<{ address: Address; key: Hex }> {
  accounts ??= Array.from({ length: 19 }, (_, i) => hardhatAccount(i + 1));
  return accounts;
}

/**
 * The settler key of the local chain: SETTLER_PRIVATE_KEY when given; else, on a local network (31337, 1337), the
 * payee's own key when the payee is one of Hardhat's test accounts; else null.
 */
export function localSettlerKey(o: { privateKey?: Hex; chainId: number; payee: Address }): SettlerKey | null {
  if (o.privateKey) return resolveSettlerKey({ privateKey: o.privateKey });
  if (!LOCAL_CHAIN_IDS.includes(o.chainId)) return null;
  const payee = o.payee.toLowerCase();
  const first = privateKeyToAccount(HARDHAT_ACCOUNT_0_KEY);
  if (first.address.toLowerCase() === payee) return resolveSettlerKey({ privateKey: HARDHAT_ACCOUNT_0_KEY, source: "local test account" });
  for (const a of localAccounts()) {
    if (a.address.toLowerCase() === payee) return resolveSettlerKey({ privateKey: a.key, source: "local test account" });
  }
  return null;
}
