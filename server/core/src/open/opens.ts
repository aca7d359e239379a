/**
 * Gasless opens on the request path (docs/protocol.md § 5.9): a `channel` payment whose payload carries `open` (the
 * payer's EIP-3009 authorization for `openWithAuthorization`) is checked completely off chain (checks 2-8), then
 * against the chain (9: the channel exists already → done; the authorization unused, the payer's balance, the open
 * simulates), recorded with its sender nonce (one store transaction, the `exact` allocator), signed and recorded,
 * broadcast, and waited for. The caller (payments/core.ts) then accepts the voucher by the ordinary rule, with a first
 * charge of price + fee. The same open arriving many times at once is submitted once: the others wait for its outcome.
 */
import type { Logger } from "pino";
import { recoverTypedDataAddress, type Address, type Hex } from "viem";
import {
  authorizationNonce,
  escrowDomain,
  OPEN_METHOD,
  openChannelId,
  openTypedData,
  VoucherVerifier,
  type OpenTerms,
  type PaymentErrorCode,
  type PaymentPayload,
} from "@paychan/protocol";
import type { GaslessOpen, GaslessOpenStore } from "../store/open-types";
import { TransferRevertError, type ExactFees, type ExactSender } from "../exact/sender";
import { EXACT_VALIDITY_MARGIN } from "../exact/checks";
import { channelExists, openCallData } from "./chain";
import { reconcileOpen, reconcileOpens, type GaslessOpenObserver, type OpenReconcileResult } from "./reconcile";

/** What a payload's open came to. */
export type OpenOutcome =
  /** The channel exists on chain (opened now, by an earlier request, or by anyone): go on with the voucher. */
  | { kind: "ready"; fee: bigint; open: GaslessOpen | null }
  | { kind: "refused"; code: PaymentErrorCode; detail: string }
  /** The chain or the store failed: nothing served; a recorded open is finished by the reconciler. */
  | { kind: "unavailable"; detail: string };

export interface GaslessOpensOptions {
  store: GaslessOpenStore;
  /** The exact sender: its key submits the opens, its nonces come from the same allocator. */
  sender: ExactSender;
  chainId: number;
  escrow: Address;
  token: Address;
  payee: Address;
  /** The token's EIP-712 name and version (the authorization is signed under them). */
  tokenDomain: { name: string; version: string };
  /** Atomic units, added to the first charge. */
  fee: bigint;
  /** Opens one payer may have in flight or submitted in the last hour. */
  opensPerPayer: number;
  minDeposit: bigint;
  minCloseDelay: number;
  /** Chain time, s. */
  now: () => number;
  /** How long a paid request waits for its open (ms, default 30 000). */
  confirmTimeoutMs?: number;
  pollMs?: number;
  logger?: Logger;
  observer?: GaslessOpenObserver;
  /** Reconciles other open transactions of the sender below `nonce` (the `exact` ones), when a nonce gap holds an open. */
  fillGaps?: (nonce: number) => Promise<void>;
}

const HOUR_MS = 3_600_000;
const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** The provider's gasless opens. */
export class GaslessOpens {
  readonly store: GaslessOpenStore;
  readonly sender: ExactSender;
  private readonly o: GaslessOpensOptions;
  private readonly verifier: VoucherVerifier;
  /** Opens a request of this process is working on (the reconciler leaves them alone). */
  private readonly busy = new Set<number>();

  constructor(o: GaslessOpensOptions) {
    this.o = o;
    this.store = o.store;
    this.sender = o.sender;
    this.verifier = new VoucherVerifier(escrowDomain(o.chainId, o.escrow));
  }

  /** `extra.open` of every channel offer. */
  terms(): OpenTerms {
    return { method: OPEN_METHOD, fee: this.o.fee };
  }

  private refused(code: PaymentErrorCode, detail: string): OpenOutcome {
    this.o.observer?.outcome?.("refused");
    return { kind: "refused", code, detail };
  }

  /** Checks 2-9 of § 5.9 and the submission for a payment carrying `payload.open` (check 1 is the caller's). Never throws. */
  async open(p: PaymentPayload, price: bigint): Promise<OpenOutcome> {
    try {
      return await this.openInner(p, price);
    } catch (e) {
      this.o.logger?.error({ scheme: "channel", err: (e as Error)?.message?.split("\n")[0] }, "gasless open failed unexpectedly");
      return { kind: "unavailable", detail: "the open could not be completed; try again" };
    }
  }

