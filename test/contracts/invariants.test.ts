/**
 * Stateful invariant fuzz of ChannelEscrow. fast-check generates sequences of at least 50 calls over every entry point
 * (open, openWithPermit, openWithAuthorization, topUp, settle with mixed items, settleContractSigned with honest and
 * hostile ERC-1271 wallets, close by the payee and by an operator with and without the payer's consent, setOperator,
 * requestClose, withdraw, collect) mixed with changes of the world around the escrow (time travel, pausing and
 * unpausing a token, blacklisting payers, payees, a collect recipient or the escrow itself, rotating a wallet's mode
 * after it signed vouchers, re-approving), over two MockUSDC tokens, three payers, two payees, two session keys, three
 * ERC-1271 wallets and an echoing wallet. Calls may revert; no model predicts outcomes. After EVERY step the test reads
 * the whole state in one eth_call (contracts/mocks/InvariantProbe.sol) and checks:
 *
 * 1. solvency, per token: escrow balance == Σ (deposit − settled) of unfinalized channels + Σ owed to the parties
 *    (payers and payees), and nothing is owed to anyone else;
 * 2. per channel: settled ≤ deposit; settled and deposit never decrease; payer, payee, token, signer, close delay never
 *    change; a finalized channel never changes again (all fields);
 * 3. per payee and token: received from the escrow (Transfer logs escrow → payee, plus what it collected to another
 *    address, minus what others collected to it) + owed == Σ settled of its channels; per payer and token, the same
 *    with Σ (deposit − settled) of its finalized channels (refunds);
 * 4. per channel: settled ≤ the highest cumulative amount of a valid voucher the signer (or the wallet's owner) gave;
 * 5. a call naming a channel with a wrong signer reverts SignerMismatch (topUp, requestClose, withdraw, close) or its
 *    settle item is skipped, no storage slot is written for the wrong signer, and the channel is unchanged;
 * 6. getChannel(id, wrong signer) shows the record fields with signer 0, deposit 0, settled 0, finalized false;
 * and, from every receipt's logs: each settle item emits exactly one Settled/SettleSkipped, in order, skipped when
 * its signature, signer or route is wrong, settling exactly its amount otherwise; money moves only at the request of
 * whom it may (Settled/Closed from the payee or its operator, topUps from the payer, close requests from payer or
 * signer, collects by the owed account, withdrawals only from closesAt on); an operator's close refunds only with the
 * payer's consent; a close pays out only against a valid voucher; a payment is deferred only when its transfer
 * cannot happen (token paused, recipient or escrow blacklisted), never because of a tight gas limit; every watched
 * account's balance and owed amount equals what the logs say; and liveness: a settle by the payee, a payee's
 * waiving close and a due withdraw never revert because a party cannot receive.
 *
 * INVARIANT_RUNS (default 200; 6 under coverage), INVARIANT_STEPS (minimum steps per sequence, default 50),
 * INVARIANT_SEED, INVARIANT_PATH (replay one failing case, as fast-check reports it), INVARIANT_SHRINK=1 (shrink a
 * failure instead of stopping at it). Each sequence starts from one EVM snapshot (evm_revert, no redeploy), with
 * explicit block timestamps, so a seed replays exactly.
 */
import hre from "hardhat";
import { expect } from "chai";
import fc from "fast-check";
import {
  decodeFunctionResult,
  encodeAbiParameters,
  encodeFunctionData,
  getAddress,
  keccak256,
  maxUint256,
  numberToHex,
  parseEventLogs,
  toHex,
  zeroAddress,
  type Abi,
  type Address,
  type Hex,
  type Log,
} from "viem";
import {
  authorizationNonce,
  channelEscrowAbi,
  computeChannelId,
  encodeSettleItems,
  escrowDomain,
  MAX_CLOSE_DELAY,
  MAX_DEPOSIT,
  MAX_UINT128,
  MIN_CLOSE_DELAY,
  SECP256K1_HALF_N,
  signCloseRequest,
  VoucherSigner,
  type EscrowDomain,
  type SettleClaim,
} from "@paychan/protocol";
import { privateKeyToAddress } from "viem/accounts";
import { mockUsdcAbi } from "@paychan/demo";
import { deployEscrow, DAY, type Env } from "../helpers/escrow";
import { accountKey, latestTimestamp, revertTo, snapshot, underCoverage } from "../helpers/chain";
import { decodeRevert } from "../helpers/revert";
import { flipS, joinSignature, splitSignature } from "../helpers/signatures";
import { signAuthorization, signPermit } from "../helpers/usdc";
import { SKIP } from "../helpers/escrow-tx";
import { choose, sequence, type Cmd } from "../helpers/invariant-commands";
import { MoneyLedger, type CollectedLog, type DeferredLog, type TransferLog } from "../helpers/invariant-ledger";

// ------------------------------------------------------------------ actors (Hardhat account indexes)
const DEPLOYER = 0; // owns both tokens: pauses and blacklists
const PAYERS = [1, 2, 3];
const PAYEES = [4, 5];
const KEYS = [6, 7]; // session keys (EOA signers)
const OPERATOR = 8;
const STRANGER = 9; // relayer, unauthorized caller, wrong signer
const OWNERS = [10, 11]; // owners of the ERC-1271 wallets
const SINK = 12; // a collect recipient that is no party
/** Wallet w is owned by account WALLET_OWNER[w] (wallets 0 and 2 share an owner: a voucher valid for one is valid for the other). */
const WALLET_OWNER = [OWNERS[0], OWNERS[1], OWNERS[0]];
const MODE = { Valid: 0, Invalid: 1, Reverting: 2, GasBurning: 3 } as const;

const FULL_GAS = 5_000_000;
/** Every this many steps (and after the last) the test reads the balances and owed amounts of every watched account. */
const FULL_CHECK_EVERY = 10;
/** How a call with a tight gas limit may fail: the escrow's own error, or the EVM's (no revert data). */
const OUT_OF_GAS = ["TransferOutOfGas", "<out of gas>", "<empty>", "<revert>", "<status 0>"];
const AMOUNT_KINDS = [[14, "next"], [2, "full"], [2, "stale"], [1, "below"], [1, "over"], [1, "zero"], [1, "huge"]] as const;
const CUM_KINDS = [[10, "same"], [3, "more"], [2, "less"], [1, "far"]] as const;
type AmountKind = (typeof AMOUNT_KINDS)[number][1];
type CumKind = (typeof CUM_KINDS)[number][1];

interface ChState {
  payer: Address;
  payee: Address;
  token: Address;
  signer: Address;
  deposit: bigint;
  settled: bigint;
  closeRequestedAt: bigint;
  closeDelay: number;
  finalized: boolean;
}
type SignerKind = "eoa" | "wallet" | "echo";
/** A channel the escrow reported opened (ChannelOpened), with what the test knows about it. */
interface Ch {
  id: Hex;
  payer: Address;
  payee: Address;
  token: Address;
  signer: Address;
  closeDelay: number;
  kind: SignerKind;
  /** Index in the wallets, −1 when the signer is no ERC-1271 wallet. */
  wallet: number;
  /** The key whose signatures are the channel's vouchers: the signer's own, or its wallet owner's; null for the echo wallet. */
  key: Hex | null;
  signerArg: Address;
  salt: Hex;
  /** Highest cumulative amount of a valid voucher given for the channel (0 before the first). */
  maxGiven: bigint;
  given: { cum: bigint; sig: Hex }[];
  /** The state read after the previous step (undefined in the step that opened it). */
  st: ChState | undefined;
  frozen: string | null;
}
type PendingOpen = Omit<Ch, "maxGiven" | "given" | "st" | "frozen">;

interface Sent {
  ok: boolean;
  error: string;
  logs: Log[];
  ts: bigint;
  events: ReturnType<typeof parseEscrowEvents>;
}
function parseEscrowEvents(logs: Log[]) {
  return parseEventLogs({ abi: channelEscrowAbi, logs, strict: true });
}

/** What the probe reads after a step (see contracts/mocks/InvariantProbe.sol for the layout). */
type RawSnap = readonly [balances: readonly bigint[], owed: readonly bigint[], channels: readonly ChState[]];

const lc = (a: string) => a.toLowerCase();
const repr = (s: ChState) =>
  `${s.payer}|${s.payee}|${s.token}|${s.signer}|${s.deposit}|${s.settled}|${s.closeRequestedAt}|${s.closeDelay}|${s.finalized}`;

