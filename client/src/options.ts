/**
 * The options of `createChannelClient` and the shapes the client reports: events, what a paid call paid,
 * counters, channel status.
 */
import type { Account, Address, Hex, PublicClient, WalletClient } from "viem";
import type { ExactAuthorization, ExactPaymentResponse, PaymentResponse } from "@paychan/protocol";
import type { Amount, SpendingLimits } from "./limits";
import type { ChannelRecord, ChannelStore } from "./store";

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
  /**
   * Gasless opens (docs/protocol.md § 5.9, § 7.6): the provider opens the channel from the payer's signed EIP-3009
   * authorization, carried in the first paid request, and adds its `extra.open.fee` to the first charge.
   * - "auto" (default): gasless when the offer has `extra.open` and the payer cannot pay the gas of its own open
   *   (native balance < {@link OWN_OPEN_GAS} × the current `maxFeePerGas`); otherwise the payer opens and pays the gas.
   * - "always": gasless whenever a channel is opened for a 402 (the payer never sends an open or a top-up); a provider
   *   that does not offer it is refused (`gasless_unavailable`).
   * - "never": the payer always opens itself; without gas for it, `insufficient_gas`.
   * A channel the provider opened is not topped up with a transaction while gasless applies: a new channel is opened the
   * same way and the old one closed cooperatively (§ 5.9 "Top-ups").
   */
  gaslessOpen?: GaslessOpenMode;
}

/** See {@link ChannelPolicy.gaslessOpen}. */
export type GaslessOpenMode = "auto" | "always" | "never";

/**
 * The gas the payer's own open may take, for the "has the payer gas?" test of {@link ChannelPolicy.gaslessOpen}:
 * `approve` (≤ 46,000) + `open` on a new payee/token pair (161,826 in test/gas-snapshot.json), rounded up; the
 * one-transaction `openWithPermit` (125,934) is below it.
 */
export const OWN_OPEN_GAS = 210_000n;

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
  /**
   * The schemes this client pays, most preferred first, when a 402 offers several (docs/protocol.md § 7). Default
   * `["channel", "exact"]`; `["channel"]` never pays `exact`; `["exact"]` never opens a channel. A scheme whose
   * offers fail the limits is passed over for the next one.
   */
  schemes?: readonly PaymentScheme[];
  /** Shorthand for the order of {@link schemes}: `"exact"` is `["exact", "channel"]`. Default `"channel"`. */
  prefer?: PaymentScheme;
  /**
   * Longest validity window of an `exact` authorization, in seconds: `validBefore` is now + min(the offer's
   * `maxTimeoutSeconds`, this). Default {@link DEFAULT_EXACT_MAX_TIMEOUT_SECONDS}.
   */
  exactMaxTimeoutSeconds?: number;
}

/** The x402 schemes the client pays: `channel` (vouchers on a prepaid channel) and `exact` (one transfer per call). */
export type PaymentScheme = "channel" | "exact";

/** Default {@link ChannelClientOptions.exactMaxTimeoutSeconds}: 2 minutes. */
export const DEFAULT_EXACT_MAX_TIMEOUT_SECONDS = 120;

/** Something the client did, for logs and progress output. */
export type ClientEvent =
  | { type: "channel_opened"; channelId: Hex; deposit: bigint; method: string; txHash: Hex }
  /**
   * Before the payer signs a gasless open (the provider will open the channel and add `fee` to the first charge):
   * what is about to be signed. `reason`: "no_gas" (auto, the payer cannot pay its own open) or "always" (policy).
   */
  | { type: "gasless_open_signing"; channelId: Hex; payee: Address; token: Address; deposit: bigint; fee: bigint; reason: "no_gas" | "always" }
  /** The provider opened the channel from the payer's signature (its first paid call was served); `fee` was charged. */
  | { type: "channel_opened_by_provider"; channelId: Hex; deposit: bigint; fee: bigint; txHash?: Hex }
  /** A gasless channel ran out: a new one is opened and `channelId` is closed cooperatively once idle (§ 5.9 top-ups). */
  | { type: "channel_replaced"; channelId: Hex }
  | { type: "close_failed"; channelId: Hex; error: unknown }
  | { type: "channel_recovered"; channelId: Hex; deposit: bigint }
  | { type: "topped_up"; channelId: Hex; amount: bigint; deposit: bigint; txHash: Hex }
  | { type: "top_up_failed"; channelId: Hex; error: unknown }
  | { type: "resynced"; channelId: Hex; accepted: bigint; spent: bigint }
  | { type: "retry"; url: string; serverCode: string }
  /** The 402 offered a scheme the owner prefers, whose offers the limits refused (`error`): the next scheme pays. */
  | { type: "scheme_passed_over"; url: string; scheme: PaymentScheme; error: unknown }
  /** A call paid with `exact` was served: the provider's receipt names the transfer's transaction. */
  | { type: "exact_paid"; url: string; asset: Address; payTo: Address; amount: bigint; nonce: Hex; txHash?: Hex }
  | { type: "store_error"; error: unknown };

/** What a paid call paid: with a voucher on a channel, or with one `exact` transfer (tell them apart by `scheme`). */
export type PaymentInfo = ChannelPaymentInfo | ExactPaymentInfo;