  private async openInner(p: PaymentPayload, price: bigint): Promise<OpenOutcome> {
    const a = p.payload.open!;
    const id = p.payload.channelId;
    const first = price + this.o.fee;
    // 2. payee and token.
    if (!same(a.payee, this.o.payee)) return this.refused("channel_payee_mismatch", `the open pays ${a.payee}, not ${this.o.payee}`);
    if (!same(a.token, this.o.token)) return this.refused("channel_token_mismatch", `the open deposits ${a.token}, not ${this.o.token}`);
    // 3. The payload names the channel its parameters give.
    if (openChannelId(a, this.o.chainId, this.o.escrow).toLowerCase() !== id.toLowerCase()) {
      return this.refused("open_channel_mismatch", `payload.channelId is not the id of the open's parameters`);
    }
    // 4. Deposit and close delay against this server's minimums.
    if (a.amount < this.o.minDeposit) return this.refused("deposit_too_small", `the deposit ${a.amount} is below the minimum ${this.o.minDeposit}`);
    if (a.amount < first) return this.refused("deposit_too_small", `the deposit ${a.amount} does not cover the first charge ${first} (price + open fee)`);
    if (a.closeDelay < this.o.minCloseDelay) {
      return this.refused("close_delay_too_short", `the close delay is ${a.closeDelay} s; this server needs at least ${this.o.minCloseDelay} s`);
    }
    // 5. The validity window, against chain time.
    const now = this.o.now();
    if (a.validAfter >= BigInt(now)) return this.refused("authorization_not_yet_valid", `the authorization is valid after ${a.validAfter}; chain time is ${now}`);
    if (a.validBefore < BigInt(now + EXACT_VALIDITY_MARGIN)) {
      return this.refused("authorization_expired", `the authorization expires at ${a.validBefore}; it must stay valid at least ${EXACT_VALIDITY_MARGIN} s after ${now}`);
    }
    // 6. The payer's signature (ECDSA over ReceiveWithAuthorization, the token's domain).
    let payer: Address | null = null;
    try {
      payer = await recoverTypedDataAddress({ ...openTypedData(a, { chainId: this.o.chainId, escrow: this.o.escrow, domain: this.o.tokenDomain }), signature: a.signature });
    } catch {
      payer = null;
    }
    if (!payer || !same(payer, a.payer)) {
      return this.refused("authorization_signature_invalid", `the open is not signed by its payer ${a.payer} (only key (ECDSA) signatures are accepted)`);
    }
    // 7. The first voucher: the session key's signature, covering price + fee, within the deposit.
    const v = p.payload.cumulativeAmount;
    const voucherSigner = this.verifier.recover(id, v, p.payload.signature);
    if (!voucherSigner || !same(voucherSigner, a.signer)) return this.refused("invalid_signature", `the voucher is not an ECDSA signature of the open's signer ${a.signer}`);
    if (v < first) return this.refused("insufficient_voucher", `voucher ${v} does not cover the first charge ${first} (price ${price} + open fee ${this.o.fee})`);
    if (v > a.amount) return this.refused("exceeds_deposit", `voucher ${v} is above the deposit ${a.amount}`);

    // 8. Per-payer bound (this channel's own open not counted: its repeats wait for it below).
    let known: GaslessOpen | null;
    try {
      const n = await this.store.countPayerOpens(a.payer, Date.now() - HOUR_MS, id);
      if (n >= this.o.opensPerPayer) return this.refused("open_limit", `payer ${a.payer} has ${n} opens in flight or in the last hour (at most ${this.o.opensPerPayer})`);
      known = await this.store.getOpen(id);
    } catch (e) {
      return this.storeDown(e);
    }
    if (known) return this.outcomeOf(known);

    // 9. Chain: the channel exists already (the open is done), else the authorization is unused, the balance covers
    // it, and the open simulates. The sender's nonce and fees for it, side by side.
    const data = openCallData(a);
    let exists: boolean, used: boolean, balance: bigint, chainNonce: number, fees: ExactFees, gas: bigint | TransferRevertError;
    try {
      [exists, used, balance, chainNonce, fees, gas] = await Promise.all([
        channelExists(this.sender.client, this.o.escrow, id, a.signer),
        this.sender.authorizationUsed(a.payer, authorizationNonce(id, a.closeDelay)),
        this.sender.balanceOf(a.payer),
        this.sender.pendingNonce(),
        this.sender.fees(),
        this.sender.estimate(data, this.o.escrow).catch((e) => (e instanceof TransferRevertError ? e : Promise.reject(e))),
      ]);
    } catch (e) {
      return this.chainDown(e, "checking the open");
    }
    if (exists) return { kind: "ready", fee: 0n, open: null };
    if (used || gas instanceof TransferRevertError) {
      // The reads are not one snapshot: a concurrent request's open of this very channel may have been recorded and
      // mined between them (the authorization then reads used and the open reverts). Its record, or the channel, says so.
      const settled = await this.openedMeanwhile(id, a.signer);
      if (settled) return settled;
    }
    if (used) return this.refused("authorization_used", `the open's authorization of ${a.payer} was already used or cancelled on chain`);
    if (balance < a.amount) return this.refused("insufficient_balance", `the payer holds ${balance}; the deposit needs ${a.amount}`);
    if (gas instanceof TransferRevertError) return this.refused("open_failed", gas.message.replace("the transfer", "the open"));

    let rec;
    try {
      rec = await this.store.recordOpen({
        channelId: id,
        payer: a.payer,
        payee: a.payee,
        token: a.token,
        signer: a.signer,
        amount: a.amount,
        closeDelay: a.closeDelay,
        salt: a.salt,
        validAfter: a.validAfter,
        validBefore: a.validBefore,
        signature: a.signature,
        fee: this.o.fee,
        sender: this.sender.address,
        chainNonce,
      });
    } catch (e) {
      return this.storeDown(e);
    }
    if (!rec.ok) return this.outcomeOf(rec.existing);
    this.busy.add(rec.open.id);
    try {
      return await this.submit(rec.open, data, gas, fees);
    } finally {
      this.busy.delete(rec.open.id);
    }
  }

