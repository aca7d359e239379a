/**
 * Demo routes of `npm start`: a fixed-price echo and a metered "inference" (a small deterministic text generator
 * charging per output token). Inputs are validated BEFORE the paywall, so bad input is never charged.
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

/** `amount × n` for a token-unit decimal string, as a token-unit string. */
function scale(amount: string, n: number): string {
  const [w, f = ""] = amount.split(".");
  const digits = f.length;
  const v = (BigInt(w + f) * BigInt(n)).toString().padStart(digits + 1, "0");
  return digits === 0 ? v : `${v.slice(0, v.length - digits)}.${v.slice(v.length - digits)}`;
}
