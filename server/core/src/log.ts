/**
 * Structured logs (pino). Secrets never reach a log line: payment headers, signatures and keys are redacted by path,
 * and the server's own code logs ids and amounts only.
 */
import pino, { type Logger } from "pino";
import type { LogLevel } from "./config";

export type { Logger } from "pino";

const REDACT = [
  "signature",
  "*.signature",
  "privateKey",
  "*.privateKey",
  "key",
  "*.key",
  'headers["payment-signature"]',
  'req.headers["payment-signature"]',
  "headers.authorization",
  "req.headers.authorization",
];

/** The server's logger (JSON lines on stdout, or `destination` when given). */
export function createLogger(level: LogLevel = "info", destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { service: "channel-server" }, redact: { paths: REDACT, censor: "[redacted]" } }, destination);
}
