/**
 * The `channel` command line (npm bin `channel`, run by bin/channel.js through dist/cli.js): parses the arguments,
 * prints the usage, and runs one command (one file each under commands/).
 *
 * Loading is lazy so that `--help`, usage errors and argument errors answer at once: this file imports only node:util
 * (args.ts) and usage.ts. A command's module is required when it is named, its chain-free checks run, then the key is
 * read, and only then setup.ts loads viem and the client. Lazy loading is a plain `require` inside a function: the
 * package compiles to CommonJS, where `import()` of a relative path would be a native ESM import (and fail without
 * the file extension).
 */
import { checkCommonOptions, parseArgv, type Opts } from "./args";
import type { Command, Context } from "./setup";
import { USAGE, UsageError, firstLine } from "./usage";

/** Each command's module, required only when the command runs. */
const COMMANDS: Record<string, () => Command<unknown>> = {
  call: () => (require("./commands/call") as typeof import("./commands/call")).call,
  status: () => (require("./commands/status") as typeof import("./commands/status")).status,
  open: () => (require("./commands/open") as typeof import("./commands/open")).open,
  "top-up": () => (require("./commands/top-up") as typeof import("./commands/top-up")).topUp,
  topup: () => (require("./commands/top-up") as typeof import("./commands/top-up")).topUp,
  close: () => (require("./commands/close") as typeof import("./commands/close")).close,
  withdraw: () => (require("./commands/withdraw") as typeof import("./commands/withdraw")).withdraw,
  collect: () => (require("./commands/collect") as typeof import("./commands/collect")).collect,
  address: () => (require("./commands/address") as typeof import("./commands/address")).address,
};

/** Runs the CLI with `argv` (without node and script); resolves to the exit code (0 ok, 1 failed, 2 usage). */
export async function main(argv: string[]): Promise<number> {
  const err = (s: string) => process.stderr.write(s + "\n");
  const usageError = (message: string) => {
    err(`channel: ${message}\nRun \`channel --help\` for usage.`);
    return 2;
  };
  let opts: Opts;
  let positionals: string[];
  try {
    ({ values: opts, positionals } = parseArgv(argv));
  } catch (e) {
    return usageError(firstLine(e));
  }
  const [command, ...args] = positionals;
  if (opts.help || !command || command === "help") {
    process.stdout.write(USAGE + "\n");
    return command || opts.help ? 0 : 2;
  }
  if (!Object.hasOwn(COMMANDS, command)) return usageError(`unknown command ${JSON.stringify(command)}`);
  let ctx: Context | undefined;
  try {
    const cmd = COMMANDS[command]();
    checkCommonOptions(opts);
    const input = cmd.parse(args, opts);
    const key = await (require("./key") as typeof import("./key")).requireKey(opts);
    const { setup } = require("./setup") as typeof import("./setup");
    ctx = await setup(opts, key, err);
    return await cmd.run(ctx, input, opts);
  } catch (e) {
    if (e instanceof UsageError) return usageError(e.message);
    report(e, opts, err);
    return 1;
  } finally {
    await ctx?.agent.flush().catch((e) => err(`channel: state not saved: ${shortMessageOf(e)}`));
  }
}

/** The client's error module, required only on a failure after setup (it imports @paychan/protocol, hence viem). */
const errors = () => require("../errors") as typeof import("../errors");

function shortMessageOf(e: unknown): string {
  return errors().shortMessageOf(e);
}

/** Prints a failure: `channel: <message> [code/serverCode]`, or `{"error": …}` with --json. */
function report(e: unknown, opts: Opts, err: (s: string) => void): void {
  const { ClientError } = errors();
  if (opts.json) {
    const { toJson } = require("./format") as typeof import("./format");
    const ce = e instanceof ClientError ? e : undefined;
    process.stdout.write(toJson({ error: { code: ce?.code ?? "error", message: ce?.shortMessage ?? shortMessageOf(e), details: ce?.details, serverCode: ce?.serverCode } }) + "\n");
  } else if (e instanceof ClientError) {
    err(`channel: ${e.shortMessage} [${e.code}${e.serverCode ? `/${e.serverCode}` : ""}]${e.details ? `\n  ${e.details}` : ""}`);
  } else {
    err(`channel: ${shortMessageOf(e)}`);
  }
}
