/**
 * Gasless opens inside a provider (docs/protocol.md § 5.9): planned before anything opens (mode; they need the `exact`
 * scheme's own sender key: its key pays the gas, its store allocator gives the nonces, its reconciler finishes them),
 * started once the `exact` scheme runs (the token is checked for EIP-3009 first).
 */
import type { Logger } from "pino";
import type { Address } from "viem";
import { parseTokenAmount } from "@paychan/protocol";
import type { GaslessOpenEnv } from "./config";
import type { ExactPlan, ExactScheme } from "../exact/setup";
import type { ChannelStore } from "../store/types";
import type { GaslessOpenStore, GaslessOpenStoreProvider } from "../store/open-types";
import { supportsEip3009 } from "./chain";
import { GaslessOpens } from "./opens";
import type { GaslessOpenObserver } from "./reconcile";

/** Provider options of gasless opens (embedding and tests); fields override GASLESS_OPEN's companions. */
export interface ProviderGaslessOpenOptions {
  /** OPEN_FEE: atomic units (bigint) or token units (string). */
  fee?: bigint | string;
  /** OPENS_PER_PAYER. */
  opensPerPayer?: number;
}

export interface GaslessOpenPlan {
  mode: "auto" | "on";
  fee: bigint | string;
  opensPerPayer: number;
}

/** Thrown when gasless opens are asked for (GASLESS_OPEN=on) but cannot run. */
export class GaslessOpenPlanError extends Error {
  override name = "GaslessOpenPlanError";
}

/** The gasless-open store living next to `store`. */
export function gaslessOpenStoreFor(store: ChannelStore): GaslessOpenStore {
  const p = store as Partial<GaslessOpenStoreProvider>;
  if (typeof p.gaslessOpenStore !== "function") throw new Error(`the ${store.kind} store keeps no gasless opens (implement GaslessOpenStoreProvider)`);
  return p.gaslessOpenStore();
}

/**
 * The plan of gasless opens, or null when off (GASLESS_OPEN=off, `false`, or `auto` without the exact scheme's own
 * sender key). Throws {@link GaslessOpenPlanError} for GASLESS_OPEN=on without one.
 */
export function planGaslessOpen(env: GaslessOpenEnv | undefined, option: boolean | ProviderGaslessOpenOptions | undefined, exact: ExactPlan | null): GaslessOpenPlan | null {
  const mode = option === false ? "off" : option === true ? "on" : (env?.mode ?? "auto");
  if (mode === "off") return null;
  if (!exact?.key) {
    if (mode === "on") {
      throw new GaslessOpenPlanError(
        "GASLESS_OPEN=on needs the provider's own sender key (EXACT_PRIVATE_KEY, with EXACT not off and no FACILITATOR_URL): it submits the opens and pays their gas; or set GASLESS_OPEN=off",
      );
    }
    return null;
  }
  const o = typeof option === "object" ? option : {};
  return { mode, fee: o.fee ?? env?.fee ?? "0", opensPerPayer: o.opensPerPayer ?? env?.opensPerPayer ?? 3 };
}

/** Starts gasless opens on the running `exact` scheme, or returns null (auto, the token has no EIP-3009). */
export async function startGaslessOpens(
  plan: GaslessOpenPlan,
  p: {
    exact: ExactScheme;
    exactPlan: ExactPlan;
    chainId: number;
    escrow: Address;
    token: Address;
    payee: Address;
    decimals: number;
    minDeposit: bigint;
    minCloseDelay: number;
    store: ChannelStore;
    now: () => number;
    logger: Logger;
    observer?: GaslessOpenObserver;
  },
): Promise<GaslessOpens | null> {
  const sender = p.exact.payments.sender;
  if (!(await supportsEip3009(sender.client, p.token))) {
    if (plan.mode === "on") throw new GaslessOpenPlanError(`GASLESS_OPEN=on but the token ${p.token} has no EIP-3009 receiveWithAuthorization; set GASLESS_OPEN=off`);
    p.logger.info({ token: p.token }, "gasless opens not offered: the token has no EIP-3009 receiveWithAuthorization");
    return null;
  }
  const fee = typeof plan.fee === "bigint" ? plan.fee : parseTokenAmount(plan.fee, p.decimals);
  const offer = p.exact.payments.offer(0n).extra;
  const opens = new GaslessOpens({
    store: gaslessOpenStoreFor(p.store),
    sender,
    chainId: p.chainId,
    escrow: p.escrow,
    token: p.token,
    payee: p.payee,
    tokenDomain: { name: offer.name, version: offer.version },
    fee,
    opensPerPayer: plan.opensPerPayer,
    minDeposit: p.minDeposit,
    minCloseDelay: p.minCloseDelay,
    now: p.now,
    confirmTimeoutMs: p.exactPlan.confirmTimeoutMs,
    pollMs: p.exactPlan.pollMs,
    logger: p.logger,
    observer: p.observer,
    fillGaps: (nonce) => p.exact.payments.reconcileBelow(nonce),
  });
  p.exact.payments.otherBelow = (nonce) => opens.reconcileBelow(nonce);
  p.exact.addReconciler("gasless opens", (olderThanMs) => opens.reconcile(olderThanMs));
  p.logger.info({ scheme: "channel", open: { method: "eip3009", fee: String(fee), opensPerPayer: plan.opensPerPayer, sender: sender.address } }, "gasless opens offered");
  return opens;
}
