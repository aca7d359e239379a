/**
 * The client's default file store: atomic durable writes, a separate session-key file, no silent overwrite of a
 * corrupt state, and coalesced saves that end with the latest state.
 */
import { expect } from "chai";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAddress } from "viem/accounts";
import { ClientError, FileStore, emptyState, writeFileAtomic, type ChannelRecord, type ClientState } from "@paychan/client";
import { Persister } from "../../client/src/persister";

function record(i: number): ChannelRecord {
  return {
    id: `0x${i.toString(16).padStart(64, "0")}` as Hex,
    chainId: 31337,
    escrow: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    payer: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    payee: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    token: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    signer: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    salt: `0x${"11".repeat(32)}` as Hex,
    closeDelay: 86_400,
    deposit: 5_000_000n,
    settled: 0n,
    openAmount: 5_000_000n,
    signed: BigInt(i) * 1000n,
    accepted: BigInt(i) * 1000n,
    spent: BigInt(i) * 1000n,
    status: "open",
    openedAt: 1,
    origin: "http://127.0.0.1:4021",
  };
}

function stateWith(n: number, signed = 0n): ClientState {
  const s = emptyState();
  for (let i = 1; i <= n; i++) {
    const r = record(i);
    r.signed += signed;
    s.channels[r.id] = r;
  }
  return s;
}

describe("client: file store", function () {
  let dir: string;

  beforeEach(async function () {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "channel-store-"));
  });
  afterEach(async function () {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("round-trips channels, amounts (as bigint) and route terms", async function () {
    const store = new FileStore(path.join(dir, "state"));
    expect(await store.load()).to.equal(undefined);
    const s = stateWith(3);
    s.routes["GET http://127.0.0.1:4021/v1/echo"] = {
      updatedAt: 5,
      requirements: {
        scheme: "channel",
        network: "eip155:31337",
        asset: record(1).token,
        amount: 1000n,
        payTo: record(1).payee,
        maxTimeoutSeconds: 60,
        extra: { escrow: record(1).escrow, name: "ChannelEscrow", version: "1", minDeposit: 1_000_000n, minCloseDelay: 86_400 },
      },
    };
    await store.save(s);
    const back = await store.load();
    expect(back).to.deep.equal(s);
    expect(typeof back!.channels[record(2).id].signed).to.equal("bigint");
  });

  it("writes files readable only by the owner, in a directory it creates", async function () {
    const store = new FileStore(path.join(dir, "nested", "state"));
    await store.save(stateWith(1));
    const key = generatePrivateKey();
    await store.saveSessionKey({ privateKey: key, address: privateKeyToAddress(key), createdAt: 1 });
    expect((await fs.stat(store.statePath)).mode & 0o777).to.equal(0o600);
    expect((await fs.stat(store.sessionKeyPath)).mode & 0o777).to.equal(0o600);
    expect((await store.loadSessionKey())!.privateKey).to.equal(key);
  });

  it("keeps the session key in its own file: deleting the state keeps the key", async function () {
    const store = new FileStore(dir);
    const key = generatePrivateKey();
    await store.saveSessionKey({ privateKey: key, address: privateKeyToAddress(key), createdAt: 1 });
    await store.save(stateWith(2));
    await fs.rm(store.statePath);
    expect(await store.load()).to.equal(undefined);
    expect((await store.loadSessionKey())!.address).to.equal(privateKeyToAddress(key));
  });

  it("a reader never sees a partial state while writes go on (write temp + fsync + rename)", async function () {
    const store = new FileStore(dir);
    await store.save(stateWith(200));
    let writing = true;
    const writer = (async () => {
      for (let i = 1; i <= 40; i++) await store.save(stateWith(200, BigInt(i)));
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      const s = await store.load(); // throws store_failure on a torn file
      expect(Object.keys(s!.channels)).to.have.length(200);
      reads++;
    }
    await writer;
    expect(reads).to.be.greaterThan(0);
    expect((await store.load())!.channels[record(1).id].signed).to.equal(1000n + 40n);
    expect((await fs.readdir(dir)).filter((f) => f.endsWith(".tmp"))).to.deep.equal([]);
  });

  it("ignores and removes the temporary file of a write that crashed before its rename", async function () {
    const store = new FileStore(dir);
    await store.save(stateWith(1));
    const crashed = path.join(dir, `.state.json.999.1.tmp`);
    await fs.writeFile(crashed, '{"version":1,"chan'); // torn
    expect(Object.keys((await store.load())!.channels)).to.have.length(1);
    await new FileStore(dir).save(stateWith(2)); // a new process cleans up on its first write
    expect((await fs.readdir(dir)).filter((f) => f.endsWith(".tmp"))).to.deep.equal([]);
  });

  it("refuses a corrupt state file with store_failure and never overwrites it", async function () {
    const store = new FileStore(dir);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(store.statePath, "{ not json");
    try {
      await store.load();
      expect.fail("expected store_failure");
    } catch (e) {
      expect(e).to.be.instanceOf(ClientError);
      expect((e as ClientError).code).to.equal("store_failure");
    }
    expect(await fs.readFile(store.statePath, "utf8")).to.equal("{ not json");
  });

  it("refuses a session key file whose address does not match its key", async function () {
    const store = new FileStore(dir);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(store.sessionKeyPath, JSON.stringify({ privateKey: generatePrivateKey(), address: privateKeyToAddress(generatePrivateKey()) }));
    try {
      await store.loadSessionKey();
      expect.fail("expected store_failure");
    } catch (e) {
      expect((e as ClientError).code).to.equal("store_failure");
    }
  });

  it("writeFileAtomic replaces the whole content", async function () {
    const f = path.join(dir, "x.json");
    await fs.mkdir(dir, { recursive: true });
    await writeFileAtomic(f, "a".repeat(10_000));
    await writeFileAtomic(f, "b");
    expect(await fs.readFile(f, "utf8")).to.equal("b");
  });

  it("coalesces many scheduled saves into few, and flush() leaves the latest state durable", async function () {
    const store = new FileStore(dir);
    const state = stateWith(1);
    let saves = 0;
    const p = new Persister(async () => {
      saves++;
      await store.save(state);
    }, 20);
    const ch = state.channels[record(1).id];
    for (let i = 0; i < 500; i++) {
      ch.signed += 1n;
      p.schedule();
      if (i % 100 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await p.flush();
    expect(saves).to.be.lessThan(20);
    expect((await store.load())!.channels[ch.id].signed).to.equal(1000n + 500n);
  });
});
