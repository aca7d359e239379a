/**
 * Paid streams across a crash (docs/protocol.md § 5.10, "Durability"): the real server (`server/demo/src/main.ts`, as
 * `npm start` runs it) is SIGKILLed in the middle of a 20,000-token chat; restarted on the same database, its sweeper
 * finishes the dead stream's reservation charging its last checkpoint: within one checkpoint (1,000 tokens) of what was
 * delivered, never more (so never the reservation beyond what was delivered), once. The client then resumes with a new request: charged once more,
 * for that stream only.
 */
import { expect } from "chai";
import { SqliteStore } from "@paychan/server";
import { deployEscrow, openChannel, USDC } from "../helpers/escrow";
import { startServerProcess, type ServerProcess } from "../helpers/process";
import { rpcUrl, tempDatabaseUrl } from "../helpers/server";
import { TestPayer } from "../helpers/stream-client";
import { decodePaymentRequired, HEADER_PAYMENT_REQUIRED } from "@paychan/protocol";

const PRICE = 10n;
const CHECKPOINT_UNITS = 1000n;

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 90_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("paid streams: SIGKILL mid-stream and restart", function () {
  this.timeout(240_000);

  it("the restarted server charges the dead stream its last checkpoint (within one checkpoint of delivered, never above), once; a resumed request is charged for itself only", async () => {
    const env = await deployEscrow();
    const databaseUrl = tempDatabaseUrl();
    const vars = {
      RPC_URL: await rpcUrl(),
      ESCROW_ADDRESS: env.escrow.address,
      TOKEN_ADDRESS: env.usdc.address,
      PAYEE_ADDRESS: env.wallets[0].account.address,
      DATABASE_URL: databaseUrl,
    };
    let srv: ServerProcess | null = await startServerProcess(vars);
    const store = new SqliteStore({ url: databaseUrl });
    try {
      const ch = await openChannel(env, { deposit: USDC(10) });
      const body = { prompt: "crash", max_tokens: 20_000 };
      const challenge = await fetch(`${srv.url}/v1/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      await challenge.arrayBuffer();
      const terms = decodePaymentRequired(challenge.headers.get(HEADER_PAYMENT_REQUIRED)).accepts[0];
      const payer = new TestPayer(srv.url, ch);
      const victim = srv;
      let killed = false;
      const run = await payer.stream("/v1/chat", body, terms, {
        dropOk: true,
        onFrame: (_f, r) => {
          if (!killed && r.frames.length === 4_321) {
            killed = true;
            victim.kill("SIGKILL");
          }
        },
      });
      await victim.exited;
      srv = null;
      const received = BigInt(run.frames.length);
      expect(killed).to.equal(true);
      expect(run.receipt).to.equal(undefined);
      expect(run.dropped).to.be.instanceOf(Error);
      expect(received >= 4_321n && received < 20_000n, `received ${received}`).to.equal(true);
      const atCrash = (await store.getChannel(ch.id))!;
      expect(atCrash.reserved > 0n).to.equal(true); // the stream's reservation, left open by the dead process
      expect(atCrash.spent).to.equal(0n);

      srv = await startServerProcess(vars);
      await until(async () => (await store.getChannel(ch.id))!.reserved === 0n, "the sweeper finishing the dead stream");
      const swept = (await store.getChannel(ch.id))!;
      const charged = swept.spent;
      expect(charged <= received * PRICE, `charged ${charged} for ${received} tokens received`).to.equal(true);
      expect(charged >= (received - CHECKPOINT_UNITS) * PRICE, `charged ${charged} for ${received} tokens received`).to.equal(true);
      expect(swept.spent <= swept.accepted).to.equal(true);

      // The client resumes with a new request on the restarted server: served, charged for itself only.
      const again = await new TestPayer(srv.url, ch).streamFrom(payer, "/v1/chat", { prompt: "resume", max_tokens: 2_500 }, terms);
      expect(again.frames.length).to.equal(2_500);
      expect(again.receipt!.amount).to.equal(2_500n * PRICE);
      const end = (await store.getChannel(ch.id))!;
      expect(end.spent).to.equal(charged + 2_500n * PRICE);
      expect(end.reserved).to.equal(0n);
      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      expect(metrics).to.match(/^channel_stream_swept_total 1$/m);
    } finally {
      await store.close();
      await srv?.stop();
    }
  });
});
