/**
 * The `channel` CLI's usage text and its usage errors (exit 2). Imports nothing: `channel --help` loads only this,
 * args.ts and main.ts.
 */

/** The text of `channel --help`. */
export const USAGE = `channel — pay HTTP APIs through prepaid payment channels

Usage: channel <command> [options]

Commands:
  call <url>                   paid request; prints the body, and the receipt on stderr
       -n <N>                  make N calls (progress bar, then a summary: latency, amount paid, calls/s)
       -c <C>                  with C in flight at once (default 1)
       -X <METHOD>             HTTP method (default GET, or POST with -d)
       -d <body>               request body (sent as application/json when it parses as JSON)
       -H "name: value"        extra request header (repeatable)
       -v                      with -n, print every receipt
       --scheme <s>            which x402 schemes to pay: auto (default: channel, else exact), channel, exact,
                               or an order such as exact,channel (CHANNEL_SCHEME). exact = one EIP-3009 transfer
                               per call signed by the payer's key: 2 round trips, an on-chain transfer each
  status                       channels: deposit, spent, settled, remaining, close state, who opened it (and the open
                               fee); refunds owed by the escrow; totals signed and paid with exact
  open <payee> <amount>        open a channel to <payee> with <amount> tokens
  top-up <channelId> <amount>  add <amount> tokens to a channel
  close <channelId>            ask the provider to close cooperatively, else requestClose on chain
       --on-chain              skip the provider: requestClose on chain
  withdraw <channelId>         after the close delay: refund the unspent deposit (kept owed by the escrow when the
                               token refuses the transfer: paused, payer blacklisted; then \`channel collect\`)
  collect                      take what the escrow owes the payer (--token / --escrow: default the deployment's)
       --to <address>          send it there instead of to the payer (e.g. when the token refuses the payer)
  address                      the payer and session key addresses

Options:
  --key-file <path>            funding (payer) key file; else CHANNEL_PRIVATE_KEY or PRIVATE_KEY (every command
                               needs one; on its local chain, \`npm start\` prints one: export CHANNEL_PRIVATE_KEY=...)
  --rpc <url>                  JSON-RPC endpoint; else RPC_URL, default http://127.0.0.1:8545
  --state-dir <dir>            channels and session key; else CHANNEL_STATE_DIR, default ./.channel
  --max-price <amount>         refuse calls above this price (default 0.01; CHANNEL_MAX_PRICE)
  --max-deposit <amount>       most held unspent in one channel (default 5; CHANNEL_MAX_DEPOSIT)
  --max-spend <amount>         most signed in total per token by this state (default: no budget; CHANNEL_MAX_SPEND)
  --max-close-delay <seconds>  longest close delay accepted (default 172800 = 2 days; CHANNEL_MAX_CLOSE_DELAY)
  --max-channels <N>           most channels opened by itself per provider, not finalized (default 2; CHANNEL_MAX_CHANNELS)
  --max-deposit-per-provider <amount>
                               most held unspent in one provider's channels (default 2 × max-deposit;
                               CHANNEL_MAX_DEPOSIT_PER_PROVIDER)
  --max-unserved <amount>      most signed and not served per channel (default 32 × max-price; CHANNEL_MAX_UNSERVED)
  --max-refusals <N>           paid calls a provider may refuse in a row before nothing more is signed for it
                               (default 3; CHANNEL_MAX_REFUSALS)
  --gasless <mode>             who opens a channel (CHANNEL_GASLESS): auto (default: the provider opens it from the
                               payer's signature when the payer has no gas and the provider offers it), always (never
                               an own open), never (always an own open; no gas: error insufficient_gas)
  --max-open-fee <amount>      highest open fee a provider may add to a gasless channel's first call (default
                               max-price; CHANNEL_MAX_OPEN_FEE)
  --max-request-spend <amount> most one request may cost in all: a stream's reservation plus its top-ups
                               (default max-price; CHANNEL_MAX_REQUEST_SPEND)
  --deposit <amount>           deposit of a new channel (default: min(max-deposit, 1000 × price), ≥ the provider's minimum)
  --escrow <address>           trusted escrow (default: the deployment record's, when there is one, else any
                               contract whose code is the released ChannelEscrow's)
  --token <address>            token for open and collect (default: the deployment record's)
  --close-delay <seconds>      close delay of a new channel (default: the provider's minimum, or 1 day for open)
  --json                       machine-readable output
  -h, --help                   this help

Deployment record: deployments/<chainId>.json ({"escrow": "0x…", "token": "0x…"}) in the working directory, or in
the directory CHANNEL_DEPLOYMENTS_DIR names (\`npm start\` and \`npm run deploy\` write one).
Amounts are in token units ("0.5" USDC); channel ids may be abbreviated to a unique prefix.
Example: channel call "http://127.0.0.1:4021/v1/echo?msg=hi" -n 1000 -c 16`;

/** A mistake in the command line: printed with a pointer to `--help`, exit 2. */
export class UsageError extends Error {}

/** The first line of an error's message (without loading the client's error module). */
export function firstLine(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}
