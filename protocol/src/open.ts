/**
 * Gasless opens (docs/protocol.md § 5.9): the payer's first paid request carries, next to its first voucher, a signed
 * EIP-3009 `ReceiveWithAuthorization` that the provider redeems through `ChannelEscrow.openWithAuthorization`, so an
 * agent holding only the token (no native gas) can open a channel. The one definition of the payload, the offer's
 * terms, the typed data the payer signs and the check that the payload names the channel it claims.
 */
import type { Address, Hex, TypedDataDomain } from "viem";
import { formatWireAmount, parseWireAmount } from "./amounts";
import { authorizationNonce, computeChannelId, MAX_CLOSE_DELAY, MAX_DEPOSIT, MIN_CLOSE_DELAY } from "./channel";
import { address, bad, bytes32, obj, signature, str, uint, type Obj } from "./decode";
import { RECEIVE_WITH_AUTHORIZATION_TYPES } from "./token";

/** The one open method: EIP-3009 `receiveWithAuthorization`, redeemed by `openWithAuthorization`. */
export const OPEN_METHOD = "eip3009" as const;
export type OpenMethod = typeof OPEN_METHOD;

/** What a provider offering gasless opens says in its `channel` offer (`extra.open`). */
export interface OpenTerms {
  method: OpenMethod;
  /** Added to the first charge of a channel the provider opens (token atomic units; 0 = none). */
  fee: bigint;
}

/** A signed deposit carried in `PAYMENT-SIGNATURE.payload.open`: the arguments of `openWithAuthorization`. */
export interface OpenAuthorization {
  method: OpenMethod;
  payer: Address;
  payee: Address;
  token: Address;
  /** The voucher signer (session key) of the channel. */
  signer: Address;
  /** Deposit, atomic units. */
  amount: bigint;
  /** Seconds. */
  closeDelay: number;
  salt: Hex;
  /** EIP-3009 validity window, seconds (the authorization is usable when validAfter < block time < validBefore). */
  validAfter: bigint;
  validBefore: bigint;
  /** The payer's 65-byte signature of {@link openTypedData}. */
  signature: Hex;
}

/** Largest validity bound accepted (seconds; far beyond any real window, within uint64). */
const MAX_TIME = 2n ** 40n;

/** `extra.open` of an offer in its wire (JSON) form. */
export function openTermsToJson(t: OpenTerms): Record<string, unknown> {
  return { method: t.method, fee: formatWireAmount(t.fee) };
}

/** Decodes `extra.open` of an offer (strict: any other method is invalid). */
export function parseOpenTerms(v: unknown, field: string): OpenTerms {
  const o = obj(v, field);
  if (o.method !== OPEN_METHOD) bad(`${field}.method must be "${OPEN_METHOD}"`);
  return { method: OPEN_METHOD, fee: parseWireAmount(o.fee, `${field}.fee`) };
}

/** A payload's `open` in its wire (JSON) form. */
export function openAuthorizationToJson(a: OpenAuthorization): Record<string, unknown> {
  return {
    method: a.method,
    payer: a.payer,
    payee: a.payee,
    token: a.token,
    signer: a.signer,
    amount: formatWireAmount(a.amount),
    closeDelay: a.closeDelay,
    salt: a.salt,
    validAfter: a.validAfter.toString(),
    validBefore: a.validBefore.toString(),
    signature: a.signature,
  };
}

function time(v: unknown, field: string): bigint {
  const s = str(v, field, 20);
  if (!/^(0|[1-9][0-9]*)$/.test(s)) bad(`${field} must be a decimal string of seconds`);
  const t = BigInt(s);
  if (t > MAX_TIME) bad(`${field} is out of range`);
  return t;
}

/**
 * Decodes `payload.open` (strict). Shape only: the deposit and close delay are checked against the contract's
 * bounds here, everything that depends on the provider (its minimums, payee, token, chain state) by the provider.
 */
export function parseOpenAuthorization(v: unknown, field = "payload.open"): OpenAuthorization {
  const o: Obj = obj(v, field);
  if (o.method !== OPEN_METHOD) bad(`${field}.method must be "${OPEN_METHOD}"`);
  const amount = parseWireAmount(o.amount, `${field}.amount`);
  if (amount === 0n || amount > MAX_DEPOSIT) bad(`${field}.amount must be from 1 to ${MAX_DEPOSIT}`);
  const closeDelay = uint(o.closeDelay, `${field}.closeDelay`, MAX_CLOSE_DELAY);
  if (closeDelay < MIN_CLOSE_DELAY) bad(`${field}.closeDelay must be at least ${MIN_CLOSE_DELAY}`);
  const validAfter = time(o.validAfter, `${field}.validAfter`);
  const validBefore = time(o.validBefore, `${field}.validBefore`);
  if (validBefore <= validAfter) bad(`${field}.validBefore must be after validAfter`);
  return {
    method: OPEN_METHOD,
    payer: address(o.payer, `${field}.payer`),
    payee: address(o.payee, `${field}.payee`),
    token: address(o.token, `${field}.token`),
    signer: address(o.signer, `${field}.signer`),
    amount,
    closeDelay,
    salt: bytes32(o.salt, `${field}.salt`),
    validAfter,
    validBefore,
    signature: signature(o.signature, `${field}.signature`),
  };
}

/** The channel an open authorization creates (payer from the authorization, so the signer is never the zero address's stand-in). */
export function openChannelId(a: OpenAuthorization, chainId: number, escrow: Address): Hex {
  return computeChannelId({ chainId, escrow, payer: a.payer, payee: a.payee, token: a.token, signer: a.signer, salt: a.salt });
}

/** The token's EIP-712 domain (from its `eip712Domain()`), which the authorization is signed under. */
export interface TokenDomain {
  name: string;
  version: string;
}

/**
 * The EIP-712 typed data the payer signs for a gasless open: `ReceiveWithAuthorization(from = payer, to = escrow,
 * value = amount, validAfter, validBefore, nonce = authorizationNonce(channelId, closeDelay))` under the token's domain.
 * The nonce binds the signature to this one channel and close delay (§ 2.4 `openWithAuthorization`).
 */
export function openTypedData(a: Omit<OpenAuthorization, "signature">, ctx: { chainId: number; escrow: Address; domain: TokenDomain }) {
  const channelId = openChannelId(a as OpenAuthorization, ctx.chainId, ctx.escrow);
  const domain: TypedDataDomain = { name: ctx.domain.name, version: ctx.domain.version, chainId: ctx.chainId, verifyingContract: a.token };
  return {
    domain,
    types: RECEIVE_WITH_AUTHORIZATION_TYPES,
    primaryType: "ReceiveWithAuthorization" as const,
    message: {
      from: a.payer,
      to: ctx.escrow,
      value: a.amount,
      validAfter: a.validAfter,
      validBefore: a.validBefore,
      nonce: authorizationNonce(channelId, a.closeDelay),
    },
  };
}
