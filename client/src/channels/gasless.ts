/**
 * Gasless opens on the agent side (docs/protocol.md § 5.9, § 7.6): when the payer cannot (or is told not to) pay the
 * gas of its own open, and the provider's offer has `extra.open`, the payer signs an EIP-3009 `ReceiveWithAuthorization`
 * for `openWithAuthorization` (payer = the wallet, signer = the session key, a random salt, the deposit and close delay
 * of an ordinary open) and its first voucher (≥ price + the offer's fee), and sends both in the first paid request; the
 * provider opens the channel and serves it.
 *
 * The record is durable ("opening", with the signed authorization) before any request carries it. Until a paid call on
 * it is served, every call on it carries the same open (one at a time in this process; the others wait for its outcome,
 * then pay as ordinary vouchers). After a crash, a 5xx or a lost answer the same authorization is sent again (the
 * authorization nonce is bound to the channel id and close delay, so whatever is re-sent or re-signed can open this one
 * channel once); when the chain shows the channel, it is paid on as any other. A channel the provider opened is topped up
 * by a new gasless channel, and the old one is closed cooperatively once idle (§ 5.9 "Top-ups").
 */
import type { Address, Hex } from "viem";
import { randomBytes } from "node:crypto";
import {
  OPEN_METHOD,
  channelEscrowAbi,
  computeChannelId,
  openChannelId,
  openTypedData,
  type ChannelRequirements,
  type OpenAuthorization,
  type PaymentRequired,
} from "@paychan/protocol";
import { chainFailure, chainTime, readChannel } from "../chain";
import { ClientError, shortMessageOf } from "../errors";
import type { TokenLimits } from "../limits";
import { OWN_OPEN_GAS, type GaslessOpenMode } from "../options";
import { applyHint } from "../paying/resync";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";
import { requireBalance } from "../transactions";
import { termsKey, type ChannelBook } from "./book";
import { closeChannel } from "./closing";

/** Validity of a gasless open's authorization: `validBefore` = max(this machine's clock, the chain's) + this (seconds). */
export const OPEN_AUTHORIZATION_SECONDS = 3600n;
/** Re-sign the authorization when less than this is left of its window (seconds). */
const RESIGN_MARGIN_SECONDS = 60n;

/** The parameters of a channel to open (opening.ts's `OpenRequest`). */
export interface GaslessOpenRequest {
  escrow: Address;
  payee: Address;
  token: Address;
  /** Deposit, atomic units. */
  amount: bigint;
  /** Seconds. */
  closeDelay: number;
  origin?: string;
}

/** How a channel for a 402 is opened. */
export type OpenWay = { gasless: false } | { gasless: true; fee: bigint; reason: "no_gas" | "always" };

/** The policy's mode (default "auto"); throws `invalid_argument` for anything else. */
export function gaslessMode(s: ClientSession): GaslessOpenMode {
  const m = s.policy.gaslessOpen ?? "auto";
  if (m !== "auto" && m !== "always" && m !== "never") throw new ClientError("invalid_argument", `policy.gaslessOpen must be auto, always or never (got ${JSON.stringify(m)})`);
  return m;
}

/**
 * Whether the payer can pay the gas of its own open: its native balance ≥ {@link OWN_OPEN_GAS} × the current fee per
 * gas (`maxFeePerGas` of viem's `estimateFeesPerGas` on an EIP-1559 chain, the balance a node requires for the
 * transaction to be accepted; `gasPrice` on a legacy chain). Read at each decision (opens are rare).
 */
export async function payerHasGas(s: ClientSession): Promise<{ ok: boolean; balance: bigint; needed: bigint }> {
  const pc = s.ctx.publicClient;
  try {
    const balance = await pc.getBalance({ address: s.payer });
    let fee: bigint;
    try {
      const f = await pc.estimateFeesPerGas();
      fee = f.maxFeePerGas ?? f.gasPrice ?? (await pc.getGasPrice());
    } catch {
      fee = await pc.getGasPrice();
    }
    const needed = OWN_OPEN_GAS * fee;
    return { ok: balance >= needed, balance, needed };
  } catch (e) {
    throw chainFailure("reading the payer's native balance and the gas price", e);
  }
}

