/**
 * The agent client: a fetch-compatible function that pays `channel`-scheme 402s with vouchers, plus channel management.
 *
 * Paying (docs/protocol.md § 5 wire format, § 7 client concurrency rule):
 * - A route's terms are remembered, so a call pays on its first attempt (one round trip); a 402 is the fallback.
 * - Each paid call signs `max(signed, accepted, spent) + price` and raises `signed` synchronously, so the k-th call in
 *   flight on a channel signs `base + k × price` and no call waits for another.
 * - A call refused because its voucher went stale (or the provider's state moved) retries once with a fresh voucher,
 *   after resynchronising from the provider's `extra.channel` hint — only when the hint's signature is our own.
 * - Nothing is signed above the channel's on-chain deposit or the owner's limits; terms outside the allow-lists or
 *   above `maxPrice` are refused before anything is signed or deposited.
 */
import { getAddress, type Account, type Address, type Hex, type PublicClient, type WalletClient } from "viem";
import { generatePrivateKey, privateKeyToAddress } from "viem/accounts";
import { randomBytes } from "node:crypto";
import {
  CLOSE_PATH,
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_RESPONSE,
  HEADER_PAYMENT_SIGNATURE,
  MAX_CLOSE_DELAY,
  MIN_CLOSE_DELAY,
  PaymentError,
  VoucherSigner,
  VoucherVerifier,
  X402_VERSION,
  computeChannelId,
  decodePaymentRequired,
  decodePaymentResponse,
  encodePaymentSignature,
  escrowDomain,
  signCloseRequest,
  isPaymentErrorCode,
  PAYMENT_ERROR_RECOVERY,
  encodeCloseRequest,
  type ChannelHint,
  type ChannelRequirements,
  type PaymentRequired,
  type PaymentResponse,
  type OnchainChannel,
  type Voucher,
} from "@paychan/protocol";
import {
  chainTime,
  discoverChannels,
  openChannelTx,
  payerAddress,
  readChannel,
  readChannels,
  requestCloseTx,
  revertName,
  tokenDecimals,
  tokenSymbol,
  topUpTx,
  withdrawTx,
  type ChainContext,
} from "./chain";
import { ClientError, shortMessageOf } from "./errors";
import { FileStore } from "./file-store";
import { checkPrice, checkTrust, toAtomic, tokenLimits, validateLimits, type Amount, type SpendingLimits, type TokenLimits } from "./limits";
import { Persister } from "./persister";
import { normalizeRequest, routeKey, type FetchInput } from "./request";
import { checkHintAmounts, checkHintSignature } from "./hint";
import { emptyState, requirementsToJson, type ChannelRecord, type ChannelStore, type ClientState } from "./store";

/** How the client sizes and funds channels. */
export interface ChannelPolicy {
  /** Deposit of a new channel. Default: `max(minDeposit, min(maxDeposit, 1000 × price))`. */
  deposit?: Amount;
  /** Close delay of a new channel in seconds; raised to the provider's `minCloseDelay`. Default: that minimum. */
  closeDelay?: number;
  /** Top up when `deposit − signed` falls below this. Default: `max(openingDeposit / 5, 32 × price)`. */
  topUpThreshold?: Amount;
  /** Amount of an automatic top-up (capped so the unspent rest stays ≤ maxDeposit). Default: the opening deposit. */
  topUpAmount?: Amount;
  /** Top up automatically. Default true. */
  autoTopUp?: boolean;
  /** "auto": fund with EIP-2612 `openWithPermit` when the token supports it; "never": approve + open. Default "auto". */
  permit?: "auto" | "never";
}

/** Options of {@link createChannelClient}. */
export interface ChannelClientOptions {
  /** The funding account: the channels' payer (pays gas and deposits; never signs vouchers). */
  account: Account | Address;
  publicClient: PublicClient;
  walletClient: WalletClient;
  limits: SpendingLimits;
  /** Where channels, amounts and the session key live. Default: `new FileStore(stateDir)`. */
  store?: ChannelStore;
  /** Directory of the default file store. Default `.channel` under the working directory. */
  stateDir?: string;
  /** Use this session key (0x-hex private key) instead of the stored or a generated one. */
  sessionKey?: Hex;
  policy?: ChannelPolicy;
  /** The fetch to send requests with. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /**
   * Block to search `ChannelOpened` events from when no usable channel is stored for a provider (recovery after the
   * state was lost, with the session key kept). `false` disables the search. Default 0.
   */
  discoverFromBlock?: bigint | false;
  /** Observes what the client does (channels opened, top-ups, resyncs, retries, store errors). */
  onEvent?: (event: ClientEvent) => void;
}

/** Something the client did, for logs and progress output. */
export type ClientEvent =
  | { type: "channel_opened"; channelId: Hex; deposit: bigint; method: string; txHash: Hex }
  | { type: "channel_recovered"; channelId: Hex; deposit: bigint }
  | { type: "topped_up"; channelId: Hex; amount: bigint; deposit: bigint; txHash: Hex }
  | { type: "top_up_failed"; channelId: Hex; error: unknown }
  | { type: "resynced"; channelId: Hex; accepted: bigint; spent: bigint }
  | { type: "retry"; url: string; serverCode: string }
  | { type: "store_error"; error: unknown };

/** What a paid call paid. */
export interface PaymentInfo {
  channelId: Hex;
  /** The voucher sent with the request that was served. */
  cumulativeAmount: bigint;
  /** The route's price (most the call may cost). */
  price: bigint;
  /** The provider's receipt (`PAYMENT-RESPONSE`), when it sent one. */
  receipt?: PaymentResponse;
  /** HTTP requests this call took (1 in steady state). */
  requests: number;
}

