/**
 * The chain RPC made unreachable under load: the real server (`server/main.ts`, a child process) reads the chain
 * through a fault proxy (test/helpers/fault-proxy.ts) that refuses connections, black-holes them, or delays them.
 *
 * In every failure mode, with concurrent requests: each request that needs a chain read (a channel never seen, a
 * voucher above the deposit the server knows) gets 503 `upstream_unavailable` with Retry-After and no receipt, in
 * bounded time; requests that need no read may be served, always with a receipt and a durable record; nothing is
 * ever served free and nothing is written for unseen channels. A delay shorter than the RPC timeout only slows
 * service down. When the proxy heals, the very vouchers that got 503 are served.
 */
import { expect } from "chai";
import type { Abi } from "viem";
import { channelEscrowAbi, HEADER_PAYMENT_RESPONSE, type ChannelRequirements } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { openSqliteProbe } from "../helpers/db-probe";
import { openChannel, USDC, type Env, type OpenedChannel } from "../helpers/escrow";
import type { FaultMode, FaultProxy } from "../helpers/fault-proxy";
import type { ServerProcess } from "../helpers/process";
import { startProxiedServer, type ProxiedServer } from "../helpers/proxied-server";
import { paymentHeaders } from "../helpers/server";

const PRICE = 1_000n;
/**
 * The server's RPC timeout: far above a read's normal time even on a busy machine (two suites on two cores), so only
 * the outages below fail reads, never the machine's load.
 */
const RPC_TIMEOUT = 3_000;

interface Answer {
  status: number;
  code?: string;
  receipt: boolean;
  retryAfter: string | null;
  ms: number;
}

