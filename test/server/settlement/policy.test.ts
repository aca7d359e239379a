/**
 * The pure parts of settlement: the close-delay rule, the selection policy, batch planning, configuration parsing
 * (the key is never echoed), and receipt decoding.
 */
import { expect } from "chai";
import fc from "fast-check";
import { encodeAbiParameters, encodeEventTopics, erc20Abi, keccak256, toHex, type Address, type Hex } from "viem";
import { channelEscrowAbi } from "@paychan/protocol";
import {
  checkCloseDelayRule,
  claimable,
  decide,
  decodeSettlementReceipt,
  gasLimitFor,
  maxChannelsPerTx,
  parseSettlementEnv,
  planBatches,
  plannedSettleGas,
  resolveSettlementConfig,
  resolveSettlerKey,
  bumpFees,
  urgencyOrder,
  TX_GAS_CAP,
  type CloseDelayRuleInput,
  type PolicyConfig,
  type SettlementCandidate,
} from "@paychan/server";
import { HARDHAT_ACCOUNT_0_KEY, localSettlerKey } from "@paychan/demo";

const id = (n: number) => keccak256(toHex(`policy-${n}`));
const SIG = `0x${"22".repeat(65)}` as Hex;

function cand(over: Partial<SettlementCandidate> = {}): SettlementCandidate {
  return {
    channelId: id(1),
    payer: "0x0000000000000000000000000000000000000001",
    payee: "0x00000000000000000000000000000000000000aa",
    token: "0x00000000000000000000000000000000000000bb",
    signer: "0x0000000000000000000000000000000000000002",
    deposit: 10_000_000n,
    settled: 0n,
    closeDelay: 86_400,
    closeRequestedAt: 0,
    closesAt: 0,
    finalized: false,
    block: 1n,
    accepted: 500_000n,
    acceptedSignature: SIG,
    spent: 400_000n,
    reserved: 0n,
    floor: 0n,
    payerCloseRequestedAt: 0,
    closeRequestSignature: null,
    createdAt: 1_000_000,
    updatedAt: 1_000_000,
    lastSettledAt: 0,
    ...over,
  };
}

const CFG: PolicyConfig = { threshold: 1_000_000n, maxAge: 3_600, exhaustedPercent: 90 };
const NOW = 1_000_000 + 60_000; // a minute after the channel was stored

describe("settlement: close-delay rule", () => {
  const base: CloseDelayRuleInput = {
    minCloseDelay: 86_400,
    settleInterval: 60,
    chainPollInterval: 2,
    followerConfirmations: 0,
    settleConfirmations: 1,
    blockTime: 1,
    resubmitAfter: 120,
    closeGrace: 5,
    rpcOutageMargin: 21_600,
  };

  it("computes required = 2 × (reaction + landing) + outage margin, exactly", () => {
    const r = checkCloseDelayRule(base);
    expect(r.reaction).to.equal(2 + 0 + 60 + 5);
    expect(r.landing).to.equal(2 * 120 + 1 * 1);
    expect(r.required).to.equal(2 * (67 + 241) + 21_600);
    expect(r.ok).to.equal(true);
    expect(r.message).to.contain("22216 s");
  });

  it("refuses a MIN_CLOSE_DELAY one second short of the requirement, accepts it at the requirement", () => {
    const required = checkCloseDelayRule(base).required;
    const short = checkCloseDelayRule({ ...base, minCloseDelay: required - 1 });
    expect(short.ok).to.equal(false);
    expect(short.message).to.match(/^MIN_CLOSE_DELAY is 22215 s, but settlement needs at least/);
    expect(short.message).to.contain("Raise MIN_CLOSE_DELAY");
    expect(checkCloseDelayRule({ ...base, minCloseDelay: required }).ok).to.equal(true);
  });

  it("counts follower confirmations and settle confirmations at the block time", () => {
    const r = checkCloseDelayRule({ ...base, followerConfirmations: 3, settleConfirmations: 5, blockTime: 12 });
    expect(r.reaction).to.equal(2 + 36 + 60 + 5);
    expect(r.landing).to.equal(240 + 60);
  });

  it("is monotonic: a longer interval, outage margin or resubmit time never lowers the requirement", () => {
    fc.assert(
      fc.property(
        fc.record({
          settleInterval: fc.integer({ min: 0, max: 10_000 }),
          chainPollInterval: fc.integer({ min: 0, max: 600 }),
          followerConfirmations: fc.integer({ min: 0, max: 100 }),
          settleConfirmations: fc.integer({ min: 0, max: 100 }),
          blockTime: fc.integer({ min: 0, max: 60 }),
          resubmitAfter: fc.integer({ min: 0, max: 3_600 }),
          closeGrace: fc.integer({ min: 0, max: 600 }),
          rpcOutageMargin: fc.integer({ min: 0, max: 100_000 }),
        }),
        fc.constantFrom("settleInterval", "rpcOutageMargin", "resubmitAfter", "blockTime", "closeGrace") as fc.Arbitrary<keyof CloseDelayRuleInput>,
        fc.integer({ min: 1, max: 1_000 }),
        (i, key, more) => {
          const a = checkCloseDelayRule({ ...i, minCloseDelay: 0 });
          const b = checkCloseDelayRule({ ...i, minCloseDelay: 0, [key]: i[key as keyof typeof i] + more });
          return b.required >= a.required && a.required >= 2 * (i.settleInterval + 2 * i.resubmitAfter) + i.rpcOutageMargin;
        },
      ),
    );
  });

  it("rejects negative or non-finite inputs", () => {
    expect(() => checkCloseDelayRule({ ...base, settleInterval: -1 })).to.throw(RangeError);
    expect(() => checkCloseDelayRule({ ...base, rpcOutageMargin: Number.NaN })).to.throw(RangeError);
  });
});

