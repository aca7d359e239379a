/**
 * Gasless opens end to end (issue 16, docs/protocol.md § 5.9, § 7.6): our SDK, CLI and x402 plug-in, for a fresh key
 * holding only MockUSDC and 0 ETH, against the REAL server (test/helpers/server.ts: its exact sender, Hardhat #19,
 * opens channels) on the in-process chain. One open transaction, sent by the provider; one HTTP request per later
 * call; the agent's ETH stays 0; the settlement job settles exactly what the receipts charged.
 */
import { expect } from "chai";
import hre from "hardhat";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicClient, createWalletClient, custom, getAddress, type Address, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import { HEADER_PAYMENT_SIGNATURE, channelEscrowAbi, decodePaymentSignature, networkOf } from "@paychan/protocol";
import { createChannelClient, isClientError, MemoryStore, type ChannelPaymentInfo, type ClientEvent } from "@paychan/client";
import { ChannelSchemeClient } from "@paychan/client/x402";
import { startTestServer, type TestServer } from "../helpers/server";
import { mintUsdc, testClient } from "../helpers/client";
import { revertTo, snapshot } from "../helpers/chain";
import { compiledEnv } from "../helpers/process";

const PRICE = 1_000n; // /v1/echo: 0.001 USDC
const SENDER: Address = "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199"; // Hardhat #19: the provider's exact sender
const BIN = path.resolve(__dirname, "..", "..", "client", "bin", "channel.js");

/** A fetch that counts the requests it sends and those carrying a gasless open. */
function countingFetch() {
  const c = { requests: 0, opens: 0, paid: 0 };
  const f: typeof fetch = async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    c.requests++;
    const h = req.headers.get(HEADER_PAYMENT_SIGNATURE);
    if (h) {
      c.paid++;
      try {
        if (decodePaymentSignature(h).payload.open) c.opens++;
      } catch {
        /* not ours */
      }
    }
    return fetch(req);
  };
  return { fetch: f, c };
}

/** A client for a fresh key holding `usdc` MockUSDC and no ETH. */
async function freshAgent(srv: TestServer, usdc: bigint, o: { fetch?: typeof fetch; maxOpenFee?: string; deposit?: string; maxChannelsPerProvider?: number } = {}) {
  const key = generatePrivateKey();
  const account = privateKeyToAccount(key);
  const transport = custom(hre.network.provider);
  const publicClient = createPublicClient({ chain: hardhat, transport, pollingInterval: 20 }) as PublicClient;
  const walletClient = createWalletClient({ chain: hardhat, transport, account });
  await mintUsdc(srv.token, account.address, usdc);
  const events: ClientEvent[] = [];
  const agent = createChannelClient({
    account,
    publicClient,
    walletClient,
    store: new MemoryStore(),
    limits: { maxPrice: "0.01", maxDeposit: "5", maxOpenFee: o.maxOpenFee, maxChannelsPerProvider: o.maxChannelsPerProvider }, // escrow verified by its code
    policy: { deposit: o.deposit ?? "2" },
    fetch: o.fetch,
    discoverFromBlock: false,
    onEvent: (e) => events.push(e),
  });
  return { agent, key, address: account.address, events };
}

const senderNonce = (srv: TestServer) => srv.env.publicClient.getTransactionCount({ address: SENDER, blockTag: "pending" });
const ethOf = (srv: TestServer, a: Address) => srv.env.publicClient.getBalance({ address: a });

async function opensBy(srv: TestServer, payer: Address) {
  const logs = await srv.env.publicClient.getContractEvents({ address: srv.escrow, abi: channelEscrowAbi, eventName: "ChannelOpened", args: { payer }, fromBlock: 0n });
  return Promise.all(logs.map(async (l) => ({ id: l.args.channelId!, from: getAddress((await srv.env.publicClient.getTransaction({ hash: l.transactionHash! })).from), tx: l.transactionHash! })));
}