/** Throws `spending_limit` when the offer's open fee is above `maxOpenFee` (nothing is signed). */
export function checkOpenFee(fee: bigint, tl: TokenLimits): void {
  if (fee > tl.maxOpenFee) {
    throw new ClientError("spending_limit", `the provider's open fee ${fee} is above maxOpenFee ${tl.maxOpenFee} (atomic units)`, {
      details: "Nothing was signed. Raise limits.maxOpenFee (CLI: --max-open-fee), or fund the payer with gas to open the channel itself.",
    });
  }
}

/**
 * How to open a channel for `terms` under the policy (`gaslessOpen`) and the payer's gas; throws `insufficient_gas`,
 * `gasless_unavailable` or `spending_limit` (the fee) before anything is signed.
 */
export async function chooseOpen(s: ClientSession, terms: ChannelRequirements, tl: TokenLimits): Promise<OpenWay> {
  const mode = gaslessMode(s);
  const offered = terms.extra.open;
  if (mode === "always") {
    if (!offered) {
      throw new ClientError("gasless_unavailable", `the provider at ${terms.payTo} does not open channels (no extra.open in its offer) and gaslessOpen is "always"`, {
        details: "Set gaslessOpen to auto (CLI: --gasless auto) to let the payer open and pay the gas itself.",
      });
    }
    checkOpenFee(offered.fee, tl);
    return { gasless: true, fee: offered.fee, reason: "always" };
  }
  const gas = await payerHasGas(s);
  if (gas.ok) return { gasless: false };
  const why = `the payer ${s.payer} holds ${gas.balance} wei, below the ${gas.needed} wei an own open may cost (${OWN_OPEN_GAS} gas at the current fee)`;
  if (mode === "never") {
    throw new ClientError("insufficient_gas", `cannot open a channel: ${why}, and gaslessOpen is "never"`, {
      details: "Fund the payer with the chain's native coin, or allow gasless opens (gaslessOpen auto; CLI: --gasless auto).",
    });
  }
  if (!offered) {
    throw new ClientError("insufficient_gas", `cannot open a channel: ${why}, and the provider does not open channels (no extra.open)`, {
      details: "Fund the payer with the chain's native coin.",
    });
  }
  checkOpenFee(offered.fee, tl);
  return { gasless: true, fee: offered.fee, reason: "no_gas" };
}

/** The gasless opens of one client: signing, carrying, confirming, refusals, and the replacement of exhausted channels. */
export class GaslessOpens {
  constructor(
    private readonly s: ClientSession,
    private readonly book: ChannelBook,
  ) {}

  /**
   * Creates the record of a gasless open (synchronously, right after the caps admitted it), signs its authorization
   * with the payer's wallet, and makes it durable before returning: nothing has been sent yet.
   */
  async open(p: GaslessOpenRequest, way: { fee: bigint; reason: "no_gas" | "always" }): Promise<ChannelRecord> {
    const s = this.s;
    const salt = `0x${randomBytes(32).toString("hex")}` as Hex;
    const id = computeChannelId({ chainId: s.chainId, escrow: p.escrow, payer: s.payer, payee: p.payee, token: p.token, signer: s.signerAddress, salt });
    const ch: ChannelRecord = {
      id,
      chainId: s.chainId,
      escrow: p.escrow,
      payer: s.payer,
      payee: p.payee,
      token: p.token,
      signer: s.signerAddress,
      salt,
      closeDelay: p.closeDelay,
      deposit: 0n,
      settled: 0n,
      openAmount: p.amount,
      signed: 0n,
      accepted: 0n,
      spent: 0n,
      status: "opening",
      origin: p.origin,
      openedBy: "provider",
      openFee: way.fee,
      openedAt: Date.now(),
    };
    s.state.channels[id] = ch; // counted by the caps from now on (nothing awaited since they admitted it)
    try {
      await requireBalance(s.ctx, p.token, p.amount); // the provider would refuse it (insufficient_balance): sign nothing
      s.emit({ type: "gasless_open_signing", channelId: id, payee: p.payee, token: p.token, deposit: p.amount, fee: way.fee, reason: way.reason });
      ch.openAuthorization = await this.sign(ch);
    } catch (e) {
      delete s.state.channels[id];
      throw e;
    }
    await s.persister.flush(); // durable before any request carries it
    this.book.flagsOf(ch).pendingOpen = true;
    return ch;
  }

