/**
 * `exact` payments on the request path (docs/protocol.md § 5.8): the offer for a fixed price, then for a paid
 * request: local checks → chain checks (authorization unused, payer balance, the transfer simulates) → ONE store
 * transaction recording the payment and allocating the sender nonce → signed locally and recorded → broadcast →
 * served only once the receipt confirms the transfer. Anything the chain leaves open is finished by the reconciler.
 */
import type { Logger } from "pino";
import type { Address, Hex } from "viem";
import { EXACT_SCHEME, EXACT_TRANSFER_METHOD, networkOf, type ExactPaymentPayload, type ExactRequirements, type Network } from "@paychan/protocol";
import type { ExactPayment, ExactStore } from "../store/exact-types";
import { checkExactPayment, EXACT_VALIDITY_MARGIN, type ExactRefusal } from "./checks";
import { reconcileExactPayment, reconcileExactPayments, type ExactObserver, type ReconcileResult } from "./reconcile";
import { ExactSender, TransferRevertError } from "./sender";
import { FacilitatorUnavailableError, type HttpFacilitator } from "./facilitator";

/** The outcome of one `exact` payment. */
export type ExactOutcome =
  | { kind: "paid"; payment: ExactPayment; network: Network }
  | { kind: "refused"; refusal: ExactRefusal }
  /** The chain or the store failed: nothing served; a recorded payment is finished by the reconciler. */
  | { kind: "unavailable"; detail: string };

export interface ExactPaymentsOptions {
  store: ExactStore;
  sender: ExactSender;
  chainId: number;
  token: Address;
  payee: Address;
  /** The token's EIP-712 name and version (`eip712Domain()`, read at start). */
  tokenDomain: { name: string; version: string };
  maxTimeoutSeconds: number;
  /** Chain time, seconds. */
  now: () => number;
  /** How long a paid request waits for its transfer's receipt before answering 503 (ms, default 30 000). */
  confirmTimeoutMs?: number;
  /** Receipt polling, ms (default 100). */
  pollMs?: number;
  /** Seconds an authorization must stay valid after it arrives (default {@link EXACT_VALIDITY_MARGIN}). */
  validityMargin?: number;
  logger?: Logger;
  observer?: ExactObserver;
  /** Verify and settle through this facilitator (`FACILITATOR_URL`) instead of submitting with our own key. */
  facilitator?: HttpFacilitator;
}

/** The provider's `exact` scheme: offers, payments, reconciliation. */
export class ExactPayments {
  readonly network: Network;
  readonly store: ExactStore;
  readonly sender: ExactSender;
  private readonly o: ExactPaymentsOptions;
  /** Payments a request of this process is still working on (the reconciler leaves them alone). */
  private readonly busy = new Set<number>();

  constructor(o: ExactPaymentsOptions) {
    this.o = o;
    this.network = networkOf(o.chainId);
    this.store = o.store;
    this.sender = o.sender;
  }

  /** The `exact` offer for a request costing `price` (atomic units). */
  offer(price: bigint): ExactRequirements {
    return {
      scheme: EXACT_SCHEME,
      network: this.network,
      asset: this.o.token,
      amount: price,
      payTo: this.o.payee,
      maxTimeoutSeconds: this.o.maxTimeoutSeconds,
      extra: { name: this.o.tokenDomain.name, version: this.o.tokenDomain.version, assetTransferMethod: EXACT_TRANSFER_METHOD },
    };
  }

  private refused(code: ExactRefusal["code"], detail: string): ExactOutcome {
    this.o.observer?.outcome?.("refused");
    return { kind: "refused", refusal: { code, detail } };
  }

  /** Pays one request of `price` for `resource` with `p`, or says why not. Never throws. */
  async pay(p: ExactPaymentPayload, price: bigint, resource: string): Promise<ExactOutcome> {
    try {
      return await this.payInner(p, price, resource);
    } catch (e) {
      this.o.logger?.error({ scheme: "exact", err: (e as Error)?.message }, "exact payment failed unexpectedly");
      return { kind: "unavailable", detail: "the payment could not be settled; try again" };
    }
  }

