/**
 * Output helpers of the `channel` CLI: amounts, durations, percentiles, a progress bar on stderr, tables, JSON.
 * Loaded by the commands once they run (it imports @paychan/protocol, hence viem).
 */
import { formatTokenAmount } from "@paychan/protocol";

/** A token's display information. */
export interface TokenInfo {
  decimals: number;
  symbol: string;
}

/** `1.5 USDC` */
export function amount(value: bigint, token: TokenInfo): string {
  return `${formatTokenAmount(value, token.decimals)}${token.symbol ? ` ${token.symbol}` : ""}`;
}

/** `0xabcd…1234` */
export function shortHex(hex: string, keep = 6): string {
  return hex.length <= 2 + keep * 2 ? hex : `${hex.slice(0, 2 + keep)}…${hex.slice(-4)}`;
}

/** `2h 5m`, `45s` */
export function duration(seconds: number): string {
  if (seconds <= 0) return "now";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** The p-th percentile (0..100) of `sorted` (ascending), nearest rank. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** `3.12 ms` */
export function ms(v: number): string {
  return Number.isFinite(v) ? `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms` : "-";
}

/** A progress bar redrawn on stderr at most every 100 ms (only on a terminal). */
export class ProgressBar {
  private timer?: NodeJS.Timeout;
  private done = 0;
  private failed = 0;
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(private readonly total: number, private readonly label = "calls") {}

  start(): void {
    if (!this.tty) return;
    this.timer = setInterval(() => this.draw(), 100);
    this.timer.unref();
  }

  tick(ok: boolean): void {
    this.done++;
    if (!ok) this.failed++;
  }

  private draw(): void {
    const width = 30;
    const filled = Math.round((this.done / this.total) * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const fail = this.failed ? `, ${this.failed} failed` : "";
    process.stderr.write(`\r${bar} ${this.done}/${this.total} ${this.label}${fail}`);
  }

  stop(): void {
    if (!this.tty) return;
    if (this.timer) clearInterval(this.timer);
    this.draw();
    process.stderr.write("\n");
  }
}

/** Left-aligned columns. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return "";
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ")).join("\n");
}

/** JSON with bigints as decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2);
}
