/**
 * `npm run gas`: gas used by every escrow function on the in-process Hardhat chain, with `settle` batches of
 * 1, 10 and 100 channels and the marginal gas per channel. The session keys and salts are fixed (test/helpers/gas.ts),
 * so the calldata, hence every figure, is the same on every run and changes only with the contract; the figures are
 * compared with
 * the committed snapshot `test/gas-snapshot.json` by test/contracts/gas.test.ts (fails on > 2% growth).
 * `npm run gas:write` (`GAS_WRITE=1 hardhat run scripts/gas.ts`) updates the snapshot. `hardhat run` rejects
 * unknown flags (HH305), so `--write` only works when the script runs without the Hardhat CLI
 * (e.g. `npx ts-node scripts/gas.ts --write`); the environment variable works everywhere.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { measureGas } from "../test/helpers/gas";

async function main() {
  const figures = await measureGas();
  const rows = Object.entries(figures).map(([k, v]) => ({ operation: k, gas: v }));
  console.table(rows);
  if (process.argv.includes("--write") || process.env.GAS_WRITE === "1") {
    const p = join(__dirname, "..", "test", "gas-snapshot.json");
    writeFileSync(p, JSON.stringify(figures, null, 2) + "\n");
    console.log(`wrote ${p}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
