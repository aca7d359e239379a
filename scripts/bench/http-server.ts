/**
 * The server process of `npm run bench`: the real provider server (configuration from the environment, as
 * `npm start` reads it with RPC_URL set; DATABASE_URL selects SQLite or PostgreSQL) with ONE trivial handler mounted
 * twice, unpaid at `GET /bench/free` and behind `paywall.charge({ price: "0.001" })` at `GET /bench/paid`, plus the
 * demo routes (the end-to-end run pays `/v1/echo`). Prints one `ready <url>` line; SIGTERM/SIGINT stop it.
 */
import type { Request, Response } from "express";
import { startProviderServer } from "@paychan/demo";
import { loadConfig } from "@paychan/server";
import { demoRoutes } from "@paychan/demo";

/** Price of `/bench/paid`, token units. */
export const BENCH_PRICE = "0.001";

/** The trivial handler both benchmark routes run. */
function trivial(_req: Request, res: Response): void {
  res.json({ ok: true });
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const server = await startProviderServer({
    config,
    routes: (app, paywall) => {
      app.get("/bench/free", trivial);
      app.get("/bench/paid", paywall.charge({ price: BENCH_PRICE, description: "benchmark" }), trivial);
      demoRoutes(app, paywall);
    },
  });
  console.log(`ready ${server.url}`);
  const stop = () => void server.close().then(() => process.exit(0), () => process.exit(1));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(`bench server failed: ${(e as Error).message}`);
  process.exit(1);
});
