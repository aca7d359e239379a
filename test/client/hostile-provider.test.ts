/**
 * Issue 17, agent side: a malicious provider (test/helpers/hostile-provider.ts: an Express app of its own naming a
 * fake escrow or the real one, refusing every paid request with retryable and "channel unusable" codes, rotating
 * `payTo`) cannot drain an agent that uses the README's quick-start settings, through the SDK or the `channel` CLI.
 * Each test prints the agent's worst-case exposure (deposited, locked, signed) and holds it to the documented caps.
 * The CLI tests run client/dist (build first: `node scripts/build.js`).
 */
import { expect } from "chai";
import hre from "hardhat";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicClient, custom, erc20Abi, type Address, type PublicClient } from "viem";
import { hardhat } from "viem/chains";
import { channelEscrowAbi, escrowCodeMatches, toOnchainChannel } from "@paychan/protocol";
import { ClientError, type ChannelClient } from "@paychan/client";
import { deployEscrow, type Env } from "../helpers/escrow";
import { chainClients, mintUsdc, testClient } from "../helpers/client";
import { snapshot, revertTo } from "../helpers/chain";
import { compiledEnv } from "../helpers/process";
import { rpcUrl } from "../helpers/server";
import { startHostileProvider, type HostileOptions, type HostileProvider } from "../helpers/hostile-provider";

const USDC = (n: number) => BigInt(Math.round(n * 1_000_000));
const BIN = path.resolve(__dirname, "..", "..", "client", "bin", "channel.js");
/** The README's quick-start limits (SDK): maxDeposit 5, maxPrice 0.01, no escrow allow-list. */
const QUICK_START = { maxDeposit: "5", maxPrice: "0.01" } as const;
const DAY = 86_400;

/** What the agent has at stake. */
interface Exposure {
  /** Tokens that left the payer's wallet. */
  deposited: bigint;
  /** Allowance left to the escrow named in the 402 (a fake escrow could take it). */
  allowance: bigint;
  /** Deposits of the payer's channels that are not finalized (refundable only after their close delay). */
  locked: bigint;
  /** Channels opened. */
  channels: number;
  /** The highest voucher per channel the provider holds, summed: what it could settle. */
  signed: bigint;
  /** Payer transactions sent. */
  transactions: number;
}

/** Asserts `a ≤ b` (amounts). */
function atMost(a: bigint, b: bigint): void {
  expect(a <= b, `${a} > ${b}`).to.equal(true);
}

