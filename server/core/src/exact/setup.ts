/**
 * The `exact` scheme inside a provider: planned before anything opens (mode, sender key, the key rule), started once
 * the store and metrics exist (token domain read once, reconcile pass at start, then every EXACT_RECONCILE_INTERVAL).
 *
 * The key rule (docs/protocol.md § 5.8, "Nonces"): the exact sender key is never the settler key. The settlement job
 * takes its nonces from the chain (one settler at a time, by its lease); exact transfers take theirs from the store
 * (`exact_sender_nonces`, in the transaction recording the payment), so replicas sharing the store never reuse one.
 * Two allocators over one key would collide, so a shared key is refused at start.
 */
import type { Address, Hex, Transport } from "viem";
import { createPublicClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { Logger } from "pino";
import type { ExactEnv } from "./config";
import { exactStoreFor } from "./store";
import { ExactPayments } from "./payments";
import type { ExactObserver } from "./reconcile";
import { ExactSender } from "./sender";
import { HttpFacilitator } from "./facilitator";
import { readTokenDomain } from "./token";
import type { ChannelStore } from "../store/types";
import type { ExactStore } from "../store/exact-types";

/** Provider options of the `exact` scheme (embedding and tests). */
export interface ProviderExactOptions {
  /** The sender key instead of EXACT_PRIVATE_KEY. */
  privateKey?: Hex;
  /** A key for when none is given, once the chain is known (the demo app: a Hardhat account on a local chain); null: none. */
  fallbackKey?: (o: { chainId: number }) => Hex | null;
  /** A facilitator URL instead of FACILITATOR_URL. */
  facilitatorUrl?: string;
  /** Overrides of EXACT_CONFIRM_TIMEOUT, ms. */
  confirmTimeoutMs?: number;
  /** Overrides of EXACT_RECONCILE_INTERVAL, ms (0: no periodic pass; `provider.exact.reconcile()` by hand). */
  reconcileIntervalMs?: number;
  /** Receipt polling, ms. */
  pollMs?: number;
}

export interface ExactPlan {
  /** Absent when the facilitator submits the transfers. */
  key?: Hex;
  /** The sender (the zero address with a facilitator). */
  address: Address;
  facilitatorUrl?: string;
  source: string;
  confirmTimeoutMs: number;
  reconcileIntervalMs: number;
  pollMs?: number;
}

/** Thrown when `exact` is asked for but cannot run; the provider turns it into its start error. */
export class ExactPlanError extends Error {
  override name = "ExactPlanError";
}

/**
 * The plan of the `exact` scheme, or null when it is off (EXACT=off, `false`, or `auto` without a key). Throws
 * {@link ExactPlanError} for EXACT=on without a key, or a key equal to the settler's.
 */
export function planExact(env: ExactEnv | undefined, chainId: number, option: boolean | ProviderExactOptions | undefined, settlerKey: Hex | undefined): ExactPlan | null {
  const mode = option === false ? "off" : option === true ? "on" : (env?.mode ?? "auto");
  if (mode === "off") return null;
  const o = typeof option === "object" ? option : {};
  let key: Hex | undefined = o.privateKey ?? env?.privateKey();
  let source = o.privateKey ? "option" : "EXACT_PRIVATE_KEY";
  if (!key) {
    key = o.fallbackKey?.({ chainId }) ?? undefined;
    source = "local test account";
  }
  const facilitatorUrl = o.facilitatorUrl ?? env?.facilitatorUrl;
  const timing = {
    confirmTimeoutMs: o.confirmTimeoutMs ?? (env?.confirmTimeout ?? 30) * 1000,
    reconcileIntervalMs: o.reconcileIntervalMs ?? (env?.reconcileInterval ?? 15) * 1000,
    pollMs: o.pollMs,
  };
  // A facilitator submits the transfers: no key of ours sends anything, no nonce to share.
  if (facilitatorUrl) return { address: ExactSender.FACILITATOR, source: "FACILITATOR_URL", facilitatorUrl, ...timing };
  if (!key) {
    if (mode === "on") throw new ExactPlanError("EXACT=on needs EXACT_PRIVATE_KEY (a funded key that submits the exact transfers) or FACILITATOR_URL; or set EXACT=off");
    return null;
  }
  const address = privateKeyToAccount(key).address;
  if (settlerKey && privateKeyToAccount(settlerKey).address.toLowerCase() === address.toLowerCase()) {
    throw new ExactPlanError(
      `EXACT_PRIVATE_KEY must not be the settler key (${address}): exact transfers take their nonces from the store, settlements from the chain; use another funded key`,
    );
  }
  return { key, address, source, ...timing };
}

/** A running `exact` scheme: its payments and the periodic reconciler. */
export interface ExactScheme {
  readonly payments: ExactPayments;
  readonly sender: Address;
  /** The store of its payments. */
  readonly store: ExactStore;
  /**
   * Adds work to every reconcile pass (at start: run once now; then every EXACT_RECONCILE_INTERVAL): gasless opens
   * share the sender key and its reconciler (docs/protocol.md § 5.9).
   */
  addReconciler(name: string, pass: (olderThanMs?: number) => Promise<Record<string, number>>): void;
  /** Stops the reconciler (a pass in progress finishes). */
  stop(): Promise<void>;
}

/** Builds and starts the `exact` scheme of a provider. */
export async function startExact(
  plan: ExactPlan,
  p: {
    rpcUrl?: string;
    transport?: Transport;
    rpcTimeout: number;
    chainId: number;
    token: Address;
    payee: Address;
    maxTimeoutSeconds: number;
    store: ChannelStore;
    now: () => number;
    logger: Logger;
    observer?: ExactObserver;
  },
): Promise<ExactScheme> {
  const client = createPublicClient({ transport: p.transport ?? http(p.rpcUrl, { timeout: p.rpcTimeout, retryCount: 1 }) });
  const tokenDomain = await readTokenDomain(client, p.token);
  const sender = new ExactSender({ rpcUrl: p.rpcUrl, transport: p.transport, chainId: p.chainId, token: p.token, privateKey: plan.key, timeout: p.rpcTimeout });
  const payments = new ExactPayments({
    store: exactStoreFor(p.store),
    sender,
    chainId: p.chainId,
    token: p.token,
    payee: p.payee,
    tokenDomain,
    maxTimeoutSeconds: p.maxTimeoutSeconds,
    now: p.now,
    confirmTimeoutMs: plan.confirmTimeoutMs,
    pollMs: plan.pollMs,
    logger: p.logger,
    observer: p.observer,
    ...(plan.facilitatorUrl ? { facilitator: new HttpFacilitator(plan.facilitatorUrl, plan.confirmTimeoutMs) } : {}),
  });
  let running: Promise<unknown> | null = null;
  let stopped = false;
  const starts: Promise<void>[] = [];
  const others: Array<{ name: string; pass: (olderThanMs?: number) => Promise<Record<string, number>> }> = [];
  const runOther = async (o: (typeof others)[number], olderThanMs?: number) => {
    try {
      const d = await o.pass(olderThanMs);
      if ((d.confirmed ?? 0) + (d.failed ?? 0) + (d.submitted ?? 0) > 0) p.logger.info({ scheme: o.name, ...d }, `${o.name} reconciled`);
    } catch (e) {
      p.logger.warn({ scheme: o.name, err: (e as Error)?.message?.split("\n")[0] }, `${o.name} reconcile pass failed; retrying later`);
    }
  };
  const pass = (olderThanMs?: number) => {
    if (stopped || running) return;
    running = payments
      .reconcile(olderThanMs)
      .then((d) => {
        if (d.confirmed + d.failed + d.submitted > 0) p.logger.info({ scheme: "exact", ...d }, "exact payments reconciled");
      })
      .catch((e) => p.logger.warn({ scheme: "exact", err: (e as Error)?.message?.split("\n")[0] }, "exact reconcile pass failed; retrying later"))
      .then(async () => {
        for (const o of others) await runOther(o, olderThanMs);
      })
      .finally(() => (running = null));
  };
  // At start every open payment is a leftover of a previous process (or of another replica, which ignores repeats).
  pass(0);
  const timer = plan.reconcileIntervalMs > 0 ? setInterval(() => pass(), plan.reconcileIntervalMs) : null;
  timer?.unref?.();
  p.logger.info(
    { scheme: "exact", sender: plan.facilitatorUrl ? undefined : sender.address, keySource: plan.source, facilitator: plan.facilitatorUrl ? new URL(plan.facilitatorUrl).origin : undefined, token: p.token, domain: tokenDomain },
    "exact scheme offered",
  );
  return {
    payments,
    store: payments.store,
    sender: sender.address,
    addReconciler(name, fn) {
      const o = { name, pass: fn };
      others.push(o);
      // Its start pass: every open row is a leftover of a previous process (or another replica's, which ignores repeats).
      if (!stopped) starts.push(runOther(o, 0));
    },
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await running;
      await Promise.all(starts);
    },
  };
}