/** Counters since the client was created. */
export interface ClientStats {
  httpRequests: number;
  paidCalls: number;
  vouchersSigned: number;
  challenges: number;
  retries: number;
  channelsOpened: number;
  topUps: number;
  /** Sum of receipt amounts, per token (atomic units). */
  amountPaid: Record<string, bigint>;
}

/** A channel as {@link ChannelClient.status} reports it. */
export interface ChannelStatusInfo {
  channelId: Hex;
  escrow: Address;
  payee: Address;
  token: Address;
  signer: Address;
  deposit: bigint;
  settled: bigint;
  /** Highest amount signed. */
  signed: bigint;
  /** The provider's spent, from the last receipt. */
  spent: bigint;
  accepted: bigint;
  /** What can still be signed: `deposit − signed`. */
  remaining: bigint;
  status: ChannelRecord["status"];
  closesAt?: number;
  closeDelay: number;
  origin?: string;
}

interface Runtime {
  verified: boolean;
  /** Excluded from new calls by this process (the provider refused it for a reason that will not pass). */
  excluded: boolean;
  topUp?: Promise<void>;
}

interface Payment {
  channel: ChannelRecord;
  voucher: Voucher;
  terms: ChannelRequirements;
  header: string;
}

/** Codes after which a new voucher (or channel) may succeed: one retry (the protocol's classification). */
const retryable = (code: string) => isPaymentErrorCode(code) && PAYMENT_ERROR_RECOVERY[code].retry;
/** Refusals that mean this channel cannot be used with this provider any more. */
const channelUnusable = (code: string) => isPaymentErrorCode(code) && PAYMENT_ERROR_RECOVERY[code].channelUnusable;

const max = (...xs: bigint[]) => xs.reduce((a, b) => (b > a ? b : a));
const min = (a: bigint, b: bigint) => (a < b ? a : b);

function termsKey(t: { extra: { escrow: Address }; payTo: Address; asset: Address }): string {
  return `${t.extra.escrow}|${t.payTo}|${t.asset}`.toLowerCase();
}

function stripHint(r: ChannelRequirements): ChannelRequirements {
  if (!r.extra.channel) return r;
  const { channel: _hint, ...extra } = r.extra;
  return { ...r, extra };
}

/**
 * An agent's paying client. Create it with {@link createChannelClient}; call {@link ChannelClient.fetch} like fetch.
 * Call {@link ChannelClient.flush} before the process exits to make the last amounts durable.
 */
export class ChannelClient {
  readonly limits: SpendingLimits;
  readonly policy: ChannelPolicy;
  readonly store: ChannelStore;
  readonly stats: ClientStats = {
    httpRequests: 0,
    paidCalls: 0,
    vouchersSigned: 0,
    challenges: 0,
    retries: 0,
    channelsOpened: 0,
    topUps: 0,
    amountPaid: {},
  };

  private readonly ctx: ChainContext;
  private readonly baseFetch: typeof fetch;
  private readonly onEvent: (e: ClientEvent) => void;
  private readonly discoverFrom: bigint | false;
  private readonly persister: Persister;
  private readonly payments = new WeakMap<Response, PaymentInfo>();

  private readyPromise?: Promise<void>;
  private state: ClientState = emptyState();
  private chainIdValue = 0;
  private sessionKeyHex!: Hex;
  private sessionAddress!: Address;
  private payer: Address;

  private readonly routes = new Map<string, ChannelRequirements>();
  private readonly runtime = new Map<string, Runtime>();
  private readonly current = new Map<string, ChannelRecord>();
  private readonly acquiring = new Map<string, Promise<ChannelRecord>>();
  private readonly discovered = new Set<string>();
  private readonly decimals = new Map<string, number | Promise<number>>();
  private readonly signers = new Map<string, VoucherSigner>();

  constructor(private readonly options: ChannelClientOptions) {
    validateLimits(options.limits);
    if (!options.publicClient || !options.walletClient || !options.account) {
      throw new ClientError("invalid_argument", "account, publicClient and walletClient are required");
    }
    this.limits = options.limits;
    this.policy = options.policy ?? {};
    this.store = options.store ?? new FileStore(options.stateDir ?? ".channel");
    this.ctx = { publicClient: options.publicClient, walletClient: options.walletClient, account: options.account };
    this.payer = payerAddress(this.ctx);
    const f = options.fetch ?? globalThis.fetch;
    this.baseFetch = (input, init) => {
      this.stats.httpRequests++;
      return f(input, init);
    };
    this.onEvent = options.onEvent ?? (() => {});
    this.discoverFrom = options.discoverFromBlock ?? 0n;
    this.persister = new Persister(
      () => this.store.save(this.state),
      50,
      (error) => this.onEvent({ type: "store_error", error }),
    );
    this.fetch = this.fetch.bind(this);
  }

  // ------------------------------------------------------------------ setup

  /** Loads the store and the session key (generated and saved on first use). Called lazily by every method. */
  ready(): Promise<void> {
    this.readyPromise ??= this.init().catch((e) => {
      this.readyPromise = undefined;
      throw e;
    });
    return this.readyPromise;
  }

  private async init(): Promise<void> {
    try {
      this.chainIdValue = this.options.publicClient.chain?.id ?? (await this.options.publicClient.getChainId());
    } catch (e) {
      throw new ClientError("chain_failure", `cannot reach the chain: ${shortMessageOf(e)}`, { cause: e });
    }
    this.state = (await this.store.load()) ?? emptyState();
    for (const [k, r] of Object.entries(this.state.routes)) this.routes.set(k, r.requirements);
    let key = this.options.sessionKey;
    if (!key) {
      const saved = await this.store.loadSessionKey();
      if (saved) key = saved.privateKey;
      else {
        key = generatePrivateKey();
        await this.store.saveSessionKey({ privateKey: key, address: privateKeyToAddress(key), createdAt: Date.now() });
      }
    }
    this.sessionKeyHex = key;
    this.sessionAddress = privateKeyToAddress(key);
  }