describe("settlement: policy", () => {
  it("claims min(spent, accepted, deposit) and nothing without a voucher", () => {
    expect(claimable(cand())).to.equal(400_000n);
    expect(claimable(cand({ spent: 600_000n }))).to.equal(500_000n); // never above the voucher
    expect(claimable(cand({ deposit: 300_000n }))).to.equal(300_000n); // never above the deposit
    expect(claimable(cand({ acceptedSignature: null }))).to.equal(0n);
  });

  it("settles at the threshold, after the max age, or near exhaustion, and never a channel with nothing owed", () => {
    expect(decide(cand(), CFG, { nowMs: NOW })).to.equal(null); // 0.4 owed, below 1, young, 4 % used
    expect(decide(cand({ spent: 1_000_000n, accepted: 1_000_000n }), CFG, { nowMs: NOW })).to.deep.equal({ action: "settle", reason: "threshold" });
    expect(decide(cand(), CFG, { nowMs: 1_000_000 + 3_600_000 })).to.deep.equal({ action: "settle", reason: "max_age" });
    // the age counts from the last settlement, not from the channel's creation
    expect(decide(cand({ lastSettledAt: 1_000_000 + 3_000_000 }), CFG, { nowMs: 1_000_000 + 3_600_000 })).to.equal(null);
    expect(decide(cand({ deposit: 440_000n }), CFG, { nowMs: NOW })).to.deep.equal({ action: "settle", reason: "deposit_nearly_exhausted" });
    expect(decide(cand(), CFG, { nowMs: NOW, all: true })).to.deep.equal({ action: "settle", reason: "all" });
    expect(decide(cand({ settled: 400_000n }), CFG, { nowMs: NOW, all: true })).to.equal(null);
    expect(decide(cand({ spent: 0n, accepted: 0n, acceptedSignature: null }), CFG, { nowMs: NOW * 10, all: true })).to.equal(null);
    expect(decide(cand({ finalized: true, payerCloseRequestedAt: 5 }), CFG, { nowMs: NOW, all: true })).to.equal(null);
  });

  it("closes on a payer's request (even with nothing owed) and on an on-chain close request with something owed", () => {
    expect(decide(cand({ payerCloseRequestedAt: 5 }), CFG, { nowMs: NOW })).to.deep.equal({ action: "close", reason: "close_requested_by_payer" });
    expect(decide(cand({ payerCloseRequestedAt: 5, spent: 0n, acceptedSignature: null }), CFG, { nowMs: NOW })).to.deep.equal({
      action: "close",
      reason: "close_requested_by_payer",
    });
    expect(decide(cand({ closesAt: 99 }), CFG, { nowMs: NOW })).to.deep.equal({ action: "close", reason: "close_requested_on_chain" });
    expect(decide(cand({ closesAt: 99, settled: 400_000n }), CFG, { nowMs: NOW })).to.equal(null); // nothing owed: the payer withdraws
    expect(decide(cand({ closesAt: 99, payerCloseRequestedAt: 5 }), CFG, { nowMs: NOW })!.reason).to.equal("close_requested_on_chain");
  });

  it("never selects a channel with nothing to claim, whatever its state (property)", () => {
    fc.assert(
      fc.property(
        fc.record({
          deposit: fc.bigInt({ min: 0n, max: 10n ** 12n }),
          settled: fc.bigInt({ min: 0n, max: 10n ** 12n }),
          accepted: fc.bigInt({ min: 0n, max: 10n ** 12n }),
          spent: fc.bigInt({ min: 0n, max: 10n ** 12n }),
          sig: fc.boolean(),
          closesAt: fc.constantFrom(0, 1_000),
          all: fc.boolean(),
          age: fc.integer({ min: 0, max: 10_000_000 }),
        }),
        (p) => {
          const c = cand({ deposit: p.deposit, settled: p.settled, accepted: p.accepted, spent: p.spent, acceptedSignature: p.sig ? SIG : null, closesAt: p.closesAt });
          const d = decide(c, CFG, { nowMs: c.createdAt + p.age, all: p.all });
          if (d === null) return true;
          return claimable(c) > c.settled; // settle or on-chain close: only with something to claim
        },
      ),
    );
  });

  it("orders closes first (payer requests, then earliest deadline), then settles by amount owed", () => {
    const rows = [
      { c: cand({ channelId: id(1), spent: 100n }), d: { action: "settle" as const, reason: "all" as const } },
      { c: cand({ channelId: id(2), closesAt: 500 }), d: { action: "close" as const, reason: "close_requested_on_chain" as const } },
      { c: cand({ channelId: id(3), spent: 300n }), d: { action: "settle" as const, reason: "all" as const } },
      { c: cand({ channelId: id(4), closesAt: 200 }), d: { action: "close" as const, reason: "close_requested_on_chain" as const } },
      { c: cand({ channelId: id(5), payerCloseRequestedAt: 9 }), d: { action: "close" as const, reason: "close_requested_by_payer" as const } },
    ];
    expect(rows.sort(urgencyOrder).map((r) => r.c.channelId)).to.deep.equal([id(5), id(4), id(2), id(3), id(1)]);
  });
});

