/**
 * The command language of the ChannelEscrow invariant fuzz (test/contracts/invariants.test.ts): what fast-check
 * generates. A command holds only small numbers (choices); the test interprets them against the chain state read
 * after the previous step (which channel, which amounts, which signature), so every generated sequence is meaningful
 * whatever happened before, and shrinking a number moves the choice towards the first (most ordinary) option.
 */
import fc from "fast-check";

/** A choice among weighted options: `n` (any non-negative integer) modulo the total weight. */
export function choose<T>(n: number, options: readonly (readonly [number, T])[]): T {
  const total = options.reduce((s, [w]) => s + w, 0);
  let x = n % total;
  for (const [w, v] of options) {
    if (x < w) return v;
    x -= w;
  }
  throw new Error("unreachable");
}

/** One claim of a settle batch: which channel, which amount and voucher, which signature. */
export interface ItemCmd {
  ch: number;
  amount: number;
  cum: number;
  sig: number;
  r: number;
}

export type Cmd =
  | { t: "open"; via: number; payer: number; payee: number; token: number; signer: number; amount: number; r: number; delay: number; mode: number; relayer: number; dup: number }
  | { t: "topUp"; ch: number; caller: number; sg: number; amount: number; r: number }
  | { t: "settle"; route: number; payee: number; token: number; caller: number; gas: number; r: number; items: ItemCmd[] }
  | { t: "settleContractSigned"; route: number; payee: number; token: number; caller: number; gas: number; r: number; items: ItemCmd[] }
  | { t: "close"; ch: number; caller: number; sg: number; amount: number; cum: number; sig: number; consent: number; r: number; gas: number }
  | { t: "requestClose"; ch: number; caller: number; sg: number }
  | { t: "withdraw"; ch: number; caller: number; sg: number; at: number; gas: number; r: number }
  | { t: "collect"; who: number; token: number; to: number; gas: number; r: number }
  | { t: "setOperator"; who: number; op: number; approved: boolean }
  | { t: "warp"; ch: number; offset: number; secs: number }
  | { t: "pause"; token: number }
  | { t: "blacklist"; token: number; who: number; r: number }
  | { t: "walletMode"; wallet: number; mode: number }
  | { t: "approve"; payer: number; token: number; zero: number };

/** A free choice (interpreted with {@link choose}). */
const n = fc.nat(9_999);
/** A channel choice: < 4 an unknown id; < 30 any channel; else preferably one the command can act on. */
const ch = fc.nat(99);
const r = fc.nat(1_000_000_000);

const item: fc.Arbitrary<ItemCmd> = fc.record({ ch, amount: n, cum: n, sig: n, r });
const items = fc.array(item, { minLength: 1, maxLength: 4 });

const open = fc.record({
  t: fc.constant("open" as const),
  via: n,
  payer: n,
  payee: n,
  token: n,
  signer: n,
  amount: n,
  r,
  delay: n,
  mode: n,
  relayer: n,
  dup: n,
});

const settleLike = <T extends "settle" | "settleContractSigned">(t: T) =>
  fc.record({ t: fc.constant(t), route: n, payee: n, token: n, caller: n, gas: n, r, items });

/** Any command, weighted towards the calls that move money. */
export const anyCmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: open },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("topUp" as const), ch, caller: n, sg: n, amount: n, r }) },
  { weight: 5, arbitrary: settleLike("settle") },
  { weight: 3, arbitrary: settleLike("settleContractSigned") },
  {
    weight: 4,
    arbitrary: fc.record({ t: fc.constant("close" as const), ch, caller: n, sg: n, amount: n, cum: n, sig: n, consent: n, r, gas: n }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("requestClose" as const), ch, caller: n, sg: n }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("withdraw" as const), ch, caller: n, sg: n, at: n, gas: n, r }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("collect" as const), who: n, token: n, to: n, gas: n, r }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("setOperator" as const), who: n, op: n, approved: fc.constantFrom(true, true, true, false) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("warp" as const), ch: fc.nat(99), offset: n, secs: n }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("pause" as const), token: n }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant("blacklist" as const), token: n, who: n, r: n }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("walletMode" as const), wallet: n, mode: n }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("approve" as const), payer: n, token: n, zero: n }) },
);

/**
 * A sequence: two plain opens that succeed (an EOA-signed and a wallet-signed channel, so every sequence has
 * channels of both kinds to work on), then `minSteps - 2` to `minSteps + 10` commands.
 */
export function sequence(minSteps: number): fc.Arbitrary<Cmd[]> {
  const firstOpen = (signer: number) =>
    open.map((c) => ({ ...c, via: 0, signer, amount: 0, delay: 0, dup: 0 }));
  return fc
    .tuple(firstOpen(4), firstOpen(8), fc.array(anyCmd, { minLength: minSteps - 2, maxLength: minSteps + 10 }))
    .map(([a, b, rest]) => [a, b, ...rest]);
}