  /** The chain id (after {@link ready}). */
  get chainId(): number {
    return this.chainIdValue;
  }
  /** The payer (funding account). */
  get payerAddress(): Address {
    return this.payer;
  }
  /** The session key's address: the `signer` of this client's channels (after {@link ready}). */
  get signerAddress(): Address {
    return this.sessionAddress;
  }

  /** Makes every state change so far durable. */
  async flush(): Promise<void> {
    if (!this.readyPromise) return;
    await this.ready();
    await this.persister.flush();
  }

  // ------------------------------------------------------------------ fetch

  /** fetch, paying the provider when it asks (scheme `channel`). Throws {@link ClientError} when it will not pay. */
  async fetch(input: FetchInput, init?: RequestInit): Promise<Response> {
    await this.ready();
    const req = await normalizeRequest(input, init);
    const key = routeKey(req.method, req.url);
    const origin = new URL(req.url).origin;
    let terms = this.routes.get(key);
    let probed = false;
    let retried = false;
    let requests = 0;
    for (;;) {
      const payment = terms ? await this.preparePayment(terms, origin) : undefined;
      const headers = new Headers(req.init.headers);
      if (payment) headers.set(HEADER_PAYMENT_SIGNATURE, payment.header);
      const res = await this.baseFetch(req.url, { ...req.init, headers });
      requests++;
      if (res.status !== 402) {
        if (payment) this.onServed(payment, res, requests);
        return res;
      }
      const challenge = this.readChallenge(res);
      if (!challenge) return res; // not a 402 of the channel scheme: the caller's business
      this.stats.challenges++;
      await res.arrayBuffer().catch(() => undefined); // free the connection
      const offer = await this.chooseOffer(challenge.accepts);
      this.rememberRoute(key, offer);
      const code = challenge.error;
      if (payment) await this.onRefused(payment, code, challenge);
      if (!payment) {
        if (probed) throw this.refused(code, res.status, "the provider asked for payment twice");
        probed = true;
      } else {
        if (retried || !retryable(code)) throw this.refused(code, res.status);
        retried = true;
        this.stats.retries++;
        this.onEvent({ type: "retry", url: req.url, serverCode: code });
      }
      terms = offer;
    }
  }

  /** What the call that produced `res` paid (undefined for an unpaid response). */
  paymentOf(res: Response): PaymentInfo | undefined {
    return this.payments.get(res);
  }

  private refused(code: string, status: number, extra?: string): ClientError {
    return new ClientError("payment_refused", `the provider refused the payment: ${code}`, {
      serverCode: code,
      status,
      details: extra,
    });
  }

  private readChallenge(res: Response): PaymentRequired | undefined {
    const h = res.headers.get(HEADER_PAYMENT_REQUIRED);
    if (!h) return undefined;
    try {
      return decodePaymentRequired(h);
    } catch (e) {
      if (e instanceof PaymentError && e.code === "unsupported_scheme") return undefined;
      throw new ClientError("untrusted_terms", "the provider's PAYMENT-REQUIRED is malformed", { cause: e });
    }
  }

  /** The first offer that passes the allow-lists and limits; otherwise the first offer's refusal. */
  private async chooseOffer(accepts: ChannelRequirements[]): Promise<ChannelRequirements> {
    let first: unknown;
    for (const offer of accepts) {
      try {
        await this.assertAllowed(offer);
        return offer;
      } catch (e) {
        first ??= e;
      }
    }
    throw first;
  }

  /** Throws `untrusted_terms` / `spending_limit` unless the owner's limits allow these terms. */
  private async assertAllowed(terms: ChannelRequirements): Promise<TokenLimits> {
    checkTrust(terms, this.limits, this.chainIdValue);
    const tl = await this.tokenLimitsOf(terms.asset);
    checkPrice(terms, this.limits, tl);
    return tl;
  }

  private readonly tokenLimitCache = new Map<string, TokenLimits>();
  private async tokenLimitsOf(token: Address): Promise<TokenLimits> {
    const k = token.toLowerCase();
    const cached = this.tokenLimitCache.get(k);
    if (cached) return cached;
    const tl = tokenLimits(this.limits, await this.decimalsOf(token));
    this.tokenLimitCache.set(k, tl);
    return tl;
  }

  /** A token's decimals (read once). */
  async decimalsOf(token: Address): Promise<number> {
    const k = token.toLowerCase();
    let d = this.decimals.get(k);
    if (d === undefined) {
      d = tokenDecimals(this.ctx, token).then(
        (v) => (this.decimals.set(k, v), v),
        (e) => {
          this.decimals.delete(k);
          throw e;
        },
      );
      this.decimals.set(k, d);
    }
    return d;
  }

  /** A token's symbol ("" when it has none). */
  symbolOf(token: Address): Promise<string> {
    return tokenSymbol(this.ctx, token);
  }

  private rememberRoute(key: string, offer: ChannelRequirements): void {
    const terms = stripHint(offer);
    const old = this.routes.get(key);
    if (old && JSON.stringify(requirementsToJson(old)) === JSON.stringify(requirementsToJson(terms))) return;
    this.routes.set(key, terms);
    this.state.routes[key] = { requirements: terms, updatedAt: Date.now() };
    this.persister.schedule();
  }

  // ------------------------------------------------------------------ paying

