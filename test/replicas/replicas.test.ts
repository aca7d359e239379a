/**
 * Three REAL server processes (`server/main.ts`) on different ports sharing one PostgreSQL database, against the
 * in-process chain over JSON-RPC, paid by the real client SDK through a round-robin balancer (./cluster.ts):
 * a voucher is served once across replicas, concurrent clients spread over all replicas are all served with exact
 * books, the in-server settlement job (every second in every replica) settles once per cycle across replicas, and a
 * replica killed with SIGKILL mid-load (the settler, when one holds the lock at that moment) loses nothing that was
 * accepted while the others keep serving and another replica finishes the settlement.
 */
import { expect } from "chai";
import type { Address, Hex } from "viem";
import { channelEscrowAbi, decodePaymentRequired, HEADER_PAYMENT_REQUIRED, type ChannelRequirements } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import type { ChannelClient, ChannelPaymentInfo } from "@paychan/client";
import { PostgresStore } from "@paychan/server/postgres";
import { testClient } from "../helpers/client";
import { deployEscrow, openChannel, type Env } from "../helpers/escrow";
import { describePostgres, newTestDatabase } from "../helpers/postgres";
import { paymentHeaders, rpcUrl } from "../helpers/server";
import { balancer, startReplicas, type Replica } from "./cluster";
import { until } from "../helpers/wait";

