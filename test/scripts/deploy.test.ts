/**
 * `scripts/deploy-lib.ts` and the `scripts/deploy.ts` CLI against the in-process chain exposed over real HTTP
 * JSON-RPC (127.0.0.1, ephemeral port): contracts deployed and answering, the deployment record written, an existing
 * token reused, non-local chains refused without a token, live deployments reused by ensureDeployment.
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import hre from "hardhat";
import { JsonRpcServer } from "hardhat/internal/hardhat-network/jsonrpc/server";
import { createPublicClient, getAddress, http as httpTransport, type Address, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { channelEscrowAbi, escrowDomain } from "@paychan/protocol";
import {
  deployContracts,
  DeployError,
  deploymentPath,
  ensureDeployment,
  HARDHAT_ACCOUNT_0_KEY,
  mockUsdcAbi,
  readDeployment,
  type Deployment,
} from "@paychan/demo";
import { TS_NODE_ARGS } from "../helpers/process";

const ROOT = path.resolve(__dirname, "..", "..");

describe("deploy script", function () {
  let server: JsonRpcServer;
  let rpcUrl: string;
  let dir: string;
  let client: PublicClient;

  before(async function () {
    server = new JsonRpcServer({ hostname: "127.0.0.1", port: 0, provider: hre.network.provider });
    const { port } = await server.listen();
    rpcUrl = `http://127.0.0.1:${port}`;
    client = createPublicClient({ transport: httpTransport(rpcUrl) }) as PublicClient;
  });

  after(async function () {
    await server.close();
  });

  beforeEach(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), "deploy-test-"));
  });

  afterEach(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  async function expectLive(d: Deployment) {
    const [, name, version, chainId, verifyingContract] = await client.readContract({ address: d.escrow, abi: channelEscrowAbi, functionName: "eip712Domain" });
    expect({ name, version, chainId: Number(chainId), verifyingContract }).to.deep.equal(escrowDomain(31337, d.escrow));
    expect(await client.readContract({ address: d.escrow, abi: channelEscrowAbi, functionName: "MIN_CLOSE_DELAY" })).to.equal(900);
    expect(await client.readContract({ address: d.token, abi: mockUsdcAbi, functionName: "decimals" })).to.equal(6);
  }

  it("deploys MockUSDC and ChannelEscrow on the local chain and writes deployments/31337.json", async function () {
    const before = await client.getBlockNumber();
    const messages: string[] = [];
    const d = await deployContracts({ rpcUrl, deploymentsDir: dir, log: (m) => messages.push(m) });
    expect(d.chainId).to.equal(31337);
    expect(d.deployer).to.equal(privateKeyToAccount(HARDHAT_ACCOUNT_0_KEY).address);
    expect(d.escrow).to.equal(getAddress(d.escrow));
    expect(d.token).to.equal(getAddress(d.token));
    expect(d.escrow).to.not.equal(d.token);
    expect(Number.isNaN(Date.parse(d.deployedAt))).to.equal(false);
    await expectLive(d);

    // blockNumber is the escrow's deployment block: no code before it, code from it on
    expect(d.blockNumber).to.be.greaterThan(Number(before));
    expect(await client.getCode({ address: d.escrow, blockNumber: BigInt(d.blockNumber - 1) })).to.equal(undefined);
    expect(await client.getCode({ address: d.escrow, blockNumber: BigInt(d.blockNumber) })).to.match(/^0x[0-9a-f]{100,}$/);

    const file = JSON.parse(await readFile(path.join(dir, "31337.json"), "utf8"));
    expect(file).to.deep.equal(d);
    expect(Object.keys(file).sort()).to.deep.equal(["blockNumber", "chainId", "deployedAt", "deployer", "escrow", "token"]);
    expect(await readDeployment(31337, dir)).to.deep.equal(d);
    expect(messages.join("\n")).to.include(d.escrow).and.to.not.include(HARDHAT_ACCOUNT_0_KEY.slice(2));
  });

  it("uses an existing token and deploys only the escrow when tokenAddress is given", async function () {
    const usdc = await hre.viem.deployContract("MockUSDC");
    const deployer = privateKeyToAccount(HARDHAT_ACCOUNT_0_KEY).address;
    const nonce = await client.getTransactionCount({ address: deployer });
    const d = await deployContracts({ rpcUrl, deploymentsDir: dir, tokenAddress: usdc.address.toLowerCase() as Address });
    expect(d.token).to.equal(getAddress(usdc.address));
    expect(await client.getTransactionCount({ address: deployer })).to.equal(nonce + 1);
    await expectLive(d);
  });

  it("refuses a tokenAddress without code, and a malformed one", async function () {
    const err1 = await deployContracts({ rpcUrl, deploymentsDir: dir, tokenAddress: "0x000000000000000000000000000000000000dEaD" }).catch((e) => e);
    expect(err1).to.be.instanceOf(DeployError);
    expect(err1.message).to.include("no contract at TOKEN_ADDRESS");
    const err2 = await deployContracts({ rpcUrl, deploymentsDir: dir, tokenAddress: "0x1234" as Address }).catch((e) => e);
    expect(err2).to.be.instanceOf(DeployError);
  });

  it("refuses a malformed private key without echoing it", async function () {
    const err = await deployContracts({ rpcUrl, deploymentsDir: dir, privateKey: "0xdeadbeef" }).catch((e) => e);
    expect(err).to.be.instanceOf(DeployError);
    expect(err.message).to.not.include("deadbeef");
  });

  it("writes nothing with deploymentsDir null", async function () {
    await deployContracts({ rpcUrl, deploymentsDir: null });
    expect(await readDeployment(31337, dir)).to.equal(null);
  });

  it("refuses a non-local chain without TOKEN_ADDRESS or --mock-token, before sending anything", async function () {
    // A JSON-RPC front that reports chain id 1 and forwards everything else to the in-process chain.
    const methods: string[] = [];
    const front = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", async () => {
        const msg = JSON.parse(body);
        methods.push(msg.method);
        const result = msg.method === "eth_chainId" ? "0x1" : await hre.network.provider.send(msg.method, msg.params);
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result }));
      });
    });
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(front.address() as { port: number }).port}`;
    try {
      const err = await deployContracts({ rpcUrl: url, deploymentsDir: dir }).catch((e) => e);
      expect(err).to.be.instanceOf(DeployError);
      expect(err.message).to.include("TOKEN_ADDRESS");
      expect(methods).to.deep.equal(["eth_chainId"]);
    } finally {
      await new Promise((r) => front.close(r));
    }
  });

  it("reports an unreachable RPC endpoint as a DeployError", async function () {
    const err = await deployContracts({ rpcUrl: "http://127.0.0.1:1", deploymentsDir: dir }).catch((e) => e);
    expect(err).to.be.instanceOf(DeployError);
    expect(err.message).to.include("cannot reach");
  });

  it("ensureDeployment reuses a live recorded deployment and redeploys when the record is stale", async function () {
    const first = await ensureDeployment({ rpcUrl, deploymentsDir: dir });
    expect(first.reused).to.equal(false);
    const again = await ensureDeployment({ rpcUrl, deploymentsDir: dir });
    expect(again).to.deep.equal({ ...first, reused: true });

    // A record pointing at addresses without code (a restarted node) is replaced.
    await writeFile(deploymentPath(31337, dir), JSON.stringify({ ...first, escrow: "0x000000000000000000000000000000000000bEEF" }));
    const fresh = await ensureDeployment({ rpcUrl, deploymentsDir: dir });
    expect(fresh.reused).to.equal(false);
    expect(fresh.escrow).to.not.equal(first.escrow);
    const { reused: _, ...record } = fresh;
    expect(await readDeployment(31337, dir)).to.deep.equal(record);
  });

  it("readDeployment refuses a malformed record", async function () {
    await writeFile(deploymentPath(31337, dir), "{not json");
    expect(await readDeployment(31337, dir).catch((e) => e)).to.be.instanceOf(DeployError);
    await writeFile(deploymentPath(31337, dir), JSON.stringify({ chainId: 1, escrow: "0x1", token: "0x2", blockNumber: 1 }));
    expect(await readDeployment(31337, dir).catch((e) => e)).to.be.instanceOf(DeployError);
  });

  it("the CLI (ts-node scripts/deploy.ts) deploys with RPC_URL and writes the record to --out", async function () {
    this.timeout(60_000);
    const run = (args: string[], env: Record<string, string>) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [...TS_NODE_ARGS, path.join(ROOT, "scripts", "deploy.ts"), ...args],
          { cwd: ROOT, env: { ...process.env, ...env, TS_NODE_TRANSPILE_ONLY: "true" }, timeout: 50_000 },
          (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
        );
      });
    const ok = await run(["--out", dir], { RPC_URL: rpcUrl, DEPLOYER_PRIVATE_KEY: "", TOKEN_ADDRESS: "" });
    expect(ok.code, ok.stderr).to.equal(0);
    const printed = JSON.parse(ok.stdout);
    expect(JSON.parse(await readFile(path.join(dir, "31337.json"), "utf8"))).to.deep.equal(printed);
    await expectLive(printed);

    const bad = await run(["--bogus"], { RPC_URL: rpcUrl });
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.include("unknown argument --bogus");
  });
});