  private async preparePayment(terms: ChannelRequirements, origin: string): Promise<Payment> {
    const tl = await this.assertAllowed(terms);
    let ch = await this.channelFor(terms, origin);
    for (let attempt = 0; ; attempt++) {
      const payment = this.reserve(ch, terms, tl);
      if (payment) return payment;
      if (attempt >= 2) {
        throw new ClientError("insufficient_funds", `channel ${ch.id} has ${ch.deposit - ch.signed} left, the call needs ${terms.amount}`);
      }
      await this.fund(ch, terms.amount);
      ch = await this.channelFor(terms, origin);
    }
  }

  /** Signs the next voucher on `ch` for one call at `terms.amount`, or returns undefined when the deposit is short. */
  private reserve(ch: ChannelRecord, terms: ChannelRequirements, tl: TokenLimits): Payment | undefined {
    const price = terms.amount;
    const next = max(ch.signed, ch.accepted, ch.spent) + price;
    if (next > ch.deposit) return undefined;
    if (tl.maxSpend !== undefined) {
      const total = this.signedTotal(ch.token) - ch.signed + next;
      if (total > tl.maxSpend) {
        throw new ClientError("spending_limit", `paying would bring the total signed to ${total}, above maxSpend ${tl.maxSpend}`);
      }
    }
    ch.signed = next;
    const voucher = this.signerFor(ch.escrow).sign(ch.id, next);
    this.stats.vouchersSigned++;
    this.persister.schedule();
    this.maybeTopUp(ch, price);
    const header = encodePaymentSignature({ x402Version: X402_VERSION, accepted: terms, payload: voucher });
    return { channel: ch, voucher, terms, header };
  }

  private signedTotal(token: Address): bigint {
    let total = 0n;
    const t = token.toLowerCase();
    for (const c of Object.values(this.state.channels)) {
      if (c.token.toLowerCase() === t && c.payer === this.payer && c.chainId === this.chainIdValue) total += c.signed;
    }
    return total;
  }

  private signerFor(escrow: Address): VoucherSigner {
    const k = escrow.toLowerCase();
    let s = this.signers.get(k);
    if (!s) {
      s = new VoucherSigner(this.sessionKeyHex, escrowDomain(this.chainIdValue, getAddress(escrow)));
      this.signers.set(k, s);
    }
    return s;
  }

  private onServed(payment: Payment, res: Response, requests: number): void {
    const ch = payment.channel;
    const info: PaymentInfo = { channelId: ch.id, cumulativeAmount: payment.voucher.cumulativeAmount, price: payment.terms.amount, requests };
    const h = res.headers.get(HEADER_PAYMENT_RESPONSE);
    if (h) {
      try {
        const r = decodePaymentResponse(h);
        if (r.extra.channelId === ch.id.toLowerCase() || r.extra.channelId === ch.id) {
          info.receipt = r;
          // The provider's view, kept only when consistent with what we signed.
          if (r.extra.accepted <= ch.signed && r.extra.spent <= r.extra.accepted) {
            if (r.extra.accepted > ch.accepted) ch.accepted = r.extra.accepted;
            if (r.extra.spent > ch.spent) ch.spent = r.extra.spent;
          }
          ch.lastReceipt = r;
          const k = ch.token.toLowerCase();
          this.stats.amountPaid[k] = (this.stats.amountPaid[k] ?? 0n) + r.amount;
          this.persister.schedule();
        }
      } catch {
        // A malformed receipt changes nothing we rely on.
      }
    }
    this.stats.paidCalls++;
    this.payments.set(res, info);
  }

  /** Learns from a refusal of our voucher: resynchronise from the hint, drop a channel the provider will not take. */
  private async onRefused(payment: Payment, code: string, challenge: PaymentRequired): Promise<void> {
    const ch = payment.channel;
    const hint = challenge.accepts.map((a) => a.extra.channel).find((c) => c && c.channelId.toLowerCase() === ch.id.toLowerCase());
    if (hint) await this.applyHint(ch, hint);
    if (code === "exceeds_deposit" || code === "unknown_channel" || channelUnusable(code)) {
      await this.verify(ch, true);
      if (channelUnusable(code) || ch.status !== "open") this.exclude(ch);
    }
  }

  /**
   * Resynchronises a channel from the provider's hint, after checking it: the signature must be our session key's
   * for `accepted`, `spent ≤ accepted`, and `accepted` within the on-chain deposit. Otherwise `untrusted_hint`.
   */
  private async applyHint(ch: ChannelRecord, hint: ChannelHint): Promise<void> {
    checkHintSignature(hint, ch.id, this.sessionAddress, new VoucherVerifier(this.signerFor(ch.escrow).hasher));
    if (hint.accepted > ch.deposit) await this.verify(ch, true); // the deposit may have grown (a top-up elsewhere)
    checkHintAmounts(hint, ch.deposit);
    if (hint.status === "finalized" || hint.status === "closing") await this.verify(ch, true);
    const before = max(ch.signed, ch.accepted, ch.spent);
    if (hint.accepted > ch.accepted) ch.accepted = hint.accepted;
    if (hint.spent > ch.spent) ch.spent = hint.spent;
    if (hint.accepted > ch.signed) ch.signed = hint.accepted;
    if (max(ch.signed, ch.accepted, ch.spent) !== before) {
      this.onEvent({ type: "resynced", channelId: ch.id, accepted: ch.accepted, spent: ch.spent });
      this.persister.schedule();
    }
  }

  // ------------------------------------------------------------------ channels

  private rt(ch: ChannelRecord): Runtime {
    let r = this.runtime.get(ch.id);
    if (!r) {
      r = { verified: false, excluded: false };
      this.runtime.set(ch.id, r);
    }
    return r;
  }

