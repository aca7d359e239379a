/**
 * Issue 17 item 4: two processes on one state directory. Two real `channel` processes (client/dist, as `npx channel`
 * runs it; build first) start at the same instant on one fresh state directory, many times: one session key, never
 * replaced or lost, every channel opened on chain is in the state with that key, no temporary file or lock left.
 * A stale lock (its process gone) is taken over; a live one makes the other process wait, then `store_locked`.
 * A state directory or session key file that others may write, or that another user owns, is refused.
 */
import { expect } from "chai";
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { channelEscrowAbi } from "@paychan/protocol";
import { ClientError, FileStore, LOCK_FILE } from "@paychan/client";
import type { TestServer } from "../helpers/server";
import { closeCliFixture, openCliFixture, runChannel, type CliFixture } from "../helpers/cli";
import { chainClients } from "../helpers/client";
import { REPO_ROOT, TS_NODE_ARGS } from "../helpers/process";
import { generatePrivateKey, privateKeyToAddress } from "viem/accounts";

const PAYER = 16;
const ROUNDS = 8;
/** Lock races: processes contending for one fresh directory per round, all released at the same instant. */
const LOCKERS = 3;
const LOCK_ROUNDS = 150;

const runCli = (args: string[], env: Record<string, string>, cwd: string) => runChannel(args, env, cwd);

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(ClientError);
    expect((e as ClientError).code, (e as Error).message).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

/**
 * A process that takes a FileStore's lock on each directory it is sent (a line on stdin), then releases it, and
 * answers `ok <dir>` or `ERR <code> <message> <dir>` (a line on stdout). Runs the client's TypeScript sources.
 */
async function locker(): Promise<{ pid: number; take: (dir: string) => Promise<string>; stop: () => Promise<void> }> {
  const script = `
    const { FileStore } = require(${JSON.stringify(path.join(REPO_ROOT, "client", "src", "file-store.ts"))});
    const rl = require("node:readline").createInterface({ input: process.stdin });
    rl.on("line", async (dir) => {
      const s = new FileStore(dir, { lockTimeoutMs: 30000 });
      try {
        await s.load();
        await s.release();
        process.stdout.write("ok " + dir + "\\n");
      } catch (e) {
        process.stdout.write("ERR " + e.code + " " + String(e.message).replace(/\\n/g, " ") + " " + (e.cause && e.cause.code) + " " + dir + "\\n");
      }
    });
    process.stdout.write("ready\\n");`;
  const child = spawn(process.execPath, [...TS_NODE_ARGS, "-e", script], {
    cwd: REPO_ROOT,
    env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true" },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const waiting: Array<(line: string) => void> = [];
  let buf = "";
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiting.shift()?.(line);
    }
  });
  const next = () => new Promise<string>((r, reject) => {
    waiting.push(r);
    void exited.then(() => reject(new Error(`locker ${child.pid} exited`)));
  });
  expect(await next()).to.equal("ready");
  return {
    pid: child.pid!,
    take: (dir) => {
      const answer = next();
      child.stdin!.write(`${dir}\n`);
      return answer;
    },
    stop: async () => (child.kill("SIGKILL"), await exited),
  };
}

