/**
 * The agent client: a fetch-compatible function that pays `channel`-scheme 402s with vouchers, plus channel management.
 * {@link ChannelClient} is the public face; each part lives where its name says:
 *
 * - session.ts: chain, session key, stored state, counters, events (shared by every part)
 * - paying/: fetch.ts (the paying fetch, 402s, one retry), vouchers.ts (what a call signs), resync.ts (refusals and
 *   the provider's hint), receipts.ts, routes.ts (terms remembered per route)
 * - channels/: book.ts (records and their on-chain state), selection.ts (which channel pays), opening.ts,
 *   recovery.ts (after lost state), top-ups.ts, closing.ts (close and withdraw), status.ts, owed.ts (what the escrow
 *   kept owed to the payer), collecting.ts (collect it)
 * - spending.ts (what the limits and policy allow), tokens.ts (decimals and per-token limits)
 *
 * Nothing is signed above the channel's on-chain deposit or the owner's limits; terms outside the allow-lists or
 * above `maxPrice` are refused before anything is signed or deposited.
 */
import type { Address, Hex } from "viem";
import type { ChannelRequirements } from "@paychan/protocol";
import { ChannelBook } from "./channels/book";
import { closeChannel, requestClose, withdraw, type CloseMode } from "./channels/closing";
import { collect } from "./channels/collecting";
import { GaslessOpens } from "./channels/gasless";
import { openRequestedChannel, type OpenChannelParams } from "./channels/opening";
import { owedToPayer } from "./channels/owed";
import { ChannelSelector } from "./channels/selection";
import { channelStatus } from "./channels/status";
import { TopUps } from "./channels/top-ups";
import type { Amount, SpendingLimits } from "./limits";
import type {
  ChannelClientOptions,
  ChannelPolicy,
  ChannelStatusInfo,
  ClientStats,
  CollectParams,
  CollectResult,
  OwedTarget,
  PaymentInfo,
  WithdrawResult,
} from "./options";
import { PayingFetch } from "./paying/fetch";
import { Receipts } from "./paying/receipts";
import { VoucherIssuer } from "./paying/vouchers";
import type { FetchInput } from "./request";
import { ClientSession } from "./session";
import type { ChannelRecord, ChannelStore, ExactTotals } from "./store";

/** @internal See {@link ChannelClient.payingParts}. */
export interface PayingParts {
  session: ClientSession;
  book: ChannelBook;
  vouchers: VoucherIssuer;
  receipts: Receipts;
  gasless: GaslessOpens;
}

/**
 * An agent's paying client. Create it with {@link createChannelClient}; call {@link ChannelClient.fetch} like fetch.
 * Call {@link ChannelClient.flush} before the process exits to make the last amounts durable.
 */
export class ChannelClient {
  readonly limits: SpendingLimits;
  readonly policy: ChannelPolicy;
  readonly store: ChannelStore;
  readonly stats: ClientStats;

  private readonly session: ClientSession;
  private readonly book: ChannelBook;
  private readonly topUps: TopUps;
  private readonly receipts: Receipts;
  private readonly vouchers: VoucherIssuer;
  private readonly paying: PayingFetch;
  private readonly gasless: GaslessOpens;

  constructor(options: ChannelClientOptions) {
    const s = new ClientSession(options);
    this.session = s;
    this.limits = s.limits;
    this.policy = s.policy;
    this.store = s.store;
    this.stats = s.stats;
    this.book = new ChannelBook(s);
    this.topUps = new TopUps(s, this.book);
    this.gasless = new GaslessOpens(s, this.book);
    const selector = new ChannelSelector(s, this.book, options.discoverFromBlock ?? 0n, this.gasless);
    this.receipts = new Receipts(s, this.gasless);
    this.vouchers = new VoucherIssuer(s, selector, this.topUps, this.book, this.gasless);
    this.paying = new PayingFetch(s, this.book, this.vouchers, this.receipts, this.gasless);
    // Callers pass `agent.fetch` around as a plain function.
    this.fetch = this.fetch.bind(this);
  }

  // ------------------------------------------------------------------ setup

  /** Loads the store and the session key (generated and saved on first use). Called lazily by every method. */
  ready(): Promise<void> {
    return this.session.ready();
  }

  /** The chain id (after {@link ready}). */
  get chainId(): number {
    return this.session.chainId;
  }
  /** The payer (funding account). */
  get payerAddress(): Address {
    return this.session.payer;
  }
  /** The session key's address: the `signer` of this client's channels (after {@link ready}). */
  get signerAddress(): Address {
    return this.session.signerAddress;
  }

  /** Makes every state change so far durable. */
  flush(): Promise<void> {
    return this.session.flush();
  }

  /**
   * Makes the state durable and releases the state directory's lock (the default FileStore holds it until this
   * process exits), so another process may use the directory. Use no other method of this client afterwards.
   */
  async close(): Promise<void> {
    await this.session.flush();
    await (this.store as { release?: () => Promise<void> }).release?.();
  }

  // ------------------------------------------------------------------ paying