  private exclude(ch: ChannelRecord): void {
    this.rt(ch).excluded = true;
    for (const [k, c] of this.current) if (c === ch) this.current.delete(k);
  }

  private usable(ch: ChannelRecord, terms: ChannelRequirements): boolean {
    const r = this.rt(ch);
    return ch.status === "open" && r.verified && !r.excluded && ch.closeDelay >= terms.extra.minCloseDelay;
  }

  /** The channel to pay `terms` with: the current one, a stored one (verified on chain once), a recovered one, or a new one. */
  private channelFor(terms: ChannelRequirements, origin: string): Promise<ChannelRecord> | ChannelRecord {
    const key = termsKey(terms);
    const cur = this.current.get(key);
    if (cur && this.usable(cur, terms)) return cur;
    let p = this.acquiring.get(key);
    if (!p) {
      p = this.acquire(terms, origin, key).finally(() => this.acquiring.delete(key));
      this.acquiring.set(key, p);
    }
    return p;
  }

  private matches(c: ChannelRecord, terms: { extra: { escrow: Address }; payTo: Address; asset: Address }): boolean {
    return (
      c.chainId === this.chainIdValue &&
      c.payer === this.payer &&
      c.signer.toLowerCase() === this.sessionAddress.toLowerCase() &&
      termsKey({ extra: { escrow: c.escrow }, payTo: c.payee, asset: c.token }) === termsKey(terms)
    );
  }

  private async acquire(terms: ChannelRequirements, origin: string, key: string): Promise<ChannelRecord> {
    const candidates = Object.values(this.state.channels)
      .filter((c) => this.matches(c, terms) && (c.status === "open" || c.status === "opening") && !this.rt(c).excluded)
      .sort((a, b) => (b.deposit - b.signed > a.deposit - a.signed ? 1 : -1));
    for (const c of candidates) {
      await this.verify(c);
      if (this.usable(c, terms)) return this.use(key, c, origin);
    }
    if (this.discoverFrom !== false && !this.discovered.has(key)) {
      this.discovered.add(key);
      const found = await this.recover(terms).catch(() => []); // best effort: some RPCs refuse wide log queries
      for (const c of found) if (this.usable(c, terms)) return this.use(key, c, origin);
    }
    return this.use(key, await this.openFor(terms, origin), origin);
  }

  private use(key: string, ch: ChannelRecord, origin: string): ChannelRecord {
    if (!ch.origin) {
      ch.origin = origin;
      this.persister.schedule();
    }
    this.current.set(key, ch);
    return ch;
  }

  /** Re-reads a channel from the chain (once per process unless forced) and updates its record. */
  private async verify(ch: ChannelRecord, force = false): Promise<OnchainChannel | null | undefined> {
    const r = this.rt(ch);
    if (r.verified && !force) return undefined;
    const oc = await readChannel(this.ctx, ch.escrow, ch.id, ch.signer);
    this.applyOnchain(ch, oc);
    r.verified = true;
    this.persister.schedule();
    return oc;
  }

  /** Applies the escrow's answer (null: no such channel) to the record. */
  private applyOnchain(ch: ChannelRecord, oc: OnchainChannel | null): void {
    if (!oc || oc.payer.toLowerCase() !== ch.payer.toLowerCase() || oc.signer.toLowerCase() !== ch.signer.toLowerCase()) {
      ch.status = "missing";
      return;
    }
    ch.deposit = oc.deposit;
    ch.settled = oc.settled;
    ch.closeDelay = oc.closeDelay;
    if (oc.finalized) ch.status = "finalized";
    else if (oc.closeRequestedAt > 0) {
      ch.status = "closing";
      ch.closesAt = oc.closeRequestedAt + oc.closeDelay;
      ch.closeMode ??= "on-chain";
    } else if (ch.status !== "closing" || ch.closeMode !== "cooperative") {
      ch.status = "open";
      ch.closesAt = undefined;
      ch.closeMode = undefined;
    }
    // The payee settled a voucher we signed: we signed at least that much, even if the state forgot it.
    if (oc.settled > ch.signed) ch.signed = oc.settled;
    if (oc.settled > ch.accepted) ch.accepted = oc.settled;
    if (oc.settled > ch.spent) ch.spent = oc.settled;
  }

  /** Finds this payer's channels with our session key on chain (state lost, key kept) and adds them to the store. */
  private async recover(terms: ChannelRequirements): Promise<ChannelRecord[]> {
    const found = await discoverChannels(this.ctx, {
      escrow: terms.extra.escrow,
      payee: terms.payTo,
      token: terms.asset,
      signer: this.sessionAddress,
      fromBlock: this.discoverFrom === false ? 0n : this.discoverFrom,
    });
    const out: ChannelRecord[] = [];
    const fresh = found.filter((d) => !this.state.channels[d.id]);
    const onchain = await readChannels(this.ctx, terms.extra.escrow, fresh.map((d) => ({ channelId: d.id, signer: d.signer })));
    fresh.forEach((d, i) => {
      const ch: ChannelRecord = {
        id: d.id,
        chainId: this.chainIdValue,
        escrow: getAddress(terms.extra.escrow),
        payer: this.payer,
        payee: getAddress(d.payee),
        token: getAddress(d.token),
        signer: getAddress(d.signer),
        closeDelay: d.closeDelay,
        deposit: d.deposit,
        settled: 0n,
        openAmount: d.deposit,
        signed: 0n,
        accepted: 0n,
        spent: 0n,
        status: "open",
        openedAt: Date.now(),
      };
      this.applyOnchain(ch, onchain[i]);
      this.rt(ch).verified = true;
      this.state.channels[ch.id] = ch;
      out.push(ch);
      if (ch.status === "open") this.onEvent({ type: "channel_recovered", channelId: ch.id, deposit: ch.deposit });
    });
    if (out.length) this.persister.schedule();
    return out;
  }

