/**
 * Settlement (issue 5): batch-settle the latest vouchers on a schedule, close cooperatively on request, record every
 * transaction's lifecycle, never lose or double-count a voucher. See docs/protocol.md ("Settlement").
 *
 * ```ts
 * const { job } = createSettlement({ config, privateKey, rpcUrl, chainId, escrow, token, payee, decimals, store });
 * await job.preflight();                       // the key may settle for the payee
 * const report = await job.runOnce({ wait: true });
 * ```
 * In the server: {@link SettlementScheduler} runs `runOnce` every SETTLE_INTERVAL. One-shot, for cron: the package's
 * `channel-settle` command (`runSettleCommand`, `src/cli/settle.ts`); in this repository `npm run settle`.
 */
export * from "./config";
export * from "./safety";
export * from "./policy";
export * from "./batch";
export * from "./receipt";
export * from "./claims";
export * from "./chain";
export * from "./job-options";
export * from "./report";
export * from "./job";
export * from "./scheduler";
export * from "./metrics";
export * from "./key";
export * from "./store";
export * from "./create";
