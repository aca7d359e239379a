/**
 * Issue 17 review: the limits ("5", "0.01") are token units, so a provider naming another token the agent holds
 * (an 18-decimal WETH stand-in) would have every limit count in that token. Without `limits.assets` the SDK pays only
 * in USDC (symbol and decimals); the CLI pins the token of --token or of the deployment record.
 */
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import hre from "hardhat";
import { expect } from "chai";
import { createPublicClient, custom, erc20Abi, type Address, type PublicClient } from "viem";
import { hardhat } from "viem/chains";
import { ClientError } from "@paychan/client";
import { deployEscrow, type Env } from "../helpers/escrow";
import { chainClients, testClient } from "../helpers/client";
import { revertTo, snapshot } from "../helpers/chain";
import { startHostileProvider, type HostileProvider } from "../helpers/hostile-provider";
import { compiledEnv } from "../helpers/process";
import { rpcUrl } from "../helpers/server";

const E18 = 10n ** 18n;
const BIN = path.resolve(__dirname, "..", "..", "client", "bin", "channel.js");

function runCli(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...compiledEnv(), ...env }, cwd, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("client: the limits count in USDC unless the owner names its tokens (issue 17 review)", function () {
  this.timeout(180_000);
  let env: Env;
  let snap: string;
  let weth: Address;
  let pc: PublicClient;
  let cwd: string;
  const providers: HostileProvider[] = [];

  before(async function () {
    snap = await snapshot();
    env = await deployEscrow();
    weth = (await hre.viem.deployContract("HookToken")).address; // a plain 18-decimal token ("HOOK") with mint
    pc = createPublicClient({ chain: hardhat, transport: custom(hre.network.provider) }) as PublicClient;
    cwd = await fs.mkdtemp(path.join(os.tmpdir(), "channel-token-units-"));
  });
  after(async function () {
    await Promise.all(providers.map((p) => p.close()));
    await fs.rm(cwd, { recursive: true, force: true });
    await revertTo(snap);
  });

  /** A payer holding 100 of the 18-decimal token; returns its balance reader. */
  async function holder(index: number): Promise<() => Promise<bigint>> {
    const { address, walletClient } = chainClients(index);
    await hre.network.provider.send("hardhat_setBalance", [address, "0x3635C9ADC5DEA00000"]); // 1,000 ETH for gas
    const h = await walletClient.writeContract({
      address: weth, abi: [{ type: "function", name: "mint", stateMutability: "nonpayable", inputs: [{ type: "address" }, { type: "uint256" }], outputs: [] }] as const,
      functionName: "mint", args: [address, 100n * E18], chain: hardhat, account: walletClient.account!,
    });
    await pc.waitForTransactionReceipt({ hash: h });
    return () => pc.readContract({ address: weth, abi: erc20Abi, functionName: "balanceOf", args: [address] });
  }

  async function provider(): Promise<HostileProvider> {
    const p = await startHostileProvider({
      escrow: env.escrow.address, token: weth, price: E18 / 100n, minDeposit: 5n * E18, minCloseDelay: 86_400,
      codes: ["channel_closing"], rotatePayTo: true,
    });
    providers.push(p);
    return p;
  }

  it("SDK, quick-start limits without assets: a provider naming another token the agent holds gets untrusted_terms, nothing deposited or signed", async function () {
    const balance = await holder(56);
    const before = await balance();
    const p = await provider();
    const { agent } = testClient(56, { limits: { maxDeposit: "5", maxPrice: "0.01" } });
    const codes: Record<string, number> = {};
    for (let i = 0; i < 5; i++) {
      try {
        const r = await agent.fetch(`${p.url}/v1/x?i=${i}`);
        await r.arrayBuffer();
        codes[`HTTP ${r.status}`] = (codes[`HTTP ${r.status}`] ?? 0) + 1;
      } catch (e) {
        expect(e).to.be.instanceOf(ClientError);
        codes[(e as ClientError).code] = (codes[(e as ClientError).code] ?? 0) + 1;
      }
    }
    const deposited = before - (await balance());
    console.log(`      5 calls: ${JSON.stringify(codes)}, deposited ${deposited}, vouchers ${p.vouchers.length}`);
    expect(codes).to.deep.equal({ untrusted_terms: 5 });
    expect(deposited).to.equal(0n);
    expect(p.vouchers.length).to.equal(0);
  });

  it("SDK with the token in limits.assets: the owner chose its unit, so the same terms are paid in it, within the per-provider cap", async function () {
    const balance = await holder(57);
    const before = await balance();
    const p = await provider();
    const { agent } = testClient(57, { limits: { maxDeposit: "5", maxPrice: "0.01", assets: [weth] } });
    try {
      const r = await agent.fetch(`${p.url}/v1/x`);
      await r.arrayBuffer();
    } catch (e) {
      expect(e).to.be.instanceOf(ClientError); // the hostile provider refuses; the deposit went in first
    }
    const deposited = before - (await balance());
    expect(deposited > 0n, "paid in the token the owner listed").to.equal(true);
    expect(deposited <= 10n * E18, `${deposited} within maxDepositPerProvider (2 × 5)`).to.equal(true);
  });

  it("CLI without a deployment record or --token: the same provider is refused (untrusted_terms), nothing deposited", async function () {
    const balance = await holder(58);
    const before = await balance();
    const p = await provider();
    const r = await runCli(["call", `${p.url}/v1/x`, "-n", "3", "--json"], {
      CHANNEL_PRIVATE_KEY: chainClients(58).key,
      RPC_URL: await rpcUrl(),
      CHANNEL_STATE_DIR: path.join(cwd, "state-58"),
      CHANNEL_DEPLOYMENTS_DIR: path.join(cwd, "no-deployments"),
    }, cwd);
    expect(r.code, r.stderr).to.equal(1);
    expect(JSON.parse(r.stdout).failureReasons).to.deep.equal({ untrusted_terms: 3 });
    expect(before - (await balance())).to.equal(0n);
  });
});