  /** The deposit of a new channel for `terms` under the policy and limits. */
  private async depositFor(terms: ChannelRequirements, tl: TokenLimits): Promise<bigint> {
    const decimals = await this.decimalsOf(terms.asset);
    let amount = this.policy.deposit !== undefined ? toAtomic(this.policy.deposit, decimals, "policy.deposit") : min(tl.maxDeposit, 1000n * terms.amount);
    amount = max(amount, terms.extra.minDeposit, terms.amount);
    if (amount > tl.maxDeposit) {
      throw new ClientError("spending_limit", `a channel for these terms needs a deposit of ${amount}, above maxDeposit ${tl.maxDeposit}`);
    }
    return amount;
  }

  private closeDelayFor(terms: ChannelRequirements): number {
    const d = Math.max(this.policy.closeDelay ?? 0, terms.extra.minCloseDelay, MIN_CLOSE_DELAY);
    const limit = Math.min(this.limits.maxCloseDelay ?? MAX_CLOSE_DELAY, MAX_CLOSE_DELAY);
    if (d > limit) throw new ClientError("spending_limit", `the close delay ${d}s is above maxCloseDelay ${limit}s`);
    return d;
  }

  private async openFor(terms: ChannelRequirements, origin: string): Promise<ChannelRecord> {
    const tl = await this.assertAllowed(terms);
    const amount = await this.depositFor(terms, tl);
    if (tl.maxSpend !== undefined && this.signedTotal(terms.asset) + terms.amount > tl.maxSpend) {
      throw new ClientError("spending_limit", `the total signed would go above maxSpend ${tl.maxSpend}`);
    }
    return this.openChannelRaw({
      escrow: getAddress(terms.extra.escrow),
      payee: getAddress(terms.payTo),
      token: getAddress(terms.asset),
      amount,
      closeDelay: this.closeDelayFor(terms),
      origin,
    });
  }