  /** The outcome when this channel's open was recorded, or the channel appeared, since this request looked; else null. */
  private async openedMeanwhile(id: Hex, signer: Address): Promise<OpenOutcome | null> {
    try {
      const rec = await this.store.getOpen(id);
      if (rec) return this.outcomeOf(rec);
      if (await channelExists(this.sender.client, this.o.escrow, id, signer)) return { kind: "ready", fee: 0n, open: null };
    } catch (e) {
      return this.chainDown(e, "re-reading the channel");
    }
    return null;
  }

  /** Sign, record, broadcast, wait for the receipt. The open is recorded already: every exit leaves it reconcilable. */
  private async submit(open: GaslessOpen, data: Hex, gas: bigint, fees: ExactFees): Promise<OpenOutcome> {
    const log = { scheme: "channel", open: { channelId: open.channelId, payer: open.payer, senderNonce: open.senderNonce } };
    let signed = await this.sender.sign({ data, nonce: open.senderNonce, gas, fees, to: this.o.escrow });
    try {
      const stored = await this.store.setOpenTransaction(open.id, signed.hash, signed.raw);
      signed = { hash: stored.txHash, raw: stored.rawTx };
    } catch (e) {
      return this.storeDown(e);
    }
    const t0 = process.hrtime.bigint();
    const t0Ms = Date.now();
    try {
      let sent = await this.sender.broadcast(signed.raw);
      // Concurrent transactions of the sender (opens and exact transfers) may reach the node out of nonce order.
      let gapsFilled = false;
      for (let wait = 10; sent === "nonce_too_high" && Date.now() - t0Ms < 5_000; wait = Math.min(wait * 2, 200)) {
        await new Promise((res) => setTimeout(res, wait));
        if (!gapsFilled && wait >= 80) {
          gapsFilled = true;
          await this.fillGaps(open.senderNonce);
        }
        sent = await this.sender.broadcast(signed.raw);
      }
      if (sent !== "accepted" && sent !== "known") {
        this.o.logger?.warn({ ...log, tx: signed.hash, sent }, "gasless open not accepted by the node");
        return { kind: "unavailable", detail: "the open could not be submitted; it is being reconciled" };
      }
      await this.store.markOpenSubmitted(open.id);
      this.o.observer?.outcome?.("submitted");
      this.o.logger?.info({ ...log, tx: signed.hash }, "gasless open submitted");
    } catch (e) {
      return this.chainDown(e, "submitting the open");
    }
    const deadline = Date.now() + (this.o.confirmTimeoutMs ?? 30_000);
    for (;;) {
      let r;
      try {
        r = await this.sender.receipt(signed.hash);
      } catch (e) {
        return this.chainDown(e, "waiting for the open");
      }
      if (r) {
        const status = r.success ? "confirmed" : "failed";
        let done: GaslessOpen | null;
        try {
          done = await this.store.finishOpen(open.id, { status, blockNumber: r.blockNumber, gasUsed: r.gasUsed, ...(r.success ? {} : { error: "the open reverted" }) });
        } catch (e) {
          return this.storeDown(e);
        }
        this.o.observer?.outcome?.(status);
        this.o.logger?.info({ ...log, tx: signed.hash, status, gasUsed: String(r.gasUsed) }, "gasless open mined");
        if (!r.success) return { kind: "refused", code: "open_failed", detail: `the open ${signed.hash} reverted; nothing was opened or served` };
        this.o.observer?.opened?.(Number(process.hrtime.bigint() - t0) / 1e9);
        return { kind: "ready", fee: open.fee, open: done ?? { ...open, status: "confirmed" } };
      }
      if (Date.now() >= deadline) return { kind: "unavailable", detail: `the open ${signed.hash} is not mined yet; it is being reconciled` };
      await new Promise((res) => setTimeout(res, this.o.pollMs ?? 100));
    }
  }

