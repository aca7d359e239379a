/**
 * The packages as a stranger gets them: `npm pack` of every published package, installed with `--omit=dev` into empty
 * projects outside the repository, used only through their public entry points:
 * (a) a plain Express app written here puts its own route behind the paywall (`createProvider` + `createPaywall`);
 * (b) the agent SDK, installed from its tarball alone, pays that route on the local chain;
 * (c) the SDK's install holds none of the server-side packages;
 * (d) the installed `channel` CLI answers `--help` and makes one paid call;
 * (e) the installed `channel-settle` collects what was paid.
 * Every child runs the compiled packages (no ts-node, no `@paychan/source` condition).
 */
import { expect } from "chai";
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { accountKey } from "../helpers/chain";
import { chainClients, mintUsdc } from "../helpers/client";
import { deployEscrow, USDC } from "../helpers/escrow";
import { compiledEnv, REPO_ROOT } from "../helpers/process";
import { rpcUrl } from "../helpers/server";

/** The packages agents and providers install, by folder. */
const PUBLISHED = ["protocol", "client", "server/core", "server/express"];
/** What an agent's install must not contain. */
const SERVER_SIDE = ["better-sqlite3", "pg", "express", "pino", "prom-client", "hardhat", "ts-node", "@paychan/server", "@paychan/express"];
/** The versions the repository itself is tested with (its lockfile), so the installs here are reproducible. */
const LOCKED = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package-lock.json"), "utf8")).packages as Record<string, { version: string }>;
const locked = (name: string) => `${name}@${LOCKED[`node_modules/${name}`].version}`;
const PAYEE_INDEX = 0;
const AGENT_INDEX = 15;
const CLI_INDEX = 16;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion in `cwd` with the compiled packages' environment. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}, timeoutMs = 600_000): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { ...compiledEnv(), ...env }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

function mustSucceed(r: Run, what: string): Run {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  return r;
}

const npm = (args: string[], cwd: string, env: Record<string, string> = {}) => run("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], cwd, env);

function writeProject(dir: string, name: string, files: Record<string, string>): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }, null, 2));
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
}

/** Folders under `node_modules` that are packages (scoped ones included). */
function installedPackages(dir: string): string[] {
  const out: string[] = [];
  const walk = (nm: string, prefix: string) => {
    if (!fs.existsSync(nm)) return;
    for (const e of fs.readdirSync(nm)) {
      if (e.startsWith(".")) continue;
      const p = path.join(nm, e);
      if (e.startsWith("@")) walk(p, `${e}/`);
      else if (fs.existsSync(path.join(p, "package.json"))) {
        out.push(`${prefix}${e}`);
        walk(path.join(p, "node_modules"), "");
      }
    }
  };
  walk(path.join(dir, "node_modules"), "");
  return out;
}

function duBytes(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) n += fs.statSync(p).size;
    }
  };
  walk(dir);
  return n;
}

/** The provider: an Express app of its own, one paid route, the paywall from the installed packages. */
const PROVIDER_APP = `"use strict";
const express = require("express");
const { createProvider } = require("@paychan/server");
const { createPaywall } = require("@paychan/express");

async function main() {
  const provider = await createProvider({ env: process.env });
  const paywall = createPaywall(provider);
  const app = express();
  app.use(paywall.closeRoute());
  app.get("/healthz", paywall.healthz());
  app.get("/weather", paywall.charge({ price: "0.001" }), (req, res) => res.json({ city: req.query.city, sunny: true }));
  app.get("/free", (req, res) => res.json({ free: true }));
  const server = app.listen(0, "127.0.0.1", () => console.log("ready http://127.0.0.1:" + server.address().port));
  process.on("SIGTERM", () => server.close(() => provider.close().then(() => process.exit(0))));
}
main().catch((e) => { console.error("provider failed: " + e.message); process.exit(1); });
`;

