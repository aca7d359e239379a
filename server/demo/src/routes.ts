/**
 * Demo routes of `npm start`: a fixed-price echo, a metered "inference" (a small deterministic text generator
 * charging per output token) and a streamed "chat" paid per token as it is written (docs/protocol.md § 5.10).
 * Inputs are validated BEFORE the paywall, so bad input is never charged.
 */
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import { keccak_256 } from "@noble/hashes/sha3";
import { paymentOf, type ExpressPaywall } from "@paychan/express";
import { problem, PROBLEM_CONTENT_TYPE } from "@paychan/server";

/** Price of `GET /v1/echo`, token units. */
export const ECHO_PRICE = "0.001";
/** Price per generated token of `POST /v1/infer`, token units. */
export const INFER_PRICE_PER_TOKEN = "0.0001";
/** Most tokens one `POST /v1/infer` generates. */
export const INFER_MAX_TOKENS = 100;
/** Price per streamed token of `POST /v1/chat`, token units (10 atomic units of a 6-decimal token). */
export const CHAT_PRICE_PER_TOKEN = "0.00001";
/** The initial reservation of a chat stream and each top-up, token units: 1,000 tokens' worth (a 10,000-token answer needs 9 top-ups). */
export const CHAT_RESERVE = "0.01";
/** Most tokens one `POST /v1/chat` streams. */
export const CHAT_MAX_TOKENS = 20_000;
/** The top-up path the chat's payment events name. */
export const STREAM_VOUCHER_ROUTE = "/channel/streams/:id/voucher";

const WORDS = (
  "the a channel voucher agent pays small fast settle batch escrow token proof signed value request reply stream " +
  "model answer cheap quick safe open close deposit window floor spent accepted payee payer chain block time"
).split(" ");

/**
 * Deterministic text: word i is picked from keccak(prompt ‖ i); generation stops at `maxTokens` or when the hash
 * says so (about 1 in 24 after the 8th word), so different prompts cost different amounts.
 */
export function generate(prompt: string, maxTokens: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < maxTokens; i++) {
    const h = keccak_256(new TextEncoder().encode(`${prompt}\u0000${i}`));
    out.push(WORDS[h[0] % WORDS.length]);
    if (i >= 7 && h[1] % 24 === 0) break;
  }
  return out;
}

/** Word i of a chat answer to `prompt`: deterministic (keccak(prompt ‖ i)), never stopping early. */
export function chatToken(prompt: string, i: number): string {
  const h = keccak_256(new TextEncoder().encode(`${prompt}\u0000${i}`));
  return WORDS[h[0] % WORDS.length];
}

function bad(res: Response, detail: string) {
  res.status(400).setHeader("content-type", PROBLEM_CONTENT_TYPE);
  res.end(JSON.stringify(problem("bad_request", detail)));
}

/** Registers the demo routes. `bodyLimit` bounds the JSON body of /v1/infer. */
export function demoRoutes(app: Express, paywall: ExpressPaywall, opts: { bodyLimit?: number } = {}): void {
  const perToken = INFER_PRICE_PER_TOKEN;

  app.get(
    "/v1/echo",
    (req: Request, res: Response, next: NextFunction) => {
      const msg = req.query.msg;
      if (msg !== undefined && (typeof msg !== "string" || msg.length > 2000)) return bad(res, "msg must be one string of at most 2000 characters");
      next();
    },
    paywall.charge({ price: ECHO_PRICE, description: "Echoes msg back", mimeType: "application/json" }),
    (req: Request, res: Response) => {
      res.json({ echo: (req.query.msg as string | undefined) ?? "" });
    },
  );

  app.post(
    "/v1/infer",
    express.json({ limit: opts.bodyLimit ?? 64 * 1024, strict: true }),
    (req: Request, res: Response, next: NextFunction) => {
      const b = req.body as { prompt?: unknown; maxTokens?: unknown } | undefined;
      if (!b || typeof b !== "object" || typeof b.prompt !== "string" || b.prompt.length === 0 || b.prompt.length > 8000) {
        return bad(res, 'the body must be JSON { "prompt": "...", "maxTokens"?: 1..100 }');
      }
      if (b.maxTokens !== undefined && (!Number.isInteger(b.maxTokens) || (b.maxTokens as number) < 1 || (b.maxTokens as number) > INFER_MAX_TOKENS)) {
        return bad(res, `maxTokens must be an integer from 1 to ${INFER_MAX_TOKENS}`);
      }
      next();
    },
    paywall.meter({ max: scale(perToken, INFER_MAX_TOKENS), description: "Deterministic text generation, charged per output token" }),
    (req: Request, res: Response) => {
      const { prompt, maxTokens } = req.body as { prompt: string; maxTokens?: number };
      const tokens = generate(prompt, maxTokens ?? INFER_MAX_TOKENS);
      const payment = paymentOf(res)!;
      payment.charge((payment.reserved / BigInt(INFER_MAX_TOKENS)) * BigInt(tokens.length));
      res.json({ text: tokens.join(" "), tokens: tokens.length, charged: payment.amount.toString() });
    },
  );
}

/**
 * `POST /v1/chat` `{ "prompt": string, "max_tokens": 1..20000 }`: `text/event-stream`, one event per token
 * (`data: {"i":0,"t":"the"}`), each charged CHAT_PRICE_PER_TOKEN when written; the payment events come between them and
 * the receipt last. `POST /channel/streams/:id/voucher` takes the top-ups. Bad input is a 400 before any charge.
 */
export function chatRoutes(app: Express, paywall: ExpressPaywall, opts: { bodyLimit?: number } = {}): void {
  app.post(STREAM_VOUCHER_ROUTE, paywall.streamVoucherHandler());
  app.post(
    "/v1/chat",
    express.json({ limit: opts.bodyLimit ?? 64 * 1024, strict: true }),
    (req: Request, res: Response, next: NextFunction) => {
      const b = req.body as { prompt?: unknown; max_tokens?: unknown } | undefined;
      if (!b || typeof b !== "object" || Array.isArray(b) || typeof b.prompt !== "string" || b.prompt.length === 0 || b.prompt.length > 8000) {
        return bad(res, 'the body must be JSON { "prompt": "...", "max_tokens": 1..20000 }');
      }
      if (!Number.isInteger(b.max_tokens) || (b.max_tokens as number) < 1 || (b.max_tokens as number) > CHAT_MAX_TOKENS) {
        return bad(res, `max_tokens must be an integer from 1 to ${CHAT_MAX_TOKENS}`);
      }
      next();
    },
    paywall.stream(
      { unitPrice: CHAT_PRICE_PER_TOKEN, reserve: CHAT_RESERVE, topUp: CHAT_RESERVE, description: "Deterministic chat, streamed and charged per token", mimeType: "text/event-stream" },
      async (stream, req) => {
        const { prompt, max_tokens: n } = req.body as { prompt: string; max_tokens: number };
        for (let i = 0; i < n; i++) {
          await stream.send(JSON.stringify({ i, t: chatToken(prompt, i) }));
          // Let the event loop run (top-ups, other requests) as a model emitting tokens would.
          if (i % 32 === 31) await new Promise<void>((r) => setImmediate(r));
        }
      },
    ),
  );
}

/** `amount × n` for a token-unit decimal string, as a token-unit string. */
function scale(amount: string, n: number): string {
  const [w, f = ""] = amount.split(".");
  const digits = f.length;
  const v = (BigInt(w + f) * BigInt(n)).toString().padStart(digits + 1, "0");
  return digits === 0 ? v : `${v.slice(0, v.length - digits)}.${v.slice(v.length - digits)}`;
}
