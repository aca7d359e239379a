/**
 * A reference model of ChannelEscrow for the model-based test: plain TypeScript, written from the interface's
 * NatSpec and docs/protocol.md, not from the Solidity. Each operation returns what the contract must do (a revert
 * with its custom error and arguments, or the escrow events and token transfers it emits) and updates the
 * model's channels, operators, token balances and ledger exactly as the chain should.
 */
import { getAddress, type Address, type Hex } from "viem";
import { computeChannelId, MAX_CLOSE_DELAY, MAX_DEPOSIT, MIN_CLOSE_DELAY, type EscrowChannel } from "@paychan/protocol";
import { SKIP } from "./escrow-tx";

/** The model's view of a channel: what `getChannel` returns, plus its id. */
export interface ModelChannel extends EscrowChannel {
  id: Hex;
}

/** An escrow event as [name, args], as the test decodes them from a receipt. */
export type ModelEvent = readonly [string, Record<string, unknown>];
export interface ModelTransfer {
  token: Address;
  from: Address;
  to: Address;
  value: bigint;
}
export type Outcome =
  | { ok: true; events: ModelEvent[]; transfers: ModelTransfer[] }
  | { ok: false; error: string; args: readonly unknown[] };

/** One settle item as the model sees it: `signatureValid` means signed by the channel's signer for (id, cumulativeAmount). */
export interface ModelSettleItem {
  channelId: Hex;
  cumulativeAmount: bigint;
  amount: bigint;
  signatureValid: boolean;
}

const fail = (error: string, ...args: unknown[]): Outcome => ({ ok: false, error, args });

/**
 * The channel `id` named with `signer` (every function after `open` names a channel by id and signer), or the
 * revert: UnknownChannel for an unknown id, SignerMismatch when `signer` is not the channel's signer.
 */
function named(channels: ReadonlyMap<Hex, ModelChannel>, id: Hex, signer: Address): ModelChannel | Outcome {
  const ch = channels.get(id);
  if (!ch) return fail("UnknownChannel", id);
  if (getAddress(signer) !== ch.signer) return fail("SignerMismatch", id, getAddress(signer));
  return ch;
}
const isOutcome = (x: ModelChannel | Outcome): x is Outcome => "ok" in x;

export class EscrowModel {
  readonly channels = new Map<Hex, ModelChannel>();
  private readonly operators = new Set<string>();
  private readonly balances = new Map<string, bigint>();
  /** Per token: Σ deposits, Σ refunds, Σ payouts. */
  readonly ledger = new Map<Address, { deposits: bigint; refunds: bigint; payouts: bigint }>();

  constructor(
    readonly chainId: number,
    readonly escrow: Address,
    tokens: readonly Address[],
    initialBalances: ReadonlyMap<string, bigint>,
  ) {
    for (const t of tokens) this.ledger.set(t, { deposits: 0n, refunds: 0n, payouts: 0n });
    for (const [k, v] of initialBalances) this.balances.set(k, v);
  }

  static balanceKey(token: Address, holder: Address): string {
    return `${getAddress(token)}|${getAddress(holder)}`;
  }

  balanceOf(token: Address, holder: Address): bigint {
    return this.balances.get(EscrowModel.balanceKey(token, holder)) ?? 0n;
  }

  isOperator(payee: Address, operator: Address): boolean {
    return this.operators.has(`${getAddress(payee)}|${getAddress(operator)}`);
  }

  private move(token: Address, from: Address, to: Address, value: bigint): ModelTransfer {
    const kf = EscrowModel.balanceKey(token, from);
    const kt = EscrowModel.balanceKey(token, to);
    const bf = this.balances.get(kf) ?? 0n;
    if (bf < value) throw new Error(`model: ${from} lacks ${value} of ${token}`);
    this.balances.set(kf, bf - value);
    this.balances.set(kt, (this.balances.get(kt) ?? 0n) + value);
    return { token: getAddress(token), from: getAddress(from), to: getAddress(to), value };
  }

