/**
 * The `channel` CLI (client/bin/channel.js running the compiled package, as `npx channel` runs it) against the real server on the in-process chain
 * (exposed over JSON-RPC): help and usage errors (answered without loading viem), no key, paid calls with a summary,
 * status, close; a withdraw whose refund the token refuses, shown as owed, then collected. Build first (`npx tsc -b tsconfig.build.json`): the bin runs client/dist.
 */
import { expect } from "chai";
import hre from "hardhat";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { TestServer } from "../helpers/server";
import { closeCliFixture, openCliFixture, runChannel, type CliFixture } from "../helpers/cli";
import { chainClients, mintUsdc } from "../helpers/client";
import { accountKey } from "../helpers/chain";
import { mockUsdcAbi } from "@paychan/demo";

const CLIENT_DIR = path.resolve(__dirname, "..", "..", "client");
const PAYER = 17;

/** `channel <args>`; `nodeArgs` go before the script. */
const run = (args: string[], env: Record<string, string>, cwd: string, nodeArgs: string[] = []) => runChannel(args, env, cwd, { nodeArgs, timeoutMs: 60_000 });

/**
 * Preloaded with `node --require`: records every module request (`Module._load`) and, at exit, every loaded file
 * (`require.cache`), into the file named by CHANNEL_TEST_LOAD_LOG.
 */
const LOAD_RECORDER = `"use strict";
const Module = require("node:module");
const fs = require("node:fs");
const requests = [];
const load = Module._load;
Module._load = function (request, ...rest) {
  requests.push(request);
  return load.call(this, request, ...rest);
};
process.on("exit", () => {
  fs.writeFileSync(process.env.CHANNEL_TEST_LOAD_LOG, JSON.stringify({ requests, files: Object.keys(require.cache) }));
});
`;

/**
 * Requests and files of viem, the protocol package (its light `@paychan/protocol/hex` patterns excepted), native
 * addons or the client core among what a run loaded.
 */
function heavyLoads(loaded: { requests: string[]; files: string[] }): string[] {
  return [
    ...loaded.requests.filter((r) => /^viem(\/|$)|^@paychan\/protocol(\/(?!hex$)|$)/.test(r)),
    ...loaded.files.filter((f) => /[\\/]node_modules[\\/]viem[\\/]|[\\/]protocol[\\/](dist|src)[\\/](?!hex\.(js|ts)$)|\.node$|[\\/]client[\\/]dist[\\/]client\.js$/.test(f)),
  ];
}

