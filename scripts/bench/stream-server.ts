/**
 * The server process of `npm run bench -- --only stream`: the real provider server (configuration from the
 * environment, as `npm start` reads it with RPC_URL set) with ONE token producer mounted twice, as a plain event stream
 * at `POST /bench/stream-free` and as a paid stream (`paywall.stream`, the demo chat's terms: 0.00001 per token, reserve
 * and top-up 0.01) at `POST /bench/stream-paid`, plus the top-up route. Body `{ "n": tokens }`. Prints `ready <url>`.
 */
import express, { type Request, type Response } from "express";
import { formatSseFrame, SSE_CONTENT_TYPE } from "@paychan/protocol";
import { chatToken, CHAT_PRICE_PER_TOKEN, CHAT_RESERVE, startProviderServer, STREAM_VOUCHER_ROUTE } from "@paychan/demo";
import { loadConfig } from "@paychan/server";

/** The producer both routes run: one event per token, the event loop let run every 32 tokens (as the demo chat). */
async function produce(send: (data: string) => Promise<void>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await send(JSON.stringify({ i, t: chatToken("bench", i) }));
    if (i % 32 === 31) await new Promise<void>((r) => setImmediate(r));
  }
}

const tokens = (req: Request) => Math.min(Math.max(Number((req.body as { n?: number })?.n) || 1, 1), 1_000_000);

async function free(req: Request, res: Response): Promise<void> {
  res.writeHead(200, { "content-type": SSE_CONTENT_TYPE, "cache-control": "no-cache" });
  await produce(async (data) => {
    if (!res.write(formatSseFrame({ data }))) await new Promise<void>((r) => res.once("drain", r));
  }, tokens(req));
  res.end();
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const server = await startProviderServer({
    config,
    routes: (app, paywall) => {
      app.post("/bench/stream-free", express.json(), free);
      app.post(
        "/bench/stream-paid",
        express.json(),
        paywall.stream({ unitPrice: CHAT_PRICE_PER_TOKEN, reserve: CHAT_RESERVE, topUp: CHAT_RESERVE }, (stream, req) => produce((d) => stream.send(d), tokens(req))),
      );
      app.post(STREAM_VOUCHER_ROUTE, paywall.streamVoucherHandler());
    },
  });
  console.log(`ready ${server.url}`);
  const stop = () => void server.close().then(() => process.exit(0), () => process.exit(1));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(`bench stream server failed: ${(e as Error).message}`);
  process.exit(1);
});