  /**
   * fetch, paying the provider when it asks: scheme `channel`, or `exact` (docs/protocol.md § 7: the owner's
   * `schemes` / `prefer` choose when both are offered). Throws {@link ClientError} when it will not pay.
   */
  fetch(input: FetchInput, init?: RequestInit): Promise<Response> {
    return this.paying.fetch(input, init);
  }

  /**
   * What the call that produced `res` paid (undefined for an unpaid response): `scheme: "exact"` with the transfer's
   * transaction, or a voucher on a channel (`scheme` absent or "channel").
   */
  paymentOf(res: Response): PaymentInfo | undefined {
    return this.receipts.paymentOf(res) ?? this.paying.exactPaymentOf(res);
  }

  /**
   * @internal The parts a paying transport shares with {@link fetch} (session and limits, channels, vouchers,
   * receipts): used by the x402 SDK plug-in (`@paychan/client/x402`) so that it pays under the same state and limits.
   * Not a stable API.
   */
  payingParts(): PayingParts {
    return { session: this.session, book: this.book, vouchers: this.vouchers, receipts: this.receipts, gasless: this.gasless };
  }

  /** The remembered terms of the routes this client paid. */
  routeTerms(): Record<string, ChannelRequirements> {
    return Object.fromEntries(this.session.routes);
  }

  /** A token's decimals (read once). */
  decimalsOf(token: Address): Promise<number> {
    return this.session.tokens.decimalsOf(token);
  }

  /** A token's symbol ("" when it has none). */
  symbolOf(token: Address): Promise<string> {
    return this.session.tokens.symbolOf(token);
  }

  // ------------------------------------------------------------------ management

  /** What this payer signed and paid with the x402 `exact` scheme on this chain, per token (no chain reads). */
  exactPayments(): ExactTotals[] {
    const s = this.session;
    return Object.values(s.state.exact ?? {}).filter((t) => t.chainId === s.chainId && t.payer.toLowerCase() === s.payer.toLowerCase());
  }

  /** Every channel the store knows for this payer and chain (no chain reads). */
  channels(): ChannelRecord[] {
    return this.book.channels();
  }

  /**
   * Opens a channel explicitly (e.g. `channel open`): `amount` atomic units (or token units as a string) of `token`
   * to `payee` on `escrow`. The escrow, token and payee must pass the allow-lists.
   */
  async openChannel(p: OpenChannelParams): Promise<ChannelRecord> {
    await this.ready();
    return openRequestedChannel(this.session, this.book, p);
  }

  /** Adds `amount` (atomic units, or token units as a string) to a channel's deposit. */
  async topUp(channelId: Hex, amount: Amount): Promise<ChannelRecord> {
    await this.ready();
    return this.topUps.topUp(channelId, amount);
  }

  /** Starts the close delay on chain (payer). Returns when `withdraw` becomes possible. */
  async requestClose(channelId: Hex): Promise<{ closesAt: number; txHash?: Hex }> {
    await this.ready();
    return requestClose(this.session, this.book, channelId);
  }

  /**
   * Closes a channel. `auto` (default) first asks the provider to close cooperatively (`POST /channel/close` with a
   * close request signed by the session key: the payer is refunded as soon as the provider settles), and falls back
   * to `requestClose` on chain when the provider does not offer it.
   */
  async closeChannel(
    channelId: Hex,
    opts: { mode?: CloseMode; url?: string } = {},
  ): Promise<{ mode: "cooperative" | "on-chain"; closesAt?: number; txHash?: Hex }> {
    await this.ready();
    return closeChannel(this.session, this.book, channelId, opts);
  }

  /**
   * After the close delay, refunds the unspent rest to the payer and finalizes the channel. `deferred: true` means
   * the token refused the transfer (paused, payer blacklisted) and the escrow keeps the refund owed: see
   * {@link collect}.
   */
  async withdraw(channelId: Hex): Promise<WithdrawResult> {
    await this.ready();
    return withdraw(this.session, this.book, channelId);
  }

  /**
   * What the escrow owes the payer in `token` (atomic units): refunds it could not transfer (token paused, payer
   * blacklisted; also refunds of cooperative closes, which the provider sends), kept until {@link collect}.
   * Default token and escrow: the client's own (the single entry of `limits.assets` / `limits.escrows`, else of its
   * channels); `invalid_argument` when that is ambiguous.
   */
  async owed(token?: Address, opts: Pick<OwedTarget, "escrow"> = {}): Promise<bigint> {
    await this.ready();
    return owedToPayer(this.session, this.book, { ...opts, token });
  }

  /**
   * Collects everything the escrow owes the payer in `token` (see {@link owed}), sent to `to` (default the payer;
   * another address when the token refuses the payer). Typed errors: `nothing_owed` (nothing to collect; no
   * transaction), `invalid_recipient` (the zero address or the escrow), `invalid_argument`, `chain_failure`.
   */
  async collect(p: CollectParams = {}): Promise<CollectResult> {
    await this.ready();
    return collect(this.session, this.book, p);
  }

  /** Every channel of this payer, refreshed from the chain. */
  async status(): Promise<ChannelStatusInfo[]> {
    await this.ready();
    return channelStatus(this.session, this.book, this.gasless);
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