async function until(cond: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("client: gasless opens end to end (SDK, CLI, x402 plug-in; real server and chain)", function () {
  this.timeout(600_000);
  let snap: string;
  before(async () => (snap = await snapshot()));
  after(async () => {
    if (snap) await revertTo(snap);
  });

  it("SDK: a fresh key with only MockUSDC makes 1,000 paid calls: one open sent by the provider, one request per later call, ETH 0, settled = charged", async () => {
    const settlement = { config: { interval: 1, threshold: "0.000001" }, pollInterval: 50 };
    const srv = await startTestServer({ settlement });
    try {
      const counting = countingFetch();
      const { agent, address } = await freshAgent(srv, 3_000_000n, { fetch: counting.fetch });
      const nonce0 = await senderNonce(srv);
      const N = 1000;
      let charged = 0n;
      let first: ChannelPaymentInfo | undefined;
      const t0 = performance.now();
      let firstMs = 0;
      for (let i = 0; i < N; i++) {
        const res = await agent.fetch(`${srv.url}/v1/echo?msg=${i}`);
        expect(res.status, await res.clone().text()).to.equal(200);
        await res.arrayBuffer();
        if (i === 0) firstMs = performance.now() - t0;
        const p = agent.paymentOf(res) as ChannelPaymentInfo;
        if (i === 0) first = p;
        charged += p.receipt!.amount;
      }
      const totalMs = performance.now() - t0;
      expect(first!.open).to.deep.include({ openedBy: "provider", fee: 0n });
      expect(first!.requests).to.equal(2); // the 402 that named the terms, then the paid request carrying the open
      expect(counting.c.requests).to.equal(N + 1);
      expect(counting.c.opens).to.equal(1);
      expect(await senderNonce(srv), "one transaction of the provider's sender").to.equal(nonce0 + 1);
      const opens = await opensBy(srv, address);
      expect(opens).to.have.length(1);
      expect(opens[0].from).to.equal(SENDER);
      expect(await ethOf(srv, address)).to.equal(0n);
      expect(charged).to.equal(BigInt(N) * PRICE);
      const [ch] = agent.channels();
      expect(ch.openedBy).to.equal("provider");
      expect((await srv.store.getChannel(ch.id))!.spent).to.equal(charged);
      await until(async () => (await srv.store.getChannel(ch.id))!.settled === charged, "the settlement of what was charged");
      const [st] = await agent.status();
      expect(st).to.deep.include({ openedBy: "provider", openFee: 0n, settled: charged, status: "open", openTx: opens[0].tx });
      console.log(`      1,000 calls with a gasless open: first call ${firstMs.toFixed(1)} ms (402 + open), then ${((totalMs - firstMs) / (N - 1)).toFixed(2)} ms per call`);
      await agent.close();
    } finally {
      await srv.close();
    }
  });

  it("fee: the first call is charged price + fee and reports it; a fee above maxOpenFee is refused before signing (no transaction)", async () => {
    const fee = 5_000n;
    const srv = await startTestServer({ gaslessOpen: { fee } });
    try {
      const { agent, address, events } = await freshAgent(srv, 3_000_000n, { maxOpenFee: "0.005" });
      const r1 = await agent.fetch(`${srv.url}/v1/echo?msg=a`);
      expect(r1.status).to.equal(200);
      const p1 = agent.paymentOf(r1) as ChannelPaymentInfo;
      expect(p1.receipt!.amount).to.equal(PRICE + fee);
      expect(p1.open!.fee).to.equal(fee);
      expect(events.find((e) => e.type === "gasless_open_signing")).to.deep.include({ fee });
      const r2 = await agent.fetch(`${srv.url}/v1/echo?msg=b`);
      expect((agent.paymentOf(r2) as ChannelPaymentInfo).receipt!.amount).to.equal(PRICE);
      expect(agent.stats.openFees[srv.token.toLowerCase()]).to.equal(fee);
      expect(agent.stats.amountPaid[srv.token.toLowerCase()]).to.equal(2n * PRICE + fee);
      expect((await agent.status())[0]).to.deep.include({ openedBy: "provider", openFee: fee });
      expect(await ethOf(srv, address)).to.equal(0n);

      const low = await freshAgent(srv, 3_000_000n, { maxOpenFee: "0.004" }); // (the mint is sent by #19)
      const nonce0 = await senderNonce(srv);
      const e = await low.agent.fetch(`${srv.url}/v1/echo?msg=c`).catch((x) => x);
      expect(isClientError(e, "spending_limit"), String(e)).to.equal(true);
      expect(e.shortMessage).to.match(/open fee 5000 is above maxOpenFee 4000/);
      expect(low.events.some((x) => x.type === "gasless_open_signing")).to.equal(false);
      expect(low.agent.channels()).to.have.length(0);
      expect(await senderNonce(srv)).to.equal(nonce0);
    } finally {
      await srv.close();
    }
  });

  it("auto with gas: the payer opens the channel itself (no payload.open, no transaction of the provider's)", async () => {
    const srv = await startTestServer();
    try {
      const counting = countingFetch();
      const { agent } = testClient(16, { fetch: counting.fetch, discoverFromBlock: false });
      await mintUsdc(srv.token, agent.payerAddress, 3_000_000n);
      const nonce0 = await senderNonce(srv);
      for (let i = 0; i < 3; i++) expect((await agent.fetch(`${srv.url}/v1/echo?msg=${i}`)).status).to.equal(200);
      expect(counting.c.opens).to.equal(0);
      expect(agent.channels()[0].openedBy).to.equal(undefined);
      expect(await senderNonce(srv)).to.equal(nonce0);
      expect((await opensBy(srv, agent.payerAddress))[0].from).to.equal(getAddress(agent.payerAddress));
    } finally {
      await srv.close();
    }
  });

  it("top-up of a gasless channel: a new channel opened gaslessly, the exhausted one closed cooperatively and refunded; ETH stays 0", async () => {
    const settlement = { config: { interval: 1, threshold: "0.000001" }, pollInterval: 50 };
    const srv = await startTestServer({ settlement, config: { minDeposit: "0.01" } });
    try {
      const { agent, address, events } = await freshAgent(srv, 1_000_000n, { deposit: "0.01" }); // 10 calls per channel
      for (let i = 0; i < 15; i++) {
        const res = await agent.fetch(`${srv.url}/v1/echo?msg=${i}`);
        expect(res.status, await res.clone().text()).to.equal(200);
      }
      const opens = await opensBy(srv, address);
      expect(opens).to.have.length(2);
      expect(opens.every((o) => o.from === SENDER)).to.equal(true);
      expect(events.filter((e) => e.type === "channel_replaced")).to.have.length(1);
      const old = agent.channels().find((c) => c.id === opens[0].id)!;
      await until(async () => old.status === "closing", "the cooperative close of the exhausted channel", 30_000);
      await until(async () => (await agent.status()).find((c) => c.channelId === old.id)!.status === "finalized", "the provider's close of the old channel");
      expect(await ethOf(srv, address)).to.equal(0n);
      const bal = (await srv.env.publicClient.readContract({ address: srv.token, abi: srv.env.usdc.abi, functionName: "balanceOf", args: [address] })) as bigint;
      // 1 USDC − 0.01 locked in the new channel − nothing else: the old channel's 10 calls were settled, its rest (0) refunded.
      expect(bal).to.equal(1_000_000n - 2n * 10_000n + 0n);
      await agent.close();
    } finally {
      await srv.close();
    }
  });

  it("stock @x402/fetch with our plug-in, for a key holding only MockUSDC: pays many times on one channel the provider opened", async () => {
    const srv = await startTestServer();
    try {
      const { agent, address } = await freshAgent(srv, 3_000_000n);
      const channel = new ChannelSchemeClient(agent);
      const network = networkOf(srv.chainId);
      const client = new x402Client().register(network, channel).setSpendControls({ allowedAssets: [{ network, asset: srv.token }] });
      const counting = countingFetch();
      const pay = wrapFetchWithPayment(counting.fetch, channel.attach(new x402HTTPClient(client)));
      const nonce0 = await senderNonce(srv);
      const N = 20;
      for (let i = 0; i < N; i++) {
        const res = await pay(`${srv.url}/v1/echo?msg=x${i}`);
        expect(res.status, await res.clone().text()).to.equal(200);
        expect(await res.json()).to.deep.equal({ echo: `x${i}` });
      }
      expect(counting.c.opens).to.equal(1);
      expect(counting.c.paid).to.equal(N);
      expect(await senderNonce(srv)).to.equal(nonce0 + 1);
      const [ch] = agent.channels();
      expect(agent.channels()).to.have.length(1);
      expect(ch).to.deep.include({ openedBy: "provider", status: "open", spent: BigInt(N) * PRICE });
      expect((await srv.store.getChannel(ch.id))!.spent).to.equal(BigInt(N) * PRICE);
      expect(await ethOf(srv, address)).to.equal(0n);
      await agent.close();
    } finally {
      await srv.close();
    }
  });

  it("CLI: `channel call -n 1000` with a fresh key funded only with MockUSDC opens (by the provider), pays and prints the fee; status shows it", async () => {
    const srv = await startTestServer({ gaslessOpen: { fee: 2_000n } });
    const cwd = await fs.mkdtemp(path.join(os.tmpdir(), "channel-gasless-cli-"));
    try {
      const key = generatePrivateKey();
      const address = privateKeyToAccount(key).address;
      await mintUsdc(srv.token, address, 3_000_000n);
      const env = { CHANNEL_PRIVATE_KEY: key, RPC_URL: srv.rpcUrl, CHANNEL_STATE_DIR: path.join(cwd, "state") };
      const run = (args: string[]) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          execFile(process.execPath, [BIN, ...args], { env: { ...compiledEnv(), ...env }, cwd, timeout: 300_000 }, (err, stdout, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
          );
        });
      const nonce0 = await senderNonce(srv);
      const one = await run(["call", `${srv.url}/v1/echo?msg=first`, "--escrow", srv.escrow, "--token", srv.token, "--deposit", "2"]);
      expect(one.code, one.stderr).to.equal(0);
      expect(one.stderr).to.match(/signing a gasless open of channel .*no gas.*open fee 2000/);
      expect(one.stderr).to.match(/paid 0\.003 USDC .*channel opened by the provider: open fee 0\.002 USDC included/);
      const many = await run(["call", `${srv.url}/v1/echo?msg=more`, "-n", "999", "--json", "--escrow", srv.escrow, "--token", srv.token]);
      expect(many.code, many.stderr).to.equal(0);
      const summary = JSON.parse(many.stdout);
      expect(summary).to.include({ paid: 999, failures: 0 });
      expect(summary.requests).to.equal(999); // the route's terms were remembered: one request per call
      expect(await senderNonce(srv)).to.equal(nonce0 + 1);
      expect(await opensBy(srv, address)).to.have.length(1);
      expect(await ethOf(srv, address)).to.equal(0n);
      const st = await run(["status", "--escrow", srv.escrow, "--token", srv.token]);
      expect(st.code, st.stderr).to.equal(0);
      expect(st.stdout).to.match(/provider \(fee 0\.002 USDC\)/).and.match(/opened by the provider in transaction 0x[0-9a-f]{64}/);
      const js = JSON.parse((await run(["status", "--json", "--escrow", srv.escrow, "--token", srv.token])).stdout);
      expect(js.channels[0]).to.include({ openedBy: "provider", openFee: "2000", spent: String(1000n * PRICE + 2_000n) });
    } finally {
      await srv.close();
      await fs.rm(cwd, { recursive: true, force: true });
    }
  });
});

