/**
 * Load shedding: when payment checks pile up (here: every chain read delayed by a fault proxy), the real server
 * refuses paid requests beyond MAX_PENDING_PAYMENTS at once with 503 `overloaded` and Retry-After, writing nothing,
 * and takes them again as soon as the pending checks end.
 */
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { getAbiItem, toFunctionSelector, type Hex } from "viem";
import { channelEscrowAbi, HEADER_PAYMENT_RESPONSE, VoucherSigner, type ChannelRequirements } from "@paychan/protocol";
import { openSqliteProbe } from "../helpers/db-probe";
import type { Env } from "../helpers/escrow";
import type { FaultProxy } from "../helpers/fault-proxy";
import type { ServerProcess } from "../helpers/process";
import { startProxiedServer, type ProxiedServer } from "../helpers/proxied-server";
import { paymentHeaders } from "../helpers/server";
import { until } from "../helpers/wait";

/**
 * Every chunk to and from the chain is this late, so a read waits at least twice this long (its request, then the
 * answer). Not more: the chain's HTTP server closes a keep-alive connection idle for 5 s, and a connection is idle
 * there from one answer until the next request arrives (2 × DELAY_MS through the proxy).
 */
const DELAY_MS = 1_500;
/** `getChannel(bytes32,address)`'s selector, as it appears in an `eth_call`'s data. */
const GET_CHANNEL = toFunctionSelector(getAbiItem({ abi: channelEscrowAbi, name: "getChannel" })).slice(2);

describe("faults: payment checks piling up are shed with 503 overloaded", function () {
  this.timeout(180_000);
  let running: ProxiedServer;
  let env: Env;
  let proxy: FaultProxy;
  let server: ServerProcess;
  let databaseUrl: string;
  let terms: ChannelRequirements;

  before(async function () {
    running = await startProxiedServer({ RPC_TIMEOUT: "30000", UNKNOWN_CHANNEL_TTL: "50", MAX_PENDING_PAYMENTS: "2" });
    ({ env, proxy, server, databaseUrl, terms } = running);
  });

  after(async () => {
    await running?.stop();
  });

  /** A voucher on a channel id the server has never seen: checking it needs a chain read. */
  const unseen = () => {
    const signer = new VoucherSigner(`0x${randomBytes(32).toString("hex")}` as Hex, env.domain);
    return signer.sign(`0x${randomBytes(32).toString("hex")}` as Hex, 1_000n);
  };
  const pay = async () => {
    const t0 = performance.now();
    const res = await fetch(`${server.url}/v1/echo?msg=overload`, { headers: paymentHeaders(terms, unseen()), signal: AbortSignal.timeout(90_000) });
    const body = (await res.json()) as { error?: string };
    return { status: res.status, code: body.error, retryAfter: res.headers.get("retry-after"), receipt: res.headers.has(HEADER_PAYMENT_RESPONSE), ms: performance.now() - t0 };
  };

  it("the third check while two wait on a slow chain gets 503 overloaded at once; the limit frees when they end", async () => {
    const probe = openSqliteProbe(databaseUrl);
    const before = probe.snapshot();
    proxy.mode("delay", { delayMs: DELAY_MS });
    try {
      // Each check of an unknown channel reads it with `getChannel` (after a head read the two may share): once the
      // proxy has two such reads, both checks are pending, and stay so for at least 2 × DELAY_MS (request, answer).
      const reads = proxy.sent(GET_CHANNEL);
      let slowPending = 2;
      const slow = [pay(), pay()].map((p) => p.finally(() => slowPending--));
      await until(() => proxy.sent(GET_CHANNEL) - reads >= 2, "both checks to read their channel from the chain");
      const shed = await pay();
      expect(shed).to.include({ status: 503, code: "overloaded", retryAfter: "2", receipt: false });
      // At once: answered while the two checks still wait for the chain (not after them, and without a read).
      expect(slowPending, "the slow checks still pending when the third was shed").to.equal(2);
      expect(proxy.sent(GET_CHANNEL) - reads, "no read for the shed check").to.equal(2);
      for (const r of await Promise.all(slow)) expect(r).to.include({ status: 402, code: "unknown_channel" });
      const again = await pay(); // the two checks ended: room again (still slow, still unknown)
      expect(again, JSON.stringify(again)).to.include({ status: 402, code: "unknown_channel" });
    } finally {
      proxy.mode("pass");
    }
    expect(probe.snapshot()).to.deep.equal(before); // nothing written for any of them
    probe.close();
  });
});