  /** Signs (again) the authorization of `ch`'s gasless open: same channel, same nonce, a window from now. */
  private async sign(ch: ChannelRecord): Promise<OpenAuthorization> {
    const s = this.s;
    const domain = await s.domains.domainOf(s.chainId, ch.token);
    const now = BigInt(Math.max(Math.floor(Date.now() / 1000), await chainTime(s.ctx)));
    const unsigned = {
      method: OPEN_METHOD,
      payer: s.payer,
      payee: ch.payee,
      token: ch.token,
      signer: ch.signer,
      amount: ch.openAmount,
      closeDelay: ch.closeDelay,
      salt: ch.salt!,
      validAfter: 0n,
      validBefore: now + OPEN_AUTHORIZATION_SECONDS,
    };
    let signature: Hex;
    try {
      signature = await s.ctx.walletClient.signTypedData({ account: s.ctx.account, ...openTypedData(unsigned, { chainId: s.chainId, escrow: ch.escrow, domain }) });
    } catch (e) {
      throw new ClientError("chain_failure", `signing the open authorization failed: ${shortMessageOf(e)}`, { cause: e });
    }
    const a: OpenAuthorization = { ...unsigned, signature };
    if (openChannelId(a, s.chainId, ch.escrow).toLowerCase() !== ch.id.toLowerCase()) throw new Error("internal: the open authorization names another channel");
    return a;
  }

  /** Before a call carries `ch`'s pending open: re-signs its window when refused or about to run out. */
  async refresh(ch: ChannelRecord): Promise<void> {
    const f = this.book.flagsOf(ch);
    const a = ch.openAuthorization;
    if (ch.status !== "opening" || !a) return;
    if (!f.resign && a.validBefore > BigInt(Math.floor(Date.now() / 1000)) + RESIGN_MARGIN_SECONDS) return;
    ch.openAuthorization = await this.sign(ch);
    f.resign = false;
    await this.s.persister.flush();
  }

  /**
   * A stored gasless open still "opening", considered for `terms` by the selector: the chain shows the channel → it is
   * an ordinary channel now; otherwise it is carried again (same authorization) while the provider offers gasless
   * opens and the policy allows them; an authorization past its window that is not carried any more is given up.
   */
  async reconsider(ch: ChannelRecord, terms: ChannelRequirements): Promise<void> {
    const oc = await readChannel(this.s.ctx, ch.escrow, ch.id, ch.signer);
    const f = this.book.flagsOf(ch);
    if (oc && oc.payer.toLowerCase() === ch.payer.toLowerCase()) {
      this.book.applyOnchain(ch, oc);
      f.verified = true;
      f.pendingOpen = false;
      this.s.persister.schedule();
      if (!ch.openTx) this.findOpenTx(ch).catch(() => undefined);
      return;
    }
    if (terms.extra.open && gaslessMode(this.s) !== "never") {
      f.pendingOpen = true;
      return;
    }
    if (ch.openAuthorization && ch.openAuthorization.validBefore < BigInt(await chainTime(this.s.ctx))) {
      ch.status = "missing"; // never opened, and its authorization can no longer be redeemed
      this.s.persister.schedule();
    }
  }

  /**
   * A paid call carrying `ch`'s open was served: the provider opened the channel. Marks it open with the authorized
   * deposit, counts the open and its fee, and looks up the open transaction in the background.
   */
  confirm(ch: ChannelRecord): void {
    if (ch.status !== "opening") return;
    const s = this.s;
    const f = this.book.flagsOf(ch);
    ch.status = "open";
    ch.deposit = ch.openAuthorization?.amount ?? ch.openAmount;
    f.verified = true;
    f.pendingOpen = false;
    const fee = ch.openFee ?? 0n;
    s.stats.channelsOpened++;
    s.stats.gaslessOpens++;
    const k = ch.token.toLowerCase();
    s.stats.openFees[k] = (s.stats.openFees[k] ?? 0n) + fee;
    s.persister.schedule();
    s.emit({ type: "channel_opened_by_provider", channelId: ch.id, deposit: ch.deposit, fee });
    this.findOpenTx(ch).catch(() => undefined);
    this.closeIdleReplaced(ch);
  }

  /** Reads the transaction that opened `ch` from its `ChannelOpened` event (the receipt never names it, § 5.5). */
  async findOpenTx(ch: ChannelRecord): Promise<Hex | undefined> {
    if (ch.openTx) return ch.openTx;
    const logs = await this.s.ctx.publicClient.getContractEvents({
      address: ch.escrow,
      abi: channelEscrowAbi,
      eventName: "ChannelOpened",
      args: { channelId: ch.id },
      fromBlock: 0n,
      toBlock: "latest",
    });
    const hash = logs[0]?.transactionHash ?? undefined;
    if (hash) {
      ch.openTx = hash;
      this.s.persister.schedule();
    }
    return hash;
  }