  private async payInner(p: ExactPaymentPayload, price: bigint, resource: string): Promise<ExactOutcome> {
    const refusal = await checkExactPayment(p, this.offer(price), this.o.now(), this.o.validityMargin ?? EXACT_VALIDITY_MARGIN);
    if (refusal) return this.refused(refusal.code, refusal.detail);
    const auth = p.payload.authorization;

    let known: ExactPayment | null;
    try {
      known = await this.store.getExactPayment(auth.from, auth.nonce);
    } catch (e) {
      return this.storeDown(e);
    }
    if (known) return this.again(known, p, resource);
    if (this.o.facilitator) return this.payThroughFacilitator(this.o.facilitator, p, price, resource);

    // Chain checks, side by side: unused authorization, balance, the transfer simulates; nonce and fees for it.
    const data = this.sender.transferData(auth, p.payload.signature);
    let used: boolean, balance: bigint, chainNonce: number, fees: Awaited<ReturnType<ExactSender["fees"]>>;
    let gas: bigint | TransferRevertError;
    try {
      [used, balance, chainNonce, fees, gas] = await Promise.all([
        this.sender.authorizationUsed(auth.from, auth.nonce),
        this.sender.balanceOf(auth.from),
        this.sender.pendingNonce(),
        this.sender.fees(),
        this.sender.estimate(data).catch((e) => (e instanceof TransferRevertError ? e : Promise.reject(e))),
      ]);
    } catch (e) {
      return this.chainDown(e, "checking the authorization");
    }
    if (used) return this.refused("authorization_used", `authorization ${auth.nonce} of ${auth.from} was already used on chain`);
    if (balance < auth.value) return this.refused("insufficient_balance", `the payer holds ${balance}; the authorization needs ${auth.value}`);
    if (gas instanceof TransferRevertError) return this.refused("transfer_failed", gas.message);

    let rec;
    try {
      rec = await this.store.recordExactPayment({
        payer: auth.from,
        authNonce: auth.nonce,
        payTo: auth.to,
        amount: auth.value,
        validAfter: auth.validAfter,
        validBefore: auth.validBefore,
        signature: p.payload.signature,
        resource,
        sender: this.sender.address,
        chainNonce,
      });
    } catch (e) {
      return this.storeDown(e);
    }
    if (!rec.ok) return this.again(rec.existing, p, resource);
    const payment = rec.payment;
    this.busy.add(payment.id);
    try {
      return await this.submit(payment, data, gas, fees);
    } finally {
      this.busy.delete(payment.id);
    }
  }

  /**
   * The facilitator's path: the same checks, the record (sender: the zero address), then the facilitator's verify and
   * settle; served when it reports the transfer done. A facilitator that does not answer leaves the payment open: the
   * reconciler finishes it from the token's authorization state (used: confirmed; expired unused: failed).
   */
  private async payThroughFacilitator(f: HttpFacilitator, p: ExactPaymentPayload, price: bigint, resource: string): Promise<ExactOutcome> {
    const auth = p.payload.authorization;
    let used: boolean, balance: bigint;
    try {
      [used, balance] = await Promise.all([this.sender.authorizationUsed(auth.from, auth.nonce), this.sender.balanceOf(auth.from)]);
    } catch (e) {
      return this.chainDown(e, "checking the authorization");
    }
    if (used) return this.refused("authorization_used", `authorization ${auth.nonce} of ${auth.from} was already used on chain`);
    if (balance < auth.value) return this.refused("insufficient_balance", `the payer holds ${balance}; the authorization needs ${auth.value}`);
    const offer = this.offer(price);
    try {
      const v = await f.verify(p, offer);
      if (!v.ok) return this.refused("transfer_failed", `the facilitator refused the payment: ${v.reason}`);
    } catch (e) {
      return this.facilitatorDown(e);
    }
    let rec;
    try {
      rec = await this.store.recordExactPayment({
        payer: auth.from,
        authNonce: auth.nonce,
        payTo: auth.to,
        amount: auth.value,
        validAfter: auth.validAfter,
        validBefore: auth.validBefore,
        signature: p.payload.signature,
        resource,
        sender: ExactSender.FACILITATOR,
        chainNonce: 0,
      });
    } catch (e) {
      return this.storeDown(e);
    }
    if (!rec.ok) return this.again(rec.existing, p, resource);
    const payment = rec.payment;
    this.busy.add(payment.id);
    const t0 = process.hrtime.bigint();
    try {
      let s;
      try {
        s = await f.settle(p, offer);
      } catch (e) {
        return this.facilitatorDown(e);
      }
      if (!s.ok) {
        await this.store.finishExactPayment(payment.id, { status: "failed", error: `facilitator: ${s.reason}` });
        this.o.observer?.outcome?.("failed");
        return { kind: "refused", refusal: { code: "transfer_failed", detail: `the facilitator could not settle the payment: ${s.reason}` } };
      }
      await this.store.setExactTransaction(payment.id, s.transaction!, "0x");
      this.o.observer?.outcome?.("submitted");
      const r = await this.sender.receipt(s.transaction!).catch(() => null);
      const done = await this.store.finishExactPayment(payment.id, { status: "confirmed", ...(r ? { blockNumber: r.blockNumber, gasUsed: r.gasUsed } : {}) }, true);
      this.o.observer?.outcome?.("confirmed");
      this.o.observer?.settled?.(Number(process.hrtime.bigint() - t0) / 1e9);
      this.o.logger?.info({ scheme: "exact", payer: payment.payer, tx: s.transaction, facilitator: new URL(f.url).origin }, "exact payment settled by the facilitator");
      if (!done.served || !done.payment) return { kind: "refused", refusal: { code: "authorization_used", detail: "this authorization's request was already served" } };
      this.o.observer?.served?.();
      return { kind: "paid", payment: done.payment, network: this.network };
    } catch (e) {
      return this.storeDown(e);
    } finally {
      this.busy.delete(payment.id);
    }
  }

