/**
 * A STOCK x402 provider for interop tests: Express with `paymentMiddleware` of `@x402/express`, an `x402ResourceServer`
 * (`@x402/core/server`) with the stock `exact` server scheme (`@x402/evm/exact/server`) for the local chain, and an
 * in-process facilitator (`x402Facilitator` of `@x402/core/facilitator` + `registerExactEvmScheme` of
 * `@x402/evm/exact/facilitator`) whose signer is a viem wallet client with public actions. Nothing of ours runs in it.
 */
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import express from "express";
import { createWalletClient, custom, publicActions, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import hre from "hardhat";
import { paymentMiddleware } from "@x402/express";
import { x402ResourceServer } from "@x402/core/server";
import { x402Facilitator } from "@x402/core/facilitator";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";

export const LOCAL_NETWORK = "eip155:31337" as const;

/** One paid route of the stock server. */
export interface StockRoute {
  /** e.g. "GET /paid". */
  route: string;
  /** Atomic units of `asset`. */
  amount: bigint;
  asset: Address;
  payTo: Address;
  /** The token's EIP-712 domain (what the offer's `extra` names). */
  name: string;
  version: string;
  maxTimeoutSeconds?: number;
}

export interface StockServer {
  url: string;
  /** Paid requests whose handler ran. */
  served: () => number;
  close(): Promise<void>;
}

/**
 * Starts the stock server on an ephemeral port: each route answers `{ ok: true, path }` once paid. The facilitator
 * submits the transfers with `facilitatorKey` (a funded account).
 */
export async function startStockServer(routes: StockRoute[], facilitatorKey: Hex): Promise<StockServer> {
  const account = privateKeyToAccount(facilitatorKey);
  const wallet = createWalletClient({ account, chain: hardhat, transport: custom(hre.network.provider) }).extend(publicActions);
  const signer = toFacilitatorEvmSigner(Object.assign(wallet, { address: account.address }) as never, { confirmationTimeoutMs: 30_000 });
  const facilitator = new x402Facilitator();
  registerExactEvmScheme(facilitator, { signer, networks: LOCAL_NETWORK });
  const client = {
    verify: (p: never, r: never) => facilitator.verify(p, r),
    settle: (p: never, r: never) => facilitator.settle(p, r),
    getSupported: async () => facilitator.getSupported() as never,
  };
  const resourceServer = new x402ResourceServer(client).register(LOCAL_NETWORK, new ExactEvmScheme());
  const config: Record<string, unknown> = {};
  for (const r of routes) {
    config[r.route] = {
      accepts: {
        scheme: "exact",
        network: LOCAL_NETWORK,
        payTo: r.payTo,
        price: { amount: r.amount.toString(), asset: r.asset, extra: { name: r.name, version: r.version } },
        maxTimeoutSeconds: r.maxTimeoutSeconds ?? 60,
      },
      description: `stock route ${r.route}`,
    };
  }
  let served = 0;
  const app = express();
  app.use(paymentMiddleware(config as never, resourceServer));
  for (const r of routes) {
    const [method, path] = r.route.split(" ");
    (app as unknown as Record<string, (p: string, h: express.RequestHandler) => void>)[method.toLowerCase()](path, (req, res) => {
      served++;
      res.json({ ok: true, path: req.path });
    });
  }
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    served: () => served,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