  open(p: { payer: Address; payee: Address; token: Address; signer: Address; amount: bigint; closeDelay: number; salt: Hex }): Outcome {
    if (p.amount === 0n) return fail("ZeroAmount");
    if (p.amount > MAX_DEPOSIT) return fail("DepositTooLarge", p.amount, MAX_DEPOSIT);
    if (p.closeDelay < MIN_CLOSE_DELAY || p.closeDelay > MAX_CLOSE_DELAY) {
      return fail("CloseDelayOutOfRange", p.closeDelay, MIN_CLOSE_DELAY, MAX_CLOSE_DELAY);
    }
    const signer = getAddress(BigInt(p.signer) === 0n ? p.payer : p.signer);
    const id = computeChannelId({ chainId: this.chainId, escrow: this.escrow, payer: p.payer, payee: p.payee, token: p.token, signer, salt: p.salt });
    if (this.channels.has(id)) return fail("ChannelExists", id);
    const ch: ModelChannel = {
      id, payer: getAddress(p.payer), payee: getAddress(p.payee), token: getAddress(p.token), signer,
      deposit: p.amount, settled: 0n, closeRequestedAt: 0n, closeDelay: p.closeDelay, finalized: false,
    };
    this.channels.set(id, ch);
    this.ledger.get(ch.token)!.deposits += p.amount;
    const t = this.move(ch.token, ch.payer, this.escrow, p.amount);
    return {
      ok: true,
      events: [["ChannelOpened", { channelId: id, payer: ch.payer, payee: ch.payee, token: ch.token, signer, deposit: p.amount, closeDelay: p.closeDelay }]],
      transfers: [t],
    };
  }

  /** What `getChannel(id, signer)` returns: the channel, all zeroes when unknown, or the signer-mismatch answer. */
  getChannel(id: Hex, signer: Address): EscrowChannel {
    const zero = "0x0000000000000000000000000000000000000000" as Address;
    const ch = this.channels.get(id);
    if (!ch) return { payer: zero, payee: zero, token: zero, signer: zero, deposit: 0n, settled: 0n, closeRequestedAt: 0n, closeDelay: 0, finalized: false };
    const { id: _id, ...c } = ch;
    if (getAddress(signer) !== ch.signer) return { ...c, signer: zero, deposit: 0n, settled: 0n, finalized: false };
    return c;
  }

  topUp(caller: Address, id: Hex, signer: Address, amount: bigint): Outcome {
    if (amount === 0n) return fail("ZeroAmount");
    const ch = named(this.channels, id, signer);
    if (isOutcome(ch)) return ch;
    if (getAddress(caller) !== ch.payer) return fail("NotPayer", id, getAddress(caller));
    if (ch.finalized) return fail("ChannelFinalized", id);
    const deposit = ch.deposit + amount;
    if (deposit > MAX_DEPOSIT) return fail("DepositTooLarge", deposit, MAX_DEPOSIT);
    ch.deposit = deposit;
    ch.closeRequestedAt = 0n;
    this.ledger.get(ch.token)!.deposits += amount;
    const t = this.move(ch.token, ch.payer, this.escrow, amount);
    return { ok: true, events: [["ChannelToppedUp", { channelId: id, amount, deposit }]], transfers: [t] };
  }

  settle(caller: Address, payee: Address, token: Address, items: readonly ModelSettleItem[]): Outcome {
    payee = getAddress(payee);
    token = getAddress(token);
    if (getAddress(caller) !== payee && !this.isOperator(payee, caller)) return fail("NotPayeeOrOperator", payee, getAddress(caller));
    if (items.length === 0) return fail("MalformedSettleItems", 0n);
    const events: ModelEvent[] = [];
    let total = 0n;
    for (const it of items) {
      const ch = this.channels.get(it.channelId);
      let reason: number | undefined;
      if (!ch) reason = SKIP.UnknownChannel;
      else if (ch.payee !== payee) reason = SKIP.PayeeMismatch;
      else if (ch.token !== token) reason = SKIP.TokenMismatch;
      else if (!it.signatureValid) reason = SKIP.InvalidSignature;
      else if (ch.finalized) reason = SKIP.Finalized;
      else if (it.amount <= ch.settled) reason = SKIP.AmountNotAboveSettled;
      else if (it.amount > it.cumulativeAmount) reason = SKIP.AmountAboveVoucher;
      else if (it.amount > ch.deposit) reason = SKIP.AmountAboveDeposit;
      if (reason !== undefined || !ch) {
        events.push(["SettleSkipped", { channelId: it.channelId, reason }]);
        continue;
      }
      total += it.amount - ch.settled;
      ch.settled = it.amount;
      events.push(["Settled", { channelId: it.channelId, amount: it.amount }]);
    }
    const transfers: ModelTransfer[] = [];
    if (total !== 0n) {
      this.ledger.get(token)!.payouts += total;
      transfers.push(this.move(token, this.escrow, payee, total));
    }
    return { ok: true, events, transfers };
  }