  /** Sign, record, broadcast, wait for the receipt. The payment is recorded already: every exit leaves it reconcilable. */
  private async submit(payment: ExactPayment, data: Hex, gas: bigint, fees: Awaited<ReturnType<ExactSender["fees"]>>): Promise<ExactOutcome> {
    const log = { scheme: "exact", payer: payment.payer, senderNonce: payment.senderNonce };
    let signed = await this.sender.sign({ data, nonce: payment.senderNonce, gas, fees });
    try {
      // The first transaction stored wins (a reconciler elsewhere may have signed this recorded nonce already).
      const stored = await this.store.setExactTransaction(payment.id, signed.hash, signed.raw);
      signed = { hash: stored.txHash, raw: stored.rawTx };
    } catch (e) {
      // Unsigned in the store: the reconciler signs the same nonce again.
      return this.storeDown(e);
    }
    const t0 = process.hrtime.bigint();
    const t0Ms = Date.now();
    try {
      let sent = await this.sender.broadcast(signed.raw);
      // Concurrent payments broadcast in any order; a node that queues no future nonce refuses a later one until the
      // earlier ones arrive (they were recorded first, so they are being broadcast now).
      // An earlier payment left open (its broadcast failed) holds the nonces behind it: it is reconciled now, not at
      // the next pass.
      let gapsFilled = false;
      for (let wait = 10; sent === "nonce_too_high" && Date.now() - t0Ms < 5_000; wait = Math.min(wait * 2, 200)) {
        await new Promise((res) => setTimeout(res, wait));
        if (!gapsFilled && wait >= 80) {
          gapsFilled = true;
          await this.reconcileBelow(payment.senderNonce);
        }
        sent = await this.sender.broadcast(signed.raw);
      }
      if (sent !== "accepted" && sent !== "known") {
        // Left to the reconciler (which fails it when the nonce went elsewhere): nothing served.
        this.o.logger?.warn({ ...log, tx: signed.hash, sent }, "exact transfer not accepted by the node");
        return { kind: "unavailable", detail: "the transfer could not be submitted; it is being reconciled" };
      }
      await this.store.markExactSubmitted(payment.id);
      this.o.observer?.outcome?.("submitted");
    } catch (e) {
      return this.chainDown(e, "submitting the transfer");
    }
    const deadline = Date.now() + (this.o.confirmTimeoutMs ?? 30_000);
    for (;;) {
      let r;
      try {
        r = await this.sender.receipt(signed.hash);
      } catch (e) {
        return this.chainDown(e, "waiting for the transfer");
      }
      if (r) {
        const status = r.success ? "confirmed" : "failed";
        const done = await this.store.finishExactPayment(payment.id, { status, blockNumber: r.blockNumber, gasUsed: r.gasUsed, ...(r.success ? {} : { error: "the transfer reverted" }) }, true);
        this.o.observer?.outcome?.(status);
        this.o.logger?.info({ ...log, tx: signed.hash, status, gasUsed: String(r.gasUsed) }, "exact payment settled");
        if (!r.success) return { kind: "refused", refusal: { code: "transfer_failed", detail: `the transfer ${signed.hash} reverted; nothing was paid` } };
        this.o.observer?.settled?.(Number(process.hrtime.bigint() - t0) / 1e9);
        if (!done.served || !done.payment) return { kind: "refused", refusal: { code: "authorization_used", detail: "this authorization's request was already served" } };
        this.o.observer?.served?.();
        return { kind: "paid", payment: done.payment, network: this.network };
      }
      if (Date.now() >= deadline) return { kind: "unavailable", detail: `the transfer ${signed.hash} is not mined yet; it is being reconciled` };
      await new Promise((res) => setTimeout(res, this.o.pollMs ?? 100));
    }
  }

