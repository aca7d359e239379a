/**
 * The server process of `scripts/bench/server-latency.ts`: the real provider server (configuration from the
 * environment, like `npm start` with RPC_URL set) with the demo routes plus an unpaid twin of `/v1/echo`
 * (`/free/echo`, same handler), so the paid path's added latency can be measured. Prints one `ready <url>` line.
 */
import { startProviderServer } from "@paychan/demo";
import { loadConfig } from "@paychan/server";
import { demoRoutes } from "@paychan/demo";

async function main() {
  const config = loadConfig(process.env);
  const server = await startProviderServer({
    config,
    routes: (app, paywall) => {
      demoRoutes(app, paywall);
      app.get("/free/echo", (req, res) => {
        res.json({ echo: (req.query.msg as string | undefined) ?? "" });
      });
    },
  });
  console.log(`ready ${server.url}`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(`latency server failed: ${(e as Error).message}`);
  process.exit(1);
});
