/**
 * What the settle command prints: its `--help` text and the summary of a run (the report itself is printed as JSON
 * with `--json`).
 */
import type { Address } from "viem";
import { formatTokenAmount } from "@paychan/protocol";
import { CONFIG_VARIABLES } from "../config";
import { SETTLEMENT_VARIABLES, type SettlementRunReport } from "../settlement";

/** The server variables the settle command reads (besides every SETTLE_* variable and SETTLER_PRIVATE_KEY). */
export const SETTLE_COMMAND_SERVER_VARIABLES: readonly string[] = [
  "RPC_URL",
  "CHAIN_ID",
  "ESCROW_ADDRESS",
  "TOKEN_ADDRESS",
  "PAYEE_ADDRESS",
  "DEPLOYMENTS_FILE",
  "DATABASE_URL",
  "MIN_CLOSE_DELAY",
  "CHAIN_POLL_INTERVAL",
  "CONFIRMATIONS",
  "RPC_TIMEOUT",
  "LOG_LEVEL",
];

/**
 * The `--help` text: `usageLine`, the flags, the exit codes, and every variable read with its default
 * (`defaultsShown` overrides the documented default of a variable, e.g. "(required)" where the command has none).
 */
export function settleUsage(usageLine: string, defaultsShown: Readonly<Record<string, string>> = {}): string {
  const vars = [...CONFIG_VARIABLES.filter((v) => SETTLE_COMMAND_SERVER_VARIABLES.includes(v.name)), ...SETTLEMENT_VARIABLES];
  const w = Math.max(...vars.map((v) => v.name.length));
  return [
    usageLine,
    "",
    "  --all      settle every channel that owes anything (default: what the policy selects)",
    "  --dry-run  show what would be settled or closed; send nothing",
    "  --json     print the report as JSON",
    "",
    "exit: 0 done, 1 something failed, 2 configuration problem, 3 confirmations still pending (run again)",
    "",
    ...vars.map((v) => `  ${v.name.padEnd(w)}  ${v.description} [default: ${defaultsShown[v.name] ?? v.default}]`),
  ].join("\n");
}

const n = (v: bigint | number) => BigInt(v).toLocaleString("en-US");

/** Who settled what, for the summary's first line. */
export interface SettleSummaryContext {
  decimals: number;
  chainId: number;
  escrow: Address;
  payee: Address;
  settler: Address;
  /** Where the settler key came from (safe to print: never the key). */
  source: string;
  dryRun: boolean;
}

/** The human summary of a run: selection, the plan (dry run) or each transaction, totals, failures. */
export function settleSummary(r: SettlementRunReport, o: SettleSummaryContext): string {
  const lines: string[] = [];
  lines.push(`chain ${o.chainId}, escrow ${o.escrow}, payee ${o.payee}, settler ${o.settler} (${o.source})`);
  const sel = Object.entries(r.selected);
  const total = sel.reduce((a, [, v]) => a + (v ?? 0), 0);
  lines.push(`selected: ${total} channel${total === 1 ? "" : "s"}${sel.length ? ` (${sel.map(([k, v]) => `${k} ${v}`).join(", ")})` : ""}`);
  if (o.dryRun) {
    for (const p of r.plan) lines.push(`  would ${p.action} ${p.channelId}  ${formatTokenAmount(p.amount > 0n ? p.amount : 0n, o.decimals)}  (${p.reason})`);
    return lines.join("\n");
  }
  if (r.txs.length) lines.push("transactions:");
  for (const t of r.txs) {
    const gas = t.gasUsed === null ? "-" : n(t.gasUsed);
    lines.push(
      `  #${t.id} ${t.kind.padEnd(6)} ${t.status.padEnd(9)} ${t.hash}  nonce ${t.nonce}  channels ${t.settled}/${t.channels}  amount ${formatTokenAmount(t.amount, o.decimals)}  gas ${gas}${t.error ? `  (${t.error})` : ""}`,
    );
    for (const s of t.skipped) lines.push(`      skipped ${s.channelId}: ${s.reason}`);
  }
  const perChannel = r.gasPerChannel === null ? "" : ` (${n(r.gasPerChannel)} gas per settled channel)`;
  lines.push(
    `settled ${r.channelsSettled} channel${r.channelsSettled === 1 ? "" : "s"}, closed ${r.channelsClosed}, amount ${formatTokenAmount(r.amountSettled, o.decimals)}, gas used ${n(r.gasUsed)}${perChannel}`,
  );
  for (const f of r.closeFallbacks) {
    lines.push(`close of ${f.channelId} would revert (${f.error}): settled what it owes instead (${formatTokenAmount(f.amount, o.decimals)})`);
  }
  if (r.amountDeferred > 0n) {
    lines.push(`deferred: ${formatTokenAmount(r.amountDeferred, o.decimals)} could not be transferred to the payee and is owed to it by the escrow (the payee takes it with collect(token, to))`);
  }
  if (r.pending) lines.push(`pending: ${r.pending} transaction${r.pending === 1 ? "" : "s"} not yet confirmed${r.timedOut ? " (timed out waiting; run again)" : ""}`);
  lines.push(r.failures.length ? `failures:\n${r.failures.map((f) => `  - ${f}`).join("\n")}` : "failures: none");
  return lines.join("\n");
}
