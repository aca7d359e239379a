/**
 * Crash durability under load: the real server (`server/main.ts` in a child process, RPC_URL to the in-process chain
 * over JSON-RPC) is killed with SIGKILL at random moments while 12 requests are in flight on 3 channels, then
 * restarted on the same SQLite database, 20 times. The load re-sends vouchers whose outcome it never learned
 * (connection reset by the kill) and replays vouchers that were served, as a client retrying or an attacker would.
 *
 * After every kill (server dead) the database must hold, for every response that was served (200 with
 * PAYMENT-RESPONSE): `accepted ≥ v` and `v` in the used set or at/below the floor; `spent ≥ price × served` for the
 * channel; `spent ≤ accepted ≤ deposit` for every channel. Over the whole history no (channel, voucher) is served
 * twice, and no 200 comes without a receipt. At the end a restarted server refuses every served voucher.
 *
 * Each kill comes once that life has served a random number of requests (6–40) plus a random 0–20 ms, from a seeded
 * PRNG (CRASH_SEED to reproduce; printed on failure): the load it exercises does not depend on the machine's speed.
 */
import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { HEADER_PAYMENT_RESPONSE, decodePaymentRequired, type ChannelRequirements } from "@paychan/protocol";
import { openSqliteProbe } from "../helpers/db-probe";
import { deployEscrow, openChannel, USDC, type OpenedChannel } from "../helpers/escrow";
import { startServerProcess, type ServerProcess } from "../helpers/process";
import { paymentHeaders, rpcUrl, tempDatabaseUrl } from "../helpers/server";

const KILLS = 20;
const PRICE = 1_000n; // /v1/echo: 0.001 USDC
const WORKERS_PER_CHANNEL = 4;

/** mulberry32: a small seeded PRNG (reproducible kill moments). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Outcome = "served" | "refused" | "unknown" | "free";

interface HistoryEntry {
  channel: number;
  amount: bigint;
  kind: "new" | "retry" | "replay";
  life: number;
  outcome: Outcome;
  status?: number;
  code?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Mocha's deadline, renewed at each server life (and for the final check): a life starts a server from TypeScript
 * (up to 60 s when the machine is busy) and waits for its served requests (up to 60 s), so a fixed deadline for all 21
 * lives would be either huge or too tight on a busy machine; a hang still fails within one budget.
 */
const LIFE_BUDGET_MS = 180_000;

