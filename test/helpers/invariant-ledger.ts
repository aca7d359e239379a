/**
 * Money accounting of the ChannelEscrow invariant fuzz, built only from the logs of the transactions the test sent
 * (no model of the contract): every ERC-20 `Transfer` of the fuzzed tokens, and the escrow's `PaymentDeferred` and
 * `Collected` events. From them it keeps, per token:
 * - every watched account's balance (initial balance + transfers in − transfers out), to compare with the chain, which
 *   proves the logs complete;
 * - what each party (payer or payee) received from the escrow: transfers from the escrow to it, plus what it
 *   collected to another address, minus what another party collected to it;
 * - what the escrow owes each account: Σ PaymentDeferred − Σ Collected.
 * It reports, instead of throwing, what no correct escrow can do: pay an address that is no party without a
 * `Collected` naming it, defer a payment to an account that is no party, or let an account collect more than it
 * was owed.
 */
import type { Address } from "viem";

export interface TransferLog {
  token: Address;
  from: Address;
  to: Address;
  value: bigint;
}
export interface DeferredLog {
  token: Address;
  account: Address;
  amount: bigint;
}
export interface CollectedLog {
  token: Address;
  account: Address;
  to: Address;
  amount: bigint;
}

const k = (token: Address, account: Address) => `${token}|${account}`;

export class MoneyLedger {
  private readonly balances = new Map<string, bigint>();
  private readonly receivedBy = new Map<string, bigint>();
  private readonly owedTo = new Map<string, bigint>();

  /**
   * @param escrow the escrow's address
   * @param parties the accounts the escrow may pay or owe (payers and payees), checksummed
   * @param initial balances at the start of the sequence, keyed by {@link MoneyLedger.key}
   */
  constructor(
    private readonly escrow: Address,
    private readonly parties: ReadonlySet<Address>,
    initial: ReadonlyMap<string, bigint>,
  ) {
    for (const [key, v] of initial) this.balances.set(key, v);
  }

  static key(token: Address, account: Address): string {
    return k(token, account);
  }

  /** The logged balance of a watched account. */
  balance(token: Address, account: Address): bigint {
    return this.balances.get(k(token, account)) ?? 0n;
  }

  /** What `party` received from the escrow in `token` (payouts or refunds, collected or not to itself). */
  received(token: Address, party: Address): bigint {
    return this.receivedBy.get(k(token, party)) ?? 0n;
  }

  /** Σ PaymentDeferred − Σ Collected for `account`. */
  owed(token: Address, account: Address): bigint {
    return this.owedTo.get(k(token, account)) ?? 0n;
  }

  /** Accounts one transaction's logs; returns the problems found (empty when none). */
  apply(transfers: readonly TransferLog[], deferred: readonly DeferredLog[], collected: readonly CollectedLog[]): string[] {
    const problems: string[] = [];
    const add = (m: Map<string, bigint>, key: string, v: bigint) => m.set(key, (m.get(key) ?? 0n) + v);
    for (const d of deferred) {
      if (!this.parties.has(d.account)) problems.push(`PaymentDeferred to ${d.account}, which is no payer or payee`);
      add(this.owedTo, k(d.token, d.account), d.amount);
    }
    const unmatched = [...collected];
    for (const c of collected) {
      if (this.owed(c.token, c.account) < c.amount) {
        problems.push(`${c.account} collected ${c.amount} but was owed ${this.owed(c.token, c.account)} (from the logs)`);
      }
      add(this.owedTo, k(c.token, c.account), -c.amount);
    }
    for (const t of transfers) {
      add(this.balances, k(t.token, t.from), -t.value);
      add(this.balances, k(t.token, t.to), t.value);
      if (t.from !== this.escrow) continue;
      // A transfer out of the escrow is a collect (attributed to the collecting account) or a payout/refund.
      const i = unmatched.findIndex((c) => c.token === t.token && c.to === t.to && c.amount === t.value);
      let beneficiary = t.to;
      if (i >= 0) {
        beneficiary = unmatched[i].account;
        unmatched.splice(i, 1);
      }
      if (!this.parties.has(beneficiary)) {
        problems.push(`the escrow sent ${t.value} to ${t.to}, which is no payer or payee and no collect's recipient`);
      }
      add(this.receivedBy, k(t.token, beneficiary), t.value);
    }
    for (const c of unmatched) problems.push(`Collected ${c.amount} by ${c.account} to ${c.to} without a matching transfer`);
    return problems;
  }
}