  /**
   * A paid call carrying `ch`'s open was refused with `code` (the 402 `challenge`). When the chain shows the channel, the open happened
   * (the answer was lost or the provider saw it first): it is an ordinary channel and the call may be retried with a
   * fresh voucher. Otherwise: whether a retry may pass (a new window, new terms, a fresh voucher, or, after
   * `open_unsupported`, another way to open); false means the open was refused (`open_refused`).
   */
  async onRefused(ch: ChannelRecord, code: string, challenge: PaymentRequired): Promise<boolean> {
    const f = this.book.flagsOf(ch);
    const oc = await readChannel(this.s.ctx, ch.escrow, ch.id, ch.signer).catch(() => undefined);
    if (oc && oc.payer.toLowerCase() === ch.payer.toLowerCase()) {
      this.book.applyOnchain(ch, oc);
      f.verified = true;
      f.pendingOpen = false;
      const hint = challenge.accepts.map((a) => a.extra.channel).find((c) => c && c.channelId.toLowerCase() === ch.id.toLowerCase());
      if (hint) await applyHint(this.s, this.book, ch, hint).catch(() => undefined);
      this.s.persister.schedule();
      return code !== "invalid_signature" && code !== "invalid_payload" && code !== "open_channel_mismatch";
    }
    switch (code) {
      case "authorization_expired":
      case "authorization_not_yet_valid":
        f.resign = true;
        return true;
      case "payment_required":
      case "requirements_mismatch":
      case "voucher_reused":
      case "voucher_too_low":
      case "insufficient_voucher":
        return true;
      case "open_unsupported":
        // The provider will not open it: another way to open (own gas) or a refusal follows. The authorization stays
        // redeemable until its window ends, so the record stays "opening" (counted by the caps) until then.
        this.book.exclude(ch);
        f.pendingOpen = false;
        return true;
      default:
        return false;
    }
  }

  /**
   * Whether a channel the provider opened should be replaced by a new gasless channel rather than topped up with a
   * transaction: "always" → yes; "never" → no; "auto" → when the payer has no gas for a transaction.
   */
  async shouldReplace(ch: ChannelRecord): Promise<boolean> {
    if (ch.openedBy !== "provider") return false;
    const mode = gaslessMode(this.s);
    if (mode !== "auto") return mode === "always";
    return !(await payerHasGas(this.s)).ok;
  }

  /** Stops using `ch` for new calls; it is closed cooperatively once idle and its replacement is open. */
  replace(ch: ChannelRecord): void {
    const f = this.book.flagsOf(ch);
    if (f.replaced) return;
    f.replaced = true;
    this.book.exclude(ch);
    this.s.emit({ type: "channel_replaced", channelId: ch.id });
  }

  /** A paid call on `ch` began (counted until its answer is handled). */
  begin(ch: ChannelRecord): void {
    this.book.flagsOf(ch).inFlight++;
  }

  /** A paid call on `ch` ended: a replaced channel with nothing in flight is closed (once its replacement is open). */
  end(ch: ChannelRecord): void {
    const f = this.book.flagsOf(ch);
    f.inFlight = Math.max(0, f.inFlight - 1);
    if (f.replaced && f.inFlight === 0) this.closeIdleReplaced(ch);
  }

  /** Closes, cooperatively and in the background, the replaced channels of `ch`'s provider that are idle, once a channel for them is open. */
  private closeIdleReplaced(ch: ChannelRecord): void {
    const key = termsKey({ extra: { escrow: ch.escrow }, payTo: ch.payee, asset: ch.token });
    const cur = this.book.current.get(key);
    if (!cur || cur.status !== "open") return;
    for (const c of this.book.channels()) {
      const f = this.book.flagsOf(c);
      if (!f.replaced || f.inFlight > 0 || c.status !== "open" || c === cur) continue;
      if (termsKey({ extra: { escrow: c.escrow }, payTo: c.payee, asset: c.token }) !== key) continue;
      f.replaced = false; // once
      closeChannel(this.s, this.book, c.id, { mode: "cooperative" }).catch((error) => this.s.emit({ type: "close_failed", channelId: c.id, error }));
    }
  }
}

/** The deposit a gasless channel signs its vouchers against before it is confirmed: the authorized amount. */
export function pendingDeposit(ch: ChannelRecord): bigint {
  return ch.openAuthorization?.amount ?? ch.openAmount;
}
