/**
 * What the client remembers between runs, and the pluggable store interface that keeps it.
 * Everything a store holds is plain JSON (amounts as decimal strings), so any key-value backend can implement it;
 * {@link MemoryStore} is the in-process one and `FileStore` (file-store.ts) the default on disk.
 */
import type { Address, Hex } from "viem";
import {
  formatWireAmount,
  openAuthorizationToJson,
  parseOpenAuthorization,
  parsePaymentResponse,
  parseRequirements,
  parseWireAmount,
  paymentResponseToJson,
  requirementsToJson as protocolRequirementsToJson,
  type ChannelRequirements,
  type OpenAuthorization,
  type PaymentResponse,
} from "@paychan/protocol";
import { ClientError } from "./errors";

/** Where a channel is in its life, as this client knows it. */
export type ChannelRecordStatus =
  | "opening" // the open transaction was (or is about to be) sent
  | "open"
  | "closing" // a close was requested (on chain, or cooperatively from the provider)
  | "finalized" // withdrawn or closed: never usable again
  | "missing"; // not found on chain (e.g. a local chain that was reset)

/** One channel this client opened (or recovered from the chain), with the amounts it signed. */
export interface ChannelRecord {
  id: Hex;
  chainId: number;
  escrow: Address;
  payer: Address;
  payee: Address;
  token: Address;
  /** The session key that signs this channel's vouchers. */
  signer: Address;
  /** The salt of `open`; unknown for a channel recovered from chain events. */
  salt?: Hex;
  closeDelay: number;
  /** On-chain deposit as last read or set by our own transaction. Signing never goes above it. */
  deposit: bigint;
  /** On-chain settled amount as last read. */
  settled: bigint;
  /** The deposit of the opening transaction (sizes automatic top-ups). */
  openAmount: bigint;
  /** Highest cumulative amount this client ever signed for the channel. */
  signed: bigint;
  /**
   * The highest voucher of a call the provider served (answered below 500, not 402): `signed − served` is what was
   * signed and not served (bounded by `limits.maxUnservedPerChannel`). Absent in older state: taken as `signed`.
   */
  served?: bigint;
  /**
   * The least the channel's charges may be apart from requests in flight, for the next process's vouchers
   * (docs/protocol.md § 7.1): written when this process has nothing in flight on the channel; absent (or unset while
   * requests are in flight): `signed`, every earlier request counted at its voucher.
   */
  restartBase?: bigint;
  /** The provider's accepted / spent, from the last receipt or a verified hint. */
  accepted: bigint;
  spent: bigint;
  status: ChannelRecordStatus;
  /** Unix seconds from which `withdraw` is possible (when a close is pending). */
  closesAt?: number;
  /** How the close was asked for. */
  closeMode?: "cooperative" | "on-chain";
  /** Base URL (origin) of the provider that asked for this channel; used for the cooperative close. */
  origin?: string;
  openTx?: Hex;
  /** "provider": a gasless open (docs/protocol.md § 5.9), submitted by the provider; absent: the payer's own open. */
  openedBy?: "provider";
  /** The open fee of a gasless open (added by the provider to the first charge; counted in the first voucher). */
  openFee?: bigint;
  /**
   * The payer's signed authorization of a gasless open, kept while the channel is "opening" (so a retry after a crash,
   * a 503 or a lost answer resends the same open: same salt, same nonce, idempotent on the provider) and afterwards.
   */
  openAuthorization?: OpenAuthorization;
  /** Milliseconds since the epoch. */
  openedAt: number;
  /** The last `PAYMENT-RESPONSE` received on this channel. */
  lastReceipt?: PaymentResponse;
}

/** A route's payment terms, remembered so the next call pays on its first attempt. */
export interface RouteTerms {
  requirements: ChannelRequirements;
  /** Milliseconds since the epoch. */
  updatedAt: number;
}

/**
 * What this client signed in the `exact` scheme in one token, for one payer on one chain: counted in `maxSpend`
 * with the channels' vouchers (each authorization may be submitted until it expires, served or not).
 */
export interface ExactTotals {
  chainId: number;
  payer: Address;
  token: Address;
  /** Sum of the authorizations signed. */
  signed: bigint;
  /** Sum of those the provider's receipts say were transferred. */
  paid: bigint;
  /** The transaction of the last receipt. */
  lastTransaction?: Hex;
}

/** Everything but the session key. */
export interface ClientState {
  version: 1;
  channels: Record<string, ChannelRecord>;
  /** Keyed by `METHOD origin/path`. */
  routes: Record<string, RouteTerms>;
  /** `exact` payments, keyed by `chainId:payer:token` (lower-cased); absent until the first one. */
  exact?: Record<string, ExactTotals>;
}

/** The voucher-signing session key. Kept apart from the state so losing the state does not lose channels. */
export interface SessionKeyRecord {
  privateKey: Hex;
  address: Address;
  createdAt: number;
}

/**
 * A pluggable store. `save` must be atomic (a reader sees the old state or the new one, never a mix) and durable
 * when it resolves. The client serialises its own calls: at most one `save` is in flight at a time.
 */
export interface ChannelStore {
  /** The saved state, or undefined when nothing was saved yet. */
  load(): Promise<ClientState | undefined>;
  save(state: ClientState): Promise<void>;
  loadSessionKey(): Promise<SessionKeyRecord | undefined>;
  saveSessionKey(key: SessionKeyRecord): Promise<void>;
}

