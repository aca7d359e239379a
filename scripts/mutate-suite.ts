/**
 * One mutant's test run, started by scripts/mutate.ts as `hardhat run --no-compile scripts/mutate-suite.ts` with the
 * mutant's HARDHAT_SOURCES / HARDHAT_ARTIFACTS / HARDHAT_CACHE. Runs Hardhat's `test` task on MUTATE_TEST_FILES
 * (JSON array) with mocha's bail, keeps the spec reporter's output, and writes the outcome to MUTATE_RESULT:
 * `{ passes, failures, firstFailure?: { title, file, error } }`. Not meant to be run by hand.
 */
import hre from "hardhat";
import { writeFileSync } from "node:fs";
import { relative } from "node:path";
import Mocha from "mocha";

interface Outcome {
  passes: number;
  failures: number;
  firstFailure?: { title: string; file?: string; error: string };
}

const files = JSON.parse(process.env.MUTATE_TEST_FILES ?? "[]") as string[];
const resultPath = process.env.MUTATE_RESULT;
if (files.length === 0 || !resultPath) throw new Error("mutate-suite: MUTATE_TEST_FILES and MUTATE_RESULT are required");

const outcome: Outcome = { passes: 0, failures: 0 };
const write = () => writeFileSync(resultPath, JSON.stringify(outcome, null, 2));

/** The spec reporter, also recording the first failure (a test or a hook) for the mutation report. */
class Recorder extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options: Mocha.MochaOptions) {
    super(runner, options);
    runner.on("pass", () => {
      outcome.passes++;
    });
    runner.on("fail", (test: Mocha.Runnable, err: Error) => {
      outcome.failures++;
      if (outcome.firstFailure) return;
      const message = String(err?.message ?? err).split("\n").find((l) => l.trim() !== "") ?? "";
      outcome.firstFailure = {
        title: test.fullTitle(),
        file: test.file ? relative(hre.config.paths.root, test.file) : undefined,
        error: message.trim().slice(0, 400),
      };
      write();
    });
    runner.once("end", write);
  }
}

async function main() {
  hre.config.mocha = { ...hre.config.mocha, reporter: Recorder as unknown as string, bail: true };
  write();
  const failures = (await hre.run("test", { testFiles: files, noCompile: true, bail: true })) as number;
  outcome.failures = Math.max(outcome.failures, failures);
  write();
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((err) => {
  outcome.failures = Math.max(outcome.failures, 1);
  outcome.firstFailure ??= { title: "(runner)", error: String(err?.stack ?? err).slice(0, 400) };
  write();
  process.exitCode = 2;
});