describe("faults: chain RPC unreachable behind a fault proxy (refuse, drop, delay)", function () {
  this.timeout(300_000);
  let env: Env;
  let proxy: FaultProxy;
  let server: ServerProcess;
  let databaseUrl: string;
  let terms: ChannelRequirements;
  let known: OpenedChannel;
  let knownNext = PRICE;
  const served: Array<{ channel: string; amount: bigint }> = [];

  const pay = async (c: OpenedChannel, v: bigint): Promise<Answer> => {
    const t0 = performance.now();
    const res = await fetch(`${server.url}/v1/echo?msg=rpc`, { headers: paymentHeaders(terms, c.voucher.sign(c.id, v)), signal: AbortSignal.timeout(20 * RPC_TIMEOUT) });
    const text = await res.text();
    const a: Answer = {
      status: res.status,
      receipt: res.headers.get(HEADER_PAYMENT_RESPONSE) !== null,
      retryAfter: res.headers.get("retry-after"),
      ms: performance.now() - t0,
    };
    try {
      a.code = JSON.parse(text).error;
    } catch {
      a.code = undefined;
    }
    // Never free: a 200 always carries a receipt.
    expect(a.status === 200 ? a.receipt : true, `200 without ${HEADER_PAYMENT_RESPONSE}`).to.equal(true);
    if (a.status === 200) served.push({ channel: c.id.toLowerCase(), amount: v });
    return a;
  };

  let running: ProxiedServer;

  before(async function () {
    running = await startProxiedServer({ RPC_TIMEOUT: String(RPC_TIMEOUT), CHAIN_POLL_INTERVAL: "200", UNKNOWN_CHANNEL_TTL: "100" });
    ({ env, proxy, server, databaseUrl, terms } = running);
    known = await openChannel(env, { deposit: USDC(1) });
    expect((await pay(known, knownNext)).status).to.equal(200);
  });

  after(async function () {
    await running?.stop();
  });

  /** Tops `c` up on chain (not through the proxy): the server learns of it only by reading the chain. */
  async function topUp(c: OpenedChannel, amount: bigint) {
    const payer = env.wallets.find((w) => w.account.address.toLowerCase() === c.payer.toLowerCase())!;
    await payer.writeContract({ address: env.usdc.address, abi: mockUsdcAbi as Abi, functionName: "mint", args: [c.payer, amount] });
    await payer.writeContract({ address: env.usdc.address, abi: mockUsdcAbi as Abi, functionName: "approve", args: [env.escrow.address, amount] });
    await payer.writeContract({ address: env.escrow.address, abi: channelEscrowAbi as Abi, functionName: "topUp", args: [c.id, c.signer, amount] });
  }

  const outages: Array<{ mode: FaultMode; delayMs?: number; label: string }> = [
    { mode: "refuse", label: "connections refused" },
    { mode: "drop", label: "connections black-holed (no answer)" },
    { mode: "delay", delayMs: 4 * RPC_TIMEOUT, label: `every packet ${4 * RPC_TIMEOUT} ms late (beyond the RPC timeout)` },
  ];

  for (const o of outages) {
    it(`${o.label}: reads needed → 503 in bounded time, nothing free, nothing written; served again after healing`, async () => {
      // The outage starts first: the fresh channels are opened while the server cannot see the chain (else its event
      // follower, polling every 200 ms, may have read them into memory already, and no request would need a read).
      proxy.mode(o.mode, { delayMs: o.delayMs });
      const fresh: OpenedChannel[] = [];
      for (let i = 0; i < 4; i++) fresh.push(await openChannel(env, { payerIndex: 2 + i, deposit: USDC(1) }));
      // The known channel's deposit grows on chain while the server cannot see it.
      const knownDeposit = (await readDeposit(known)) as bigint;
      await topUp(known, USDC(1));

      const probe = openSqliteProbe(databaseUrl);
      const before = probe.snapshot().counts;
      const needRead = [
        ...fresh.map((c) => ({ c, v: PRICE })),
        ...fresh.map((c) => ({ c, v: 2n * PRICE })),
        { c: known, v: knownDeposit + PRICE }, // above the deposit the server knows: it must look again
      ];
      const noRead = Array.from({ length: 6 }, () => ({ c: known, v: (knownNext += PRICE) }));
      const answers = await Promise.all([...needRead, ...noRead].map(({ c, v }) => pay(c, v)));
      const readAnswers = answers.slice(0, needRead.length);
      for (const a of readAnswers) {
        expect(a.status, JSON.stringify(a)).to.equal(503);
        expect(a.code).to.equal("upstream_unavailable");
        expect(a.retryAfter).to.not.equal(null);
        expect(a.receipt).to.equal(false);
        expect(a.ms, "503 in bounded time").to.be.lessThan(10 * RPC_TIMEOUT);
      }
      // No read needed: served (with receipts, checked in pay) or, at worst, refused — never free.
      for (const a of answers.slice(needRead.length)) expect([200, 503]).to.include(a.status);

      // Nothing was written for channels the server never accepted a voucher for.
      const during = probe.all<{ channel_id: string }>("SELECT channel_id FROM channels");
      for (const c of fresh) expect(during.map((r) => r.channel_id)).to.not.include(c.id.toLowerCase());
      expect(probe.snapshot().counts.channels).to.equal(before.channels);
      if (o.mode !== "delay") {
        const health = await fetch(`${server.url}/healthz`);
        await health.arrayBuffer();
        expect(health.status, "healthz during the outage").to.equal(503);
      }

      // Heal: the same vouchers (never used) are served now, and the top-up is visible.
      proxy.mode("pass");
      const again = await Promise.all(needRead.map(({ c, v }) => pay(c, v)));
      for (const a of again) expect(a.status, JSON.stringify(a)).to.equal(200);
      knownNext = knownDeposit + PRICE; // the known channel's vouchers continue above the one just served

      // Every served voucher is durably recorded, and spent ≤ accepted ≤ deposit.
      const rows = probe.all<{ channel_id: string; accepted: string; spent: string; deposit: string }>("SELECT channel_id, accepted, spent, deposit FROM channels");
      for (const r of rows) {
        expect(BigInt(r.spent) <= BigInt(r.accepted) && BigInt(r.accepted) <= BigInt(r.deposit), JSON.stringify(r)).to.equal(true);
      }
      for (const s of served) {
        const r = rows.find((x) => x.channel_id === s.channel)!;
        expect(r, `row of ${s.channel}`).to.not.equal(undefined);
        expect(BigInt(r.accepted) >= s.amount).to.equal(true);
      }
      probe.close();
    });
  }

  it(`a delay below the RPC timeout only slows reads down: everything is served`, async () => {
    // Opened while the server cannot see the chain, so each request needs its read (see above), then the chain is slow.
    proxy.down();
    const fresh: OpenedChannel[] = [];
    for (let i = 0; i < 3; i++) fresh.push(await openChannel(env, { payerIndex: 2 + i, deposit: USDC(1) }));
    const delayMs = RPC_TIMEOUT / 12; // a read is one or two round trips: well inside the timeout
    proxy.mode("delay", { delayMs });
    try {
      const answers = await Promise.all(fresh.map((c) => pay(c, PRICE)));
      for (const a of answers) {
        expect(a.status, JSON.stringify(a)).to.equal(200);
        expect(a.ms, "the read went through the slow proxy").to.be.greaterThan(delayMs);
      }
    } finally {
      proxy.mode("pass");
    }
  });

  async function readDeposit(c: OpenedChannel): Promise<bigint> {
    const ch = (await env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi as Abi, functionName: "getChannel", args: [c.id, c.signer] })) as {
      deposit: bigint;
    };
    return ch.deposit;
  }
});
