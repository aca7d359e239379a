/**
 * Model-based test of ChannelEscrow: fast-check generates short random sequences of open / topUp / settle
 * (batches mixing good and bad items) / requestClose / time travel / withdraw / close / setOperator across three
 * payers, two payees, two tokens and several signers; each step runs on the chain and on the reference model
 * (test/helpers/escrow-model.ts). Every call after open names its channel by (id, signer), mostly with the
 * channel's own signer, sometimes with a wrong one (SignerMismatch). After every step the test checks:
 * - the outcome (custom error and arguments, or the exact escrow events and token transfers) equals the model's;
 * - every channel's on-chain state equals the model's, and so does its read with a wrong signer (record fields,
 *   signer 0, no money); `settled <= deposit`; `settled` never decreases;
 *   a finalized channel never changes again;
 * - per token, the escrow's balance == Σ deposits − Σ refunds − Σ payouts == Σ (deposit − settled) of open channels;
 * - every participant's token balance equals the model's.
 * Each run starts from one EVM snapshot (evm_revert, no redeploy), with explicit block timestamps so the model
 * knows the chain time exactly. MODEL_RUNS and MODEL_SEED override the number of runs and the seed.
 */
import hre from "hardhat";
import { expect } from "chai";
import fc from "fast-check";
import {
  decodeFunctionResult,
  encodeFunctionData,
  getAddress,
  numberToHex,
  parseEventLogs,
  zeroAddress,
  type Address,
  type Hex,
  type Log,
} from "viem";
import {
  channelEscrowAbi,
  encodeSettleItems,
  escrowDomain,
  MAX_CLOSE_DELAY,
  MAX_DEPOSIT,
  MAX_UINT128,
  MIN_CLOSE_DELAY,
  SECP256K1_HALF_N,
  signCloseRequest,
  VoucherSigner,
  type SettleClaim,
} from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { deployEscrow, DAY, type Env } from "../helpers/escrow";
import { decodeRevert } from "../helpers/revert";
import { accountKey, latestTimestamp, revertTo, snapshot, underCoverage } from "../helpers/chain";
import { EscrowModel, type ModelChannel, type ModelEvent, type ModelSettleItem, type Outcome } from "../helpers/escrow-model";
import { flipS, joinSignature, splitSignature, withV } from "../helpers/signatures";

// ------------------------------------------------------------------ actors (Hardhat account indexes)
const PAYERS = [1, 2, 3];
const PAYEES = [4, 5];
const SIGNERS = [6, 7];
const OPERATOR = 8;
const STRANGER = 9;

// ------------------------------------------------------------------ commands (generated data)
type AmountKind = "next" | "full" | "settled" | "below" | "zero" | "over" | "huge" | "one";
type CumKind = "same" | "more" | "less" | "max";
type SigMode = "good" | "wrongKey" | "otherChannel" | "wrongDomain" | "highS" | "zero";
type CloseSigMode = SigMode | "badV" | "short" | "empty";
type Role = "payer" | "signer" | "payee" | "operator" | "stranger" | "otherPayer";
/** The signer a call names the channel with: its own, or a wrong one (the payer is right when it signs itself). */
type SignerArg = "own" | "payer" | "stranger" | "zero";
/** The close request signature an operator's close carries: none, the channel signer's, the payer's, a stranger's, or the signer's for another channel. */
type Consent = "none" | "signer" | "payer" | "stranger" | "otherChannel";

interface ItemSpec { ch: number; amount: AmountKind; cum: CumKind; sig: SigMode; r: number }
type Cmd =
  | { t: "open"; payer: number; payee: number; token: number; signer: number; amount: AmountKind; r: number; delay: number; dup: number | null }
  | { t: "topUp"; ch: number; sg: SignerArg; caller: Role; amount: AmountKind; r: number }
  | { t: "settle"; routeOfFirst: boolean; payee: number; token: number; caller: Role; items: ItemSpec[] }
  | { t: "requestClose"; ch: number; sg: SignerArg; caller: Role }
  | { t: "warp"; ch: number; offset: number; secs: number }
  | { t: "withdraw"; ch: number; sg: SignerArg; caller: Role; at: number | null }
  | { t: "close"; ch: number; sg: SignerArg; caller: Role; amount: AmountKind; cum: CumKind; sig: CloseSigMode; r: number; consent: Consent }
  | { t: "setOperator"; payee: number; approved: boolean };