  requestClose(caller: Address, id: Hex, signer: Address, timestamp: bigint): Outcome {
    const ch = named(this.channels, id, signer);
    if (isOutcome(ch)) return ch;
    caller = getAddress(caller);
    if (caller !== ch.payer && caller !== ch.signer) return fail("NotPayerOrSigner", id, caller);
    if (ch.finalized) return fail("ChannelFinalized", id);
    if (ch.closeRequestedAt !== 0n) return fail("CloseAlreadyRequested", id, ch.closeRequestedAt + BigInt(ch.closeDelay));
    ch.closeRequestedAt = timestamp;
    return { ok: true, events: [["CloseRequested", { channelId: id, closesAt: timestamp + BigInt(ch.closeDelay) }]], transfers: [] };
  }

  withdraw(id: Hex, signer: Address, timestamp: bigint): Outcome {
    const ch = named(this.channels, id, signer);
    if (isOutcome(ch)) return ch;
    if (ch.finalized) return fail("ChannelFinalized", id);
    if (ch.closeRequestedAt === 0n) return fail("CloseNotRequested", id);
    const closesAt = ch.closeRequestedAt + BigInt(ch.closeDelay);
    if (timestamp < closesAt) return fail("CloseDelayNotElapsed", id, closesAt, timestamp);
    const refund = ch.deposit - ch.settled;
    ch.finalized = true;
    const transfers: ModelTransfer[] = [];
    if (refund !== 0n) {
      this.ledger.get(ch.token)!.refunds += refund;
      transfers.push(this.move(ch.token, this.escrow, ch.payer, refund));
    }
    return { ok: true, events: [["Withdrawn", { channelId: id, refund }]], transfers };
  }

  /**
   * `consentValid`: the close request signature is a `CloseRequest(id)` by the channel's signer or payer. An operator's
   * close that refunds anything needs it, or a close pending on chain; the payee's own close never does.
   */
  close(caller: Address, id: Hex, signer: Address, cumulativeAmount: bigint, amount: bigint, signatureValid: boolean, consentValid = false): Outcome {
    const ch = named(this.channels, id, signer);
    if (isOutcome(ch)) return ch;
    caller = getAddress(caller);
    if (caller !== ch.payee && !this.isOperator(ch.payee, caller)) return fail("NotPayeeOrOperator", ch.payee, caller);
    if (ch.finalized) return fail("ChannelFinalized", id);
    let payout = 0n;
    let settled = ch.settled;
    if (amount > ch.settled) {
      if (amount > cumulativeAmount) return fail("AmountAboveVoucher", id, amount, cumulativeAmount);
      if (amount > ch.deposit) return fail("AmountAboveDeposit", id, amount, ch.deposit);
      if (!signatureValid) return fail("InvalidSignature", id);
      payout = amount - ch.settled;
      settled = amount;
    }
    const refund = ch.deposit - settled;
    if (refund !== 0n && caller !== ch.payee && ch.closeRequestedAt === 0n && !consentValid) return fail("CloseNotConsented", id, caller);
    ch.settled = settled;
    ch.finalized = true;
    const events: ModelEvent[] = [];
    if (payout !== 0n) events.push(["Settled", { channelId: id, amount: ch.settled }]);
    events.push(["Closed", { channelId: id, settled: ch.settled, refund }]);
    const transfers: ModelTransfer[] = [];
    const l = this.ledger.get(ch.token)!;
    if (payout !== 0n) {
      l.payouts += payout;
      transfers.push(this.move(ch.token, this.escrow, ch.payee, payout));
    }
    if (refund !== 0n) {
      l.refunds += refund;
      transfers.push(this.move(ch.token, this.escrow, ch.payer, refund));
    }
    return { ok: true, events, transfers };
  }

  setOperator(payee: Address, operator: Address, approved: boolean): Outcome {
    const key = `${getAddress(payee)}|${getAddress(operator)}`;
    if (approved) this.operators.add(key);
    else this.operators.delete(key);
    return { ok: true, events: [["OperatorSet", { payee: getAddress(payee), operator: getAddress(operator), approved }]], transfers: [] };
  }
}