/** Every file under `dir`. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath ?? e.path, e.name));
}

describe("client: channel CLI", function () {
  this.timeout(120_000);
  let fx: CliFixture | undefined;
  let srv: TestServer;
  let cwd: string;
  let env: Record<string, string>;

  before(async function () {
    fx = await openCliFixture({ payer: PAYER, mint: 100_000_000n, prefix: "channel-cli-", env: (dir) => ({ CHANNEL_STATE_DIR: path.join(dir, "state") }) });
    ({ srv, cwd, env } = fx);
  });

  after(async function () {
    await closeCliFixture(fx);
  });

  it("prints usage for --help (exit 0)", async function () {
    const help = await run(["--help"], env, cwd);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/call <url>/).and.match(/top-up <channelId> <amount>/).and.match(/collect\s+take what the escrow owes/).and.match(/--to <address>/);
  });

  it("answers --help, no command, unknown commands or options and argument errors without loading viem, the protocol or the client core", async function () {
    const preload = path.join(cwd, "record-loads.js");
    await fs.writeFile(preload, LOAD_RECORDER);
    let runs = 0;
    const loadsOf = async (args: string[], extraEnv: Record<string, string> = {}) => {
      const log = path.join(cwd, `loads-${++runs}.json`);
      const r = await run(args, { ...env, ...extraEnv, CHANNEL_TEST_LOAD_LOG: log }, cwd, ["--require", preload]);
      const loaded = JSON.parse(await fs.readFile(log, "utf8")) as { requests: string[]; files: string[] };
      return { ...r, heavy: heavyLoads(loaded), loaded };
    };

    // The recorder sees what a command that reaches the chain loads (otherwise the checks below would prove nothing).
    const control = await loadsOf(["address", "--json"], { CHANNEL_STATE_DIR: path.join(cwd, "state-loads") });
    expect(control.code, control.stderr).to.equal(0);
    expect(control.loaded.requests).to.include("viem");
    expect(control.heavy.some((f) => /[\\/]node_modules[\\/]viem[\\/]/.test(f))).to.equal(true);
    expect(control.heavy.some((f) => /[\\/]client[\\/]dist[\\/]client\.js$/.test(f))).to.equal(true);

    const cases: Array<{ args: string[]; code: number; out: RegExp }> = [
      { args: ["--help"], code: 0, out: /^channel — pay HTTP APIs/ },
      { args: [], code: 2, out: /^channel — pay HTTP APIs/ },
      { args: ["frob"], code: 2, out: /unknown command "frob"/ },
      { args: ["status", "--frob"], code: 2, out: /Unknown option '--frob'/ },
      { args: ["call"], code: 2, out: /call needs a URL/ },
      { args: ["call", `${srv.url}/v1/echo`, "-n", "0"], code: 2, out: /-n must be a positive integer/ },
      { args: ["call", `${srv.url}/v1/echo`, "-H", "no-colon"], code: 2, out: /-H needs "name: value"/ },
      { args: ["open", "0x1234", "1"], code: 2, out: /open needs a payee address/ },
      { args: ["top-up", "0xabcd"], code: 2, out: /top-up needs an amount/ },
      { args: ["close"], code: 2, out: /a channel id is required/ },
      { args: ["status", "--escrow", "nope"], code: 2, out: /--escrow must be an address/ },
      { args: ["collect", "--to", "nope"], code: 2, out: /--to must be an address/ },
      { args: ["collect", "0xabcd"], code: 2, out: /collect takes no arguments/ },
    ];
    for (const c of cases) {
      const r = await loadsOf(c.args);
      const what = `channel ${c.args.join(" ")}`;
      expect(r.code, what).to.equal(c.code);
      expect(r.stdout + r.stderr, what).to.match(c.out);
      expect(r.heavy, what).to.deep.equal([]);
    }
  });

  it("fails with exit 2 when no key is given, saying on a local chain that `npm start` prints the local payer's key", async function () {
    const noKey = { ...env, CHANNEL_PRIVATE_KEY: "", PRIVATE_KEY: "" };
    const id = `0x${"ab".repeat(32)}`;
    const commands = [["status"], ["address"], ["call", `${srv.url}/v1/echo?msg=nokey`], ["open", srv.escrow, "1"], ["top-up", id, "1"], ["close", id], ["withdraw", id], ["collect"]];
    for (const args of commands) {
      const r = await run(args, noKey, cwd);
      const what = `channel ${args.join(" ")}`;
      expect(r.code, what).to.equal(2);
      expect(r.stdout, what).to.equal("");
      expect(r.stderr, what).to.match(/no key: set CHANNEL_PRIVATE_KEY \(or PRIVATE_KEY\) or pass --key-file/);
      expect(r.stderr, what).to.match(/local chain \(31337\), `npm start` prints the local payer's key/).and.match(/export CHANNEL_PRIVATE_KEY=/);
    }
    // Where no local chain answers, the same error without the hint.
    const far = await run(["status", "--rpc", "http://127.0.0.1:9"], noKey, cwd);
    expect(far.code).to.equal(2);
    expect(far.stderr).to.match(/no key: set CHANNEL_PRIVATE_KEY/).and.not.match(/npm start/);
  });

  it("carries no Hardhat test key in the installable CLI (bin and dist)", async function () {
    const files = [...(await filesUnder(path.join(CLIENT_DIR, "bin"))), ...(await filesUnder(path.join(CLIENT_DIR, "dist")))];
    expect(files.filter((f) => f.endsWith(".js"))).to.include(path.join(CLIENT_DIR, "dist", "cli", "setup.js"));
    const keys = Array.from({ length: 20 }, (_, i) => accountKey(i).slice(2).toLowerCase());
    for (const f of files) {
      const text = (await fs.readFile(f, "utf8")).toLowerCase();
      expect(keys.filter((k) => text.includes(k)), f).to.deep.equal([]);
    }
  });

  it("call -n 40 -c 8 --json: every call paid, one HTTP request each after the first, then status and close", async function () {
    const url = `${srv.url}/v1/echo?msg=cli`;
    const r = await run(["call", url, "-n", "40", "-c", "8", "--json", "--escrow", srv.escrow], env, cwd);
    expect(r.code, r.stderr).to.equal(0);
    const s = JSON.parse(r.stdout);
    expect(s.calls).to.equal(40);
    expect(s.paid).to.equal(40);
    expect(s.failures).to.equal(0);
    expect(s.amountPaid).to.equal("40000");
    expect(s.requests).to.be.at.most(40 + 8); // at most one 402 per worker before the route was known
    expect(s.latencyMs.p50).to.be.a("number");

    // A second process pays on the first attempt: the route terms and the channel were saved.
    const again = await run(["call", url, "-n", "10", "--json", "--escrow", srv.escrow], env, cwd);
    expect(again.code, again.stderr).to.equal(0);
    expect(JSON.parse(again.stdout).requests).to.equal(10);

    const st = await run(["status", "--json"], env, cwd);
    expect(st.code, st.stderr).to.equal(0);
    const status = JSON.parse(st.stdout);
    expect(status.channels).to.have.length(1);
    const ch = status.channels[0];
    expect(ch.spent).to.equal("50000");
    expect(ch.deposit).to.equal("1000000");
    expect(ch.remaining).to.equal("950000");
    expect(ch.status).to.equal("open");

    const close = await run(["close", ch.channelId.slice(0, 10), "--json"], env, cwd);
    expect(close.code, close.stderr).to.equal(0);
    expect(JSON.parse(close.stdout).mode).to.equal("cooperative");
  });

  it("refuses a price above --max-price with a typed error and exit 1", async function () {
    const r = await run(["call", `${srv.url}/v1/echo?msg=x`, "--max-price", "0.0001", "--escrow", srv.escrow], env, cwd);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/\[spending_limit\]/);
  });

  it("withdraw of a blacklisted payer says the refund is owed; status shows it; collect --to delivers it; collect again: nothing_owed", async function () {
    const payer = chainClients(18).address;
    await mintUsdc(srv.token, payer, 10_000_000n);
    const e = { ...env, CHANNEL_PRIVATE_KEY: chainClients(18).key, CHANNEL_STATE_DIR: path.join(cwd, "state-collect") };
    const at = ["--escrow", srv.escrow];
    const opened = await run(["open", srv.payee, "1", ...at, "--token", srv.token, "--close-delay", "3600", "--json"], e, cwd);
    expect(opened.code, opened.stderr).to.equal(0);
    const id = JSON.parse(opened.stdout).channelId as string;
    const closed = await run(["close", id, "--on-chain", "--json", ...at], e, cwd);
    expect(closed.code, closed.stderr).to.equal(0);
    await hre.network.provider.send("evm_increaseTime", [3600]);
    await hre.network.provider.send("evm_mine", []);
    const owner = srv.env.wallets[0]; // MockUSDC's owner (the deployer)
    await srv.env.publicClient.waitForTransactionReceipt({ hash: await owner.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "blacklist", args: [payer, true] }) });

    const w = await run(["withdraw", id, "--json", ...at], e, cwd);
    expect(w.code, w.stderr).to.equal(0);
    expect(JSON.parse(w.stdout)).to.include({ refund: "1000000", deferred: true });
    const st = await run(["status", "--json", ...at], e, cwd);
    expect(st.code, st.stderr).to.equal(0);
    expect(JSON.parse(st.stdout).owed).to.deep.equal([{ escrow: srv.escrow, token: srv.token, amount: "1000000" }]);
    const text = await run(["status", ...at], e, cwd);
    expect(text.stdout).to.match(/owed: 1 USDC by escrow .*channel collect/);

    const to = chainClients(12).address;
    const balanceOf = (a: `0x${string}`) => srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] });
    const before = await balanceOf(to);
    const c = await run(["collect", "--to", to, "--json", ...at], e, cwd);
    expect(c.code, c.stderr).to.equal(0);
    expect(JSON.parse(c.stdout)).to.include({ to, amount: "1000000", token: srv.token, escrow: srv.escrow });
    expect((await balanceOf(to)) - before).to.equal(1_000_000n);
    const again = await run(["collect", ...at], e, cwd);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.match(/owes .* nothing in token .*\[nothing_owed\]/);
    expect(again.stderr).to.not.match(/\n\s+at /); // no stack trace
  });
});