/** The agent: the SDK from its own package, paying the provider's route N times; prints one JSON line. */
const AGENT_SCRIPT = `"use strict";
const { createPublicClient, createWalletClient, http } = require("viem");
const { privateKeyToAccount } = require("viem/accounts");
const { createChannelClient, readReceipt } = require("@paychan/client");

async function main() {
  const [url, n] = process.argv.slice(2);
  const transport = http(process.env.RPC_URL);
  const account = privateKeyToAccount(process.env.AGENT_KEY);
  const chainId = await createPublicClient({ transport }).getChainId();
  const chain = { id: chainId, name: "local", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [process.env.RPC_URL] } } };
  const agent = createChannelClient({
    account,
    publicClient: createPublicClient({ chain, transport, pollingInterval: 50 }),
    walletClient: createWalletClient({ chain, transport, account }),
    stateDir: ".channel",
    limits: { maxPrice: "0.01", maxDeposit: "2", escrows: [process.env.ESCROW] },
  });
  const out = [];
  for (let i = 0; i < Number(n); i++) {
    const res = await agent.fetch(url + "?city=paris");
    const body = await res.json();
    const receipt = readReceipt(res);
    out.push({ status: res.status, body, amount: receipt ? String(receipt.amount) : null, spent: receipt ? String(receipt.extra.spent) : null });
  }
  await agent.flush();
  console.log(JSON.stringify({ calls: out, requests: agent.stats.httpRequests }));
}
main().catch((e) => { console.error("agent failed: " + (e.shortMessage || e.message)); process.exit(1); });
`;

