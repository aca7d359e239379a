/**
 * A settler process for crash tests: runs one settlement cycle against the database and chain named in its
 * environment and kills itself with SIGKILL at the step named by CRASH_AT (`built`, `broadcast`, `receipt`).
 * Started by test/server/settlement/crash.test.ts (TS_NODE_ARGS); imports no Hardhat code.
 */
import type { Address, Hex } from "viem";
import { createSettlement, resolveSettlementConfig, type SettlementStep } from "@paychan/server";
import { SqliteStore } from "@paychan/server";

async function main(): Promise<void> {
  const env = process.env;
  const store = new SqliteStore({ url: env.DATABASE_URL!, synchronous: "FULL" });
  const crashAt = env.CRASH_AT as SettlementStep | undefined;
  const { job } = createSettlement({
    config: { ...resolveSettlementConfig({}, Number(env.CHAIN_ID)), threshold: "0.000001", closeGrace: 0 },
    privateKey: env.SETTLER_KEY as Hex,
    rpcUrl: env.RPC_URL!,
    chainId: Number(env.CHAIN_ID),
    escrow: env.ESCROW as Address,
    token: env.TOKEN as Address,
    payee: env.PAYEE as Address,
    decimals: 6,
    store,
    holder: "child",
    pollInterval: 50,
    onStep: (step) => {
      if (step === crashAt) {
        process.stdout.write(`crashing at ${step}\n`);
        process.kill(process.pid, "SIGKILL");
      }
    },
  });
  const r = await job.runOnce({ wait: true, waitTimeoutMs: 20_000 });
  process.stdout.write(`done ${r.txs.length}\n`);
  await store.close();
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  });
}