describe("ChannelEscrow invariants under random call sequences", function () {
  this.timeout(0);
  const numRuns = Number(process.env.INVARIANT_RUNS ?? (underCoverage() ? 6 : 200));
  const minSteps = Math.max(50, Number(process.env.INVARIANT_STEPS ?? 50));
  const seed = process.env.INVARIANT_SEED !== undefined ? Number(process.env.INVARIANT_SEED) : Math.floor(Math.random() * 0x7fffffff);
  const provider = hre.network.provider;

  let env: Env;
  let chainId: number;
  let domain: EscrowDomain;
  let foreignDomain: EscrowDomain;
  let escrow: Address;
  let probe: Address;
  let tokens: Address[];
  let wallets: Address[];
  let echo: Address;
  let base: string;
  let baseTime: bigint;
  let probeAbi: Abi;
  let walletAbi: Abi;
  const addrOf = new Map<number, Address>();
  const keyOf = new Map<Address, Hex>();
  const addr = (i: number) => addrOf.get(i)!;
  let ACCTS: Address[];
  let acctIdx: Map<Address, number>;
  let PARTIES: Address[];
  let partySet: Set<Address>;
  let initialBalances: Map<string, bigint>;
  const signers = new Map<Hex, VoucherSigner>();
  const foreignSigners = new Map<Hex, VoucherSigner>();

  // ---------------------------------------------------------------- run statistics (whole run)
  const stats = {
    sequences: 0,
    steps: 0,
    calls: new Map<string, { n: number; reverted: number }>(),
    itemsApplied: 0,
    itemsSkipped: 0,
    walletItemsApplied: 0,
    rotatedWalletSkips: 0,
    deferred: 0,
    collected: 0,
    operatorRefundingCloses: 0,
    wrongSignerCalls: 0,
  };
  let started = 0;
  /** INVARIANT_STATS=1 prints how often each outcome occurred (to tune the generators). */
  const outcomeStats = process.env.INVARIANT_STATS === "1" ? new Map<string, number>() : undefined;
  const bump = (key: string) => outcomeStats?.set(key, (outcomeStats.get(key) ?? 0) + 1);

  before(async () => {
    env = await deployEscrow();
    chainId = env.chainId;
    domain = env.domain;
    escrow = getAddress(env.escrow.address);
    foreignDomain = escrowDomain(chainId + 1, escrow);
    for (let i = 0; i <= SINK; i++) {
      addrOf.set(i, getAddress(env.wallets[i].account.address));
      keyOf.set(getAddress(env.wallets[i].account.address), accountKey(i));
    }
    const usdc2 = await hre.viem.deployContract("MockUSDC");
    tokens = [getAddress(env.usdc.address), getAddress(usdc2.address)];
    wallets = [];
    for (const owner of WALLET_OWNER) {
      const w = await hre.viem.deployContract("ERC1271Wallet", [addr(owner), MODE.Valid]);
      wallets.push(getAddress(w.address));
    }
    echo = getAddress((await hre.viem.deployContract("EchoWallet")).address);
    probe = getAddress((await hre.viem.deployContract("InvariantProbe")).address);
    probeAbi = (await hre.artifacts.readArtifact("InvariantProbe")).abi as Abi;
    walletAbi = (await hre.artifacts.readArtifact("ERC1271Wallet")).abi as Abi;
    for (const p of PAYERS) {
      for (const t of tokens) {
        await env.wallets[p].writeContract({ address: t, abi: mockUsdcAbi, functionName: "mint", args: [addr(p), 1n << 100n] });
        await env.wallets[p].writeContract({ address: t, abi: mockUsdcAbi, functionName: "approve", args: [escrow, maxUint256] });
      }
    }
    // The first payee starts with the operator approved (the second approves it, or not, during the sequences).
    await env.wallets[PAYEES[0]].writeContract({ address: escrow, abi: channelEscrowAbi, functionName: "setOperator", args: [addr(OPERATOR), true] });
    PARTIES = [...PAYERS, ...PAYEES].map(addr);
    partySet = new Set(PARTIES);
    ACCTS = [escrow, ...PARTIES, ...KEYS.map(addr), addr(OPERATOR), addr(STRANGER), ...OWNERS.map(addr), addr(SINK), ...wallets, echo];
    acctIdx = new Map(ACCTS.map((a, i) => [a, i]));
    const [balances0] = await readProbe(ACCTS, [], []);
    initialBalances = new Map();
    tokens.forEach((t, ti) => ACCTS.forEach((a, ai) => initialBalances.set(MoneyLedger.key(t, a), balances0[ti * ACCTS.length + ai])));
    base = await snapshot();
    baseTime = await latestTimestamp();
  });

  after(async () => {
    if (base) await revertTo(base);
  });

  async function rawCall(to: Address, data: Hex): Promise<Hex> {
    return (await provider.request({ method: "eth_call", params: [{ to, data }, "latest"] })) as Hex;
  }
  /**
   * Balances of `holders`, owed amounts of `owedTo` and the channels `refs`, in one eth_call. Every external call the
   * probe makes costs the in-process chain about 0.25 ms (call tracing), so the test reads per step only what its
   * invariants need, and all watched accounts every FULL_CHECK_EVERY steps.
   */
  async function readProbe(holders: Address[], owedTo: Address[], refs: { channelId: Hex; signer: Address }[]): Promise<RawSnap> {
    const data = encodeFunctionData({ abi: probeAbi, functionName: "read", args: [escrow, tokens, holders, owedTo, refs] });
    return decodeFunctionResult({ abi: probeAbi, functionName: "read", data: await rawCall(probe, data) }) as unknown as RawSnap;
  }
  const voucherSigner = (key: Hex, foreign = false): VoucherSigner => {
    const m = foreign ? foreignSigners : signers;
    let s = m.get(key);
    if (!s) m.set(key, (s = new VoucherSigner(key, foreign ? foreignDomain : domain)));
    return s;
  };
  const sign = (key: Hex, id: Hex, cum: bigint, foreign = false): Hex => voucherSigner(key, foreign).sign(id, cum).signature;
  const call = (fn: string, args: readonly unknown[]) => encodeFunctionData({ abi: channelEscrowAbi, functionName: fn as "open", args: args as never });
  const tokenCall = (fn: string, args: readonly unknown[]) => encodeFunctionData({ abi: mockUsdcAbi, functionName: fn as "approve", args: args as never });
  const balanceKey = (id: Hex, payee: Address, token: Address, signer: Address): Hex =>
    keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "address" }, { type: "address" }, { type: "address" }], [id, payee, token, signer]));
  const unknownId = (n: number): Hex => numberToHex(0xdead0000n + BigInt(n), { size: 32 });
  const pseudoBytes = (r: number, len: number): Hex => {
    let out = "";
    for (let i = 0; out.length < len * 2; i++) out += keccak256(toHex(`${r}/${i}`)).slice(2);
    return `0x${out.slice(0, len * 2)}`;
  };
  const count = (label: string, reverted: boolean) => {
    const c = stats.calls.get(label) ?? { n: 0, reverted: 0 };
    c.n++;
    if (reverted) c.reverted++;
    stats.calls.set(label, c);
  };

  /** The revert of a failed transaction (custom error name, or a marker), or null for anything that is not a revert. */
  function revertOf(e: unknown): string | null {
    try {
      const d = decodeRevert(e);
      if (d) return d.errorName;
    } catch {
      return "<undecodable revert>";
    }
    const msg = String((e as Error)?.message ?? e);
    if (/out of gas/i.test(msg)) return "<out of gas>";
    if (/revert|invalid opcode/i.test(msg)) return "<revert>";
    return null;
  }

  it(`keeps the escrow solvent, payouts within vouchers and owed money, wrong signers powerless and finalized channels frozen over ${numRuns} sequences of ≥ ${minSteps} calls`, async () => {
    started = Date.now();
    let runNo = 0;
    const path = process.env.INVARIANT_PATH;
    await fc.assert(
      fc.asyncProperty(sequence(minSteps), async (cmds) => {
        runNo++;
        try {
          await runSequence(cmds, runNo);
        } finally {
          await revertTo(base);
          base = await snapshot();
        }
      }),
      { numRuns, seed, path, endOnFailure: process.env.INVARIANT_SHRINK !== "1" },
    );
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    let calls = 0;
    let reverted = 0;
    const parts: string[] = [];
    for (const [label, c] of [...stats.calls.entries()].sort()) {
      if (!label.startsWith("env:")) {
        calls += c.n;
        reverted += c.reverted;
      }
      parts.push(`${label} ${c.n}`);
    }
    if (outcomeStats) console.log([...outcomeStats.entries()].sort().map(([k, n]) => `${String(n).padStart(7)}  ${k}`).join("\n"));
    console.log(
      `      invariants: ${stats.sequences} sequences, ${stats.steps} steps, ${calls} escrow calls (${parts.join(", ")}), ` +
        `${((100 * reverted) / Math.max(1, calls)).toFixed(1)}% of escrow calls reverted; settle items ${stats.itemsApplied} applied ` +
        `(${stats.walletItemsApplied} wallet-signed) / ${stats.itemsSkipped} skipped, ${stats.rotatedWalletSkips} skipped after a wallet's mode rotated, ` +
        `${stats.wrongSignerCalls} wrong-signer calls, ${stats.deferred} payments deferred, ${stats.collected} collects, ` +
        `${stats.operatorRefundingCloses} operator closes refunding with consent; seed ${seed}; ${secs}s`,
    );
  });

  it("reaches every entry point, accepted and reverted, and defers and collects payments", function () {
    if (stats.sequences < 50) this.skip(); // too few sequences (coverage or a replay) to expect every branch
    for (const fn of ["open", "openWithPermit", "openWithAuthorization", "topUp", "settle", "settleContractSigned", "close", "setOperator", "requestClose", "withdraw", "collect"]) {
      const c = stats.calls.get(fn);
      expect(c?.n ?? 0, `${fn} called`).to.be.greaterThan(0);
      expect((c?.n ?? 0) - (c?.reverted ?? 0), `${fn} succeeded at least once`).to.be.greaterThan(0);
    }
    expect(stats.itemsApplied).to.be.greaterThan(0);
    expect(stats.walletItemsApplied).to.be.greaterThan(0);
    expect(stats.rotatedWalletSkips).to.be.greaterThan(0);
    expect(stats.deferred).to.be.greaterThan(0);
    expect(stats.collected).to.be.greaterThan(0);
    expect(stats.operatorRefundingCloses).to.be.greaterThan(0);
  });

  async function runSequence(cmds: Cmd[], runNo: number): Promise<void> {
    stats.sequences++;
    const chans: Ch[] = [];
    const byId = new Map<string, Ch>();
    const pendingOpen = new Map<string, PendingOpen>();
    const operators = new Set<string>([`${addr(PAYEES[0])}|${addr(OPERATOR)}`]); // `${payee}|${operator}`
    const ledger = new MoneyLedger(escrow, partySet, initialBalances);
    /** Owed amounts of the parties after the previous step, `owed[t * PARTIES.length + p]`. */
    let owedNow: readonly bigint[] = tokens.flatMap(() => PARTIES.map(() => 0n));
    /**
     * The token and wallet switches, which only this test flips (each flip is checked to succeed): paused tokens,
     * blacklisted `${token}|${account}` pairs, wallet modes (all deployed Valid, nothing paused or blacklisted).
     */
    const world = { paused: tokens.map(() => false), blacklisted: new Set<string>(), modes: wallets.map(() => MODE.Valid as number) };
    let now = baseTime;
    let next = baseTime + 1n;
    let saltCounter = 0;
    const trace: string[] = [];
    let step = 0;
    let cmd: Cmd = cmds[0];
    let outcomes: string[] = [];
    /** Channels a wrong-signer call or item named this step, which must come out of the step unchanged. */
    let unchanged = new Set<string>();
    /** Balance slots of wrong signers that must still be empty after the step. */
    let emptySlots: { slot: Hex; what: string }[] = [];

    const fail = (msg: string): never => {
      throw new Error(
        `invariant violated (INVARIANT_SEED=${seed}, sequence ${runNo}, step ${step}): ${msg}\n  command: ${JSON.stringify(cmd)}\n  outcomes: ${outcomes.join(", ")}\n  last steps:\n    ${trace.slice(-12).join("\n    ")}`,
      );
    };
    const check = (cond: boolean, msg: () => string) => {
      if (!cond) fail(msg());
    };
    const ti = (t: Address) => tokens.indexOf(t);
    const at = (arr: readonly bigint[] | readonly boolean[], t: Address, a: Address) => arr[ti(t) * ACCTS.length + acctIdx.get(a)!];
    /** Pauses and blacklistings to lift at the start of a later step: key → step. */
    const restoreAt = new Map<string, number>();
    const setPaused = async (t: Address, on: boolean) => {
      const res = await send("env:pause", addr(DEPLOYER), t, tokenCall("setPaused", [on]));
      check(res.ok, () => `setPaused reverted: ${res.error}`);
      world.paused[ti(t)] = on;
    };
    const setBlacklisted = async (t: Address, a: Address, on: boolean) => {
      const res = await send("env:blacklist", addr(DEPLOYER), t, tokenCall("blacklist", [a, on]));
      check(res.ok, () => `blacklist reverted: ${res.error}`);
      if (on) world.blacklisted.add(`${t}|${a}`);
      else world.blacklisted.delete(`${t}|${a}`);
    };
    const owedOf = (t: Address, a: Address) => owedNow[ti(t) * PARTIES.length + PARTIES.indexOf(a)];
    const blacklisted = (t: Address, a: Address) => world.blacklisted.has(`${t}|${a}`);
    const paused = (t: Address) => world.paused[ti(t)];
    const walletValid = (ch: Ch) => ch.kind === "wallet" && world.modes[ch.wallet] === MODE.Valid;
    const live = (c: Ch) => !(c.st?.finalized ?? false);
    const authorized = (sender: Address, payee: Address) => sender === payee || operators.has(`${payee}|${sender}`);

    /** A channel id for choice `n` (0..99): < 4 an unknown id, < `anyBelow` any channel, else one `prefer` likes if any. */
    const pick = (n: number, prefer?: (c: Ch) => boolean, anyBelow = 30): Hex => {
      if (chans.length === 0 || n < 4) return unknownId(n);
      const preferred = prefer && n >= anyBelow ? chans.filter(prefer) : [];
      const from = preferred.length > 0 ? preferred : chans;
      return from[n % from.length].id;
    };
    const chOf = (id: Hex) => byId.get(lc(id));

    /** Signs a voucher with the channel's own key and records it as given to the payee. */
    const genuine = (ch: Ch, cum: bigint): Hex => {
      const sig = sign(ch.key!, ch.id, cum);
      ch.given.push({ cum, sig });
      if (cum > ch.maxGiven) ch.maxGiven = cum;
      return sig;
    };
    /** The channel's signer, or a wrong one (mostly the own signer). */
    const signerArg = (n: number, ch: Ch | undefined): Address => {
      const own = ch?.signer ?? addr(KEYS[0]);
      const kind = choose(n, [[40, "own"], [1, "stranger"], [1, "zero"], [1, "payer"], [1, "owner"], [1, "otherWallet"], [1, "otherKey"], [1, "echo"]] as const);
      switch (kind) {
        case "own": return own;
        case "stranger": return addr(STRANGER);
        case "zero": return zeroAddress;
        case "payer": return ch?.payer ?? addr(PAYERS[0]);
        case "owner": return addr(ch && ch.wallet >= 0 ? WALLET_OWNER[ch.wallet] : OWNERS[0]);
        case "otherWallet": return wallets.find((w) => w !== own)!;
        case "otherKey": return KEYS.map(addr).find((k) => k !== own)!;
        case "echo": return echo;
      }
    };
    /** Another key-holding address than `not`, chosen by `r`. */
    /** A key-holding address whose signature is not the channel's voucher (neither its signer nor its wallet's owner). */
    const otherKeyAddr = (ch: Ch | undefined, r: number): Address => {
      const genuineKey = ch?.key ? privateKeyToAddress(ch.key) : undefined;
      const c = [...KEYS, ...PAYERS, ...OWNERS, STRANGER].map(addr).filter((a) => a !== ch?.signer && a !== genuineKey);
      return c[r % c.length];
    };
    const claimAmount = (kind: AmountKind, st: ChState | undefined, r: number): bigint => {
      const d = st?.deposit ?? 1_000_000n;
      const s = st?.settled ?? 0n;
      switch (kind) {
        case "next": return s + 1n + (BigInt(r) % (d > s ? d - s : 1n));
        case "full": return d;
        case "stale": return s;
        case "below": return s > 0n ? s - 1n : 0n;
        case "over": return d + 1n;
        case "zero": return 0n;
        case "huge": return MAX_UINT128;
      }
    };
    const cumFor = (kind: CumKind, amount: bigint, st: ChState | undefined, r: number): bigint => {
      const d = st?.deposit ?? 1_000_000n;
      if (amount === MAX_UINT128) return d; // a voucher for everything would make invariant 4 vacuous: keep it bounded
      let cum: bigint;
      switch (kind) {
        case "same": cum = amount; break;
        case "more": cum = amount + 1n + BigInt(r % 1000); break;
        case "less": cum = amount > 0n ? amount - 1n : 0n; break;
        case "far": cum = 2n * d + amount + 1n; break;
      }
      return cum > MAX_UINT128 ? MAX_UINT128 : cum;
    };

    // ---------------------------------------------------------------- sending and per-receipt checks
    /** Sends a transaction at the next explicit timestamp; on success, accounts its logs and runs the per-receipt checks. */
    const send = async (label: string, from: Address, to: Address, data: Hex, opts: { gas?: number; sender?: Address } = {}): Promise<Sent> => {
      await provider.send("evm_setNextBlockTimestamp", [Number(next)]);
      const ts = next;
      now = ts;
      next = ts + 1n;
      let res: Sent;
      try {
        const hash = (await provider.request({
          method: "eth_sendTransaction",
          params: [{ from, to, data, gas: numberToHex(opts.gas ?? FULL_GAS) }],
        })) as Hex;
        const receipt = (await provider.request({ method: "eth_getTransactionReceipt", params: [hash] })) as { logs: Log[]; status: Hex };
        if (receipt.status !== "0x1") res = { ok: false, error: "<status 0>", logs: [], ts, events: [] };
        else res = { ok: true, error: "", logs: receipt.logs, ts, events: [] };
      } catch (e) {
        const error = revertOf(e);
        if (error === null) throw e;
        res = { ok: false, error, logs: [], ts, events: [] };
      }
      count(label, !res.ok);
      bump(`${label}: ${res.ok ? "ok" : res.error}`);
      outcomes.push(`${label}${opts.gas ? `(gas ${opts.gas})` : ""}: ${res.ok ? "ok" : res.error}`);
      if (res.ok) res.events = onReceipt(opts.sender ?? from, res.logs, ts);
      return res;
    };

    function onReceipt(sender: Address, logs: Log[], ts: bigint) {
      const events = parseEscrowEvents(logs.filter((l) => lc(l.address) === lc(escrow)));
      const tokenLogs = logs.filter((l) => tokens.some((t) => lc(t) === lc(l.address)));
      const transfers: TransferLog[] = parseEventLogs({ abi: mockUsdcAbi, eventName: "Transfer", logs: tokenLogs, strict: true }).map((l) => ({
        token: getAddress(l.address),
        from: getAddress(l.args.from),
        to: getAddress(l.args.to),
        value: l.args.value,
      }));
      const deferred: DeferredLog[] = [];
      const collected: CollectedLog[] = [];
      for (const e of events) {
        switch (e.eventName) {
          case "ChannelOpened": {
            const a = e.args;
            const p = pendingOpen.get(lc(a.channelId));
            check(p !== undefined && !byId.has(lc(a.channelId)), () => `unexpected ChannelOpened ${a.channelId}`);
            check(
              a.payer === p!.payer && a.payee === p!.payee && a.token === p!.token && a.signer === p!.signer && a.closeDelay === p!.closeDelay,
              () => `ChannelOpened ${a.channelId} with other parties than the call's`,
            );
            const ch: Ch = { ...p!, maxGiven: 0n, given: [], st: undefined, frozen: null };
            chans.push(ch);
            byId.set(lc(ch.id), ch);
            break;
          }
          case "Settled":
          case "Closed": {
            const ch = chOf(e.args.channelId);
            check(ch !== undefined, () => `${e.eventName} for a channel never opened: ${e.args.channelId}`);
            check(authorized(sender, ch!.payee), () => `${e.eventName} on ${e.args.channelId} in a call by ${sender}, neither its payee nor an operator of it`);
            break;
          }
          case "ChannelToppedUp": {
            const ch = chOf(e.args.channelId);
            check(ch !== undefined && sender === ch.payer, () => `ChannelToppedUp on ${e.args.channelId} by ${sender}, not its payer`);
            break;
          }
          case "CloseRequested": {
            const ch = chOf(e.args.channelId);
            check(ch !== undefined && (sender === ch.payer || sender === ch.signer), () => `CloseRequested on ${e.args.channelId} by ${sender}, neither payer nor signer`);
            break;
          }
          case "Withdrawn": {
            const ch = chOf(e.args.channelId);
            const st = ch?.st;
            check(
              st !== undefined && st.closeRequestedAt !== 0n && ts >= st.closeRequestedAt + BigInt(st.closeDelay),
              () => `Withdrawn on ${e.args.channelId} at ${ts}, before its close delay elapsed (${JSON.stringify(st, (_k, v) => (typeof v === "bigint" ? v.toString() : v))})`,
            );
            break;
          }
          case "OperatorSet":
            if (e.args.approved) operators.add(`${e.args.payee}|${e.args.operator}`);
            else operators.delete(`${e.args.payee}|${e.args.operator}`);
            break;
          case "PaymentDeferred": {
            const { token, account, amount } = e.args;
            stats.deferred++;
            check(
              paused(token) || blacklisted(token, account) || blacklisted(token, escrow),
              () => `PaymentDeferred of ${amount} to ${account} although ${token} is not paused and neither it nor the escrow is blacklisted`,
            );
            deferred.push({ token, account, amount });
            break;
          }
          case "Collected": {
            const { token, account, to, amount } = e.args;
            stats.collected++;
            check(account === sender, () => `Collected for ${account} in a call by ${sender}`);
            collected.push({ token, account, to, amount });
            break;
          }
          default:
            break;
        }
      }
      const problems = ledger.apply(transfers, deferred, collected);
      if (problems.length > 0) fail(problems.join("; "));
      return events;
    }

    const expectRevert = (res: Sent, allowed: readonly string[], what: string) =>
      check(!res.ok && allowed.includes(res.error), () => `${what}: expected a revert with ${allowed.join(" or ")}, got ${res.ok ? "success" : res.error}`);
    /** A call that named channel `ch` with signer `sg`: an unknown id or a wrong signer must revert, and change nothing. */
    const namedCheck = (res: Sent, id: Hex, ch: Ch | undefined, sg: Address, before: readonly string[] = []): boolean => {
      if (!ch) {
        expectRevert(res, [...before, "UnknownChannel"], `a call on unknown channel ${id}`);
        return true;
      }
      if (sg !== ch.signer) {
        stats.wrongSignerCalls++;
        expectRevert(res, [...before, "SignerMismatch"], `a call naming ${id} with wrong signer ${sg}`);
        unchanged.add(lc(id));
        return true;
      }
      return false;
    };

    // ---------------------------------------------------------------- the commands
    async function exec(c: Cmd): Promise<void> {
      switch (c.t) {
        case "open": {
          const via = choose(c.via, [[3, "plain"], [1, "permit"], [1, "auth"]] as const);
          const payerIdx = PAYERS[c.payer % PAYERS.length];
          let payer = addr(payerIdx);
          let payee = addr(PAYEES[c.payee % PAYEES.length]);
          let token = tokens[choose(c.token, [[3, 0], [1, 1]] as const)];
          const so = choose(c.signer, [[4, "payer"], [2, "key0"], [2, "key1"], [2, "w0"], [1, "w1"], [1, "w2"], [1, "echo"]] as const);
          let signerArgAddr: Address = zeroAddress;
          let kind: SignerKind = "eoa";
          let wallet = -1;
          if (so === "key0" || so === "key1") signerArgAddr = addr(KEYS[so === "key0" ? 0 : 1]);
          else if (so === "w0" || so === "w1" || so === "w2") {
            wallet = Number(so[1]);
            signerArgAddr = wallets[wallet];
            kind = "wallet";
          } else if (so === "echo") {
            signerArgAddr = echo;
            kind = "echo";
          }
          let salt = numberToHex(++saltCounter, { size: 32 });
          const dup = choose(c.dup, [[19, false], [1, true]] as const) && chans.length > 0;
          if (dup) {
            const o = chans[c.r % chans.length];
            ({ payer, payee, token, salt } = o);
            signerArgAddr = o.signerArg;
            kind = o.kind;
            wallet = o.wallet;
          }
          const amountKind = choose(c.amount, [[12, "normal"], [1, "zero"], [1, "tooLarge"], [1, "max"]] as const);
          const amount = amountKind === "normal" ? 1n + (BigInt(c.r) % 1_000_000_000n) : amountKind === "zero" ? 0n : amountKind === "tooLarge" ? MAX_DEPOSIT + 1n : MAX_DEPOSIT;
          const delayKind = choose(c.delay, [[6, MIN_CLOSE_DELAY], [3, 3600], [2, DAY], [1, MAX_CLOSE_DELAY], [1, -1]] as const);
          const delay = delayKind === -1 ? [0, MIN_CLOSE_DELAY - 1, MAX_CLOSE_DELAY + 1][c.r % 3] : delayKind;
          const signer = signerArgAddr === zeroAddress ? payer : signerArgAddr;
          const id = computeChannelId({ chainId, escrow, payer, payee, token, signer: signerArgAddr, salt });
          const key = kind === "eoa" ? keyOf.get(signer)! : kind === "wallet" ? keyOf.get(addr(WALLET_OWNER[wallet]))! : null;
          if (!byId.has(lc(id))) {
            pendingOpen.set(lc(id), { id, payer, payee, token, signer, closeDelay: delay, kind, wallet, key, signerArg: signerArgAddr, salt });
          }
          const payerKey = keyOf.get(payer)!;
          const otherPayerKey = keyOf.get(PAYERS.map(addr).find((p) => p !== payer)!)!;
          let res: Sent;
          if (via === "plain") {
            res = await send("open", payer, escrow, call("open", [payee, token, signerArgAddr, amount, delay, salt]));
          } else if (via === "permit") {
            const mode = choose(c.mode, [[5, "good"], [2, "frontRun"], [1, "expired"], [1, "wrongSigner"], [1, "staleNonce"], [1, "none"]] as const);
            const nonceData = encodeFunctionData({ abi: mockUsdcAbi, functionName: "nonces", args: [payer] });
            const nonce = decodeFunctionResult({ abi: mockUsdcAbi, functionName: "nonces", data: await rawCall(token, nonceData) });
            const deadline = mode === "expired" ? next - 1n : next + 3600n;
            const p = await signPermit(mode === "wrongSigner" ? otherPayerKey : payerKey, {
              chainId, token, spender: escrow, value: amount, nonce: mode === "staleNonce" ? (nonce > 0n ? nonce - 1n : nonce + 1n) : nonce, deadline,
            });
            const { v, r, s } = mode === "none" ? { v: 0, r: numberToHex(0, { size: 32 }), s: numberToHex(0, { size: 32 }) } : p;
            if (mode === "frontRun") {
              // Someone submits the permit first: the escrow's own permit call then fails and the allowance is used.
              await send("env:permit", addr(STRANGER), token, tokenCall("permit", [payer, escrow, amount, deadline, v, r, s]));
            }
            res = await send("openWithPermit", payer, escrow, call("openWithPermit", [payee, token, signerArgAddr, amount, delay, salt, deadline, v, r, s]));
          } else {
            const mode = choose(c.mode, [[6, "good"], [1, "wrongDelay"], [1, "expired"], [1, "notYet"], [1, "wrongSigner"], [1, "zeroPayer"], [1, "replay"]] as const);
            const relayer = choose(c.relayer, [[2, addr(STRANGER)], [1, payee], [1, payer]] as const);
            const nonce = authorizationNonce(id, mode === "wrongDelay" ? (delay === MIN_CLOSE_DELAY ? 3600 : MIN_CLOSE_DELAY) : delay);
            const validAfter = mode === "notYet" ? next + 100n : 0n;
            const validBefore = mode === "expired" ? next : next + 3600n;
            const sig = await signAuthorization(mode === "wrongSigner" ? otherPayerKey : payerKey, chainId, token, { to: escrow, value: amount, validAfter, validBefore, nonce });
            const data = call("openWithAuthorization", [mode === "zeroPayer" ? zeroAddress : payer, payee, token, signerArgAddr, amount, delay, salt, validAfter, validBefore, sig]);
            res = await send("openWithAuthorization", relayer, escrow, data);
            if (mode === "zeroPayer") expectRevert(res, ["InvalidPayer"], "openWithAuthorization for payer 0");
            if (mode === "replay") {
              const again = await send("openWithAuthorization", relayer, escrow, data);
              check(!again.ok, () => "the same authorization opened a channel twice");
            }
          }
          if (dup) expectRevert(res, ["ZeroAmount", "DepositTooLarge", "CloseDelayOutOfRange", "ChannelExists", "InvalidPayer"], "re-opening an existing channel");
          break;
        }

        case "topUp": {
          const id = pick(c.ch, live);
          const ch = chOf(id);
          const callerKind = choose(c.caller, [[8, "payer"], [1, "payee"], [1, "otherPayer"]] as const);
          const caller = callerKind === "payer" ? (ch?.payer ?? addr(PAYERS[0])) : callerKind === "payee" ? (ch?.payee ?? addr(PAYEES[0])) : PAYERS.map(addr).find((p) => p !== ch?.payer)!;
          const sg = signerArg(c.sg, ch);
          const kind = choose(c.amount, [[8, "small"], [1, "zero"], [1, "over"], [1, "huge"]] as const);
          const dep = ch?.st?.deposit ?? 0n;
          const amount = kind === "small" ? 1n + (BigInt(c.r) % 100_000_000n) : kind === "zero" ? 0n : kind === "over" ? MAX_DEPOSIT - dep + 1n : MAX_UINT128;
          const res = await send("topUp", caller, escrow, call("topUp", [id, sg, amount]));
          namedCheck(res, id, ch, sg, amount === 0n ? ["ZeroAmount"] : []);
          break;
        }

        case "settle":
        case "settleContractSigned": {
          const cs = c.t === "settleContractSigned";
          const contractSigned = (x: Ch) => x.kind !== "eoa";
          const firstId = pick(c.items[0].ch, (x) => live(x) && contractSigned(x) === cs);
          const first = chOf(firstId);
          const route = choose(c.route, [[18, "first"], [2, "other"]] as const);
          const payee = route === "first" && first ? first.payee : addr(PAYEES[c.payee % PAYEES.length]);
          const token = route === "first" && first ? first.token : tokens[c.token % tokens.length];
          const callerKind = choose(c.caller, [[14, "payee"], [4, "operator"], [1, "stranger"]] as const);
          const caller = callerKind === "payee" ? payee : addr(callerKind === "operator" ? OPERATOR : STRANGER);
          const gas = choose(c.gas, [[9, FULL_GAS], [1, 60_000 + (c.r % 160_000)]] as const);
          interface Planned { id: Hex; ch: Ch | undefined; cum: bigint; amount: bigint; signer: Address; signature: Hex; mustSkip: readonly number[] | null; wrongSigner: Address | null; rotated: boolean }
          const planned: Planned[] = [];
          for (const [k, it] of c.items.entries()) {
            // Later items: mostly another channel of the batch's route and signer kind, else the first item's again.
            const sameRoute = (x: Ch) => live(x) && x.payee === payee && x.token === token && contractSigned(x) === cs;
            const id = k === 0 ? firstId : it.ch >= 12 && !chans.some(sameRoute) ? firstId : pick(it.ch, sameRoute, 12);
            const ch = chOf(id);
            const st = ch?.st;
            const amount = claimAmount(choose(it.amount, AMOUNT_KINDS), st, it.r);
            let cum = cumFor(choose(it.cum, CUM_KINDS), amount, st, it.r);
            let signature: Hex = "0x";
            let valid = false;
            let wrongSigner: Address | null = null;
            let itemSigner: Address = ch?.signer ?? wallets[0];
            let rotated = false;
            if (!cs) {
              let kind = choose(it.sig, [[20, "good"], [3, "replay"], [2, "wrongKey"], [1, "otherChannel"], [1, "wrongDomain"], [1, "highS"], [1, "zero"]] as const);
              if (kind === "replay" && !(ch && ch.given.length > 0)) kind = "good";
              const ownKey = ch?.key ?? keyOf.get(addr(STRANGER))!;
              switch (kind) {
                case "good":
                case "replay":
                  if (ch?.key) {
                    if (kind === "replay") ({ cum, sig: signature } = ch.given[it.r % ch.given.length]);
                    else signature = genuine(ch, cum);
                    valid = ch.kind === "eoa";
                    if (ch.kind === "wallet") wrongSigner = addr(WALLET_OWNER[ch.wallet]); // ECDSA recovers the owner, not the wallet
                  } else {
                    signature = sign(ownKey, id, cum);
                    wrongSigner = addr(STRANGER);
                  }
                  break;
                case "wrongKey": {
                  wrongSigner = otherKeyAddr(ch, it.r);
                  signature = sign(keyOf.get(wrongSigner)!, id, cum);
                  break;
                }
                case "otherChannel": signature = sign(ownKey, unknownId(7), cum); break;
                case "wrongDomain": signature = sign(ownKey, id, cum, true); break;
                case "highS": {
                  const good = ch?.key ? genuine(ch, cum) : sign(ownKey, id, cum);
                  const { r, v } = splitSignature(good);
                  signature = joinSignature(r, SECP256K1_HALF_N + 1n + BigInt(it.r % 1000), v);
                  break;
                }
                case "zero": signature = joinSignature(0n, 0n, 27); break;
              }
            } else {
              let kind = choose(it.sig, [[16, "honest"], [4, "replay"], [2, "otherWallet"], [1, "echo"], [1, "ownerAsSigner"], [1, "garbage"], [1, "wrongDomain"]] as const);
              if (kind === "replay" && !(ch && ch.given.length > 0)) kind = "honest";
              switch (kind) {
                case "honest":
                case "replay":
                  if (ch?.key) {
                    if (kind === "replay") ({ cum, sig: signature } = ch.given[it.r % ch.given.length]);
                    else signature = genuine(ch, cum);
                    valid = walletValid(ch);
                    rotated = ch.kind === "wallet" && !valid;
                  } else signature = pseudoBytes(it.r, 65);
                  break;
                case "otherWallet": {
                  const others = wallets.filter((w) => w !== ch?.signer);
                  const w = others[it.r % others.length];
                  itemSigner = w;
                  wrongSigner = w;
                  // Valid for that wallet (its owner signed this channel's voucher), and may share the channel wallet's owner.
                  signature = sign(keyOf.get(addr(WALLET_OWNER[wallets.indexOf(w)]))!, id, cum);
                  break;
                }
                case "echo":
                  itemSigner = echo;
                  if (ch?.signer !== echo) wrongSigner = echo;
                  signature = pseudoBytes(it.r, 65);
                  break;
                case "ownerAsSigner":
                  if (ch && ch.wallet >= 0) {
                    itemSigner = addr(WALLET_OWNER[ch.wallet]);
                    wrongSigner = itemSigner;
                  }
                  signature = sign(ch?.key ?? keyOf.get(addr(STRANGER))!, id, cum);
                  break;
                case "garbage":
                  signature = pseudoBytes(it.r, [65, 64, 0][it.r % 3]);
                  break;
                case "wrongDomain":
                  signature = sign(ch?.key ?? keyOf.get(addr(STRANGER))!, id, cum, true);
                  break;
              }
            }
            let mustSkip: readonly number[] | null = null;
            if (!ch) mustSkip = [SKIP.UnknownChannel];
            else if (ch.payee !== payee) mustSkip = [SKIP.PayeeMismatch];
            else if (ch.token !== token) mustSkip = [SKIP.TokenMismatch];
            else if (!valid) mustSkip = [SKIP.InvalidSignature];
            if (ch && wrongSigner !== null && wrongSigner !== ch.signer) {
              emptySlots.push({ slot: balanceKey(id, payee, token, wrongSigner), what: `channel ${id} with wrong signer ${wrongSigner} (batch payee ${payee}, token ${token})` });
            } else wrongSigner = null;
            planned.push({ id, ch, cum, amount, signer: itemSigner, signature, mustSkip, wrongSigner, rotated });
          }
          const data = cs
            ? call("settleContractSigned", [payee, token, planned.map((p) => ({ channelId: p.id, cumulativeAmount: p.cum, amount: p.amount, signer: p.signer, signature: p.signature }))])
            : call("settle", [payee, token, encodeSettleItems(planned.map((p): SettleClaim => ({ channelId: p.id, cumulativeAmount: p.cum, amount: p.amount, signature: p.signature })))]);
          const res = await send(c.t, caller, escrow, data, { gas: gas === FULL_GAS ? undefined : gas });
          if (res.ok) {
            const itemEvents = res.events.filter((e) => e.eventName === "Settled" || e.eventName === "SettleSkipped");
            check(itemEvents.length === planned.length, () => `${planned.length} items but ${itemEvents.length} Settled/SettleSkipped events`);
            const settledIds = new Set(itemEvents.filter((e) => e.eventName === "Settled").map((e) => lc(e.args.channelId)));
            planned.forEach((p, k) => {
              const e = itemEvents[k];
              check(lc(e.args.channelId) === lc(p.id), () => `item ${k} is channel ${p.id} but its event names ${e.args.channelId}`);
              if (e.eventName === "Settled") {
                stats.itemsApplied++;
                if (cs) stats.walletItemsApplied++;
                check(p.mustSkip === null, () => `item ${k} (${p.id}) settled although it must be skipped (${p.mustSkip})`);
                check(e.args.amount === p.amount && p.amount <= p.cum, () => `item ${k} settled ${e.args.amount}, its claim was ${p.amount} (voucher ${p.cum})`);
              } else if (e.eventName === "SettleSkipped") {
                stats.itemsSkipped++;
                bump(`${c.t} item skipped: ${Object.entries(SKIP).find(([, v]) => v === e.args.reason)?.[0]}${p.mustSkip ? " (must)" : ""}`);
                if (p.rotated) stats.rotatedWalletSkips++;
                check(p.mustSkip === null || p.mustSkip.includes(e.args.reason), () => `item ${k} skipped with reason ${e.args.reason}, expected ${p.mustSkip}`);
              }
            });
            for (const p of planned) if (p.wrongSigner && !settledIds.has(lc(p.id))) unchanged.add(lc(p.id));
          } else {
            for (const p of planned) if (p.wrongSigner) unchanged.add(lc(p.id));
            const allowed = authorized(caller, payee) ? [] : ["NotPayeeOrOperator"];
            if (gas !== FULL_GAS) allowed.push(...OUT_OF_GAS);
            expectRevert(res, allowed, `${c.t} by ${caller} for payee ${payee} (a payment that cannot be delivered must not revert it)`);
          }
          if (planned.some((p) => p.wrongSigner)) stats.wrongSignerCalls++;
          break;
        }

        case "close": {
          const id = pick(c.ch, live);
          const ch = chOf(id);
          const callerKind = choose(c.caller, [[6, "payee"], [5, "operator"], [1, "payer"], [1, "stranger"]] as const);
          const caller =
            callerKind === "payee" ? (ch?.payee ?? addr(PAYEES[0])) : callerKind === "operator" ? addr(OPERATOR) : callerKind === "payer" ? (ch?.payer ?? addr(PAYERS[0])) : addr(STRANGER);
          const sg = signerArg(c.sg, ch);
          const st = ch?.st;
          const amount = claimAmount(choose(c.amount, AMOUNT_KINDS), st, c.r);
          let cum = cumFor(choose(c.cum, CUM_KINDS), amount, st, c.r);
          let sigKind = choose(c.sig, [[8, "good"], [2, "replay"], [2, "wrongKey"], [1, "wrongDomain"], [1, "highS"], [1, "empty"]] as const);
          if (sigKind === "replay" && !(ch && ch.given.length > 0)) sigKind = "good";
          const strangerKey = keyOf.get(addr(STRANGER))!;
          let sig: Hex = "0x";
          let valid = false;
          switch (sigKind) {
            case "good":
            case "replay":
              if (ch?.key) {
                if (sigKind === "replay") ({ cum, sig } = ch.given[c.r % ch.given.length]);
                else sig = genuine(ch, cum);
                valid = ch.kind === "eoa" || walletValid(ch);
              } else sig = sign(strangerKey, id, cum);
              break;
            case "wrongKey": sig = sign(keyOf.get(otherKeyAddr(ch, c.r))!, id, cum); break;
            case "wrongDomain": sig = sign(ch?.key ?? strangerKey, id, cum, true); break;
            case "highS": sig = flipS(ch?.key ? genuine(ch, cum) : sign(strangerKey, id, cum)); break;
            case "empty": sig = "0x"; break;
          }
          const consentKind = choose(c.consent, [[3, "none"], [3, "signer"], [3, "payer"], [1, "stranger"], [1, "wrongDomain"], [1, "otherChannel"], [1, "highS"], [1, "short"]] as const);
          const payerKey = ch ? keyOf.get(ch.payer)! : strangerKey;
          let consent: Hex = "0x";
          let consentValid = false;
          switch (consentKind) {
            case "none": break;
            case "signer":
              consent = signCloseRequest(domain, id, ch?.key ?? strangerKey);
              consentValid = ch !== undefined && (ch.kind === "eoa" || walletValid(ch));
              break;
            case "payer":
              consent = signCloseRequest(domain, id, payerKey);
              consentValid = ch !== undefined;
              break;
            case "stranger": consent = signCloseRequest(domain, id, strangerKey); break;
            case "wrongDomain": consent = signCloseRequest(foreignDomain, id, payerKey); break;
            case "otherChannel": consent = signCloseRequest(domain, unknownId(3), payerKey); break;
            case "highS": consent = flipS(signCloseRequest(domain, id, payerKey)); break;
            case "short": consent = signCloseRequest(domain, id, payerKey).slice(0, 130) as Hex; break;
          }
          const gas = choose(c.gas, [[9, FULL_GAS], [1, 60_000 + (c.r % 160_000)]] as const);
          const res = await send("close", caller, escrow, call("close", [id, sg, cum, amount, sig, consent]), { gas: gas === FULL_GAS ? undefined : gas });
          if (gas === FULL_GAS && namedCheck(res, id, ch, sg)) break;
          if (!ch || !st) break;
          if (res.ok) {
            const settledEv = res.events.find((e) => e.eventName === "Settled");
            const closed = res.events.find((e) => e.eventName === "Closed");
            check(closed !== undefined, () => "close succeeded without a Closed event");
            if (settledEv && settledEv.eventName === "Settled") {
              check(valid, () => `close paid out up to ${settledEv.args.amount} against an invalid voucher (${sigKind})`);
              check(settledEv.args.amount === amount && amount <= cum, () => `close settled ${settledEv.args.amount}, its claim was ${amount} (voucher ${cum})`);
            }
            if (closed && closed.eventName === "Closed" && caller !== ch.payee && closed.args.refund > 0n) {
              stats.operatorRefundingCloses++;
              check(
                st.closeRequestedAt !== 0n || consentValid,
                () => `an operator's close refunded ${closed.args.refund} without the payer's consent (no pending close; consent ${consentKind})`,
              );
            }
          } else if (gas === FULL_GAS && caller === ch.payee && !st.finalized && amount <= st.settled) {
            fail(`the payee's close of live channel ${id} claiming nothing new reverted with ${res.error} (the payee may always close)`);
          }
          break;
        }

        case "requestClose": {
          const id = pick(c.ch, (x) => live(x) && x.st?.closeRequestedAt === 0n);
          const ch = chOf(id);
          const callerKind = choose(c.caller, [[5, "payer"], [3, "signer"], [1, "payee"], [1, "stranger"]] as const);
          const sg = signerArg(c.sg, ch);
          const data = call("requestClose", [id, sg]);
          let res: Sent;
          if (callerKind === "signer" && ch?.kind === "wallet") {
            // The wallet asks: its owner makes it call the escrow.
            const owner = addr(WALLET_OWNER[ch.wallet]);
            const viaWallet = encodeFunctionData({ abi: walletAbi, functionName: "execute", args: [escrow, data] });
            res = await send("requestClose", owner, ch.signer, viaWallet, { sender: ch.signer });
          } else {
            const caller =
              callerKind === "signer" && ch?.kind === "eoa" ? ch.signer
              : callerKind === "payee" ? (ch?.payee ?? addr(PAYEES[0]))
              : callerKind === "stranger" ? addr(STRANGER)
              : (ch?.payer ?? addr(PAYERS[0]));
            res = await send("requestClose", caller, escrow, data);
          }
          namedCheck(res, id, ch, sg);
          break;
        }

        case "withdraw": {
          const id = pick(c.ch, (x) => live(x) && x.st?.closeRequestedAt !== 0n, 15);
          const ch = chOf(id);
          const st = ch?.st;
          const offset = choose(c.at, [[1, null], [2, -1n], [3, 0n], [1, 1n], [1, 3600n]] as const);
          if (offset !== null && st && st.closeRequestedAt !== 0n) {
            const target = st.closeRequestedAt + BigInt(st.closeDelay) + offset;
            if (target > next) next = target;
          }
          const callerKind = choose(c.caller, [[2, "payer"], [1, "stranger"], [1, "payee"]] as const);
          const caller = callerKind === "payer" ? (ch?.payer ?? addr(PAYERS[0])) : callerKind === "payee" ? (ch?.payee ?? addr(PAYEES[0])) : addr(STRANGER);
          const sg = signerArg(c.sg, ch);
          const gas = choose(c.gas, [[9, FULL_GAS], [1, 50_000 + (c.r % 100_000)]] as const);
          const res = await send("withdraw", caller, escrow, call("withdraw", [id, sg]), { gas: gas === FULL_GAS ? undefined : gas });
          if (gas === FULL_GAS && namedCheck(res, id, ch, sg)) break;
          if (!res.ok && gas === FULL_GAS && st && !st.finalized && st.closeRequestedAt !== 0n && res.ts >= st.closeRequestedAt + BigInt(st.closeDelay)) {
            fail(`a due withdraw of ${id} reverted with ${res.error} (a refund that cannot be delivered must stay owed)`);
          }
          break;
        }

        case "collect": {
          const owing: [Address, Address][] = [];
          for (const t of tokens) for (const p of PARTIES) if (owedOf(t, p) > 0n) owing.push([p, t]);
          let who: Address;
          let token: Address;
          if (choose(c.who, [[9, true], [1, false]] as const) && owing.length > 0) [who, token] = owing[c.r % owing.length];
          else {
            who = PARTIES[c.who % PARTIES.length];
            token = tokens[c.token % tokens.length];
          }
          let toKind = choose(c.to, [[10, "self"], [5, "sink"], [3, "otherParty"], [1, "zero"], [1, "escrow"]] as const);
          if (toKind === "self" && blacklisted(token, who) && c.r % 2 === 0) toKind = "sink"; // as a blacklisted party would
          const to = toKind === "self" ? who : toKind === "sink" ? addr(SINK) : toKind === "otherParty" ? PARTIES.filter((p) => p !== who)[c.r % (PARTIES.length - 1)] : toKind === "zero" ? zeroAddress : escrow;
          const owedBefore = owedOf(token, who);
          const gas = choose(c.gas, [[9, FULL_GAS], [1, 30_000 + (c.r % 60_000)]] as const);
          const res = await send("collect", who, escrow, call("collect", [token, to]), { gas: gas === FULL_GAS ? undefined : gas });
          if (gas === FULL_GAS) {
            if (toKind === "zero" || toKind === "escrow") expectRevert(res, ["InvalidRecipient"], `collect to ${to}`);
            else if (owedBefore === 0n) expectRevert(res, ["NothingOwed"], `collect by ${who}, owed nothing`);
          }
          if (res.ok) {
            const e = res.events.find((x) => x.eventName === "Collected");
            check(e !== undefined && e.eventName === "Collected" && e.args.amount === owedBefore && e.args.to === to, () => `collect by ${who} took another amount than the ${owedBefore} it was owed, or sent it elsewhere`);
          }
          break;
        }

        case "setOperator": {
          const who = choose(c.who, [[4, true], [1, false]] as const) ? addr(PAYEES[c.who % PAYEES.length]) : addr(PAYERS[c.who % PAYERS.length]);
          const op = addr(choose(c.op, [[4, OPERATOR], [1, STRANGER]] as const));
          const res = await send("setOperator", who, escrow, call("setOperator", [op, c.approved]));
          check(res.ok, () => `setOperator reverted: ${res.error}`);
          break;
        }

        case "warp": {
          const pending = chans.filter((x) => x.st && !x.st.finalized && x.st.closeRequestedAt !== 0n);
          const offset = choose(c.offset, [[1, -1n], [2, 0n], [1, 1n], [1, 60n]] as const);
          const secs = choose(c.secs, [[1, 1n], [1, 60n], [1, BigInt(MIN_CLOSE_DELAY)], [1, BigInt(DAY)]] as const);
          let target = now + secs;
          if (pending.length > 0) {
            const p = pending[c.ch % pending.length].st!;
            target = p.closeRequestedAt + BigInt(p.closeDelay) + offset;
          }
          if (target > next) next = target;
          outcomes.push(`next block at ${next}`);
          count("env:warp", false);
          break;
        }

        case "pause": {
          // Pauses a token for 1 to 8 steps (or unpauses it now).
          const t = tokens[c.token % tokens.length];
          await setPaused(t, !paused(t));
          if (paused(t)) restoreAt.set(`pause|${t}`, step + 1 + ((c.token >> 1) % 8));
          break;
        }

        case "blacklist": {
          const listed: [Address, Address][] = [];
          for (const t of tokens) for (const a of ACCTS) if (blacklisted(t, a)) listed.push([t, a]);
          // Blacklists a party (rarely the sink or the escrow) for 3 to 20 steps, or lifts a blacklisting now.
          let t: Address;
          let a: Address;
          if (listed.length > 0 && c.r % 10 < 2) [t, a] = listed[c.r % listed.length];
          else {
            t = tokens[choose(c.token, [[3, 0], [1, 1]] as const)];
            const who = choose(c.who, [[1, PAYERS[0]], [1, PAYERS[1]], [1, PAYERS[2]], [5, PAYEES[0]], [5, PAYEES[1]], [1, SINK], [1, -1]] as const);
            a = who === -1 ? escrow : addr(who);
          }
          await setBlacklisted(t, a, !blacklisted(t, a));
          if (blacklisted(t, a)) restoreAt.set(`blacklist|${t}|${a}`, step + 3 + (c.r % 18));
          break;
        }

        case "walletMode": {
          const w = c.wallet % wallets.length;
          const mode = choose(c.mode, [[3, MODE.Valid], [2, MODE.Invalid], [2, MODE.Reverting], [1, MODE.GasBurning]] as const);
          const res = await send("env:walletMode", addr(WALLET_OWNER[w]), wallets[w], encodeFunctionData({ abi: walletAbi, functionName: "setMode", args: [mode] }));
          check(res.ok, () => `setMode reverted: ${res.error}`);
          world.modes[w] = mode;
          break;
        }

        case "approve": {
          const payer = addr(PAYERS[c.payer % PAYERS.length]);
          const t = tokens[c.token % tokens.length];
          const zero = choose(c.zero, [[5, false], [1, true]] as const);
          await send("env:approve", payer, t, tokenCall("approve", [escrow, zero ? 0n : maxUint256]));
          break;
        }
      }
    }

    // ---------------------------------------------------------------- the invariants, after every step
    async function checkStep(full: boolean): Promise<void> {
      const refs: { channelId: Hex; signer: Address }[] = [];
      const wrongOf: Address[][] = [];
      chans.forEach((ch, i) => {
        const cands = [...new Set([addr(STRANGER), zeroAddress, ch.payer, ...KEYS.map(addr), ...OWNERS.map(addr), ...wallets, echo])].filter((a) => a !== ch.signer);
        const w = [cands[(step + i) % cands.length], cands[(step + 2 * i + 1) % cands.length]];
        wrongOf.push(w);
        refs.push({ channelId: ch.id, signer: ch.signer }, { channelId: ch.id, signer: w[0] }, { channelId: ch.id, signer: w[1] });
      });
      const holders = full ? ACCTS : [escrow];
      const owedTo = full ? ACCTS : PARTIES;
      const [balances, owed, channels] = await readProbe(holders, owedTo, refs);
      const settledOf = new Map<string, bigint>();
      const refundOf = new Map<string, bigint>();
      const unspentOf = new Map<Address, bigint>();
      chans.forEach((ch, i) => {
        const own = channels[3 * i];
        const prev = ch.st;
        const name = `channel ${i} ${ch.id}`;
        // 2: identity, bounds, monotonicity, finality
        check(
          own.payer === ch.payer && own.payee === ch.payee && own.token === ch.token && own.signer === ch.signer && own.closeDelay === ch.closeDelay,
          () => `${name}: its parties or close delay changed (${repr(own)})`,
        );
        check(own.settled <= own.deposit, () => `${name}: settled ${own.settled} > deposit ${own.deposit}`);
        if (prev) {
          check(own.settled >= prev.settled, () => `${name}: settled decreased from ${prev.settled} to ${own.settled}`);
          check(own.deposit >= prev.deposit, () => `${name}: deposit decreased from ${prev.deposit} to ${own.deposit}`);
        }
        const r = repr(own);
        if (ch.frozen !== null) check(r === ch.frozen, () => `${name}: a finalized channel changed: ${ch.frozen} -> ${r}`);
        else if (own.finalized) ch.frozen = r;
        // 4: bounded by the vouchers given
        check(own.settled <= ch.maxGiven, () => `${name}: settled ${own.settled} above the highest valid voucher given, ${ch.maxGiven}`);
        // 5: a wrong-signer call changed nothing
        if (unchanged.has(lc(ch.id)) && prev) check(r === repr(prev), () => `${name}: changed by a call naming a wrong signer: ${repr(prev)} -> ${r}`);
        // 6: a wrong signer reads no money
        for (const k of [1, 2]) {
          const w = channels[3 * i + k];
          check(
            w.payer === own.payer && w.payee === own.payee && w.token === own.token && w.closeRequestedAt === own.closeRequestedAt && w.closeDelay === own.closeDelay &&
              w.signer === zeroAddress && w.deposit === 0n && w.settled === 0n && !w.finalized,
            () => `${name} read with wrong signer ${wrongOf[i][k - 1]} shows ${repr(w)}`,
          );
        }
        const kp = MoneyLedger.key(ch.token, ch.payee);
        settledOf.set(kp, (settledOf.get(kp) ?? 0n) + own.settled);
        if (own.finalized) {
          const kr = MoneyLedger.key(ch.token, ch.payer);
          refundOf.set(kr, (refundOf.get(kr) ?? 0n) + own.deposit - own.settled);
        } else unspentOf.set(ch.token, (unspentOf.get(ch.token) ?? 0n) + own.deposit - own.settled);
        ch.st = own;
      });
      for (const { slot, what } of emptySlots) {
        const v = (await provider.request({ method: "eth_getStorageAt", params: [escrow, slot, "latest"] })) as Hex;
        check(BigInt(v) === 0n, () => `the balance slot of ${what} was written: ${v}`);
      }
      tokens.forEach((t, tIdx) => {
        const bal = (a: Address) => balances[tIdx * holders.length + holders.indexOf(a)];
        const owedAt = (a: Address) => owed[tIdx * owedTo.length + owedTo.indexOf(a)];
        // 1: solvency
        let owedSum = 0n;
        for (const a of PARTIES) owedSum += owedAt(a);
        const escrowBal = bal(escrow);
        const unspent = unspentOf.get(t) ?? 0n;
        check(escrowBal === unspent + owedSum, () => `escrow holds ${escrowBal} of ${t}, but Σ(deposit − settled) of open channels is ${unspent} and Σ owed is ${owedSum}`);
        // the logs are complete: balances and owed amounts are what they say (all watched accounts every few steps)
        for (const a of holders) check(bal(a) === ledger.balance(t, a), () => `balance of ${a} in ${t} is ${bal(a)}, the logs say ${ledger.balance(t, a)}`);
        for (const a of owedTo) {
          check(partySet.has(a) || owedAt(a) === 0n, () => `${a}, no party, is owed ${owedAt(a)} of ${t}`);
          check(owedAt(a) === ledger.owed(t, a), () => `owed(${t}, ${a}) is ${owedAt(a)}, the logs say ${ledger.owed(t, a)}`);
        }
        // 3: every payee got or is owed exactly what was settled for it, every payer what was refunded to it
        for (const p of PAYEES.map(addr)) {
          const got = ledger.received(t, p) + owedAt(p);
          const due = settledOf.get(MoneyLedger.key(t, p)) ?? 0n;
          check(got === due, () => `payee ${p} received ${ledger.received(t, p)} + is owed ${owedAt(p)} of ${t}, but its channels settled ${due}`);
        }
        for (const p of PAYERS.map(addr)) {
          const got = ledger.received(t, p) + owedAt(p);
          const due = refundOf.get(MoneyLedger.key(t, p)) ?? 0n;
          check(got === due, () => `payer ${p} received ${ledger.received(t, p)} + is owed ${owedAt(p)} of ${t}, but its finalized channels refund ${due}`);
        }
      });
      owedNow = tokens.flatMap((_, tIdx) => PARTIES.map((a) => owed[tIdx * owedTo.length + owedTo.indexOf(a)]));
    }

    for (const [k, c] of cmds.entries()) {
      step = k;
      cmd = c;
      outcomes = [];
      unchanged = new Set();
      emptySlots = [];
      for (const [key, due] of [...restoreAt.entries()]) {
        if (due > k) continue;
        restoreAt.delete(key);
        const [what, t, a] = key.split("|") as [string, Address, Address];
        if (what === "pause" && paused(t)) await setPaused(t, false);
        if (what === "blacklist" && blacklisted(t, a)) await setBlacklisted(t, a, false);
      }
      await exec(c);
      trace.push(`${k} ${c.t}: ${outcomes.join(", ")}`);
      await checkStep(k === cmds.length - 1 || k % FULL_CHECK_EVERY === FULL_CHECK_EVERY - 1);
      stats.steps++;
    }
  }
});
