/**
 * `npm run settle` (scripts/settle.ts) as a real child process against the in-process chain over JSON-RPC and the
 * server's SQLite file: summary, exit codes, the close-delay rule, and no key in any output.
 */
import path from "node:path";
import { expect } from "chai";
import { sessionKey } from "../../helpers/escrow";
import { settlementHarness, type SettlementHarness } from "../../helpers/settlement";
import { runNode, TS_NODE_ARGS, type ChildRun } from "../../helpers/process";

const REPO = path.resolve(__dirname, "..", "..", "..");

type Run = Pick<ChildRun, "code" | "stdout" | "stderr">;

describe("settlement: npm run settle", function () {
  this.timeout(120_000);
  let h: SettlementHarness;
  before(async () => {
    h = await settlementHarness();
  });
  after(async () => h?.close());

  function settle(args: string[], env: Record<string, string> = {}): Promise<Run> {
    return runNode([...TS_NODE_ARGS, path.join(REPO, "scripts/settle.ts"), ...args], {
      cwd: REPO,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        TS_NODE_TRANSPILE_ONLY: "true",
        RPC_URL: h.rpcUrl,
        DATABASE_URL: h.databaseUrl,
        ESCROW_ADDRESS: h.env.escrow.address,
        TOKEN_ADDRESS: h.env.usdc.address,
        PAYEE_ADDRESS: h.payee,
        SETTLER_PRIVATE_KEY: h.operator.key,
        SETTLE_WAIT_TIMEOUT: "30",
        ...env,
      },
      timeoutMs: 90_000,
    });
  }

  const noKey = (r: Run) => {
    const k = h.operator.key.slice(2).toLowerCase();
    expect(r.stdout.toLowerCase()).not.to.contain(k);
    expect(r.stderr.toLowerCase()).not.to.contain(k);
  };

  it("settles everything owed with --all, prints the summary, exits 0, and the payee's balance grows by exactly what was spent", async () => {
    const chans = [await h.paidChannel({ spent: 123_456n }), await h.paidChannel({ spent: 654_321n }), await h.paidChannel({ spent: 1_000n })];
    const before = await h.tokenBalance(h.payee);
    const dry = await settle(["--all", "--dry-run"]);
    expect(dry.code, dry.stderr).to.equal(0);
    expect(dry.stdout).to.contain("selected: 3 channels (all 3)");
    expect(dry.stdout).to.contain(`would settle ${chans[1].id}  0.654321  (all)`);
    expect(await h.tokenBalance(h.payee)).to.equal(before); // a dry run sends nothing

    const r = await settle(["--all"]);
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    noKey(r);
    expect(r.stdout).to.match(/#\d+ settle +confirmed +0x[0-9a-f]{64} +nonce \d+ +channels 3\/3 +amount 0\.778777 +gas [0-9,]+/);
    expect(r.stdout).to.match(/settled 3 channels, closed 0, amount 0\.778777, gas used [0-9,]+ \([0-9,]+ gas per settled channel\)/);
    expect(r.stdout).to.contain("failures: none");
    expect((await h.tokenBalance(h.payee)) - before).to.equal(123_456n + 654_321n + 1_000n);

    const again = await settle(["--all", "--json"]);
    expect(again.code).to.equal(0);
    const report = JSON.parse(again.stdout);
    expect(report).to.include({ leased: true, channelsSettled: 0, amountSettled: "0" });
    expect(report.txs).to.deep.equal([]);
  });

  it("settles by policy without --all: only channels over the threshold", async () => {
    const big = await h.paidChannel({ spent: 2_000_000n });
    const small = await h.paidChannel({ spent: 5_000n });
    const r = await settle([], { SETTLE_THRESHOLD: "1" });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain("selected: 1 channel (threshold 1)");
    expect((await h.channelOnChain(big)).settled).to.equal(2_000_000n);
    expect((await h.channelOnChain(small)).settled).to.equal(0n);
  });

  it("exits 1 and names the reason when a voucher cannot be settled", async () => {
    const bad = await h.paidChannel({ spent: 9_000n, badSignature: true });
    const r = await settle(["--all"]);
    expect(r.code).to.equal(1);
    expect(r.stdout).to.contain(`skipped ${bad.id}: InvalidSignature`);
    expect(r.stdout).to.match(/failures:\n {2}- channel 0x[0-9a-f]{64} was skipped: InvalidSignature/);
  });

  it("refuses to start when MIN_CLOSE_DELAY is not comfortably above the settlement timing (exit 2)", async () => {
    const r = await settle(["--all"], { MIN_CLOSE_DELAY: "3600" });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/refusing to settle: MIN_CLOSE_DELAY is 3600 s, but settlement needs at least .*22216 s/);
    const ok = await settle(["--all", "--dry-run"], { MIN_CLOSE_DELAY: "3600", SETTLE_RPC_OUTAGE_MARGIN: "1800", SETTLE_RESUBMIT_AFTER: "60" });
    expect(ok.code, ok.stderr).to.equal(0);
  });

  it("exits 1 with a clear message when the key is not the payee or an approved operator, and never prints the key", async () => {
    const stranger = sessionKey();
    const r = await settle(["--all"], { SETTLER_PRIVATE_KEY: stranger.key });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`the settler ${stranger.address} is neither the payee`);
    expect(r.stderr + r.stdout).not.to.contain(stranger.key.slice(2));
    const bad = await settle([], { SETTLER_PRIVATE_KEY: "0x1234", SETTLE_INTERVAL: "never" });
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.contain("SETTLER_PRIVATE_KEY must be 32 bytes of hex (the value is not shown)");
    expect(bad.stderr).to.contain("SETTLE_INTERVAL=");
  });
});