describe("settlement: batches", () => {
  it("fits the planned gas of a full batch under the budget and the 16,777,216 per-transaction cap", () => {
    expect(maxChannelsPerTx(10_000, TX_GAS_CAP)).to.equal(Math.floor((TX_GAS_CAP - 75_000) / 14_000));
    expect(plannedSettleGas(maxChannelsPerTx(10_000, TX_GAS_CAP))).to.be.at.most(TX_GAS_CAP);
    expect(maxChannelsPerTx(500, 12_000_000)).to.equal(500);
    expect(maxChannelsPerTx(500, 100_000)).to.equal(1);
  });

  it("splits claims into even batches, each within size and gas, keeping every claim once and in order (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 1, max: 1_300 }), fc.integer({ min: 100_000, max: TX_GAS_CAP }), (n, size, budget) => {
        const items = Array.from({ length: n }, (_, i) => i);
        const batches = planBatches(items, size, budget);
        const max = maxChannelsPerTx(size, budget);
        const flat = batches.flat();
        const sizes = batches.map((b) => b.length);
        return (
          flat.length === n &&
          flat.every((v, i) => v === i) &&
          sizes.every((s) => s >= 1 && s <= max) &&
          (sizes.length === 0 || Math.max(...sizes) - Math.min(...sizes) <= 1) &&
          batches.length === Math.ceil(n / max)
        );
      }),
    );
  });

  it("signs 25 % over the estimate, within the budget and the cap, never under the estimate", () => {
    expect(gasLimitFor(1_000_000n, 12_000_000)).to.equal(1_260_000n);
    expect(gasLimitFor(11_000_000n, 12_000_000)).to.equal(12_000_000n);
    expect(gasLimitFor(13_000_000n, 12_000_000)).to.equal(13_000_000n);
    expect(gasLimitFor(16_000_000n, 20_000_000)).to.equal(BigInt(TX_GAS_CAP));
  });

  it("bumps fees by at least 12.5 % and to at least the current market", () => {
    const b = bumpFees({ type: "eip1559", maxFeePerGas: 800n, maxPriorityFeePerGas: 80n }, { type: "eip1559", maxFeePerGas: 850n, maxPriorityFeePerGas: 200n });
    expect(b).to.deep.equal({ type: "eip1559", maxFeePerGas: 901n, maxPriorityFeePerGas: 200n });
    expect(bumpFees({ type: "legacy", gasPrice: 100n }, { type: "legacy", gasPrice: 90n })).to.deep.equal({ type: "legacy", gasPrice: 113n });
  });
});

