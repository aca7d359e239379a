/**
 * The `channel` CLI (client/bin/channel.js) as a child process, and the set-up its tests share: a chain snapshot, a
 * real test server, a payer holding MockUSDC, and a temporary directory, undone afterwards.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Hex } from "viem";
import { startTestServer, type TestServer } from "./server";
import { chainClients, mintUsdc } from "./client";
import { snapshot, revertTo } from "./chain";
import { REPO_ROOT, compiledEnv } from "./process";

/** The CLI's entry point. */
export const CHANNEL_BIN = path.join(REPO_ROOT, "client", "bin", "channel.js");

/** How a CLI run ended. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `channel <args>` with the compiled packages, `env` on top of this process's, in `cwd`; never rejects. */
export function runChannel(args: string[], env: Record<string, string>, cwd: string, o: { nodeArgs?: string[]; timeoutMs?: number } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...(o.nodeArgs ?? []), CHANNEL_BIN, ...args],
      { env: { ...compiledEnv(), ...env }, cwd, timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** What {@link openCliFixture} set up. */
export interface CliFixture {
  srv: TestServer;
  /** A fresh temporary directory (the CLI's working directory). */
  cwd: string;
  /** The CLI's environment: the payer's key, the RPC URL, and what `env` added. */
  env: Record<string, string>;
  snap: string;
}

/**
 * Snapshots the chain, starts a test server, mints `mint` MockUSDC units to hardhat account `payer` and makes a
 * temporary directory (`prefix`); `env(cwd)` adds to the CLI's environment. Undo with {@link closeCliFixture}.
 */
export async function openCliFixture(o: { payer: number; mint: bigint; prefix: string; env: (cwd: string) => Record<string, string> }): Promise<CliFixture> {
  const snap = await snapshot();
  let srv: TestServer | undefined;
  try {
    srv = await startTestServer();
    const payer = chainClients(o.payer);
    await mintUsdc(srv.token, payer.address, o.mint);
    const cwd = await fs.mkdtemp(path.join(os.tmpdir(), o.prefix));
    return { srv, cwd, snap, env: { CHANNEL_PRIVATE_KEY: payer.key as Hex, RPC_URL: srv.rpcUrl, ...o.env(cwd) } };
  } catch (e) {
    // Undo what was set up, so that a failed set-up leaves the chain as it found it.
    await srv?.close();
    await revertTo(snap);
    throw e;
  }
}

/** Stops the server, reverts the chain and removes the directory (whatever of it was set up). */
export async function closeCliFixture(fx: CliFixture | undefined): Promise<void> {
  if (!fx) return;
  await fx.srv.close();
  await revertTo(fx.snap);
  await fs.rm(fx.cwd, { recursive: true, force: true });
}