describe("faults: SIGKILL of the server under concurrent paid load, restarted on the same database", function () {
  this.timeout(LIFE_BUDGET_MS);

  it(`${KILLS} kills at random moments: every served voucher is durable, spent ≤ accepted ≤ deposit, no voucher served twice`, async function () {
    const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
    const random = prng(seed);
    const context = `CRASH_SEED=${seed}`;
    const env = await deployEscrow();
    const chans: OpenedChannel[] = [];
    for (let i = 0; i < 3; i++) chans.push(await openChannel(env, { payerIndex: 1 + i, deposit: USDC(10) }));
    const databaseUrl = tempDatabaseUrl();
    const serverEnv = {
      RPC_URL: await rpcUrl(),
      ESCROW_ADDRESS: env.escrow.address,
      TOKEN_ADDRESS: env.usdc.address,
      PAYEE_ADDRESS: env.wallets[0].account.address,
      DATABASE_URL: databaseUrl,
      CHAIN_POLL_INTERVAL: "500",
    };

    const history: HistoryEntry[] = [];
    const served = chans.map(() => new Map<bigint, number>()); // amount -> times served
    const unknown = chans.map(() => [] as bigint[]); // outcome never learned: re-sent later
    const counters = chans.map(() => 0n);
    const servedIn: number[] = []; // served responses per server life
    let server: ServerProcess | null = null;
    let url = "";
    let life = 0;
    let loadOn = false;
    let terms: ChannelRequirements | null = null;

    const send = async (ci: number, amount: bigint, kind: HistoryEntry["kind"]) => {
      const ch = chans[ci];
      const entry: HistoryEntry = { channel: ci, amount, kind, life, outcome: "unknown" };
      history.push(entry);
      try {
        const res = await fetch(`${url}/v1/echo?msg=k`, { headers: paymentHeaders(terms!, ch.voucher.sign(ch.id, amount)), signal: AbortSignal.timeout(10_000) });
        const body = await res.text();
        entry.status = res.status;
        if (res.status === 200) {
          entry.outcome = res.headers.get(HEADER_PAYMENT_RESPONSE) ? "served" : "free";
          servedIn[entry.life] = (servedIn[entry.life] ?? 0) + 1;
          served[ci].set(amount, (served[ci].get(amount) ?? 0) + 1);
        } else {
          entry.outcome = "refused";
          try {
            entry.code = JSON.parse(body).error;
          } catch {
            entry.code = undefined;
          }
        }
      } catch {
        entry.outcome = "unknown";
        unknown[ci].push(amount);
      }
    };

    const worker = async (ci: number) => {
      while (loadOn) {
        const r = random();
        const servedHere = [...served[ci].keys()];
        if (unknown[ci].length && r < 0.3) {
          await send(ci, unknown[ci].shift()!, "retry");
        } else if (servedHere.length && r < 0.35) {
          await send(ci, servedHere[Math.floor(random() * servedHere.length)], "replay");
        } else {
          counters[ci] += PRICE;
          await send(ci, counters[ci], "new");
        }
        if (!server || server.child.exitCode !== null || server.child.signalCode !== null) await sleep(5);
      }
    };

    /** The durable state, read with the server dead. */
    const checkDatabase = (when: string) => {
      const probe = openSqliteProbe(databaseUrl, { readonly: false });
      try {
        for (let ci = 0; ci < chans.length; ci++) {
          const id = chans[ci].id.toLowerCase();
          const [row] = probe.all<{ accepted: string; spent: string; floor: string; deposit: string }>(
            "SELECT accepted, spent, floor, deposit FROM channels WHERE channel_id = ?",
            id,
          );
          const servedAmounts = [...served[ci].keys()];
          if (!row) {
            expect(servedAmounts, `${when}: channel ${ci} has served vouchers but no row (${context})`).to.have.length(0);
            continue;
          }
          const accepted = BigInt(row.accepted);
          const spent = BigInt(row.spent);
          const floor = BigInt(row.floor);
          const deposit = BigInt(row.deposit);
          expect(spent <= accepted, `${when}: channel ${ci} spent ${spent} > accepted ${accepted} (${context})`).to.equal(true);
          expect(accepted <= deposit, `${when}: channel ${ci} accepted ${accepted} > deposit ${deposit} (${context})`).to.equal(true);
          expect(spent >= PRICE * BigInt(servedAmounts.length), `${when}: channel ${ci} spent ${spent} < ${servedAmounts.length} served × price (${context})`).to.equal(true);
          const used = new Set(probe.all<{ amount: string }>("SELECT amount FROM used_vouchers WHERE channel_id = ?", id).map((u) => BigInt(u.amount)));
          for (const v of servedAmounts) {
            expect(accepted >= v, `${when}: channel ${ci} served ${v} but accepted is ${accepted} (${context})`).to.equal(true);
            expect(used.has(v) || v <= floor, `${when}: channel ${ci} served ${v}: not in the used set and above floor ${floor} (${context})`).to.equal(true);
          }
        }
      } finally {
        probe.close();
      }
    };

    const kills: string[] = [];
    let passed = false;
    try {
      for (life = 0; life <= KILLS; life++) {
        this.timeout(LIFE_BUDGET_MS); // renews the deadline for this life
        server = await startServerProcess(serverEnv);
        url = server.url;
        if (!terms) {
          const challenge = await fetch(`${url}/v1/echo`);
          await challenge.arrayBuffer();
          terms = decodePaymentRequired(challenge.headers.get("payment-required")).accepts[0];
        }
        if (life === KILLS) break; // the last life is the final check below
        loadOn = true;
        const workers = chans.flatMap((_, ci) => Array.from({ length: WORKERS_PER_CHANNEL }, () => worker(ci)));
        // The kill comes at a random moment of real load: once this life has served a random number of requests, then
        // after a random few more milliseconds, so requests are in flight at every stage. Waiting for served
        // requests rather than for a fixed time keeps what the test exercises independent of the machine's speed.
        const target = 6 + Math.floor(random() * 35);
        const jitter = Math.floor(random() * 20);
        const deadline = Date.now() + 60_000;
        while ((servedIn[life] ?? 0) < target) {
          if (Date.now() > deadline) expect.fail(`life ${life + 1} served ${servedIn[life] ?? 0} of ${target} requests in 60 s (${context})`);
          await sleep(5);
        }
        await sleep(jitter);
        const after = `${target} served + ${jitter} ms`;
        kills.push(after);
        server.kill("SIGKILL");
        await server.exited;
        loadOn = false;
        await Promise.all(workers);
        checkDatabase(`after kill ${life + 1} (at ${after})`);
      }

      // History: no voucher served twice, nothing served without a receipt.
      const free = history.filter((h) => h.outcome === "free");
      expect(free, `200 without PAYMENT-RESPONSE (${context})`).to.have.length(0);
      for (let ci = 0; ci < chans.length; ci++) {
        for (const [amount, times] of served[ci]) expect(times, `channel ${ci} voucher ${amount} served ${times} times (${context})`).to.equal(1);
      }
      const servedCount = history.filter((h) => h.outcome === "served").length;
      const interrupted = history.filter((h) => h.outcome === "unknown").length;
      const retriedServed = history.filter((h) => h.kind === "retry" && h.outcome === "served").length;
      const retriedRefused = history.filter((h) => h.kind === "retry" && h.outcome === "refused").length;
      // The test must have exercised what it claims: served load, interrupted requests and re-sent vouchers.
      expect(servedCount, "served requests").to.be.greaterThan(100);
      expect(interrupted, "requests cut by a kill").to.be.greaterThan(0);
      expect(retriedServed + retriedRefused, "re-sent vouchers").to.be.greaterThan(0);
      for (const h of history.filter((x) => x.kind === "replay")) expect(h.outcome, `replay of a served voucher (${context})`).to.not.equal("served");

      // Final life: a restarted server refuses every served voucher (used, or below the floor).
      const codes = new Map<string, number>();
      const all = chans.flatMap((_, ci) => [...served[ci].keys()].map((amount) => ({ ci, amount })));
      for (let i = 0; i < all.length; i += 32) {
        await Promise.all(
          all.slice(i, i + 32).map(async ({ ci, amount }) => {
            const res = await fetch(`${url}/v1/echo?msg=k`, { headers: paymentHeaders(terms!, chans[ci].voucher.sign(chans[ci].id, amount)) });
            const body = (await res.json()) as { error: string };
            expect(res.status, `replay of served voucher ${amount} on channel ${ci} after restart (${context})`).to.equal(402);
            codes.set(body.error, (codes.get(body.error) ?? 0) + 1);
          }),
        );
      }
      expect([...codes.keys()].every((c) => c === "voucher_reused" || c === "voucher_too_low"), JSON.stringify([...codes])).to.equal(true);
      console.log(
        `      ${KILLS} kills (${context}, after ${kills.join("; ")}): ${history.length} requests, ${servedCount} served, ` +
          `${interrupted} cut by a kill, re-sent ${retriedServed} served / ${retriedRefused} refused`,
      );
      passed = true;
    } catch (e) {
      (e as Error).message += ` [${context}]`;
      throw e;
    } finally {
      loadOn = false;
      if (server) await server.stop();
      // On failure the database stays for a post-mortem (its path is in the message below).
      if (passed) fs.rmSync(path.dirname(databaseUrl), { recursive: true, force: true });
      else console.log(`      database kept for inspection: ${databaseUrl}`);
    }
  });
});