describe("packages: installed from their tarballs, outside the repository", function () {
  this.timeout(900_000);
  let work: string;
  const tarballs = new Map<string, string>();
  let provider: ReturnType<typeof spawn> | null = null;
  let providerUrl = "";
  let chain: string;
  let env: Awaited<ReturnType<typeof deployEscrow>>;

  before(async function () {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "paychan-install-"));
    const packs = path.join(work, "tarballs");
    fs.mkdirSync(packs);
    for (const dir of PUBLISHED) {
      const r = mustSucceed(await npm(["pack", "--json", "--pack-destination", packs], path.join(REPO_ROOT, dir)), `npm pack in ${dir}`);
      const [info] = JSON.parse(r.stdout) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>;
      tarballs.set(info.name, path.join(packs, info.filename));
      // What a tarball holds: built JavaScript and types, never sources, tests or build info.
      expect(info.files.map((f) => f.path).filter((p) => /^src\/|\.tsbuildinfo$|^test\//.test(p)), `${info.name} ships sources`).to.deep.equal([]);
      expect(info.files.map((f) => f.path)).to.include.members(["package.json", "dist/index.js", "dist/index.d.ts"]);
      // Every subpath export points at a file the tarball holds (e.g. ./x402, ./postgres).
      const manifest = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, dir, "package.json"), "utf8")) as { exports: Record<string, string | { default: string }> };
      for (const [sub, target] of Object.entries(manifest.exports)) {
        const file = (typeof target === "string" ? target : target.default).replace(/^\.\//, "");
        expect(info.files.map((f) => f.path), `${info.name} export ${sub}`).to.include(file);
      }
      // Every compiled file comes from a source that exists (no output left behind by a moved or deleted source).
      const orphans = info.files
        .map((f) => f.path)
        .filter((p) => /^dist\/.*\.(js|d\.ts)$/.test(p))
        .filter((p) => !fs.existsSync(path.join(REPO_ROOT, dir, p.replace(/^dist\//, "src/").replace(/\.(js|d\.ts)$/, ".ts"))));
      expect(orphans, `${info.name} ships compiled files without a source`).to.deep.equal([]);
    }
    chain = await rpcUrl();
    env = await deployEscrow();
  });

  after(async function () {
    if (provider && provider.exitCode === null) {
      provider.kill("SIGTERM");
      await new Promise((r) => provider!.once("exit", r));
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it("an Express app of the provider's own serves a paid route to the SDK installed from its tarball alone", async function () {
    const tgz = (name: string) => tarballs.get(name)!;
    // (a) The provider: its own app, the two server packages and express. The SQLite driver is an optional peer:
    // without it the packages load, and only opening the SQLite store asks for it, by name.
    const providerDir = path.join(work, "provider");
    writeProject(providerDir, "my-api", { "app.js": PROVIDER_APP });
    mustSucceed(await npm(["install", "--omit=dev", tgz("@paychan/protocol"), tgz("@paychan/server"), tgz("@paychan/express"), locked("express")], providerDir), "provider install");
    expect(installedPackages(providerDir).filter((p) => ["better-sqlite3", "pg", "hardhat", "ts-node", "@paychan/client", "@paychan/demo", "@x402/core"].includes(p))).to.deep.equal([]);
    // The x402 SDK plug-in is a subpath with an optional peer: without @x402/core it names what to install.
    const noPeer = await run(process.execPath, ["-e", 'require("@paychan/server/x402")'], providerDir);
    expect(noPeer.code).to.equal(1);
    expect(noPeer.stderr).to.include("@paychan/server/x402 needs the @x402/core package (an optional peer dependency): npm install @x402/core");
    const payee = chainClients(PAYEE_INDEX).address;
    const providerEnv = {
      RPC_URL: chain,
      ESCROW_ADDRESS: env.escrow.address,
      TOKEN_ADDRESS: env.usdc.address,
      PAYEE_ADDRESS: payee,
      SETTLER_PRIVATE_KEY: accountKey(PAYEE_INDEX),
      DATABASE_URL: path.join(providerDir, "paid.sqlite"),
      LOG_LEVEL: "warn",
    };
    const withoutDriver = await run(process.execPath, ["app.js"], providerDir, providerEnv, 60_000);
    expect(withoutDriver.code).to.equal(1);
    expect(withoutDriver.stderr).to.include("provider failed: the sqlite store needs the better-sqlite3 package: npm install better-sqlite3");
    mustSucceed(await npm(["install", "--omit=dev", locked("better-sqlite3")], providerDir), "better-sqlite3 install");
    provider = spawn(process.execPath, ["app.js"], {
      cwd: providerDir,
      env: { ...compiledEnv(), ...providerEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    providerUrl = await new Promise<string>((resolve, reject) => {
      let out = "";
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /ready (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      };
      provider!.stdout!.on("data", onData);
      provider!.stderr!.on("data", onData);
      provider!.once("exit", (code) => reject(new Error(`provider exited with ${code}: ${out.slice(-2000)}`)));
      setTimeout(() => reject(new Error(`provider not ready after 60 s: ${out.slice(-2000)}`)), 60_000).unref();
    });
    const unpaid = await fetch(`${providerUrl}/weather?city=paris`);
    expect(unpaid.status).to.equal(402);
    expect(unpaid.headers.get("payment-required")).to.be.a("string");
    expect((await fetch(`${providerUrl}/free`)).status).to.equal(200);
    expect((await fetch(`${providerUrl}/healthz`)).status).to.equal(200);

    // (b) The agent: the SDK and the protocol package only (plus viem, whose clients it is given).
    const agentDir = path.join(work, "agent");
    writeProject(agentDir, "my-agent", { "agent.js": AGENT_SCRIPT });
    const install = mustSucceed(await npm(["install", "--omit=dev", tgz("@paychan/protocol"), tgz("@paychan/client"), locked("viem")], agentDir), "agent install");
    const agentKey = accountKey(AGENT_INDEX);
    await mintUsdc(env.usdc.address, chainClients(AGENT_INDEX).address, USDC(100));
    const paid = mustSucceed(
      await run(process.execPath, ["agent.js", `${providerUrl}/weather`, "5"], agentDir, { RPC_URL: chain, AGENT_KEY: agentKey, ESCROW: env.escrow.address }),
      "agent",
    );
    const result = JSON.parse(paid.stdout.trim().split("\n").pop()!) as { calls: Array<{ status: number; body: unknown; amount: string; spent: string }>; requests: number };
    expect(result.calls.map((c) => c.status)).to.deep.equal([200, 200, 200, 200, 200]);
    expect(result.calls.map((c) => c.body)).to.deep.equal(Array(5).fill({ city: "paris", sunny: true }));
    expect(result.calls.map((c) => c.amount)).to.deep.equal(Array(5).fill("1000"));
    expect(result.calls.map((c) => c.spent)).to.deep.equal(["1000", "2000", "3000", "4000", "5000"]);
    // One round trip per paid call after the first (which also learns the terms from a 402).
    expect(result.requests).to.equal(6);

    // (c) Nothing of the provider side in the agent's install.
    const agentPackages = installedPackages(agentDir);
    expect(agentPackages.filter((p) => SERVER_SIDE.includes(p))).to.deep.equal([]);
    expect(agentPackages).to.include.members(["@paychan/client", "@paychan/protocol", "viem"]);
    // The SDK's x402 plug-in subpath loads without its optional peer @x402/core (it uses only its types).
    expect(agentPackages).to.not.include("@x402/core");
    mustSucceed(await run(process.execPath, ["-e", 'if (typeof require("@paychan/client/x402").ChannelSchemeClient !== "function") process.exit(1)'], agentDir), "client/x402 without @x402/core");
    const mb = duBytes(path.join(agentDir, "node_modules")) / 1e6;
    console.log(`      agent install (--omit=dev): ${agentPackages.length} packages, ${mb.toFixed(1)} MB, ${(install.ms / 1000).toFixed(1)} s`);

    // (d) The installed CLI: help without a chain, then one paid call with its own key.
    const bin = path.join(agentDir, "node_modules", ".bin", "channel");
    const help = await run(bin, ["--help"], agentDir);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/^channel — pay HTTP APIs/);
    await mintUsdc(env.usdc.address, chainClients(CLI_INDEX).address, USDC(100));
    const cli = await run(bin, ["call", `${providerUrl}/weather?city=oslo`, "--escrow", env.escrow.address, "--max-deposit", "2"], agentDir, {
      RPC_URL: chain,
      CHANNEL_PRIVATE_KEY: accountKey(CLI_INDEX),
      CHANNEL_STATE_DIR: path.join(agentDir, ".channel-cli"),
    });
    expect(cli.code, cli.stderr).to.equal(0);
    expect(JSON.parse(cli.stdout)).to.deep.equal({ city: "oslo", sunny: true });
    expect(cli.stderr).to.match(/paid 0\.001/);

    // (e) The provider collects with the installed `channel-settle` (cron style, after stopping its server): the
    // package knows no defaults, so an empty environment is refused by name; with the provider's settings it
    // settles the six paid calls in one transaction.
    provider.kill("SIGTERM");
    await new Promise((r) => provider!.once("exit", r));
    const settleBin = path.join(providerDir, "node_modules", ".bin", "channel-settle");
    expect((await run(settleBin, ["--help"], providerDir)).code).to.equal(0);
    const bare = await run(settleBin, [], providerDir);
    expect(bare.code).to.equal(2);
    expect(bare.stderr).to.include("RPC_URL").and.include("PAYEE_ADDRESS").and.include("SETTLER_PRIVATE_KEY");
    const settled = await run(settleBin, ["--all", "--json"], providerDir, providerEnv);
    expect(settled.code, settled.stderr).to.equal(0);
    const report = JSON.parse(settled.stdout) as { channelsSettled: number; amountSettled: string; payeeBalanceBefore: string; payeeBalanceAfter: string };
    expect(report.channelsSettled).to.equal(2);
    expect(report.amountSettled).to.equal("6000");
    expect(BigInt(report.payeeBalanceAfter) - BigInt(report.payeeBalanceBefore)).to.equal(6000n);
  });
});

