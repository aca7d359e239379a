/**
 * What every part of one client shares: the chain context and ids, the session key and its voucher signers, the
 * stored state and its persister, the counters, the event sink, and the HTTP fetch that counts requests.
 * The store and the key are loaded once, lazily, by {@link ClientSession.ready}.
 */
import { getAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAddress } from "viem/accounts";
import { VoucherSigner, escrowDomain, type ChannelRequirements } from "@paychan/protocol";
import { payerAddress, type ChainContext } from "./chain";
import { ClientError, shortMessageOf } from "./errors";
import { EscrowVerifier } from "./escrow-check";
import { FileStore } from "./file-store";
import { validateLimits, type SpendingLimits } from "./limits";
import { DEFAULT_EXACT_MAX_TIMEOUT_SECONDS, type ChannelClientOptions, type ChannelPolicy, type ClientEvent, type ClientStats, type PaymentScheme } from "./options";
import { Persister } from "./persister";
import { ProviderGuard } from "./provider-guard";
import { emptyState, type ChannelStore, type ClientState } from "./store";
import { TokenDomains } from "./token-domain";
import { TokenCache } from "./tokens";

/** The schemes of {@link ChannelClientOptions.schemes} / `prefer`, most preferred first (throws `invalid_argument`). */
export function schemesOf(o: Pick<ChannelClientOptions, "schemes" | "prefer">): readonly PaymentScheme[] {
  const known = ["channel", "exact"];
  if (o.prefer !== undefined && !known.includes(o.prefer)) throw new ClientError("invalid_argument", `prefer must be "channel" or "exact"`);
  if (o.schemes === undefined) return o.prefer === "exact" ? ["exact", "channel"] : ["channel", "exact"];
  const s = [...o.schemes];
  if (s.length === 0 || s.some((x) => !known.includes(x)) || new Set(s).size !== s.length) {
    throw new ClientError("invalid_argument", `schemes must list "channel" and/or "exact", each once`);
  }
  if (o.prefer !== undefined && o.prefer !== s[0]) throw new ClientError("invalid_argument", `prefer ${o.prefer} contradicts schemes ${s.join(",")}`);
  return s;
}

/**
 * A failed HTTP request as an `http_failure` (connection refused or reset, or a response Node's fetch would not
 * parse: oversized or malformed headers, e.g. a 402 whose PAYMENT-REQUIRED is too large). The caller's own abort
 * (AbortError, TimeoutError) passes through unchanged.
 */
function httpFailure(input: Parameters<typeof fetch>[0], e: unknown): unknown {
  if (e instanceof ClientError) return e;
  if (e && typeof e === "object" && ["AbortError", "TimeoutError"].includes((e as { name?: string }).name ?? "")) return e;
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  const why = cause?.code ?? cause?.message ?? shortMessageOf(e);
  return new ClientError("http_failure", `the request to ${new URL(url).origin} failed: ${why}`, { cause: e });
}

/** The state and services of one client, shared by its paying, channel and management parts. */
export class ClientSession {
  readonly limits: SpendingLimits;
  readonly policy: ChannelPolicy;
  readonly store: ChannelStore;
  readonly ctx: ChainContext;
  /** The funding account's address (the channels' payer). */
  readonly payer: Address;
  /** The caller's fetch, counting every HTTP request in {@link ClientStats.httpRequests}. */
  readonly http: typeof fetch;
  /** Reports what the client did to the owner's `onEvent`. */
  readonly emit: (e: ClientEvent) => void;
  /** Saves {@link state} soon after a change (coalesced), or now on `flush()`. */
  readonly persister: Persister;
  readonly tokens: TokenCache;
  /** Which escrows are the released ChannelEscrow (checked once per chain and address). */
  readonly escrows: EscrowVerifier;
  /** What each provider can make this client commit: refusal streaks, channels and deposits per provider. */
  readonly guard: ProviderGuard;
  /** The schemes this client pays, most preferred first. */
  readonly schemes: readonly PaymentScheme[];
  /** Longest validity window of an `exact` authorization (seconds). */
  readonly exactMaxTimeoutSeconds: number;
  /** Which EIP-712 domains the tokens paid with `exact` really have (checked once per token). */
  readonly domains: TokenDomains;
  readonly stats: ClientStats = {
    httpRequests: 0,
    paidCalls: 0,
    vouchersSigned: 0,
    challenges: 0,
    retries: 0,
    channelsOpened: 0,
    gaslessOpens: 0,
    openFees: {},
    topUps: 0,
    amountPaid: {},
    amountSigned: {},
  };