  private async openChannelRaw(p: { escrow: Address; payee: Address; token: Address; amount: bigint; closeDelay: number; origin?: string }): Promise<ChannelRecord> {
    if (p.amount <= 0n) throw new ClientError("invalid_argument", "the deposit must be positive");
    if (!Number.isInteger(p.closeDelay) || p.closeDelay < MIN_CLOSE_DELAY || p.closeDelay > MAX_CLOSE_DELAY) {
      throw new ClientError("invalid_argument", `the close delay must be ${MIN_CLOSE_DELAY} to ${MAX_CLOSE_DELAY} seconds`);
    }
    const salt = `0x${randomBytes(32).toString("hex")}` as Hex;
    const id = computeChannelId({ chainId: this.chainIdValue, escrow: p.escrow, payer: this.payer, payee: p.payee, token: p.token, signer: this.sessionAddress, salt });
    const ch: ChannelRecord = {
      id,
      chainId: this.chainIdValue,
      escrow: p.escrow,
      payer: this.payer,
      payee: p.payee,
      token: p.token,
      signer: this.sessionAddress,
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
    this.state.channels[id] = ch;
    await this.persister.flush();
    try {
      const r = await openChannelTx(this.ctx, { ...p, signer: this.sessionAddress, salt, permit: this.policy.permit ?? "auto" });
      ch.status = "open";
      ch.deposit = p.amount;
      ch.openTx = r.receipt.transactionHash;
      this.rt(ch).verified = true;
      this.stats.channelsOpened++;
      this.persister.schedule();
      this.onEvent({ type: "channel_opened", channelId: id, deposit: p.amount, method: r.method, txHash: r.receipt.transactionHash });
      return ch;
    } catch (e) {
      // The transaction may or may not have landed: ask the chain.
      const oc = await readChannel(this.ctx, p.escrow, id, ch.signer).catch(() => undefined);
      if (oc) {
        this.applyOnchain(ch, oc);
        this.rt(ch).verified = true;
        this.persister.schedule();
        return ch;
      }
      if (oc === null) delete this.state.channels[id];
      else ch.status = "missing";
      this.persister.schedule();
      throw e;
    }
  }

  private topUpThreshold(ch: ChannelRecord, price: bigint, decimals: number): bigint {
    if (this.policy.topUpThreshold !== undefined) return toAtomic(this.policy.topUpThreshold, decimals, "policy.topUpThreshold");
    return max(ch.openAmount / 5n, 32n * price);
  }

  /** Starts a background top-up when the channel runs low (never blocks the call that noticed). */
  private maybeTopUp(ch: ChannelRecord, price: bigint): void {
    if (this.policy.autoTopUp === false || this.rt(ch).topUp) return;
    const d = this.decimals.get(ch.token.toLowerCase());
    if (typeof d !== "number") return;
    if (ch.deposit - ch.signed >= this.topUpThreshold(ch, price, d)) return;
    this.startTopUp(ch, 0n).catch((error) => this.onEvent({ type: "top_up_failed", channelId: ch.id, error }));
  }

  /** Waits for (or starts) a top-up that makes room for `needed`; throws when the policy or limits do not allow one. */
  private async fund(ch: ChannelRecord, needed: bigint): Promise<void> {
    const r = this.rt(ch);
    if (r.topUp) return r.topUp.catch(() => this.startTopUp(ch, needed));
    if (this.policy.autoTopUp === false) {
      throw new ClientError("insufficient_funds", `channel ${ch.id} is exhausted (${ch.deposit - ch.signed} left) and automatic top-up is off`);
    }
    return this.startTopUp(ch, needed);
  }

  private startTopUp(ch: ChannelRecord, needed: bigint): Promise<void> {
    const r = this.rt(ch);
    if (r.topUp) return r.topUp;
    const p = (async () => {
      const decimals = await this.decimalsOf(ch.token);
      const tl = await this.tokenLimitsOf(ch.token);
      const unspent = ch.deposit - max(ch.signed, ch.spent);
      const want = this.policy.topUpAmount !== undefined ? toAtomic(this.policy.topUpAmount, decimals, "policy.topUpAmount") : ch.openAmount;
      const amount = min(want, tl.maxDeposit - unspent);
      if (amount <= 0n || amount < needed) {
        throw new ClientError("spending_limit", `a top-up of channel ${ch.id} would hold more than maxDeposit ${tl.maxDeposit} unspent`);
      }
      await this.topUpRaw(ch, amount);
    })().finally(() => {
      if (r.topUp === p) r.topUp = undefined;
    });
    r.topUp = p;
    return p;
  }

  private async topUpRaw(ch: ChannelRecord, amount: bigint): Promise<void> {
    const receipt = await topUpTx(this.ctx, ch.escrow, ch.token, { channelId: ch.id, signer: ch.signer }, amount);
    const oc = await readChannel(this.ctx, ch.escrow, ch.id, ch.signer).catch(() => undefined);
    if (oc !== undefined) this.applyOnchain(ch, oc);
    else {
      ch.deposit += amount;
      ch.status = "open";
    }
    this.stats.topUps++;
    this.persister.schedule();
    this.onEvent({ type: "topped_up", channelId: ch.id, amount, deposit: ch.deposit, txHash: receipt.transactionHash });
  }

  // ------------------------------------------------------------------ management

  private record(id: Hex): ChannelRecord {
    const ch = this.state.channels[id] ?? Object.values(this.state.channels).find((c) => c.id.toLowerCase() === id.toLowerCase());
    if (!ch) throw new ClientError("unknown_channel", `channel ${id} is not in this client's store`);
    return ch;
  }

  /** Every channel the store knows for this payer and chain (no chain reads). */
  channels(): ChannelRecord[] {
    return Object.values(this.state.channels).filter((c) => c.chainId === this.chainIdValue && c.payer === this.payer);
  }

  /**
   * Opens a channel explicitly (e.g. `channel open`): `amount` atomic units (or token units as a string) of `token`
   * to `payee` on `escrow`. The escrow, token and payee must pass the allow-lists.
   */
  async openChannel(p: { payee: Address; amount: Amount; escrow: Address; token: Address; closeDelay?: number; origin?: string }): Promise<ChannelRecord> {
    await this.ready();
    const probe = { extra: { escrow: p.escrow }, payTo: p.payee, asset: p.token, network: `eip155:${this.chainIdValue}` };
    checkTrust(probe as unknown as ChannelRequirements, this.limits, this.chainIdValue);
    const amount = toAtomic(p.amount, await this.decimalsOf(p.token), "amount");
    const ch = await this.openChannelRaw({
      escrow: getAddress(p.escrow),
      payee: getAddress(p.payee),
      token: getAddress(p.token),
      amount,
      closeDelay: p.closeDelay ?? Math.max(this.policy.closeDelay ?? 0, 86_400),
      origin: p.origin,
    });
    return ch;
  }

  /** Adds `amount` (atomic units, or token units as a string) to a channel's deposit. */
  async topUp(channelId: Hex, amount: Amount): Promise<ChannelRecord> {
    await this.ready();
    const ch = this.record(channelId);
    const atomic = toAtomic(amount, await this.decimalsOf(ch.token), "amount");
    if (atomic <= 0n) throw new ClientError("invalid_argument", "the top-up must be positive");
    await this.verify(ch, true);
    if (ch.status === "finalized" || ch.status === "missing") throw new ClientError("channel_closed", `channel ${ch.id} is ${ch.status}`);
    const r = this.rt(ch);
    while (r.topUp) await r.topUp.catch(() => undefined);
    const p = this.topUpRaw(ch, atomic);
    r.topUp = p;
    try {
      await p;
    } finally {
      if (r.topUp === p) r.topUp = undefined;
      r.excluded = false;
    }
    return ch;
  }

  /** Starts the close delay on chain (payer). Returns when `withdraw` becomes possible. */
  async requestClose(channelId: Hex): Promise<{ closesAt: number; txHash?: Hex }> {
    await this.ready();
    const ch = this.record(channelId);
    await this.verify(ch, true);
    if (ch.status === "finalized" || ch.status === "missing") throw new ClientError("channel_closed", `channel ${ch.id} is ${ch.status}`);
    if (ch.status === "closing" && ch.closeMode === "on-chain" && ch.closesAt) return { closesAt: ch.closesAt };
    const { receipt, closesAt } = await requestCloseTx(this.ctx, ch.escrow, { channelId: ch.id, signer: ch.signer });
    ch.status = "closing";
    ch.closeMode = "on-chain";
    ch.closesAt = closesAt;
    this.exclude(ch);
    await this.persister.flush();
    return { closesAt, txHash: receipt.transactionHash };
  }

  /**
   * Closes a channel. `auto` (default) first asks the provider to close cooperatively (`POST /channel/close` with a
   * close request signed by the session key: the payer is refunded as soon as the provider settles), and falls back
   * to `requestClose` on chain when the provider does not offer it.
   */
  async closeChannel(
    channelId: Hex,
    opts: { mode?: "auto" | "cooperative" | "on-chain"; url?: string } = {},
  ): Promise<{ mode: "cooperative" | "on-chain"; closesAt?: number; txHash?: Hex }> {
    await this.ready();
    const ch = this.record(channelId);
    const mode = opts.mode ?? "auto";
    await this.verify(ch, true);
    if (ch.status === "finalized" || ch.status === "missing") throw new ClientError("channel_closed", `channel ${ch.id} is ${ch.status}`);
    const base = opts.url ?? ch.origin;
    if (mode !== "on-chain" && base) {
      try {
        await this.cooperativeClose(ch, base);
        return { mode: "cooperative" };
      } catch (e) {
        if (mode === "cooperative") throw e;
      }
    } else if (mode === "cooperative") {
      throw new ClientError("invalid_argument", `channel ${ch.id} has no known provider URL; pass one`);
    }
    const r = await this.requestClose(ch.id);
    return { mode: "on-chain", ...r };
  }

  private async cooperativeClose(ch: ChannelRecord, base: string): Promise<void> {
    const signature = signCloseRequest(escrowDomain(this.chainIdValue, ch.escrow), ch.id, this.sessionKeyHex);
    const url = new URL(CLOSE_PATH, base).toString();
    let res: Response;
    try {
      res = await this.baseFetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: encodeCloseRequest({ channelId: ch.id, signature }),
      });
    } catch (e) {
      throw new ClientError("provider_failure", `the provider at ${base} could not be reached`, { cause: e });
    }
    const text = await res.text().catch(() => "");
    if (res.status !== 202 && res.status !== 200) {
      let code: string | undefined;
      try {
        code = JSON.parse(text).error;
      } catch {
        /* not JSON */
      }
      throw new ClientError("provider_failure", `the provider refused the cooperative close (HTTP ${res.status}${code ? `, ${code}` : ""})`, {
        status: res.status,
        serverCode: code,
      });
    }
    ch.status = "closing";
    ch.closeMode = "cooperative";
    this.exclude(ch);
    await this.persister.flush();
  }

  /** After the close delay, refunds the unspent rest to the payer and finalizes the channel. */
  async withdraw(channelId: Hex): Promise<{ refund: bigint; txHash: Hex }> {
    await this.ready();
    const ch = this.record(channelId);
    const oc = (await this.verify(ch, true))!;
    if (ch.status === "finalized") throw new ClientError("channel_closed", `channel ${ch.id} is already finalized`);
    if (ch.status === "missing") throw new ClientError("unknown_channel", `channel ${ch.id} is not on chain`);
    if (oc.closeRequestedAt === 0) throw new ClientError("close_not_requested", `channel ${ch.id} has no close request; call requestClose first`);
    const closesAt = oc.closeRequestedAt + oc.closeDelay;
    const now = await chainTime(this.ctx);
    if (now + 1 < closesAt) {
      throw new ClientError("close_pending", `channel ${ch.id} can be withdrawn in ${closesAt - now}s`, { details: `closesAt ${closesAt}` });
    }
    try {
      const { receipt, refund } = await withdrawTx(this.ctx, ch.escrow, { channelId: ch.id, signer: ch.signer });
      ch.status = "finalized";
      await this.persister.flush();
      return { refund, txHash: receipt.transactionHash };
    } catch (e) {
      if ((e as ClientError).cause && revertName((e as ClientError).cause) === "CloseDelayNotElapsed") {
        throw new ClientError("close_pending", `channel ${ch.id} cannot be withdrawn yet`, { cause: e });
      }
      throw e;
    }
  }

  /** Every channel of this payer, refreshed from the chain. */
  async status(): Promise<ChannelStatusInfo[]> {
    await this.ready();
    const mine = this.channels();
    const byEscrow = new Map<string, ChannelRecord[]>();
    for (const c of mine) {
      if (c.status === "finalized" || c.status === "missing") continue;
      const k = c.escrow.toLowerCase();
      byEscrow.set(k, [...(byEscrow.get(k) ?? []), c]);
    }
    for (const cs of byEscrow.values()) {
      const ocs = await readChannels(this.ctx, cs[0].escrow, cs.map((c) => ({ channelId: c.id, signer: c.signer })));
      cs.forEach((c, i) => {
        this.applyOnchain(c, ocs[i]);
        this.rt(c).verified = true;
      });
    }
    if (byEscrow.size) this.persister.schedule();
    return mine.map((c) => ({
      channelId: c.id,
      escrow: c.escrow,
      payee: c.payee,
      token: c.token,
      signer: c.signer,
      deposit: c.deposit,
      settled: c.settled,
      signed: c.signed,
      spent: c.spent,
      accepted: c.accepted,
      remaining: c.status === "finalized" || c.status === "missing" ? 0n : c.deposit - max(c.signed, c.spent),
      status: c.status,
      closesAt: c.closesAt,
      closeDelay: c.closeDelay,
      origin: c.origin,
    }));
  }

  /** The remembered terms of the routes this client paid. */
  routeTerms(): Record<string, ChannelRequirements> {
    return Object.fromEntries(this.routes);
  }
}

/**
 * Creates an agent's paying client.
 * ```ts
 * const agent = createChannelClient({ account, publicClient, walletClient, limits: { maxDeposit: "5", maxPrice: "0.01" } })
 * const res = await agent.fetch("http://127.0.0.1:4021/v1/echo?msg=hi")
 * ```
 */
export function createChannelClient(options: ChannelClientOptions): ChannelClient {
  return new ChannelClient(options);
}

/** Decodes a response's `PAYMENT-RESPONSE` receipt, or undefined (also for a malformed one). */
export function readReceipt(res: Response): PaymentResponse | undefined {
  const h = res.headers.get(HEADER_PAYMENT_RESPONSE);
  if (!h) return undefined;
  try {
    return decodePaymentResponse(h);
  } catch {
    return undefined;
  }
}
