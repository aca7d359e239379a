/**
 * One process at a time per state directory (issue 17): a lock file `<dir>/lock` holding `{ pid, host, createdAt }`,
 * written whole to a temporary file and hard-linked into place (a link fails when the lock exists, as O_EXCL would). The process that created it holds it until it exits (removed by an `exit` handler;
 * `releaseDirLock` hands it over earlier); every FileStore of that process shares it. Another process waits for it
 * (polling, up to `timeoutMs`), then fails `store_locked`. A lock whose process is gone (same host, pid not alive) is
 * stale and taken over, under a second O_EXCL guard (`lock.break`) so two processes cannot both break it and each
 * delete the other's fresh lock. Also: the directory must be ours and not writable by others (`insecure_store`).
 */
import { constants as fsConstants, promises as fs, readFileSync, unlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ClientError } from "./errors";

export const LOCK_FILE = "lock";
/**
 * Prefix of the temporary files (`.lock.<pid>.<n>.tmp`) a process writes, then links into place as the lock, while
 * it waits for the lock: another process's cleanup must never remove them (file-store.ts).
 */
export const LOCK_TMP_PREFIX = `.${LOCK_FILE}.`;
const BREAK_FILE = "lock.break";
/** A `lock.break` older than this was left by a process that died while breaking a stale lock. */
const BREAK_STALE_MS = 10_000;

interface LockInfo {
  pid: number;
  host: string;
  createdAt: number;
}

let tmpCounter = 0;
/** Lock files this process created (removed at exit). */
const held = new Set<string>();
let exitHook = false;

function readLock(file: string): LockInfo | undefined {
  try {
    const j = JSON.parse(readFileSync(file, "utf8"));
    return typeof j?.pid === "number" ? { pid: j.pid, host: String(j.host ?? ""), createdAt: Number(j.createdAt ?? 0) } : undefined;
  } catch {
    return undefined; // absent, or being written
  }
}

/** Whether process `pid` is alive on this host (EPERM: alive, another user's). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Refuses (`insecure_store`) a file or directory that another user owns or that group or others may write: a
 * planted, world-writable state or session key would otherwise be used. No-op where there are no uids (Windows).
 */
export async function assertPrivate(p: string, what: string): Promise<void> {
  if (typeof process.getuid !== "function") return;
  let st;
  try {
    st = await fs.lstat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new ClientError("store_failure", `cannot inspect ${p}`, { cause: e });
  }
  if (st.isSymbolicLink()) st = await fs.stat(p).catch(() => st!);
  const uid = process.getuid();
  if (st.uid !== uid) {
    throw new ClientError("insecure_store", `${what} ${p} is owned by uid ${st.uid}, not by this user (uid ${uid})`, {
      details: "Use a state directory of your own (--state-dir / CHANNEL_STATE_DIR).",
    });
  }
  if ((st.mode & 0o022) !== 0) {
    throw new ClientError("insecure_store", `${what} ${p} may be written by others (mode ${(st.mode & 0o777).toString(8)})`, {
      details: `Remove group and other write access (chmod go-w ${p}) after checking its content, or use another state directory.`,
    });
  }
}

/** Takes over a stale lock (its process gone) unless someone else is doing it or it changed meanwhile. */
async function breakStale(dir: string, stale: LockInfo): Promise<void> {
  const guard = path.join(dir, BREAK_FILE);
  let h;
  try {
    h = await fs.open(guard, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    const st = await fs.stat(guard).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > BREAK_STALE_MS) await fs.rm(guard, { force: true });
    return; // someone else is breaking it: look again
  }
  try {
    const now = readLock(path.join(dir, LOCK_FILE));
    if (now && now.pid === stale.pid && now.createdAt === stale.createdAt) await fs.rm(path.join(dir, LOCK_FILE), { force: true });
  } finally {
    await h.close();
    await fs.rm(guard, { force: true });
  }
}

/**
 * Holds `dir`'s lock for this process (re-entrant: resolves at once when this process holds it). Waits up to
 * `timeoutMs` for another live process's lock, then throws `store_locked`.
 */
export async function acquireDirLock(dir: string, timeoutMs: number, onWait?: (holder: LockInfo) => void): Promise<void> {
  const file = path.join(dir, LOCK_FILE);
  const deadline = Date.now() + timeoutMs;
  let told = false;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const info: LockInfo = { pid: process.pid, host: os.hostname(), createdAt: Date.now() };
    // Written whole, then linked into place: the lock never exists empty (link fails when it exists).
    const tmp = path.join(dir, `${LOCK_TMP_PREFIX}${process.pid}.${++tmpCounter}.tmp`);
    let written = false;
    try {
      await fs.writeFile(tmp, JSON.stringify(info), { mode: 0o600, flag: "wx" });
      written = true;
      await fs.link(tmp, file);
      held.add(file);
      if (!exitHook) {
        exitHook = true;
        process.on("exit", releaseAllSync);
      }
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // EEXIST: the lock exists. ENOENT from the link: the temporary file was removed meanwhile (by another process):
      // look again (a directory that is gone fails the next write instead, a hard failure).
      if (code !== "EEXIST" && !(written && code === "ENOENT")) throw new ClientError("store_failure", `cannot create ${file}`, { cause: e });
    } finally {
      await fs.rm(tmp, { force: true });
    }
    const holder = readLock(file);
    if (holder?.pid === process.pid && holder.host === os.hostname()) return; // ours
    if (holder && holder.host === os.hostname() && !pidAlive(holder.pid)) {
      await breakStale(dir, holder);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new ClientError("store_locked", `the state directory ${dir} is in use by another process${holder ? ` (pid ${holder.pid} on ${holder.host})` : ""}`, {
        details: `One process at a time per state directory: wait for it, use another --state-dir, or remove ${file} if that process is gone.`,
      });
    }
    if (holder && !told) {
      told = true;
      onWait?.(holder);
    }
    await new Promise((r) => setTimeout(r, delay)); // a lock's holder is another process: poll for its release
  }
}

/** Releases `dir`'s lock when this process holds it (other FileStores of this process lose it too). */
export async function releaseDirLock(dir: string): Promise<void> {
  const file = path.join(dir, LOCK_FILE);
  if (!held.has(file)) return;
  held.delete(file);
  const holder = readLock(file);
  if (holder?.pid === process.pid) await fs.rm(file, { force: true });
}

function releaseAllSync(): void {
  for (const file of held) {
    try {
      if (readLock(file)?.pid === process.pid) unlinkSync(file);
    } catch {
      /* exiting anyway */
    }
  }
  held.clear();
}