  /** Everything the store keeps (replaced once, by {@link ready}). */
  state: ClientState = emptyState();
  /** Terms of each route paid, by `METHOD origin/path` (loaded from {@link state}; paying/routes.ts keeps both). */
  readonly routes = new Map<string, ChannelRequirements>();
  /** The chain id (after {@link ready}; 0 before). */
  chainId = 0;
  /** The session key: signs vouchers and close requests, never holds money (after {@link ready}). */
  sessionKey!: Hex;
  /** The session key's address: the `signer` of this client's channels (after {@link ready}). */
  signerAddress!: Address;

  private readyPromise?: Promise<void>;
  private readonly signers = new Map<string, VoucherSigner>();

  /** Validates the options (throws `invalid_argument`); reads nothing yet. */
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
    this.http = async (input, init) => {
      this.stats.httpRequests++;
      try {
        return await f(input, init);
      } catch (e) {
        throw httpFailure(input, e);
      }
    };
    this.emit = options.onEvent ?? (() => {});
    this.persister = new Persister(
      () => this.store.save(this.state),
      50,
      (error) => this.emit({ type: "store_error", error }),
    );
    this.tokens = new TokenCache(this.ctx, this.limits);
    this.escrows = new EscrowVerifier(this.ctx);
    this.guard = new ProviderGuard(this.limits);
    this.schemes = schemesOf(options);
    this.exactMaxTimeoutSeconds = options.exactMaxTimeoutSeconds ?? DEFAULT_EXACT_MAX_TIMEOUT_SECONDS;
    if (!Number.isSafeInteger(this.exactMaxTimeoutSeconds) || this.exactMaxTimeoutSeconds < 1) {
      throw new ClientError("invalid_argument", "exactMaxTimeoutSeconds must be a positive integer");
    }
    this.domains = new TokenDomains(this.ctx);
  }

  /** Loads the store and the session key (generated and saved on first use). A failed load is retried next call. */
  ready(): Promise<void> {
    this.readyPromise ??= this.init().catch((e) => {
      this.readyPromise = undefined;
      throw e;
    });
    return this.readyPromise;
  }

  private async init(): Promise<void> {
    try {
      this.chainId = this.options.publicClient.chain?.id ?? (await this.options.publicClient.getChainId());
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
        try {
          await this.store.saveSessionKey({ privateKey: key, address: privateKeyToAddress(key), createdAt: Date.now() });
        } catch (e) {
          // Another writer's key won (a store that is not locked): use that one, never replace it.
          const theirs = await this.store.loadSessionKey().catch(() => undefined);
          if (!theirs) throw e;
          key = theirs.privateKey;
        }
      }
    }
    this.sessionKey = key;
    this.signerAddress = privateKeyToAddress(key);
  }

  /** Makes every state change so far durable (nothing to do before the first {@link ready}). */
  async flush(): Promise<void> {
    if (!this.readyPromise) return;
    await this.ready();
    await this.persister.flush();
  }

  /** The session key's voucher signer for channels of `escrow` (one per escrow: the domain is precomputed). */
  signerFor(escrow: Address): VoucherSigner {
    const k = escrow.toLowerCase();
    let s = this.signers.get(k);
    if (!s) {
      s = new VoucherSigner(this.sessionKey, escrowDomain(this.chainId, getAddress(escrow)));
      this.signers.set(k, s);
    }
    return s;
  }
}