/** Channel choice: < 6 an unknown id; < 40 any channel; else preferably a channel the command can act on. */
const chPick = fc.nat(99);
const signerArg = fc.oneof(
  { weight: 12, arbitrary: fc.constant<SignerArg>("own") },
  { weight: 1, arbitrary: fc.constantFrom<SignerArg>("payer", "stranger", "zero") },
);
const amountKind = fc.oneof(
  { weight: 6, arbitrary: fc.constant<AmountKind>("next") },
  { weight: 7, arbitrary: fc.constantFrom<AmountKind>("full", "settled", "below", "zero", "over", "huge", "one") },
);
const cumKind = fc.constantFrom<CumKind>("same", "same", "more", "less", "max");
const sigMode = fc.oneof(
  { weight: 10, arbitrary: fc.constant<SigMode>("good") },
  { weight: 4, arbitrary: fc.constantFrom<SigMode>("wrongKey", "otherChannel", "wrongDomain", "highS", "zero") },
);
const closeSigMode = fc.oneof(
  { weight: 8, arbitrary: fc.constant<CloseSigMode>("good") },
  { weight: 4, arbitrary: fc.constantFrom<CloseSigMode>("wrongKey", "wrongDomain", "highS", "badV", "short", "empty", "zero") },
);
const openAmount = fc.constantFrom<AmountKind>("next", "next", "next", "next", "next", "next", "next", "next", "one", "full", "zero", "over");
const rand = fc.nat(1_000_000_000);

const openCmd: fc.Arbitrary<Cmd> = fc.record({
  t: fc.constant("open" as const),
  payer: fc.nat(PAYERS.length - 1),
  payee: fc.nat(PAYEES.length - 1),
  token: fc.nat(4).map((x) => (x === 0 ? 1 : 0)), // mostly token 0
  signer: fc.nat(SIGNERS.length), // SIGNERS.length = the zero address (the payer signs)
  amount: openAmount,
  r: rand,
  delay: fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(MIN_CLOSE_DELAY, MIN_CLOSE_DELAY, 3_600, DAY, MAX_CLOSE_DELAY) },
    { weight: 1, arbitrary: fc.constantFrom(0, MIN_CLOSE_DELAY - 1, MAX_CLOSE_DELAY + 1) },
  ),
  dup: fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(99) }), // re-open an existing channel's parameters
});
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 3, arbitrary: openCmd },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("topUp" as const), ch: chPick, sg: signerArg, caller: fc.constantFrom<Role>("payer", "payer", "payer", "payee", "otherPayer", "signer"), amount: amountKind, r: rand }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("settle" as const),
      // the batch's payee and token: mostly those of the first item's channel, else chosen here
      routeOfFirst: fc.nat(9).map((x) => x < 8),
      payee: fc.nat(PAYEES.length - 1),
      token: fc.nat(9).map((x) => (x === 0 ? 1 : 0)),
      caller: fc.constantFrom<Role>("payee", "payee", "payee", "payee", "payee", "payee", "payee", "operator", "stranger"),
      items: fc.array(fc.record({ ch: chPick, amount: amountKind, cum: cumKind, sig: sigMode, r: rand }), { minLength: 1, maxLength: 4 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("requestClose" as const), ch: chPick, sg: signerArg, caller: fc.constantFrom<Role>("payer", "payer", "payer", "signer", "signer", "payee", "stranger") }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("warp" as const), ch: fc.nat(99), offset: fc.constantFrom(-1, 0, 0, 1), secs: fc.constantFrom(1, 60, MIN_CLOSE_DELAY, DAY) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("withdraw" as const), ch: chPick, sg: signerArg, caller: fc.constantFrom<Role>("payer", "stranger", "payee"),
      // when set and the channel's close is pending, first travel to closesAt + at (a warp and a withdraw in one command)
      at: fc.oneof({ weight: 1, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.constantFrom(-1, 0, 0, 1, 3600) }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("close" as const), ch: chPick, sg: signerArg, caller: fc.constantFrom<Role>("payee", "payee", "payee", "payee", "operator", "operator", "operator", "payer", "stranger"),
      amount: amountKind, cum: cumKind, sig: closeSigMode, r: rand,
      consent: fc.constantFrom<Consent>("none", "signer", "signer", "payer", "stranger", "otherChannel"),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("setOperator" as const), payee: fc.nat(PAYEES.length - 1), approved: fc.boolean() }) },
);
/** A run: a valid open first (so every run has a channel to work on), then 4 to 11 more commands. */
const firstOpen: fc.Arbitrary<Cmd> = openCmd.map((c) => (c.t === "open" ? { ...c, amount: "next" as const, delay: DAY, dup: null } : c));
const program = fc.tuple(firstOpen, fc.array(cmd, { minLength: 4, maxLength: 11 })).map(([first, rest]) => [first, ...rest]);