  /**
   * The open of this channel is recorded already (this request is a repeat, concurrent or later): its outcome. An
   * open one is waited for (and reconciled here when no request of this process is working on it).
   */
  private async outcomeOf(known: GaslessOpen): Promise<OpenOutcome> {
    const deadline = Date.now() + (this.o.confirmTimeoutMs ?? 30_000);
    let cur = known;
    let lastReconcile = 0;
    for (;;) {
      if (cur.status === "confirmed") return { kind: "ready", fee: cur.fee, open: cur };
      if (cur.status === "failed") {
        // Opened some other way meanwhile (the payer itself, another relayer)? Then the channel is usable.
        try {
          if (await channelExists(this.sender.client, this.o.escrow, cur.channelId, cur.signer)) return { kind: "ready", fee: 0n, open: null };
        } catch (e) {
          return this.chainDown(e, "reading the channel");
        }
        return this.refused("open_failed", cur.error ?? "the open of this channel failed; nothing was opened");
      }
      if (Date.now() >= deadline) return { kind: "unavailable", detail: "the open of this channel is still in progress; try again shortly" };
      // Nobody here is working on it (another replica, or a request that gave up): move it forward ourselves, now and then.
      if (!this.busy.has(cur.id) && Date.now() - cur.updatedAt > 1_000 && Date.now() - lastReconcile > 1_000) {
        lastReconcile = Date.now();
        await reconcileOpen(cur, this.store, this.sender, this.o.escrow, { logger: this.o.logger, observer: this.o.observer }).catch(() => undefined);
      }
      await new Promise((res) => setTimeout(res, this.o.pollMs ?? 100));
      try {
        cur = (await this.store.getOpen(cur.channelId)) ?? cur;
      } catch (e) {
        return this.storeDown(e);
      }
    }
  }

  /** Reconciles the sender's other open transactions (opens and `exact` transfers) below `nonce`. */
  private async fillGaps(nonce: number): Promise<void> {
    try {
      await this.reconcileBelow(nonce);
      await this.o.fillGaps?.(nonce);
    } catch {
      // the next pass
    }
  }

  /** Exact transfers waiting on a nonce gap call this: opens of this sender below `nonce` left open are reconciled now. */
  async reconcileBelow(nonce: number): Promise<void> {
    const me = this.sender.address.toLowerCase();
    for (const row of await this.store.openOpens(Date.now() + 1, 50)) {
      if (row.sender.toLowerCase() !== me || row.senderNonce >= nonce || this.busy.has(row.id)) continue;
      await reconcileOpen(row, this.store, this.sender, this.o.escrow, { logger: this.o.logger, observer: this.o.observer }).catch(() => undefined);
    }
  }

  /** One reconcile pass over opens open for more than `olderThanMs` (default: twice the confirm timeout). */
  reconcile(olderThanMs = 2 * (this.o.confirmTimeoutMs ?? 30_000)): Promise<Record<OpenReconcileResult, number>> {
    return reconcileOpens(this.store, this.sender, this.o.escrow, { olderThanMs, busy: this.busy, logger: this.o.logger, observer: this.o.observer });
  }

  private chainDown(e: unknown, what: string): OpenOutcome {
    this.o.logger?.warn({ scheme: "channel", open: true, err: (e as Error)?.message?.split("\n")[0] }, `gasless open: chain failed while ${what}`);
    return { kind: "unavailable", detail: `the chain could not be reached while ${what}; nothing was served` };
  }

  private storeDown(e: unknown): OpenOutcome {
    this.o.logger?.error({ scheme: "channel", open: true, err: (e as Error)?.message }, "gasless open: the store failed");
    return { kind: "unavailable", detail: "the payment store is unavailable; try again" };
  }
}