function runCli(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...compiledEnv(), ...env }, cwd, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("client: a malicious provider cannot drain the agent (issue 17)", function () {
  this.timeout(180_000);
  let env: Env;
  let fake: Address;
  let snap: string;
  let publicClient: PublicClient;
  let cwd: string;
  let payerIndex = 30;
  const providers: HostileProvider[] = [];

  before(async function () {
    snap = await snapshot();
    env = await deployEscrow();
    fake = (await hre.viem.deployContract("DrainingEscrow")).address;
    publicClient = createPublicClient({ chain: hardhat, transport: custom(hre.network.provider) }) as PublicClient;
    cwd = await fs.mkdtemp(path.join(os.tmpdir(), "channel-hostile-"));
  });
  after(async function () {
    for (const p of providers) await p.close();
    if (snap) await revertTo(snap);
    if (cwd) await fs.rm(cwd, { recursive: true, force: true });
  });

  async function hostile(o: Partial<HostileOptions>): Promise<HostileProvider> {
    const p = await startHostileProvider({
      escrow: env.escrow.address,
      token: env.usdc.address,
      price: USDC(0.01),
      minDeposit: USDC(5),
      minCloseDelay: DAY,
      codes: ["channel_closing"],
      rotatePayTo: false,
      ...o,
    });
    providers.push(p);
    return p;
  }

  /** A fresh funded payer (100 USDC); returns its index and a function measuring its exposure. */
  async function payer(escrowNamed: Address) {
    const index = payerIndex++;
    const { address } = chainClients(index);
    await hre.network.provider.send("hardhat_setBalance", [address, "0x3635C9ADC5DEA00000"]); // 1,000 ETH for gas
    await mintUsdc(env.usdc.address, address, USDC(100));
    const balanceOf = () => publicClient.readContract({ address: env.usdc.address, abi: erc20Abi, functionName: "balanceOf", args: [address] });
    const balance0 = await balanceOf();
    const nonce0 = await publicClient.getTransactionCount({ address });
    const exposure = async (p: HostileProvider): Promise<Exposure> => {
      const logs = await publicClient.getContractEvents({ address: env.escrow.address, abi: channelEscrowAbi, eventName: "ChannelOpened", args: { payer: address }, fromBlock: 0n });
      let locked = 0n;
      for (const l of logs) {
        const raw = await publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [l.args.channelId!, l.args.signer!] });
        const c = toOnchainChannel(l.args.channelId!, raw);
        if (c && !c.finalized) locked += c.deposit - c.settled;
      }
      return {
        deposited: balance0 - (await balanceOf()),
        allowance: await publicClient.readContract({ address: env.usdc.address, abi: erc20Abi, functionName: "allowance", args: [address, escrowNamed] }),
        locked,
        channels: logs.length,
        signed: p.signedTotal(),
        transactions: (await publicClient.getTransactionCount({ address })) - nonce0,
      };
    };
    return { index, address, exposure };
  }

  function print(title: string, e: Exposure): void {
    const f = (v: bigint) => `${Number(v) / 1e6} USDC`;
    console.log(`      exposure (${title}): deposited ${f(e.deposited)}, locked ${f(e.locked)}, signed ${f(e.signed)}, allowance ${f(e.allowance)}, channels ${e.channels}, transactions ${e.transactions}`);
  }

  async function callN(agent: ChannelClient, url: string, n: number): Promise<Map<string, number>> {
    const codes = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      try {
        const res = await agent.fetch(`${url}/v1/paid?i=${i}`);
        await res.arrayBuffer();
        codes.set(`HTTP ${res.status}`, (codes.get(`HTTP ${res.status}`) ?? 0) + 1);
      } catch (e) {
        expect(e, String(e)).to.be.instanceOf(ClientError);
        const k = (e as ClientError).code;
        codes.set(k, (codes.get(k) ?? 0) + 1);
      }
    }
    return codes;
  }

  it("recognises the released escrow by its code, up to immutables, and nothing else", async function () {
    const real = await publicClient.getCode({ address: env.escrow.address });
    const other = await hre.viem.deployContract("ChannelEscrow"); // another deployment: other immutables, same code
    expect(escrowCodeMatches(real!)).to.equal(true);
    expect(escrowCodeMatches((await publicClient.getCode({ address: other.address }))!)).to.equal(true);
    expect(escrowCodeMatches((await publicClient.getCode({ address: fake }))!)).to.equal(false);
    expect(escrowCodeMatches((await publicClient.getCode({ address: env.usdc.address }))!)).to.equal(false);
    expect(escrowCodeMatches(undefined)).to.equal(false);
    expect(escrowCodeMatches("0x")).to.equal(false);
    // One flipped byte outside the immutables is another contract.
    const flipped = `${real!.slice(0, 100)}${real!.slice(100, 102) === "00" ? "01" : "00"}${real!.slice(102)}` as `0x${string}`;
    expect(escrowCodeMatches(flipped)).to.equal(false);
  });

  it("SDK, quick-start limits: a fake escrow (with ChannelEscrow's EIP-712 domain) is refused, unverified_escrow, with nothing signed or sent", async function () {
    for (const escrow of [fake, env.usdc.address]) {
      const p = await hostile({ escrow, codes: ["channel_closing", "deposit_too_small", "channel_payee_mismatch"], rotatePayTo: true });
      const who = await payer(escrow);
      const { agent } = testClient(who.index, { limits: QUICK_START });
      const codes = await callN(agent, p.url, 10);
      const e = await who.exposure(p);
      print(`fake escrow ${escrow === fake ? "DrainingEscrow" : "MockUSDC"}, SDK, 10 calls`, e);
      expect(Object.fromEntries(codes)).to.deep.equal({ unverified_escrow: 10 });
      expect(e).to.deep.equal({ deposited: 0n, allowance: 0n, locked: 0n, channels: 0, signed: 0n, transactions: 0 });
      expect(p.vouchers).to.have.length(0);
      expect(agent.stats.vouchersSigned).to.equal(0);
    }
  });

  it("SDK: the escrow is verified once per (chain, escrow)", async function () {
    const p = await hostile({ escrow: fake });
    const who = await payer(fake);
    let getCodes = 0;
    const counting = custom({
      request: async (args: { method: string; params?: unknown }) => {
        if (args.method === "eth_getCode") getCodes++;
        return hre.network.provider.request(args as never);
      },
    });
    const c = chainClients(who.index);
    const { agent } = testClient(who.index, {
      limits: QUICK_START,
      publicClient: createPublicClient({ chain: hardhat, transport: counting }) as PublicClient,
      walletClient: c.walletClient,
    });
    await callN(agent, p.url, 5);
    expect(getCodes).to.equal(1);
  });

  it("SDK, quick-start limits: a 30-day close delay is refused before anything is deposited (maxCloseDelay, default 2 days)", async function () {
    const p = await hostile({ minCloseDelay: 30 * DAY, codes: ["channel_closing"], rotatePayTo: true });
    const who = await payer(env.escrow.address);
    const { agent } = testClient(who.index, { limits: QUICK_START });
    const codes = await callN(agent, p.url, 10);
    const e = await who.exposure(p);
    print("real escrow, 30-day close delay, SDK, 10 calls", e);
    expect(Object.fromEntries(codes)).to.deep.equal({ spending_limit: 10 });
    expect(e).to.deep.equal({ deposited: 0n, allowance: 0n, locked: 0n, channels: 0, signed: 0n, transactions: 0 });
  });

  for (const rotatePayTo of [true, false]) {
    it(`SDK, quick-start limits: "channel unusable" refusals${rotatePayTo ? " and a payTo rotated on every 402" : ""} open at most one new channel per refusal streak, within the per-provider caps`, async function () {
      const p = await hostile({ codes: ["channel_closing", "deposit_too_small", "channel_payee_mismatch", "channel_token_mismatch"], rotatePayTo });
      const who = await payer(env.escrow.address);
      const { agent } = testClient(who.index, { limits: QUICK_START });
      const codes = await callN(agent, p.url, 10);
      const e = await who.exposure(p);
      print(`real escrow, unusable codes${rotatePayTo ? ", rotating payTo" : ""}, SDK, 10 calls`, e);
      // Before: 10 calls → 20 channels → 100 USDC locked.
      expect(codes.get("payment_refused")).to.equal(1);
      expect(codes.get("channel_limit")).to.equal(9);
      expect(e.channels).to.be.at.most(2); // maxChannelsPerProvider
      atMost(e.deposited, USDC(10)); // maxDepositPerProvider = 2 × maxDeposit
      atMost(e.locked, USDC(10));
      atMost(e.signed, 2n * USDC(0.32)); // maxUnservedPerChannel = 32 × maxPrice, per channel
      expect(agent.stats.amountSigned[env.usdc.address.toLowerCase()]).to.equal(p.signedTotal());
      for (const c of agent.channels()) expect(c.closeDelay).to.be.at.most(2 * DAY);
    });
  }

  it("SDK, quick-start limits: 16 concurrent first calls, a payTo rotated on every 402, unusable refusals: still at most 2 channels", async function () {
    const p = await hostile({ codes: ["channel_closing", "channel_payee_mismatch"], rotatePayTo: true });
    const who = await payer(env.escrow.address);
    const { agent } = testClient(who.index, { limits: QUICK_START });
    const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => agent.fetch(`${p.url}/v1/paid?c=${i}`)));
    for (const r of results) {
      expect(r.status).to.equal("rejected");
      expect((r as PromiseRejectedResult).reason, String((r as PromiseRejectedResult).reason)).to.be.instanceOf(ClientError);
    }
    console.log("      16 concurrent:", results.map((r) => ((r as PromiseRejectedResult).reason as ClientError).code).join(" "));
    const codes = await callN(agent, p.url, 10);
    const e = await who.exposure(p);
    print("real escrow, unusable codes, rotating payTo, SDK, 16 concurrent then 10 calls", e);
    expect(e.channels).to.be.at.most(2);
    atMost(e.deposited, USDC(10));
    atMost(e.signed, 2n * USDC(0.32));
    expect([...codes.keys()].every((k) => ["channel_limit", "provider_refusing"].includes(k)), JSON.stringify(Object.fromEntries(codes))).to.equal(true);
  });

  it("SDK, quick-start limits: retryable refusals of every paid call stop after maxConsecutiveRefusals calls (provider_refusing); amountSigned reports what was signed", async function () {
    const p = await hostile({ minDeposit: USDC(1), codes: ["insufficient_voucher", "voucher_too_low", "voucher_reused", "payment_required"] });
    const who = await payer(env.escrow.address);
    const { agent } = testClient(who.index, { limits: QUICK_START });
    const codes = await callN(agent, p.url, 300);
    const e = await who.exposure(p);
    print("real escrow, retryable refusals, SDK, 300 calls", e);
    // Before: 2 × price signed per call, forever (300 calls: 6 USDC signed, nothing served).
    expect(Object.fromEntries(codes)).to.deep.equal({ payment_refused: 3, provider_refusing: 297 });
    expect(e.channels).to.equal(1);
    // 3 calls × 2 vouchers: the first covers the price; a 402 committed nothing, so each next voucher is one unit above
    // the last (protocol § 7.1).
    expect(e.signed).to.equal(USDC(0.01) + 5n);
    atMost(e.signed, USDC(0.32)); // maxUnservedPerChannel
    const k = env.usdc.address.toLowerCase();
    expect(agent.stats.amountSigned[k]).to.equal(e.signed);
    expect(agent.stats.amountPaid[k] ?? 0n).to.equal(0n);
  });

  it("SDK, quick-start limits: a provider answering every paid call with a 500 gets 3 vouchers, then provider_refusing", async function () {
    const p = await hostile({ minDeposit: USDC(1), paidStatus: 500 });
    const who = await payer(env.escrow.address);
    const { agent } = testClient(who.index, { limits: QUICK_START });
    const codes = await callN(agent, p.url, 100);
    const e = await who.exposure(p);
    print("real escrow, 500 to every paid call, SDK, 100 calls", e);
    expect(Object.fromEntries(codes)).to.deep.equal({ "HTTP 500": 3, provider_refusing: 97 });
    expect(e.signed).to.equal(3n * USDC(0.01));
  });

  it("SDK, quick-start limits: a provider that reads the voucher and drops the connection gets 3 vouchers, then provider_refusing", async function () {
    const p = await hostile({ minDeposit: USDC(1), dropPaid: true });
    const who = await payer(env.escrow.address);
    const { agent } = testClient(who.index, { limits: QUICK_START });
    const codes = await callN(agent, p.url, 100);
    const e = await who.exposure(p);
    print("real escrow, connection dropped on every paid call, SDK, 100 calls", e);
    // Before: never counted as refused (one voucher per call until maxUnservedPerChannel: 32 vouchers, 0.32 USDC).
    expect(Object.fromEntries(codes)).to.deep.equal({ http_failure: 3, provider_refusing: 97 }); // maxConsecutiveRefusals 3
    expect(p.vouchers).to.have.length(3);
    expect(e.signed).to.equal(3n * USDC(0.01));
    expect(e.channels).to.equal(1);
  });

  it("SDK: signed-but-unserved value per channel is capped (maxUnservedPerChannel), whatever the refusal count allows", async function () {
    // A 500 leaves the outcome unknown (the provider may have charged): each next voucher covers a whole price more.
    const p = await hostile({ minDeposit: USDC(1), paidStatus: 500 });
    const who = await payer(env.escrow.address);
    const { agent } = testClient(who.index, { limits: { ...QUICK_START, maxUnservedPerChannel: "0.05", maxConsecutiveRefusals: 1000 } });
    const codes = await callN(agent, p.url, 50);
    const e = await who.exposure(p);
    print("real escrow, retryable refusals, maxUnservedPerChannel 0.05, SDK, 50 calls", e);
    expect(codes.get("spending_limit")).to.be.greaterThan(0);
    atMost(e.signed, USDC(0.05));
  });

  it("SDK: an oversized or malformed 402 is a ClientError with a code, never a raw TypeError", async function () {
    const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64");
    const cases: Array<[string, () => string]> = [
      ["oversized (64 KiB)", () => b64({ x402Version: 2, accepts: [], pad: "x".repeat(48 * 1024) })],
      ["oversized (just above 16 KiB)", () => b64({ x402Version: 2, accepts: [], pad: "x".repeat(12_300) })],
      ["not base64", () => "%%%not base64%%%"],
      ["not JSON", () => b64("{nope")],
      ["JSON array", () => b64([1, 2, 3])],
      ["accepts not an array", () => b64({ x402Version: 2, accepts: "channel" })],
      ["offer with null extra", () => b64({ x402Version: 2, accepts: [{ scheme: "channel", network: "eip155:31337", extra: null }] })],
      ["empty", () => ""],
    ];
    const who = await payer(env.escrow.address);
    for (const [name, raw] of cases) {
      const p = await hostile({ rawChallenge: raw });
      const { agent } = testClient(who.index, { limits: QUICK_START });
      let err: unknown;
      try {
        const res = await agent.fetch(`${p.url}/v1/paid`);
        await res.arrayBuffer();
        // An empty PAYMENT-REQUIRED is no challenge: the 402 is the caller's to read.
        expect(name, `${name}: answered ${res.status}`).to.equal("empty");
        continue;
      } catch (e) {
        err = e;
      }
      expect(err, `${name}: ${String(err)}`).to.be.instanceOf(ClientError);
      expect(["untrusted_terms", "http_failure"], `${name}: ${(err as ClientError).code}`).to.include((err as ClientError).code);
    }
    const e = await who.exposure(providers.at(-1)!);
    print("oversized and malformed 402s, SDK", e);
    expect(e).to.deep.equal({ deposited: 0n, allowance: 0n, locked: 0n, channels: 0, signed: 0n, transactions: 0 });
  });

  it("CLI, README quick start (no deployment record, no --escrow): a fake escrow is refused, nothing deposited or signed", async function () {
    const p = await hostile({ escrow: fake, codes: ["channel_closing", "deposit_too_small"], rotatePayTo: true });
    const who = await payer(fake);
    const r = await runCli(["call", `${p.url}/v1/paid`, "-n", "10", "--json"], {
      CHANNEL_PRIVATE_KEY: chainClients(who.index).key,
      RPC_URL: await rpcUrl(),
      CHANNEL_STATE_DIR: path.join(cwd, `state-${who.index}`),
      CHANNEL_DEPLOYMENTS_DIR: path.join(cwd, "no-deployments"),
    }, cwd);
    expect(r.code, r.stderr).to.equal(1);
    const summary = JSON.parse(r.stdout);
    expect(summary.failureReasons).to.deep.equal({ unverified_escrow: 10 });
    const e = await who.exposure(p);
    print("fake escrow, CLI, 10 calls", e);
    expect(e).to.deep.equal({ deposited: 0n, allowance: 0n, locked: 0n, channels: 0, signed: 0n, transactions: 0 });
  });

  it("CLI, README quick start: unusable refusals and a rotating payTo stay within the caps across runs; the summary reports amountSigned", async function () {
    const p = await hostile({ codes: ["channel_closing", "deposit_too_small"], rotatePayTo: true });
    const who = await payer(env.escrow.address);
    const cliEnv = {
      CHANNEL_PRIVATE_KEY: chainClients(who.index).key,
      RPC_URL: await rpcUrl(),
      CHANNEL_STATE_DIR: path.join(cwd, `state-${who.index}`),
      CHANNEL_DEPLOYMENTS_DIR: path.join(cwd, "no-deployments"),
    };
    const reasons: Record<string, number>[] = [];
    let signed = 0n;
    for (let run = 0; run < 3; run++) {
      const r = await runCli(["call", `${p.url}/v1/paid`, "-n", "10", "--json"], cliEnv, cwd);
      expect(r.code, r.stderr).to.equal(1);
      const summary = JSON.parse(r.stdout);
      reasons.push(summary.failureReasons);
      signed += BigInt(summary.amountSigned);
    }
    const e = await who.exposure(p);
    print("real escrow, unusable codes, rotating payTo, CLI, 3 runs × 10 calls", e);
    expect(reasons[0]).to.deep.equal({ "payment_refused/deposit_too_small": 1, channel_limit: 9 });
    expect(reasons[1]).to.deep.equal({ channel_limit: 10 });
    expect(reasons[2]).to.deep.equal({ channel_limit: 10 });
    expect(e.channels).to.be.at.most(2);
    atMost(e.deposited, USDC(10));
    expect(e.signed).to.equal(signed);
    atMost(e.signed, 2n * USDC(0.32));
  });

  it("CLI, README quick start: retryable refusals stop after 3 refused calls per run; --max-spend bounds every run", async function () {
    const p = await hostile({ minDeposit: USDC(1), codes: ["insufficient_voucher", "voucher_too_low"] });
    const who = await payer(env.escrow.address);
    const cliEnv = {
      CHANNEL_PRIVATE_KEY: chainClients(who.index).key,
      RPC_URL: await rpcUrl(),
      CHANNEL_STATE_DIR: path.join(cwd, `state-${who.index}`),
      CHANNEL_DEPLOYMENTS_DIR: path.join(cwd, "no-deployments"),
    };
    const r = await runCli(["call", `${p.url}/v1/paid`, "-n", "300", "--json"], cliEnv, cwd);
    expect(r.code, r.stderr).to.equal(1);
    const summary = JSON.parse(r.stdout);
    expect(summary.failureReasons).to.deep.equal({ "payment_refused/voucher_too_low": 3, provider_refusing: 297 });
    expect(BigInt(summary.amountSigned)).to.equal(p.signedTotal());
    expect(BigInt(summary.amountPaid)).to.equal(0n);
    // 3 calls × 2 vouchers: the price, then one unit more per voucher (a 402 committed nothing, protocol § 7.1).
    expect(p.signedTotal()).to.equal(USDC(0.01) + 5n);
    // A budget: --max-spend 0.01001 (0.010005 already signed): five more vouchers, then spending_limit.
    const r2 = await runCli(["call", `${p.url}/v1/paid`, "-n", "300", "--json", "--max-spend", "0.01001", "--max-refusals", "1000"], cliEnv, cwd);
    const s2 = JSON.parse(r2.stdout);
    expect(s2.failureReasons.spending_limit, r2.stdout).to.be.greaterThan(0);
    const e = await who.exposure(p);
    print("real escrow, retryable refusals, CLI, 300 calls then 300 with --max-spend 0.01001", e);
    atMost(e.signed, USDC(0.01001));
    expect(e.channels).to.equal(1);
  });
});