describe("settlement: configuration", () => {
  it("uses 60 s and one confirmation on local chains, 300 s and five elsewhere", () => {
    const problems: string[] = [];
    const e = parseSettlementEnv({}, problems);
    expect(problems).to.deep.equal([]);
    expect(resolveSettlementConfig(e, 31337)).to.include({ interval: 60, confirmations: 1, blockTime: 1, inServer: true, threshold: "1" });
    expect(resolveSettlementConfig(e, 8453)).to.include({ interval: 300, confirmations: 5, blockTime: 12 });
  });

  it("reports every bad variable at once and never echoes the private key", () => {
    const secret = `0x${"ab".repeat(31)}zz`;
    const problems: string[] = [];
    parseSettlementEnv(
      { SETTLER_PRIVATE_KEY: secret, SETTLE_INTERVAL: "soon", SETTLE_GAS_BUDGET: "20000000", SETTLE_THRESHOLD: "-1", SETTLE_IN_SERVER: "maybe", SETTLE_MAX_FEE_GWEI: "0" },
      problems,
    );
    expect(problems).to.have.length(6);
    expect(problems.join("\n")).not.to.contain("abab");
    expect(problems.find((p) => p.startsWith("SETTLER_PRIVATE_KEY"))).to.equal("SETTLER_PRIVATE_KEY must be 32 bytes of hex (the value is not shown)");
  });

  it("keeps a valid key out of the parsed object's enumerable fields", () => {
    const key = `0x${"11".repeat(32)}`;
    const e = parseSettlementEnv({ SETTLER_PRIVATE_KEY: key, SETTLE_MAX_FEE_GWEI: "1.5", SETTLE_IN_SERVER: "false" }, []);
    expect(JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.to.contain("1111");
    expect(e.hasKey).to.equal(true);
    expect(e.privateKey()).to.equal(key);
    expect(e.maxFeePerGas).to.equal(1_500_000_000n);
    expect(e.inServer).to.equal(false);
  });

  it("the demo app uses the payee's Hardhat key on local chains only; the package knows no key of its own", () => {
    const payee0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" as Address;
    expect(localSettlerKey({ chainId: 31337, payee: payee0 })).to.deep.include({ privateKey: HARDHAT_ACCOUNT_0_KEY, source: "local test account" });
    expect(localSettlerKey({ chainId: 31337, payee: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" })!.address).to.equal("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    expect(localSettlerKey({ chainId: 8453, payee: payee0 })).to.equal(null);
    expect(localSettlerKey({ chainId: 31337, payee: "0x00000000000000000000000000000000000000aa" })).to.equal(null);
    const k = `0x${"33".repeat(32)}` as Hex;
    expect(localSettlerKey({ privateKey: k, chainId: 8453, payee: payee0 })!.source).to.equal("SETTLER_PRIVATE_KEY");
    expect(resolveSettlerKey({})).to.equal(null);
    expect(resolveSettlerKey({ privateKey: k })).to.deep.include({ privateKey: k, source: "SETTLER_PRIVATE_KEY" });
  });
});

describe("settlement: receipt decoding", () => {
  const escrow = "0x00000000000000000000000000000000000000e5" as Address;
  const token = "0x00000000000000000000000000000000000000bb" as Address;
  const payee = "0x00000000000000000000000000000000000000aa" as Address;
  const payer = "0x0000000000000000000000000000000000000001" as Address;
  const ev = (address: Address, abi: typeof channelEscrowAbi | typeof erc20Abi, eventName: string, args: Record<string, unknown>, data: Hex) => ({
    address,
    topics: (encodeEventTopics as (p: unknown) => Hex[])({ abi, eventName, args }),
    data,
  });
  const u = (types: string[], values: unknown[]) => encodeAbiParameters(types.map((type) => ({ type })), values);

  it("reads Settled, SettleSkipped (reason by name) and the payout of a settle", () => {
    const logs = [
      ev(escrow, channelEscrowAbi, "Settled", { channelId: id(1) }, u(["uint128"], [700n])),
      ev(escrow, channelEscrowAbi, "SettleSkipped", { channelId: id(2) }, u(["uint8"], [3])),
      ev(escrow, channelEscrowAbi, "SettleSkipped", { channelId: id(3) }, u(["uint8"], [5])),
      ev(token, erc20Abi, "Transfer", { from: escrow, to: payee }, u(["uint256"], [500n])),
    ];
    const c = decodeSettlementReceipt(
      { status: "success", blockNumber: 9n, blockHash: id(9), gasUsed: 100n, effectiveGasPrice: 2n, logs },
      { kind: "settle", escrow, token, payee, channelIds: [id(1), id(2), id(3), id(4)] },
    );
    expect(c.items).to.deep.equal([
      { channelId: id(1), status: "settled", settledAmount: 700n },
      { channelId: id(2), status: "skipped", skipReason: "InvalidSignature" },
      { channelId: id(3), status: "skipped", skipReason: "AmountNotAboveSettled" },
    ]); // id(4): no log, so not landed
    expect(c.amountSettled).to.equal(500n);
  });

  it("reads a close: Closed, and the payout (not the refund) even when the payer is the payee", () => {
    const logs = [
      ev(escrow, channelEscrowAbi, "Settled", { channelId: id(1) }, u(["uint128"], [900n])),
      ev(escrow, channelEscrowAbi, "Closed", { channelId: id(1) }, u(["uint256", "uint256"], [900n, 100n])),
      ev(token, erc20Abi, "Transfer", { from: escrow, to: payee }, u(["uint256"], [400n])),
      ev(token, erc20Abi, "Transfer", { from: escrow, to: payee }, u(["uint256"], [100n])),
    ];
    const c = decodeSettlementReceipt(
      { status: "success", blockNumber: 9n, blockHash: id(9), gasUsed: 100n, logs },
      { kind: "close", escrow, token, payee, channelIds: [id(1)] },
    );
    expect(c.items).to.deep.equal([{ channelId: id(1), status: "closed", settledAmount: 900n }]);
    expect(c.amountSettled).to.equal(400n);
    const refundOnly = decodeSettlementReceipt(
      { status: "success", blockNumber: 9n, blockHash: id(9), gasUsed: 100n, logs: [logs[1], ev(token, erc20Abi, "Transfer", { from: escrow, to: payer }, u(["uint256"], [100n]))] },
      { kind: "close", escrow, token, payee, channelIds: [id(1)] },
    );
    expect(refundOnly.amountSettled).to.equal(0n);
  });

  it("reads a payout the escrow kept owed to the payee (PaymentDeferred) as deferred, not paid; deferrals to others are not the payee's", () => {
    const other = "0x00000000000000000000000000000000000000cc" as Address;
    const settle = decodeSettlementReceipt(
      {
        status: "success",
        blockNumber: 9n,
        blockHash: id(9),
        gasUsed: 100n,
        logs: [
          ev(escrow, channelEscrowAbi, "Settled", { channelId: id(1) }, u(["uint128"], [700n])),
          ev(escrow, channelEscrowAbi, "PaymentDeferred", { token, account: payee }, u(["uint256"], [700n])),
          ev(escrow, channelEscrowAbi, "PaymentDeferred", { token: other, account: payee }, u(["uint256"], [5n])),
        ],
      },
      { kind: "settle", escrow, token, payee, channelIds: [id(1)] },
    );
    expect(settle.items).to.deep.equal([{ channelId: id(1), status: "settled", settledAmount: 700n }]);
    expect(settle).to.include({ amountSettled: 0n, amountDeferred: 700n });
    // A close whose payout is deferred and whose refund reaches the payer (here the payee itself): the refund is not the payout.
    const close = decodeSettlementReceipt(
      {
        status: "success",
        blockNumber: 9n,
        blockHash: id(9),
        gasUsed: 100n,
        logs: [
          ev(escrow, channelEscrowAbi, "Settled", { channelId: id(1) }, u(["uint128"], [900n])),
          ev(escrow, channelEscrowAbi, "Closed", { channelId: id(1) }, u(["uint256", "uint256"], [900n, 100n])),
          ev(escrow, channelEscrowAbi, "PaymentDeferred", { token, account: payee }, u(["uint256"], [400n])),
          ev(token, erc20Abi, "Transfer", { from: escrow, to: payee }, u(["uint256"], [100n])),
        ],
      },
      { kind: "close", escrow, token, payee, channelIds: [id(1)] },
    );
    expect(close).to.include({ amountSettled: 0n, amountDeferred: 400n });
    // The payer's refund deferred: nothing owed to the payee.
    const refund = decodeSettlementReceipt(
      {
        status: "success",
        blockNumber: 9n,
        blockHash: id(9),
        gasUsed: 100n,
        logs: [
          ev(escrow, channelEscrowAbi, "Closed", { channelId: id(1) }, u(["uint256", "uint256"], [900n, 100n])),
          ev(escrow, channelEscrowAbi, "PaymentDeferred", { token, account: payer }, u(["uint256"], [100n])),
        ],
      },
      { kind: "close", escrow, token, payee, channelIds: [id(1)] },
    );
    expect(refund).to.include({ amountSettled: 0n, amountDeferred: 0n });
  });
});
