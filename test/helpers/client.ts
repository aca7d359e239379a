/**
 * Helpers for the agent client's tests: a client wired to Hardhat's in-process chain with a local account,
 * and a tiny HTTP responder that answers with hand-made protocol headers (for limit and hint checks that the
 * real server would never produce). The responder is not a server implementation: it only replays what a test tells it.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import hre from "hardhat";
import { createPublicClient, createWalletClient, custom, getAddress, type Address, type Hex, type PublicClient, type WalletClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import {
  HEADER_PAYMENT_REQUIRED,
  HEADER_PAYMENT_SIGNATURE,
  decodePaymentSignature,
  encodePaymentRequired,
  networkOf,
  type ChannelHint,
  type ChannelRequirements,
  type PaymentErrorCode,
  type PaymentPayload,
} from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { createChannelClient, MemoryStore, type ChannelClient, type ChannelClientOptions } from "@paychan/client";
import { accountKey } from "./chain";

/** Public and wallet clients for Hardhat account `index`, signing locally (as an agent's key would). */
export function chainClients(index: number): { publicClient: PublicClient; walletClient: WalletClient; key: Hex; address: Address } {
  const key = accountKey(index);
  const account = privateKeyToAccount(key);
  const transport = custom(hre.network.provider);
  const publicClient = createPublicClient({ chain: hardhat, transport, pollingInterval: 20 }) as PublicClient;
  const walletClient = createWalletClient({ chain: hardhat, transport, account });
  return { publicClient, walletClient, key, address: account.address };
}

/** A client for Hardhat account `index` with a memory store (unless given) and the given options. */
export function testClient(
  index: number,
  opts: Partial<ChannelClientOptions> & { limits?: ChannelClientOptions["limits"] } = {},
): { agent: ChannelClient; store: MemoryStore; address: Address } {
  const { publicClient, walletClient, address } = chainClients(index);
  const store = (opts.store as MemoryStore) ?? new MemoryStore();
  const agent = createChannelClient({
    account: walletClient.account!,
    publicClient,
    walletClient,
    limits: { maxDeposit: "5", maxPrice: "0.01" },
    ...opts,
    store,
  });
  return { agent, store, address };
}

/** Mints `amount` MockUSDC to `to` (MockUSDC's mint is public). */
export async function mintUsdc(token: Address, to: Address, amount: bigint): Promise<void> {
  // Not account #0: it is the local settler key, and a mint from it could take a settlement's nonce.
  const { walletClient, publicClient } = chainClients(19);
  const hash = await walletClient.writeContract({ address: token, abi: mockUsdcAbi, functionName: "mint", args: [to, amount], chain: hardhat, account: walletClient.account! });
  await publicClient.waitForTransactionReceipt({ hash });
}

/** Terms of the channel scheme for a test 402. */
export function terms(p: { escrow: Address; token: Address; payee: Address; price: bigint; minDeposit?: bigint; minCloseDelay?: number; chainId?: number }): ChannelRequirements {
  return {
    scheme: "channel",
    network: networkOf(p.chainId ?? 31337),
    asset: getAddress(p.token),
    amount: p.price,
    payTo: getAddress(p.payee),
    maxTimeoutSeconds: 60,
    extra: {
      escrow: getAddress(p.escrow),
      name: "ChannelEscrow",
      version: "1",
      minDeposit: p.minDeposit ?? 1_000_000n,
      minCloseDelay: p.minCloseDelay ?? 86_400,
    },
  };
}

/** The `PAYMENT-REQUIRED` value of a 402 with these terms, error code and optional channel hint. */
export function challengeHeader(t: ChannelRequirements, error: PaymentErrorCode = "payment_required", hint?: ChannelHint): string {
  const accepts = [hint ? { ...t, extra: { ...t.extra, channel: hint } } : t];
  return encodePaymentRequired({ x402Version: 2, error, resource: { url: "http://127.0.0.1/" }, accepts });
}

/** One request the responder saw. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** The decoded `PAYMENT-SIGNATURE`, when the request carried one. */
  payment?: PaymentPayload;
  body: string;
}

/** What the responder answers: a status, headers and a body. */
export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * A loopback HTTP responder on an ephemeral port that answers each request with `respond(request, index)` and
 * records every request (with its decoded payment).
 */
export async function startResponder(respond: (req: SeenRequest, index: number) => Reply | Promise<Reply>): Promise<{
  url: string;
  seen: SeenRequest[];
  payments: () => PaymentPayload[];
  close: () => Promise<void>;
}> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const h = req.headers[HEADER_PAYMENT_SIGNATURE.toLowerCase()];
      const s: SeenRequest = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() };
      if (typeof h === "string") s.payment = decodePaymentSignature(h);
      seen.push(s);
      try {
        const r = await respond(s, seen.length - 1);
        res.writeHead(r.status, { "content-type": "application/json", ...(r.headers ?? {}) });
        res.end(r.body ?? "{}");
      } catch (e) {
        res.writeHead(599);
        res.end(String(e));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    payments: () => seen.filter((s) => s.payment).map((s) => s.payment!),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A 402 reply with the given terms, code and hint. */
export function reply402(t: ChannelRequirements, error: PaymentErrorCode = "payment_required", hint?: ChannelHint): Reply {
  return {
    status: 402,
    headers: { [HEADER_PAYMENT_REQUIRED]: challengeHeader(t, error, hint), "content-type": "application/problem+json" },
    body: JSON.stringify({ error, detail: "test" }),
  };
}