/** What a call paid with a voucher (scheme `channel`). */
export interface ChannelPaymentInfo {
  /** Absent or "channel". */
  scheme?: "channel";
  channelId: Hex;
  /** The voucher sent with the request that was served. */
  cumulativeAmount: bigint;
  /** The route's price (most the call may cost). */
  price: bigint;
  /** The provider's receipt (`PAYMENT-RESPONSE`), when it sent one. */
  receipt?: PaymentResponse;
  /** HTTP requests this call took (1 in steady state). */
  requests: number;
  /**
   * Present when this call carried a gasless open (the provider opened the channel from the payer's signature):
   * `fee` is the open fee included in its charge (the receipt's amount is price + fee).
   */
  open?: { openedBy: "provider"; fee: bigint; deposit: bigint };
  /** Present on a streamed route paid per unit (docs/protocol.md § 5.10, § 7.7): the stream's payment as it goes. */
  stream?: StreamPaymentInfo;
}

/** A paid stream's payment (docs/protocol.md § 7.7). `receipt` of the call is set to the final receipt when it comes. */
export interface StreamPaymentInfo {
  /** "streaming" until the end; "complete" with the final receipt; "interrupted" without it (dropped, aborted, none sent). */
  state: "streaming" | "complete" | "interrupted";
  /** The stream's id (from its first payment event), when known. */
  id?: string;
  /** The top-ups the provider accepted, and their total. */
  topUps: number;
  topUpAmount: bigint;
  /** The stream's reservation now: the initial one plus the accepted top-ups. */
  reserved: bigint;
  /** Top-ups this client would not pay (above `maxRequestSpend`, `maxSpend`, the deposit) or the provider refused. */
  topUpsDeclined: number;
  /**
   * Resolves to the final receipt (`payment-receipt`: amount = the stream's charge) when the stream ends; rejects with
   * `stream_interrupted` when it ends without one. Read the body to the end (or cancel it) for it to settle.
   */
  final: Promise<PaymentResponse>;
}

/** What a call paid with an EIP-3009 authorization (scheme `exact`): exactly `price`, in one on-chain transfer. */
export interface ExactPaymentInfo {
  scheme: "exact";
  asset: Address;
  payTo: Address;
  /** The offer's amount: what the authorization transfers. */
  price: bigint;
  /** The authorization sent (signed by the payer's account). */
  authorization: ExactAuthorization;
  /** The transfer's transaction hash, from the provider's receipt (undefined when it sent none). */
  transaction?: Hex;
  /** The provider's receipt (`PAYMENT-RESPONSE`), when it sent one. */
  receipt?: ExactPaymentResponse;
  /** HTTP requests this call took (2: the 402, then the paid request). */
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
  /** Channels the provider opened from the payer's signature (included in `channelsOpened`). */
  gaslessOpens: number;
  /** Open fees charged by providers (in served first calls of gasless channels), per token (atomic units). */
  openFees: Record<string, bigint>;
  topUps: number;
  /** Sum of receipt amounts, per token (atomic units): what the provider's receipts SAY was charged. */
  amountPaid: Record<string, bigint>;
  /**
   * What this client SIGNED, per token (atomic units): the sum of the increases of its channels' highest vouchers,
   * served or not. A provider could settle this much; compare it with `amountPaid`.
   */
  amountSigned: Record<string, bigint>;
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
  /** "provider": opened by the provider from the payer's signature (gasless open); "payer": by the payer's transaction. */
  openedBy: "payer" | "provider";
  /** The open fee the provider charged (gasless opens; 0 otherwise). */
  openFee: bigint;
  /** The open transaction, when known (a gasless open's is read from the chain's `ChannelOpened` event). */
  openTx?: Hex;
}

/** What {@link ChannelClient.withdraw} did. */
export interface WithdrawResult {
  /** The unspent deposit refunded (atomic units; the escrow's `Withdrawn` event). */
  refund: bigint;
  /**
   * True when the escrow could not transfer the refund (the token is paused, or refuses the payer, e.g. blacklisted)
   * and keeps it owed to the payer instead (`PaymentDeferred`): the money is owed, not received. Take it with
   * `collect()`, possibly to another address; `owed()` says how much.
   */
  deferred: boolean;
  txHash: Hex;
}

/** Which escrow and token {@link ChannelClient.owed} and {@link ChannelClient.collect} look at. */
export interface OwedTarget {
  /** Default: the client's token, the one of `limits.assets` or of its channels (when there is exactly one). */
  token?: Address;
  /** Default: the client's escrow, the one of `limits.escrows` or of its channels (when there is exactly one). */
  escrow?: Address;
}

/** What {@link ChannelClient.collect} takes. */
export interface CollectParams extends OwedTarget {
  /** Where the money goes. Default: the payer. */
  to?: Address;
}

/** What {@link ChannelClient.collect} collected. */
export interface CollectResult {
  escrow: Address;
  token: Address;
  /** The recipient. */
  to: Address;
  /** Atomic units sent to `to` (everything the escrow owed the payer in `token`). */
  amount: bigint;
  txHash: Hex;
}