const PRICE = 1_000n; // GET /v1/echo: 0.001 USDC
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describePostgres("three server replicas sharing one PostgreSQL database", function () {
  this.timeout(240_000);
  let env: Env;
  let payee: Address;
  let databaseUrl: string;
  let replicas: Replica[] = [];
  /** The test's own view of the shared database. */
  let store: PostgresStore;

  before(async function () {
    env = await deployEscrow();
    payee = env.wallets[0].account.address;
    databaseUrl = await newTestDatabase("replicas");
    const rpc = await rpcUrl();
    replicas = await startReplicas(3, (i) => ({
      RPC_URL: rpc,
      ESCROW_ADDRESS: env.escrow.address,
      TOKEN_ADDRESS: env.usdc.address,
      PAYEE_ADDRESS: payee,
      DATABASE_URL: databaseUrl,
      CHAIN_POLL_INTERVAL: "250",
      PG_APPLICATION_NAME: `replica-${i + 1}`,
      PG_POOL_MAX: "8",
      // Every replica runs the settlement job every second (the payee's local key): they contend for the settler lock.
      SETTLE_INTERVAL: "1",
      SETTLE_THRESHOLD: "0.000001",
    }));
    store = await PostgresStore.open({ url: databaseUrl, pool: { max: 4 } });
  });

  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await store?.close();
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") {
      for (const r of replicas) console.log(`--- ${r.name} output (last 2000 chars) ---\n${r.output().slice(-2000)}`);
    }
  });

  async function terms(url: string): Promise<ChannelRequirements> {
    const res = await fetch(`${url}/v1/echo?msg=terms`);
    await res.arrayBuffer();
    expect(res.status).to.equal(402);
    return decodePaymentRequired(res.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
  }

  /** `calls` paid echoes per worker, `workers` at a time, through `fetchVia`; every payment made. */
  async function load(agent: ChannelClient, base: string, workers: number, calls: number, tag: string) {
    const payments: ChannelPaymentInfo[] = [];
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        for (let i = 0; i < calls; i++) {
          try {
            const res = await agent.fetch(`${base}/v1/echo?msg=${tag}-${w}-${i}`);
            const body = await res.text();
            if (res.status !== 200) failures.push(`${res.status} ${body.slice(0, 200)}`);
            else payments.push(agent.paymentOf(res) as ChannelPaymentInfo);
          } catch (e) {
            failures.push(String((e as Error).message ?? e));
          }
        }
      }),
    );
    return { payments, failures };
  }

  it("all replicas migrated and bound the one database, and answer health checks", async () => {
    const bodies = await Promise.all(replicas.map(async (r) => (await fetch(`${r.url}/healthz`)).json()));
    for (const b of bodies as Array<{ status: string; store: { kind: string } }>) expect(b).to.deep.include({ status: "ok", store: { kind: "postgres", writable: true } });
    const c = await store.pool.query<{ n: string }>("SELECT count(*) AS n FROM schema_migrations WHERE version = 1");
    expect(Number(c.rows[0].n)).to.equal(1);
  });

  it("50 copies of one voucher sent to all three replicas at once: exactly one is served", async () => {
    const ch = await openChannel(env, { payerIndex: 13 });
    const t = await terms(replicas[0].url);
    const headers = paymentHeaders(t, ch.voucher.sign(ch.id, PRICE));
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const res = await fetch(`${replicas[i % 3].url}/v1/echo?msg=copy${i}`, { headers });
        const body = (await res.json()) as { error?: string };
        return { status: res.status, error: body.error };
      }),
    );
    expect(results.filter((r) => r.status === 200)).to.have.length(1);
    expect(results.filter((r) => r.status === 402 && r.error === "voucher_reused")).to.have.length(49);
    expect(await store.getChannel(ch.id)).to.include({ accepted: PRICE, spent: PRICE });
  });

  it("3 clients x 16 calls in flight spread over all replicas: all served, spent = calls x price <= accepted <= deposit", async () => {
    const lb = balancer(replicas);
    const agents = [14, 15, 16].map((i) => testClient(i, { fetch: lb.fetch, limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [env.escrow.address], payees: [payee] } }));
    for (const i of [14, 15, 16]) await mint(i, 5_000_000n);
    const runs = await Promise.all(agents.map((a, i) => load(a.agent, replicas[0].url, 16, 6, `c${i}`)));
    for (const r of runs) {
      expect(r.failures).to.deep.equal([]);
      expect(r.payments).to.have.length(96);
    }
    for (const name of Object.keys(lb.counts)) expect(lb.counts[name], name).to.be.greaterThan(50);
    for (const r of runs) {
      const ids = new Set(r.payments.map((p) => p.channelId));
      expect(ids.size).to.equal(1);
      const ch = (await store.getChannel([...ids][0]))!;
      const signed = r.payments.reduce((m, p) => (p.cumulativeAmount > m ? p.cumulativeAmount : m), 0n);
      expect(ch.spent).to.equal(96n * PRICE);
      expect(ch.spent <= ch.accepted && ch.accepted <= ch.deposit, `spent ${ch.spent} accepted ${ch.accepted} deposit ${ch.deposit}`).to.equal(true);
      expect(ch.accepted).to.equal(signed);
    }
  });

  /**
   * Mints MockUSDC to Hardhat account `index` from that account itself (MockUSDC's mint is public): account #0 is the
   * payee, whose key the replicas' settlement job uses, and a test transaction from it would take the settler's nonce.
   */
  async function mint(index: number, amount: bigint) {
    const w = env.wallets[index];
    const hash = await w.writeContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "mint", args: [w.account.address, amount] });
    await env.publicClient.waitForTransactionReceipt({ hash });
  }

  /** The channel's settled amount on chain. */
  const settledOnChain = async (id: Hex, signer: Address) =>
    ((await env.publicClient.readContract({ address: env.escrow.address, abi: channelEscrowAbi, functionName: "getChannel", args: [id, signer] })) as { settled: bigint }).settled;
  const payeeBalance = () => env.publicClient.readContract({ address: env.usdc.address, abi: mockUsdcAbi, functionName: "balanceOf", args: [payee] }) as Promise<bigint>;

  /** Waits until every stored channel is settled on chain up to its `spent` and no settlement is open; returns Σ spent. */
  async function allSettled(timeoutMs: number): Promise<bigint> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const open = (await store.pool.query("SELECT 1 FROM settlement_txs WHERE status IN ('built', 'sent', 'mined')")).rowCount ?? 0;
      const refs = await store.activeChannels();
      let total = 0n;
      let behind = 0;
      for (const { channelId, signer } of refs) {
        const ch = (await store.getChannel(channelId))!;
        total += ch.spent;
        if ((await settledOnChain(channelId, signer)) !== ch.spent) behind++;
      }
      if (behind === 0 && open === 0) return total;
      if (Date.now() > end) throw new Error(`${behind} channel(s) not settled and ${open} settlement(s) open after ${timeoutMs} ms`);
      await sleep(250);
    }
  }

  /** Settlement records: every transaction confirmed (none failed), one nonce each, no channel's claim sent twice. */
  async function checkSettlementRecords() {
    const txs = (await store.pool.query<{ id: string; status: string; nonce: string }>("SELECT id, status, nonce FROM settlement_txs ORDER BY id")).rows;
    expect(txs.length).to.be.greaterThan(0);
    expect(txs.filter((t) => t.status === "failed")).to.deep.equal([]);
    const confirmed = txs.filter((t) => t.status === "confirmed");
    expect(new Set(confirmed.map((t) => t.nonce)).size).to.equal(confirmed.length);
    const items = (
      await store.pool.query<{ channel_id: string; amount: string; tx_id: string }>(
        "SELECT i.channel_id, i.amount, i.tx_id FROM settlement_items i JOIN settlement_txs t ON t.id = i.tx_id WHERE i.status = 'settled' ORDER BY i.channel_id, t.id",
      )
    ).rows;
    for (let k = 1; k < items.length; k++) {
      if (items[k].channel_id !== items[k - 1].channel_id) continue;
      expect(BigInt(items[k].amount) > BigInt(items[k - 1].amount), `channel ${items[k].channel_id} claimed ${items[k].amount} twice`).to.equal(true);
    }
    return txs;
  }

  /** Settlement cycle counts of every live replica, by result (from /metrics). */
  async function cycles(rs: readonly Replica[]) {
    const out: Record<string, Record<string, number>> = {};
    for (const r of rs) {
      const text = await (await fetch(`${r.url}/metrics`)).text();
      out[r.name] = {};
      for (const m of text.matchAll(/^channel_settlement_cycles_total\{result="([a-z_]+)"\} ([0-9]+)$/gm)) out[r.name][m[1]] = Number(m[2]);
    }
    return out;
  }

  it("settlement runs once per cycle across replicas: the payee is paid exactly what was spent, no claim is sent twice", async () => {
    const total = await allSettled(30_000);
    expect(total > 0n).to.equal(true);
    expect(await payeeBalance()).to.equal(total);
    await checkSettlementRecords();
    const c = await cycles(replicas);
    const ok = Object.values(c).map((x) => x.ok ?? 0);
    const busy = Object.values(c).reduce((n, x) => n + (x.lease_busy ?? 0), 0);
    const failed = Object.values(c).reduce((n, x) => n + (x.failed ?? 0), 0);
    expect(ok.reduce((a, b) => a + b, 0), JSON.stringify(c)).to.be.greaterThan(3);
    expect(failed, JSON.stringify(c)).to.equal(0);
    // The replicas' cycles overlapped and the lock turned the latecomers away (several replicas did settle).
    expect(busy, JSON.stringify(c)).to.be.greaterThan(0);
    expect(ok.filter((n) => n > 0).length, JSON.stringify(c)).to.be.at.least(2);
  });

  it("a replica killed with SIGKILL mid-load: the others keep serving and nothing accepted is lost", async () => {
    const lb = balancer(replicas);
    const agents = [17, 18].map((i) => testClient(i, { fetch: lb.fetch, limits: { maxPrice: "0.01", maxDeposit: "5", escrows: [env.escrow.address], payees: [payee] } }));
    for (const i of [17, 18]) await mint(i, 5_000_000n);
    // One paid call each first, so the channels exist (opening is not what this test is about).
    for (const a of agents) expect((await a.agent.fetch(`${replicas[0].url}/v1/echo?msg=open`)).status).to.equal(200);
    const runs = agents.map((a, i) => load(a.agent, replicas[0].url, 16, 15, `k${i}`));
    // Once a good part of the load is served, kill the replica holding the settler lock (if one holds it now).
    const deadline = Date.now() + 60_000;
    while (Object.values(lb.counts).reduce((a, b) => a + b, 0) < 240 && Date.now() < deadline) await sleep(5);
    let holder: string | undefined;
    for (let i = 0; i < 100 && !holder; i++) {
      const r = await store.pool.query<{ app: string }>(
        "SELECT a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'replica-%'",
      );
      holder = r.rows[0]?.app;
      if (!holder) await sleep(10);
    }
    const victim = replicas.find((r) => r.name === holder) ?? replicas[1];
    expect(await victim.kill("SIGKILL")).to.equal("SIGKILL");
    const servedByVictim = lb.counts[victim.name];
    const results = await Promise.all(runs);

    for (const r of results) expect(r.failures, r.failures.slice(0, 3).join("\n")).to.deep.equal([]);
    // The survivors took over: requests after the kill went to them only.
    expect(lb.counts[victim.name]).to.be.at.most(servedByVictim + 16 * agents.length);
    for (const r of replicas) if (r !== victim) expect(lb.counts[r.name]).to.be.greaterThan(100);

    for (const [i, r] of results.entries()) {
      const ids = new Set(r.payments.map((p) => p.channelId));
      expect(ids.size).to.equal(1);
      const ch = (await store.getChannel([...ids][0]))!;
      const served = BigInt(r.payments.length + 1); // + the opening call
      // Every voucher a receipt acknowledged is in the database: accepted covers the highest, spent every served call.
      const highest = r.payments.reduce((m, p) => (p.cumulativeAmount > m ? p.cumulativeAmount : m), 0n);
      expect(ch.accepted >= highest, `client ${i}: accepted ${ch.accepted} < acknowledged ${highest}`).to.equal(true);
      expect(ch.spent >= served * PRICE, `client ${i}: spent ${ch.spent} < served ${served * PRICE}`).to.equal(true);
      for (const p of r.payments) expect(p.receipt!.extra.spent <= ch.spent).to.equal(true);
      // At most the calls in flight on the killed replica were charged without an answer.
      expect(ch.spent - served * PRICE <= BigInt(lb.retried) * PRICE, `unanswered charges ${ch.spent - served * PRICE} > retried ${lb.retried}`).to.equal(true);
      expect(ch.spent <= ch.accepted && ch.accepted <= ch.deposit).to.equal(true);
    }
    // The dead replica's connections are gone (its sessions ended with the process, and with them any settler lock).
    // (PostgreSQL ends a backend when it reads its client's EOF: wait for that, however busy the machine is.)
    await until(
      async () => (await store.pool.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1", [victim.name])).rowCount === 0,
      "the killed replica's PostgreSQL sessions to end",
    );

    // Another replica takes over settlement: everything spent, including what the dead one accepted, reaches the chain.
    const survivors = replicas.filter((r) => r !== victim);
    const before = await cycles(survivors);
    const total = await allSettled(30_000);
    expect(await payeeBalance()).to.equal(total);
    await checkSettlementRecords();
    const after = await cycles(survivors);
    const okAfter = survivors.reduce((n, r) => n + (after[r.name].ok ?? 0) - (before[r.name].ok ?? 0), 0);
    expect(okAfter, `holder at kill: ${holder ?? "none"}`).to.be.greaterThan(0);
  });
});
