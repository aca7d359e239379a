/**
 * Durability: the real server (`server/main.ts`, as `npm start` runs it with RPC_URL set) in a child process is
 * killed with SIGKILL while requests are in flight; a server restarted on the same database holds every voucher
 * that paid for a served request.
 */
import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { SqliteStore } from "@paychan/server";
import { deployEscrow, openChannel, USDC } from "../helpers/escrow";
import { call, paymentHeaders, rpcUrl, startTestServer, tempDatabaseUrl } from "../helpers/server";
import { decodePaymentRequired } from "@paychan/protocol";
import { SERVER_MAIN, TS_NODE_ARGS } from "../helpers/process";

function startMain(env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...TS_NODE_ARGS, SERVER_MAIN], {
      env: { ...process.env, ...env, TS_NODE_TRANSPILE_ONLY: "true" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /ready in [0-9.]+s: (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], child });
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => reject(new Error(`server exited (${code}): ${out.slice(-400)}`)));
  });
}

describe("server: crash durability (SIGKILL)", () => {
  it("every request served before a SIGKILL has its voucher durably stored; a restart refuses to serve it again", async function () {
    this.timeout(60_000);
    const env = await deployEscrow();
    const databaseUrl = tempDatabaseUrl();
    const { url, child } = await startMain({
      RPC_URL: await rpcUrl(),
      ESCROW_ADDRESS: env.escrow.address,
      TOKEN_ADDRESS: env.usdc.address,
      PAYEE_ADDRESS: env.wallets[0].account.address,
      DATABASE_URL: databaseUrl,
      PORT: "0",
      LOG_LEVEL: "silent",
    });
    const exited = new Promise((r) => child.once("exit", r));
    const ch = await openChannel(env, { deposit: USDC(10) });
    const challenge = await fetch(`${url}/v1/echo`);
    const terms = decodePaymentRequired(challenge.headers.get("payment-required")).accepts[0];
    const served: bigint[] = [];
    let v = 0n;
    for (let i = 0; i < 20; i++) {
      v += 1000n;
      const a = await call(`${url}/v1/echo`, { headers: paymentHeaders(terms, ch.voucher.sign(ch.id, v)) });
      expect(a.status).to.equal(200);
      served.push(v);
    }
    // 16 in flight, then SIGKILL while they run.
    const inflight = Array.from({ length: 16 }, (_, k) => {
      const amount = v + BigInt(k + 1) * 1000n;
      return call(`${url}/v1/echo`, { headers: paymentHeaders(terms, ch.voucher.sign(ch.id, amount)) })
        .then((a) => (a.status === 200 ? amount : null))
        .catch(() => null);
    });
    setTimeout(() => child.kill("SIGKILL"), 5);
    for (const r of await Promise.all(inflight)) if (r !== null) served.push(r);
    await exited;

    const stored = new SqliteStore({ url: databaseUrl });
    const c = (await stored.getChannel(ch.id))!;
    await stored.close();
    const max = served.reduce((a, b) => (a > b ? a : b), 0n);
    expect(c.accepted >= max).to.equal(true);
    expect(c.spent >= BigInt(served.length) * 1000n).to.equal(true);
    expect(c.spent <= c.accepted).to.equal(true);

    const srv = await startTestServer({ env, databaseUrl });
    try {
      for (const amount of served) {
        const a = await call(`${srv.url}/v1/echo`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, amount)) });
        expect(a.code, `voucher ${amount}`).to.be.oneOf(["voucher_reused", "voucher_too_low"]);
      }
    } finally {
      await srv.close();
    }
  });
});