// ------------------------------------------------------------------ the test
describe("ChannelEscrow: model-based random sequences", function () {
  const numRuns = Number(process.env.MODEL_RUNS ?? (underCoverage() ? 40 : 500));
  this.timeout(600_000);

  let env: Env;
  let escrow: Address;
  let tokens: Address[];
  let addr: (i: number) => Address;
  let base: string;
  let baseTime: bigint;
  let initialBalances: Map<string, bigint>;
  const voucherSigners = new Map<Address, VoucherSigner>();
  const foreignSigners = new Map<Address, VoucherSigner>();
  /** Private keys of the accounts that sign (payers, signers, the stranger), by address. */
  const keys = new Map<Address, Hex>();
  const provider = hre.network.provider;
  /** MODEL_STATS=1 prints how often each outcome occurred (to check the generators reach every branch). */
  const stats = process.env.MODEL_STATS === "1" ? new Map<string, number>() : undefined;

  before(async () => {
    env = await deployEscrow();
    const usdc2 = await hre.viem.deployContract("MockUSDC");
    escrow = getAddress(env.escrow.address);
    tokens = [getAddress(env.usdc.address), getAddress(usdc2.address)];
    const wallets = env.wallets;
    addr = (i) => getAddress(wallets[i].account.address);
    for (const i of [...PAYERS, ...SIGNERS, STRANGER]) keys.set(addr(i), accountKey(i));
    for (const i of [...PAYERS, ...SIGNERS]) {
      voucherSigners.set(addr(i), new VoucherSigner(accountKey(i), env.domain));
      foreignSigners.set(addr(i), new VoucherSigner(accountKey(i), escrowDomain(env.chainId + 1, escrow)));
    }
    for (const p of PAYERS) {
      for (const t of tokens) {
        await wallets[p].writeContract({ address: t, abi: mockUsdcAbi, functionName: "mint", args: [addr(p), 1n << 100n] });
        await wallets[p].writeContract({ address: t, abi: mockUsdcAbi, functionName: "approve", args: [escrow, (1n << 256n) - 1n] });
      }
    }
    // The first payee starts with the operator approved, so operators' closes (and their consent rule) are exercised.
    await wallets[PAYEES[0]].writeContract({ address: escrow, abi: channelEscrowAbi, functionName: "setOperator", args: [addr(OPERATOR), true] });
    initialBalances = new Map();
    for (const t of tokens) for (const h of [escrow, ...[...PAYERS, ...PAYEES, OPERATOR, STRANGER].map(addr)]) {
      initialBalances.set(EscrowModel.balanceKey(t, h), await rawBalance(t, h));
    }
    base = await snapshot();
    baseTime = await latestTimestamp();
  });

  after(async () => {
    if (base) await revertTo(base);
    if (stats) console.log([...stats.entries()].sort().map(([k, n]) => `${String(n).padStart(6)}  ${k}`).join("\n"));
  });

  async function rawCall(to: Address, data: Hex): Promise<Hex> {
    return (await provider.request({ method: "eth_call", params: [{ to, data }, "latest"] })) as Hex;
  }
  async function rawBalance(token: Address, who: Address): Promise<bigint> {
    const data = encodeFunctionData({ abi: mockUsdcAbi, functionName: "balanceOf", args: [who] });
    return decodeFunctionResult({ abi: mockUsdcAbi, functionName: "balanceOf", data: await rawCall(token, data) });
  }

  it(`keeps the contract equal to the model and the invariants true over ${numRuns} random sequences`, async () => {
    await fc.assert(
      fc.asyncProperty(program, async (cmds) => {
        try {
          await runProgram(cmds);
        } finally {
          await revertTo(base);
          base = await snapshot();
        }
      }),
      { numRuns, seed: process.env.MODEL_SEED ? Number(process.env.MODEL_SEED) : undefined, endOnFailure: process.env.MODEL_SHRINK !== "1" },
    );
  });

  async function runProgram(cmds: Cmd[]): Promise<void> {
    const model = new EscrowModel(env.chainId, escrow, tokens, initialBalances);
    model.setOperator(addr(PAYEES[0]), addr(OPERATOR), true); // as approved on chain before the snapshot
    const order: Hex[] = []; // channel ids in creation order (the model's map keeps them too)
    const openArgs = new Map<Hex, { payer: Address; payee: Address; token: Address; signerArg: Address; salt: Hex }>();
    const seenSettled = new Map<Hex, bigint>();
    const frozen = new Map<Hex, string>();
    let now = baseTime;
    let next = baseTime + 1n;
    let saltCounter = 0;

    const unknownId = (r: number): Hex => numberToHex(0xdead0000n + BigInt(r), { size: 32 });
    const pick = (ch: number, prefer?: (c: ModelChannel) => boolean): Hex => {
      if (order.length === 0 || ch < 6) return unknownId(ch);
      const preferred = prefer && ch >= 40 ? order.filter((id) => prefer(model.channels.get(id)!)) : [];
      const from = preferred.length > 0 ? preferred : order;
      return from[ch % from.length];
    };
    const live = (c: ModelChannel) => !c.finalized;
    const roleAddr = (role: Role, ch: ModelChannel | undefined, fallbackPayee: Address): Address => {
      switch (role) {
        case "payer": return ch?.payer ?? addr(PAYERS[0]);
        case "otherPayer": return addr(PAYERS.find((p) => addr(p) !== ch?.payer) ?? PAYERS[0]);
        case "signer": return ch?.signer ?? addr(SIGNERS[0]);
        case "payee": return ch?.payee ?? fallbackPayee;
        case "operator": return addr(OPERATOR);
        case "stranger": return addr(STRANGER);
      }
    };
    const signerOf = (kind: SignerArg, ch: ModelChannel | undefined): Address => {
      switch (kind) {
        case "own": return ch?.signer ?? addr(SIGNERS[0]);
        case "payer": return ch?.payer ?? addr(PAYERS[0]);
        case "stranger": return addr(STRANGER);
        case "zero": return zeroAddress;
      }
    };
    const amountOf = (kind: AmountKind, ch: ModelChannel | undefined, r: number): bigint => {
      const deposit = ch?.deposit ?? 1_000_000n;
      const settled = ch?.settled ?? 0n;
      switch (kind) {
        case "next": {
          const room = deposit > settled ? deposit - settled : 1n;
          return settled + 1n + (BigInt(r) % room);
        }
        case "full": return deposit;
        case "settled": return settled;
        case "below": return settled > 0n ? settled - 1n : 0n;
        case "zero": return 0n;
        case "over": return deposit + 1n;
        case "huge": return MAX_UINT128;
        case "one": return 1n;
      }
    };
    const topUpAmount = (kind: AmountKind, ch: ModelChannel | undefined, r: number): bigint => {
      switch (kind) {
        case "over": return ch ? MAX_DEPOSIT - ch.deposit + 1n : MAX_DEPOSIT; // one past the largest deposit
        case "full": return ch ? MAX_DEPOSIT - ch.deposit : 1n; // exactly to the largest deposit (0 when full)
        case "huge": return MAX_UINT128;
        case "zero": return 0n;
        default: return 1n + (BigInt(r) % 1_000_000_000n);
      }
    };
    const cumOf = (kind: CumKind, amount: bigint, r: number): bigint => {
      switch (kind) {
        case "same": return amount;
        case "more": return amount + 1n + BigInt(r) > MAX_UINT128 ? MAX_UINT128 : amount + 1n + BigInt(r);
        case "less": return amount > 0n ? amount - 1n : 0n;
        case "max": return MAX_UINT128;
      }
    };
    /** The close request signature for a consent mode, and whether it is a valid consent for channel `id`. */
    const consentFor = (mode: Consent, id: Hex, ch: ModelChannel | undefined): { sig: Hex; valid: boolean } => {
      const by = (who: Address, channelId: Hex = id) => signCloseRequest(env.domain, channelId, keys.get(who)!);
      switch (mode) {
        case "none": return { sig: "0x", valid: false };
        case "signer": return { sig: by(ch?.signer ?? addr(SIGNERS[0])), valid: ch !== undefined };
        case "payer": return { sig: by(ch?.payer ?? addr(PAYERS[0])), valid: ch !== undefined };
        case "stranger": return { sig: by(addr(STRANGER)), valid: false };
        case "otherChannel": return { sig: by(ch?.signer ?? addr(SIGNERS[0]), unknownId(7)), valid: false };
      }
    };
    /** The 65-byte signature for a mode, and whether it is the channel signer's valid voucher. */
    const signatureFor = (mode: CloseSigMode, id: Hex, cum: bigint, ch: ModelChannel | undefined): { sig: Hex; valid: boolean } => {
      const signerAddr = ch?.signer ?? addr(SIGNERS[0]);
      const own = voucherSigners.get(signerAddr)!;
      const good = own.sign(id, cum).signature;
      switch (mode) {
        case "good": return { sig: good, valid: ch !== undefined };
        case "wrongKey": {
          const other = [...voucherSigners.keys()].find((a) => a !== signerAddr)!;
          return { sig: voucherSigners.get(other)!.sign(id, cum).signature, valid: false };
        }
        case "otherChannel": return { sig: own.sign(unknownId(7), cum).signature, valid: false };
        case "wrongDomain": return { sig: foreignSigners.get(signerAddr)!.sign(id, cum).signature, valid: false };
        case "highS": return { sig: flipS(good), valid: false };
        case "zero": return { sig: joinSignature(0n, 0n, 27), valid: false };
        case "badV": return { sig: withV(good, splitSignature(good).v - 27), valid: false };
        case "short": return { sig: `0x${good.slice(2, 130)}`, valid: false };
        case "empty": return { sig: "0x", valid: false };
      }
    };
    /** settle takes compact signatures: a high-s twin is not expressible, so "highS" puts s = n/2 + 1 there. */
    const compactSignatureFor = (mode: SigMode, id: Hex, cum: bigint, ch: ModelChannel | undefined): { sig: Hex; valid: boolean } => {
      if (mode !== "highS") return signatureFor(mode, id, cum, ch);
      const { r } = splitSignature(signatureFor("good", id, cum, ch).sig);
      return { sig: joinSignature(r, SECP256K1_HALF_N + 1n, 27), valid: false };
    };

    /** Sends a transaction at the model's next timestamp; returns the outcome in the model's terms. */
    const send = async (from: Address, data: Hex): Promise<Outcome> => {
      await provider.send("evm_setNextBlockTimestamp", [Number(next)]);
      const ts = next;
      now = ts;
      next = ts + 1n;
      let hash: Hex;
      try {
        hash = (await provider.request({ method: "eth_sendTransaction", params: [{ from, to: escrow, data, gas: numberToHex(5_000_000) }] })) as Hex;
      } catch (e) {
        const d = decodeRevert(e);
        if (!d) throw e;
        return { ok: false, error: d.errorName, args: d.args };
      }
      const receipt = (await provider.request({ method: "eth_getTransactionReceipt", params: [hash] })) as { logs: Log[]; status: Hex };
      expect(receipt.status).to.equal("0x1");
      const events = parseEventLogs({ abi: channelEscrowAbi, logs: receipt.logs, strict: true }).map((l) => [l.eventName, { ...l.args }] as const);
      const transfers = parseEventLogs({ abi: mockUsdcAbi, eventName: "Transfer", logs: receipt.logs, strict: true }).map((l) => ({
        token: getAddress(l.address), from: getAddress(l.args.from), to: getAddress(l.args.to), value: l.args.value,
      }));
      return { ok: true, events: events as ModelEvent[], transfers };
    };
    const call = (fn: string, args: readonly unknown[]) => encodeFunctionData({ abi: channelEscrowAbi, functionName: fn as "open", args: args as never });

    for (const [step, c] of cmds.entries()) {
      let expected: Outcome | undefined;
      let actual: Outcome | undefined;
      switch (c.t) {
        case "open": {
          let payer = addr(PAYERS[c.payer]);
          let payee = addr(PAYEES[c.payee]);
          let token = tokens[c.token];
          let signerArg = c.signer === SIGNERS.length ? zeroAddress : addr(SIGNERS[c.signer]);
          let salt = numberToHex(++saltCounter, { size: 32 });
          if (c.dup !== null && order.length > 0) ({ payer, payee, token, signerArg, salt } = openArgs.get(order[c.dup % order.length])!);
          const amount = c.amount === "next" ? 1n + (BigInt(c.r) % 1_000_000_000n) : c.amount === "full" ? MAX_DEPOSIT : amountOf(c.amount, undefined, c.r);
          const before = model.channels.size;
          expected = model.open({ payer, payee, token, signer: signerArg, amount, closeDelay: c.delay, salt });
          actual = await send(payer, call("open", [payee, token, signerArg, amount, c.delay, salt]));
          if (model.channels.size > before) {
            const id = [...model.channels.keys()].at(-1)!;
            order.push(id);
            openArgs.set(id, { payer, payee, token, signerArg, salt });
          }
          break;
        }
        case "topUp": {
          const id = pick(c.ch, live);
          const ch = model.channels.get(id);
          const caller = roleAddr(c.caller, ch, addr(PAYEES[0]));
          const amount = topUpAmount(c.amount, ch, c.r);
          const signer = signerOf(c.sg, ch);
          expected = model.topUp(caller, id, signer, amount);
          actual = await send(caller, call("topUp", [id, signer, amount]));
          break;
        }
        case "settle": {
          const first = c.routeOfFirst ? model.channels.get(pick(c.items[0].ch, live)) : undefined;
          const payee = first?.payee ?? addr(PAYEES[c.payee]);
          const token = first?.token ?? tokens[c.token];
          const caller = c.caller === "payee" ? payee : roleAddr(c.caller, undefined, payee);
          const claims: SettleClaim[] = [];
          const modelItems: ModelSettleItem[] = [];
          for (const [k, it] of c.items.entries()) {
            const id = pick(it.ch, k === 0 ? live : (x) => live(x) && x.payee === payee && x.token === token);
            // amounts are chosen against the channel's state before the batch
            const ch = model.channels.get(id);
            const amount = amountOf(it.amount, ch, it.r);
            const cum = cumOf(it.cum, amount, it.r);
            const { sig, valid } = compactSignatureFor(it.sig, id, cum, ch);
            claims.push({ channelId: id, cumulativeAmount: cum, amount, signature: sig });
            modelItems.push({ channelId: id, cumulativeAmount: cum, amount, signatureValid: valid });
          }
          expected = model.settle(caller, payee, token, modelItems);
          actual = await send(caller, call("settle", [payee, token, encodeSettleItems(claims)]));
          break;
        }
        case "requestClose": {
          const id = pick(c.ch, (x) => live(x) && x.closeRequestedAt === 0n);
          const ch = model.channels.get(id);
          const caller = roleAddr(c.caller, ch, addr(PAYEES[0]));
          const signer = signerOf(c.sg, ch);
          expected = model.requestClose(caller, id, signer, next);
          actual = await send(caller, call("requestClose", [id, signer]));
          break;
        }
        case "warp": {
          const pending = order.map((id) => model.channels.get(id)!).filter((ch) => !ch.finalized && ch.closeRequestedAt !== 0n);
          const target = pending.length > 0
            ? pending[c.ch % pending.length].closeRequestedAt + BigInt(pending[c.ch % pending.length].closeDelay) + BigInt(c.offset)
            : now + BigInt(c.secs);
          if (target > next) next = target;
          break;
        }
        case "withdraw": {
          const id = pick(c.ch, (x) => live(x) && x.closeRequestedAt !== 0n);
          const ch = model.channels.get(id);
          if (c.at !== null && ch && ch.closeRequestedAt !== 0n) {
            const target = ch.closeRequestedAt + BigInt(ch.closeDelay) + BigInt(c.at);
            if (target > next) next = target;
          }
          const caller = roleAddr(c.caller, ch, addr(PAYEES[0]));
          const signer = signerOf(c.sg, ch);
          expected = model.withdraw(id, signer, next);
          actual = await send(caller, call("withdraw", [id, signer]));
          break;
        }
        case "close": {
          const id = pick(c.ch, live);
          const ch = model.channels.get(id);
          const caller = roleAddr(c.caller, ch, addr(PAYEES[0]));
          const amount = amountOf(c.amount, ch, c.r);
          const cum = cumOf(c.cum, amount, c.r);
          const { sig, valid } = signatureFor(c.sig, id, cum, ch);
          const signer = signerOf(c.sg, ch);
          const consent = consentFor(c.consent, id, ch);
          expected = model.close(caller, id, signer, cum, amount, valid, consent.valid);
          actual = await send(caller, call("close", [id, signer, cum, amount, sig, consent.sig]));
          break;
        }
        case "setOperator": {
          const payee = addr(PAYEES[c.payee]);
          expected = model.setOperator(payee, addr(OPERATOR), c.approved);
          actual = await send(payee, call("setOperator", [addr(OPERATOR), c.approved]));
          break;
        }
      }
      if (stats && actual) {
        const key = actual.ok ? `${c.t}${c.t === "close" ? `(${c.caller},${c.consent})` : ""}: ok ${actual.events.map((e) => (e[0] === "SettleSkipped" ? `skip${(e[1] as { reason: number }).reason}` : e[0])).join(",")}` : `${c.t}${c.t === "close" ? `(${c.caller},${c.consent})` : ""}: ${actual.error}`;
        stats.set(key, (stats.get(key) ?? 0) + 1);
      }
      const where = `step ${step} ${JSON.stringify(c)}`;
      if (expected) expect(normalize(actual), where).to.deep.equal(normalize(expected));
      await checkInvariants(model, order, seenSettled, frozen, where);
    }
  }

  async function checkInvariants(model: EscrowModel, order: Hex[], seenSettled: Map<Hex, bigint>, frozen: Map<Hex, string>, where: string) {
    if (order.length > 0) {
      // Each channel twice: with its signer, then with a wrong one (the stranger never signs a channel).
      const refs = order.flatMap((id) => [{ channelId: id, signer: model.channels.get(id)!.signer }, { channelId: id, signer: addr(STRANGER) }]);
      const data = encodeFunctionData({ abi: channelEscrowAbi, functionName: "getChannels", args: [refs] });
      const all = decodeFunctionResult({ abi: channelEscrowAbi, functionName: "getChannels", data: await rawCall(escrow, data) });
      const onChain = all.filter((_, k) => k % 2 === 0);
      all.forEach((got, k) => {
        if (k % 2 === 1) expect(got, `${where}: channel ${(k - 1) / 2} read with a wrong signer`).to.deep.equal(model.getChannel(refs[k].channelId, refs[k].signer));
      });
      onChain.forEach((got, i) => {
        const id = order[i];
        const m = model.channels.get(id)!;
        const mine = { payer: m.payer, payee: m.payee, token: m.token, signer: m.signer, deposit: m.deposit, settled: m.settled,
          closeRequestedAt: m.closeRequestedAt, closeDelay: m.closeDelay, finalized: m.finalized };
        expect(got, `${where}: channel ${i} equals the model`).to.deep.equal(mine);
        expect(got.settled <= got.deposit, `${where}: settled <= deposit`).to.equal(true);
        expect(got.settled >= (seenSettled.get(id) ?? 0n), `${where}: settled never decreases`).to.equal(true);
        seenSettled.set(id, got.settled);
        const repr = JSON.stringify(got, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
        if (frozen.has(id)) expect(repr, `${where}: a finalized channel never changes`).to.equal(frozen.get(id));
        else if (got.finalized) frozen.set(id, repr);
      });
    }
    for (const t of tokens) {
      const bal = await rawBalance(t, escrow);
      const l = model.ledger.get(t)!;
      expect(bal, `${where}: escrow balance == deposits - refunds - payouts`).to.equal(l.deposits - l.refunds - l.payouts);
      let open = 0n;
      for (const ch of model.channels.values()) if (ch.token === t && !ch.finalized) open += ch.deposit - ch.settled;
      expect(bal, `${where}: escrow balance == Σ unspent deposits of open channels`).to.equal(open);
      for (const i of [...PAYERS, ...PAYEES, OPERATOR, STRANGER]) {
        expect(await rawBalance(t, addr(i)), `${where}: balance of account ${i}`).to.equal(model.balanceOf(t, addr(i)));
      }
    }
  }
});

/** Comparable form of an outcome: addresses lowercased, numbers as bigints. */
function normalize(v: unknown): unknown {
  if (typeof v === "string" && /^0x[0-9a-fA-F]{40}$/.test(v)) return v.toLowerCase();
  if (typeof v === "string" && /^0x[0-9a-fA-F]*$/.test(v)) return v.toLowerCase();
  if (typeof v === "number") return BigInt(v);
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}