  /**
   * The same authorization again. Served once: a confirmed payment whose request was never answered (the answer was
   * a 503 while it settled) is served to the first retry carrying the same signature for the same resource; an open one
   * is reconciled now.
   * Anything else is `authorization_used`.
   */
  private async again(known: ExactPayment, p: ExactPaymentPayload, resource: string): Promise<ExactOutcome> {
    const used = () => this.refused("authorization_used", `authorization ${known.authNonce} of ${known.payer} was already used`);
    const sameRequest = known.signature.toLowerCase() === p.payload.signature.toLowerCase() && pathOf(known.resource) === pathOf(resource);
    if (!sameRequest || known.served || known.status === "failed") {
      if (known.status === "failed" && !known.served) return this.refused("transfer_failed", known.error ?? "the transfer of this authorization failed");
      return used();
    }
    let current = known;
    if (known.status !== "confirmed") {
      if (this.busy.has(known.id)) return { kind: "unavailable", detail: "this authorization is being settled; try again shortly" };
      let r: ReconcileResult;
      try {
        r = await reconcileExactPayment(known, this.store, this.sender, { logger: this.o.logger, observer: this.o.observer });
      } catch (e) {
        return this.chainDown(e, "reconciling the transfer");
      }
      if (r === "failed") return this.refused("transfer_failed", "the transfer of this authorization failed");
      if (r !== "confirmed") return { kind: "unavailable", detail: "this authorization is being settled; try again shortly" };
      current = (await this.store.getExactPayment(known.payer, known.authNonce)) ?? known;
    }
    // A payment confirmed from the token's state alone names no transaction to put in a receipt.
    if (!current.txHash || !(await this.store.claimExactServe(current.id))) return used();
    this.o.observer?.served?.();
    return { kind: "paid", payment: { ...current, status: "confirmed", served: true }, network: this.network };
  }

  /**
   * Other transactions of this sender key taken from the same nonce allocator (gasless opens, docs/protocol.md § 5.9):
   * reconciled below a nonce gap with the payments.
   */
  otherBelow?: (nonce: number) => Promise<void>;

  /** Reconciles the open payments of this sender with a nonce below `nonce` that no request of this process holds. */
  async reconcileBelow(nonce: number): Promise<void> {
    const open = await this.store.openExactPayments(Date.now() + 1, 50);
    const me = this.sender.address.toLowerCase();
    for (const p of open) {
      if (p.sender.toLowerCase() !== me || p.senderNonce >= nonce || this.busy.has(p.id)) continue;
      await reconcileExactPayment(p, this.store, this.sender, { logger: this.o.logger, observer: this.o.observer }).catch(() => undefined);
    }
    await this.otherBelow?.(nonce).catch(() => undefined);
  }

  /** One reconcile pass over payments open for more than `olderThanMs` (default: twice the confirm timeout). */
  reconcile(olderThanMs = 2 * (this.o.confirmTimeoutMs ?? 30_000)): Promise<Record<ReconcileResult, number>> {
    return reconcileExactPayments(this.store, this.sender, { olderThanMs, busy: this.busy, logger: this.o.logger, observer: this.o.observer });
  }

  private chainDown(e: unknown, what: string): ExactOutcome {
    this.o.logger?.warn({ scheme: "exact", err: (e as Error)?.message?.split("\n")[0] }, `exact: chain failed while ${what}`);
    return { kind: "unavailable", detail: `the chain could not be reached while ${what}; nothing was served` };
  }

  private facilitatorDown(e: unknown): ExactOutcome {
    const detail = e instanceof FacilitatorUnavailableError ? e.message : "the facilitator failed";
    this.o.logger?.warn({ scheme: "exact", err: detail }, "exact: the facilitator failed");
    return { kind: "unavailable", detail: "the facilitator could not be reached; nothing was served" };
  }

  private storeDown(e: unknown): ExactOutcome {
    this.o.logger?.error({ scheme: "exact", err: (e as Error)?.message }, "exact: the store failed");
    return { kind: "unavailable", detail: "the payment store is unavailable; try again" };
  }
}

/** The path of a resource URL (the host part may differ between processes without PUBLIC_URL). */
function pathOf(resource: string): string {
  try {
    return new URL(resource).pathname;
  } catch {
    return resource;
  }
}