/** A process that is alive until killed (by its pid); resolves once it runs. */
async function liveProcess(): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ["-e", "process.stdout.write('up\\n'); setInterval(() => {}, 1000)"], { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise<void>((r) => child.stdout!.once("data", () => r()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return { pid: child.pid!, stop: async () => (child.kill("SIGKILL"), await exited) };
}

describe("client: one state directory, two processes (issue 17)", function () {
  this.timeout(300_000);
  let fx: CliFixture | undefined;
  let srv: TestServer;
  let cwd: string;
  let env: Record<string, string>;

  before(async function () {
    fx = await openCliFixture({ payer: PAYER, mint: 1_000_000_000n, prefix: "channel-two-", env: (dir) => ({ CHANNEL_DEPLOYMENTS_DIR: path.join(dir, "no-deployments") }) });
    ({ srv, cwd, env } = fx);
  });
  after(async function () {
    await closeCliFixture(fx);
  });

  it(`two first uses at the same instant, ${ROUNDS} times: one session key, never lost; every channel on chain is in the state`, async function () {
    const payer = chainClients(PAYER).address;
    for (let round = 0; round < ROUNDS; round++) {
      const stateDir = path.join(cwd, `state-${round}`);
      const fromBlock = (await srv.env.publicClient.getBlockNumber()) + 1n;
      const e = { ...env, CHANNEL_STATE_DIR: stateDir };
      const [a, b] = await Promise.all([
        runCli(["call", `${srv.url}/v1/echo?msg=a${round}`, "--json"], e, cwd),
        runCli(["call", `${srv.url}/v1/echo?msg=b${round}`, "--json"], e, cwd),
      ]);
      expect(a.code, a.stderr).to.equal(0);
      expect(b.code, b.stderr).to.equal(0);
      const key = JSON.parse(await fs.readFile(path.join(stateDir, "session-key.json"), "utf8"));
      const state = JSON.parse(await fs.readFile(path.join(stateDir, "state.json"), "utf8"));
      const opened = await srv.env.publicClient.getContractEvents({ address: srv.escrow, abi: channelEscrowAbi, eventName: "ChannelOpened", args: { payer }, fromBlock });
      expect(opened.length).to.be.greaterThan(0);
      for (const l of opened) {
        expect(l.args.signer, `round ${round}: a channel signed by a key not on disk`).to.equal(key.address);
        expect(Object.keys(state.channels).map((k) => k.toLowerCase()), `round ${round}: a channel missing from the state`).to.include(l.args.channelId!.toLowerCase());
      }
      // Both calls were paid with that key's vouchers; nothing left behind.
      expect(JSON.parse(a.stdout).payment.channelId).to.be.a("string");
      expect(JSON.parse(b.stdout).payment.channelId).to.be.a("string");
      const left = (await fs.readdir(stateDir)).filter((f) => f.endsWith(".tmp") || f === LOCK_FILE);
      expect(left, `round ${round}`).to.deep.equal([]);
      const status = await runCli(["status", "--json"], e, cwd);
      expect(status.code, status.stderr).to.equal(0);
      expect(status.stdout).to.include(opened[0].args.channelId!.slice(0, 10));
    }
  });

  it(`${LOCKERS} processes take one fresh directory's lock at the same instant, ${LOCK_ROUNDS} times: each gets it in turn, never a store_failure`, async function () {
    // Each holder, once it has the lock, removes abandoned temporary files: never a waiting process's lock file,
    // written just before it is linked into place (its link would fail ENOENT: store_failure).
    const procs = await Promise.all(Array.from({ length: LOCKERS }, () => locker()));
    try {
      const failures: string[] = [];
      for (let round = 0; round < LOCK_ROUNDS; round++) {
        const dir = path.join(cwd, `race-${round}`);
        const answers = await Promise.all(procs.map((p) => p.take(dir)));
        for (const a of answers) if (!a.startsWith("ok ")) failures.push(`round ${round}: ${a}`);
        const left = (await fs.readdir(dir)).filter((f) => f.endsWith(".tmp") || f === LOCK_FILE);
        if (left.length) failures.push(`round ${round}: left ${left.join(" ")}`);
      }
      expect(failures, failures.join("\n")).to.deep.equal([]);
    } finally {
      for (const p of procs) await p.stop();
    }
  });

  it("the lock's holder removes only abandoned temporary files: never a lock file being linked, nor a live process's recent write", async function () {
    const dir = path.join(cwd, "temps");
    await fs.mkdir(dir, { mode: 0o700 });
    const live = await liveProcess();
    const gone = await liveProcess();
    await gone.stop();
    const old = new Date(Date.now() - 60_000);
    const files = {
      waiting: `.${LOCK_FILE}.${live.pid}.1.tmp`, // a waiting process's lock, about to be linked
      writing: `.state.json.${live.pid}.2.tmp`, // a live process's write in progress
      crashed: `.state.json.${gone.pid}.1.tmp`, // its process is gone
      stale: `.session-key.json.${live.pid}.3.tmp`, // older than a write takes (a reused pid)
    };
    try {
      for (const f of Object.values(files)) await fs.writeFile(path.join(dir, f), "{}", { mode: 0o600 });
      await fs.utimes(path.join(dir, files.stale), old, old);
      const store = new FileStore(dir, { lockTimeoutMs: 5_000 });
      await store.load();
      await store.release();
      const left = (await fs.readdir(dir)).filter((f) => f.endsWith(".tmp")).sort();
      expect(left).to.deep.equal([files.waiting, files.writing].sort());
    } finally {
      await live.stop();
    }
  });

  it("takes over a stale lock (its process gone); waits for a live one, then fails store_locked", async function () {
    const dir = path.join(cwd, "locked");
    await fs.mkdir(dir, { mode: 0o700 });
    const gone = await liveProcess();
    await gone.stop();
    await fs.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: gone.pid, host: os.hostname(), createdAt: 1 }), { mode: 0o600 });
    const r = await runCli(["address", "--json"], { ...env, CHANNEL_STATE_DIR: dir }, cwd);
    expect(r.code, r.stderr).to.equal(0);
    expect((await fs.readdir(dir)).includes(LOCK_FILE)).to.equal(false); // released at exit

    const live = await liveProcess();
    try {
      await fs.writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: live.pid, host: os.hostname(), createdAt: 2 }), { mode: 0o600 });
      let waited: number | undefined;
      await expectCode(new FileStore(dir, { lockTimeoutMs: 300, onLockWait: (h) => (waited = h.pid) }).load(), "store_locked");
      expect(waited).to.equal(live.pid);
    } finally {
      await live.stop();
    }
    const after = new FileStore(dir, { lockTimeoutMs: 5_000 });
    expect((await after.load())?.channels).to.deep.equal({}); // the lock is stale now: taken over
    await after.release();
  });

  it("refuses a state directory or session key file that others may write, or that another user owns (insecure_store)", async function () {
    const open = path.join(cwd, "world-writable");
    await fs.mkdir(open);
    await fs.chmod(open, 0o777);
    await expectCode(new FileStore(open).load(), "insecure_store");
    const r = await runCli(["address", "--json"], { ...env, CHANNEL_STATE_DIR: open }, cwd);
    expect(r.code).to.equal(1);
    expect(JSON.parse(r.stdout).error.code).to.equal("insecure_store");

    // A planted, world-writable session key is never used.
    const planted = path.join(cwd, "planted");
    await fs.mkdir(planted, { mode: 0o700 });
    const k = generatePrivateKey();
    const keyFile = path.join(planted, "session-key.json");
    await fs.writeFile(keyFile, JSON.stringify({ privateKey: k, address: privateKeyToAddress(k) }));
    await fs.chmod(keyFile, 0o666);
    const plantedStore = new FileStore(planted);
    await expectCode(plantedStore.loadSessionKey(), "insecure_store");
    await plantedStore.release(); // this test process took the directory's lock
    const r2 = await runCli(["call", `${srv.url}/v1/echo?msg=planted`, "--json"], { ...env, CHANNEL_STATE_DIR: planted }, cwd);
    expect(r2.code).to.equal(1);
    expect(JSON.parse(r2.stdout).error.code).to.equal("insecure_store");

    if (process.getuid?.() === 0) {
      // Owned by another user (as root, the test can plant one).
      await fs.chmod(keyFile, 0o600);
      await fs.chown(keyFile, 65534, 65534);
      await expectCode(plantedStore.loadSessionKey(), "insecure_store");
      await plantedStore.release();
      const other = path.join(cwd, "others-dir");
      await fs.mkdir(other, { mode: 0o700 });
      await fs.chown(other, 65534, 65534);
      await expectCode(new FileStore(other).load(), "insecure_store");
    } else {
      console.log("      (not root: the another-user case needs a file of another user; skipped)");
    }
  });
});