/** An empty state. */
export function emptyState(): ClientState {
  return { version: 1, channels: {}, routes: {} };
}

// ------------------------------------------------------------------ JSON codec (shared by every store)

type Json = Record<string, unknown>;

/** Requirements in their wire form, without any `extra.channel` hint (that belongs to one 402, not to a route). */
export function requirementsToJson(r: ChannelRequirements): Json {
  const { channel: _hint, ...extra } = r.extra;
  return protocolRequirementsToJson({ ...r, extra });
}

const AMOUNT_FIELDS = ["deposit", "settled", "openAmount", "signed", "accepted", "spent"] as const;

/** The state as plain JSON. */
export function stateToJson(state: ClientState): Json {
  const channels: Json = {};
  for (const [id, c] of Object.entries(state.channels)) {
    const out: Json = { ...c };
    for (const f of AMOUNT_FIELDS) out[f] = formatWireAmount(c[f]);
    if (c.served !== undefined) out.served = formatWireAmount(c.served);
    if (c.restartBase !== undefined) out.restartBase = formatWireAmount(c.restartBase);
    if (c.lastReceipt) out.lastReceipt = paymentResponseToJson(c.lastReceipt);
    if (c.openFee !== undefined) out.openFee = formatWireAmount(c.openFee);
    if (c.openAuthorization) out.openAuthorization = openAuthorizationToJson(c.openAuthorization);
    channels[id] = out;
  }
  const routes: Json = {};
  for (const [k, r] of Object.entries(state.routes)) routes[k] = { requirements: requirementsToJson(r.requirements), updatedAt: r.updatedAt };
  const out: Json = { version: 1, channels, routes };
  if (state.exact && Object.keys(state.exact).length > 0) {
    const exact: Json = {};
    for (const [k, t] of Object.entries(state.exact)) exact[k] = { ...t, signed: formatWireAmount(t.signed), paid: formatWireAmount(t.paid) };
    out.exact = exact;
  }
  return out;
}

/** Parses {@link stateToJson}'s output; a malformed state is a `store_failure` (never silently replaced). */
export function stateFromJson(j: unknown): ClientState {
  try {
    const o = j as Json;
    if (!o || typeof o !== "object" || o.version !== 1) throw new Error("unknown state version");
    const channels: Record<string, ChannelRecord> = {};
    for (const [id, raw] of Object.entries((o.channels ?? {}) as Record<string, Json>)) {
      const c = { ...raw } as unknown as ChannelRecord & Json;
      for (const f of AMOUNT_FIELDS) (c as Json)[f] = parseWireAmount(raw[f], `channels.${id}.${f}`);
      if (raw.served !== undefined) c.served = parseWireAmount(raw.served, `channels.${id}.served`);
      if (raw.restartBase !== undefined) c.restartBase = parseWireAmount(raw.restartBase, `channels.${id}.restartBase`);
      if (raw.lastReceipt) c.lastReceipt = parsePaymentResponse(raw.lastReceipt);
      if (raw.openFee !== undefined) c.openFee = parseWireAmount(raw.openFee, `channels.${id}.openFee`);
      if (raw.openAuthorization !== undefined) c.openAuthorization = parseOpenAuthorization(raw.openAuthorization, `channels.${id}.openAuthorization`);
      if (typeof c.id !== "string" || typeof c.chainId !== "number") throw new Error(`channel ${id} is malformed`);
      channels[id] = c;
    }
    const routes: Record<string, RouteTerms> = {};
    for (const [k, raw] of Object.entries((o.routes ?? {}) as Record<string, Json>)) {
      routes[k] = { requirements: parseRequirements(raw.requirements, `routes.${k}`), updatedAt: Number(raw.updatedAt) };
    }
    const state: ClientState = { version: 1, channels, routes };
    if (o.exact !== undefined) {
      const exact: Record<string, ExactTotals> = {};
      for (const [k, raw] of Object.entries(o.exact as Record<string, Json>)) {
        const t = { ...raw } as unknown as ExactTotals;
        t.signed = parseWireAmount(raw.signed, `exact.${k}.signed`);
        t.paid = parseWireAmount(raw.paid, `exact.${k}.paid`);
        if (typeof t.chainId !== "number" || typeof t.token !== "string" || typeof t.payer !== "string") throw new Error(`exact.${k} is malformed`);
        exact[k] = t;
      }
      state.exact = exact;
    }
    return state;
  } catch (cause) {
    throw new ClientError("store_failure", "the saved client state is malformed", {
      details: "Fix or move the state file; it is never overwritten while unreadable.",
      cause,
    });
  }
}

/** A store in memory (tests, short-lived agents). It copies through JSON, so it behaves like a persisted store. */
export class MemoryStore implements ChannelStore {
  private state?: string;
  private key?: SessionKeyRecord;
  /** Number of completed saves. */
  saves = 0;

  async load(): Promise<ClientState | undefined> {
    return this.state === undefined ? undefined : stateFromJson(JSON.parse(this.state));
  }
  async save(state: ClientState): Promise<void> {
    this.state = JSON.stringify(stateToJson(state));
    this.saves++;
  }
  async loadSessionKey(): Promise<SessionKeyRecord | undefined> {
    return this.key && { ...this.key };
  }
  async saveSessionKey(key: SessionKeyRecord): Promise<void> {
    this.key = { ...key };
  }
  /** Forgets the channel state (not the session key): what a crash that lost the state file looks like. */
  clearState(): void {
    this.state = undefined;
  }
}
