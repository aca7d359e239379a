/**
 * Opening channels: for a 402's terms (deposit and close delay from the policy and limits), or as the owner asks
 * (`ChannelClient.openChannel`). The record is made durable before the transaction is sent, so a crash while it is
 * in flight still knows the channel; when the transaction fails, the chain says whether it landed anyway.
 */
import { getAddress, type Address, type Hex } from "viem";
import { randomBytes } from "node:crypto";
import { MAX_CLOSE_DELAY, MIN_CLOSE_DELAY, computeChannelId, type ChannelRequirements } from "@paychan/protocol";
import { readChannel } from "../chain";
import { ClientError } from "../errors";
import { checkTrust, toAtomic, type Amount } from "../limits";
import type { ClientSession } from "../session";
import { assertAllowed, assertEscrow, closeDelayFor, depositFor, signedTotal } from "../spending";
import type { ChannelRecord } from "../store";
import { openChannelTx } from "../transactions";
import { providerChannels } from "../provider-guard";
import type { ChannelBook } from "./book";
import { chooseOpen, type GaslessOpens } from "./gasless";

/** The exact parameters of a channel to open (checked against the contract's bounds, not against the limits). */
export interface OpenRequest {
  escrow: Address;
  payee: Address;
  token: Address;
  /** Deposit in atomic units. */
  amount: bigint;
  /** Seconds. */
  closeDelay: number;
  /** The provider's origin (for the cooperative close). */
  origin?: string;
}

/** What the owner asks `ChannelClient.openChannel` for. */
export interface OpenChannelParams {
  payee: Address;
  /** Atomic units, or token units as a string. */
  amount: Amount;
  escrow: Address;
  token: Address;
  /** Seconds. Default: the policy's close delay, at least one day. */
  closeDelay?: number;
  origin?: string;
}

/** Opens a channel with exactly these parameters, with the session key as signer and a random salt. */
export async function openChannel(s: ClientSession, book: ChannelBook, p: OpenRequest): Promise<ChannelRecord> {
  if (p.amount <= 0n) throw new ClientError("invalid_argument", "the deposit must be positive");
  if (!Number.isInteger(p.closeDelay) || p.closeDelay < MIN_CLOSE_DELAY || p.closeDelay > MAX_CLOSE_DELAY) {
    throw new ClientError("invalid_argument", `the close delay must be ${MIN_CLOSE_DELAY} to ${MAX_CLOSE_DELAY} seconds`);
  }
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
    openedAt: Date.now(),
  };
  // Durable before the transaction: a crash after it still knows the channel.
  s.state.channels[id] = ch;
  await s.persister.flush();
  try {
    const r = await openChannelTx(s.ctx, { ...p, signer: s.signerAddress, salt, permit: s.policy.permit ?? "auto" });
    ch.status = "open";
    ch.deposit = p.amount;
    ch.openTx = r.receipt.transactionHash;
    book.flagsOf(ch).verified = true;
    s.stats.channelsOpened++;
    s.persister.schedule();
    s.emit({ type: "channel_opened", channelId: id, deposit: p.amount, method: r.method, txHash: r.receipt.transactionHash });
    return ch;
  } catch (e) {
    // The transaction may or may not have landed: ask the chain.
    const oc = await readChannel(s.ctx, p.escrow, id, ch.signer).catch(() => undefined);
    if (oc) {
      book.applyOnchain(ch, oc);
      book.flagsOf(ch).verified = true;
      s.persister.schedule();
      return ch;
    }
    if (oc === null) delete s.state.channels[id];
    else ch.status = "missing";
    s.persister.schedule();
    throw e;
  }
}

/**
 * Opens a channel for a 402's terms: deposit and close delay from the policy, within the limits and `maxSpend`; by the
 * payer's own transaction, or gaslessly by the provider (channels/gasless.ts: `policy.gaslessOpen`, the payer's gas,
 * the offer's `extra.open`, its fee within `maxOpenFee` and `maxSpend`). A gasless open returns the record "opening":
 * the first paid call carries it.
 */
export async function openChannelFor(
  s: ClientSession,
  book: ChannelBook,
  gasless: GaslessOpens,
  terms: ChannelRequirements,
  origin: string,
): Promise<ChannelRecord> {
  const tl = await assertAllowed(s, terms);
  const amount = await depositFor(s, terms, tl);
  const closeDelay = closeDelayFor(s, terms);
  const way = await chooseOpen(s, terms, tl);
  const first = terms.amount + (way.gasless ? way.fee : 0n);
  if (tl.maxSpend !== undefined && signedTotal(s, terms.asset) + first > tl.maxSpend) {
    throw new ClientError("spending_limit", `the total signed would go above maxSpend ${tl.maxSpend}${way.gasless ? ` (the first call pays the open fee ${way.fee})` : ""}`);
  }
  if (way.gasless && first > amount) throw new ClientError("spending_limit", `the deposit ${amount} does not cover the first call's price and open fee (${first})`);
  if (way.gasless && first > tl.maxUnserved) {
    throw new ClientError("spending_limit", `the first call's price and open fee (${first}) are above maxUnservedPerChannel ${tl.maxUnserved}`);
  }
  // Closing channels of this provider may have been finalized since: re-read them, so they stop counting in the caps.
  for (const c of providerChannels(book.channels(), origin, terms.payTo)) {
    if (c.status === "closing") await book.verify(c, true).catch(() => undefined);
  }
  // The per-provider caps and the streak rule; nothing awaited between this check and the record's creation.
  s.guard.admitOpen(origin, terms.payTo, amount, tl, book.channels());
  const req: OpenRequest = {
    escrow: getAddress(terms.extra.escrow),
    payee: getAddress(terms.payTo),
    token: getAddress(terms.asset),
    amount,
    closeDelay,
    origin,
  };
  return way.gasless ? gasless.open(req, way) : openChannel(s, book, req);
}

/** Opens the channel the owner asks for (`channel open`), after the allow-lists. */
export async function openRequestedChannel(s: ClientSession, book: ChannelBook, p: OpenChannelParams): Promise<ChannelRecord> {
  const probe = { extra: { escrow: p.escrow }, payTo: p.payee, asset: p.token, network: `eip155:${s.chainId}` };
  checkTrust(probe as unknown as ChannelRequirements, s.limits, s.chainId);
  await assertEscrow(s, p.escrow);
  const amount = toAtomic(p.amount, await s.tokens.decimalsOf(p.token), "amount");
  return openChannel(s, book, {
    escrow: getAddress(p.escrow),
    payee: getAddress(p.payee),
    token: getAddress(p.token),
    amount,
    closeDelay: p.closeDelay ?? Math.max(s.policy.closeDelay ?? 0, 86_400),
    origin: p.origin,
  });
}
