/**
 * The default store: two JSON files under a directory (default `.channel/`), written atomically
 * (temporary file, fsync, rename, fsync of the directory) so a crash leaves the old file or the new one.
 * - `state.json`: channels, amounts signed, last receipts, route terms.
 * - `session-key.json`: the voucher-signing session key (mode 0600), kept apart so deleting the state keeps the
 *   key, and the client can recover its channels from the chain and the provider. Created once, never overwritten.
 * - `lock`: one process at a time (dir-lock.ts): taken on first use, held until the process exits; another process
 *   waits for it (`lockTimeoutMs`), then fails `store_locked`. Temporary files are only ever removed by the holder,
 *   and only when abandoned (their process gone, or older than {@link TMP_ABANDONED_MS}); never its own process's
 *   (another FileStore of the same process may be writing them), nor the lock's own (a waiting process's).
 * A directory or file owned by another user, or writable by group or others, is refused (`insecure_store`).
 */
import { promises as fs, constants as fsConstants } from "node:fs";
import path from "node:path";
import { getAddress, isHex, type Hex } from "viem";
import { privateKeyToAddress } from "viem/accounts";
import { LOCK_TMP_PREFIX, acquireDirLock, assertPrivate, pidAlive, releaseDirLock } from "./dir-lock";
import { ClientError } from "./errors";
import { stateFromJson, stateToJson, type ChannelStore, type ClientState, type SessionKeyRecord } from "./store";

export const STATE_FILE = "state.json";
export const SESSION_KEY_FILE = "session-key.json";

let tmpCounter = 0;

/**
 * Writes `data` to `file` atomically and durably, with the given mode. With `exclusive`, the file must not exist yet
 * (hard link instead of rename: fails with EEXIST rather than replace it).
 */
export async function writeFileAtomic(file: string, data: string, mode = 0o600, exclusive = false): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${++tmpCounter}.tmp`);
  const handle = await fs.open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  try {
    await handle.writeFile(data, "utf8");
    await handle.sync();
  } catch (e) {
    await handle.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw e;
  }
  await handle.close();
  try {
    if (exclusive) {
      await fs.link(tmp, file);
      await fs.rm(tmp, { force: true });
    } else await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
  // Make the rename itself durable.
  const d = await fs.open(dir, fsConstants.O_RDONLY).catch(() => null);
  if (d) {
    await d.sync().catch(() => {}); // some filesystems refuse fsync on directories
    await d.close();
  }
}

async function readJson(file: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ClientError("store_failure", `cannot read ${file}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new ClientError("store_failure", `${file} is not valid JSON`, {
      details: "Fix or move the file; it is never overwritten while unreadable.",
      cause,
    });
  }
}

/** A temporary file this old is abandoned whoever wrote it (a write takes milliseconds between creation and rename). */
export const TMP_ABANDONED_MS = 10_000;

/**
 * Removes the temporary files of writes that never finished (`.<file>.<pid>.<n>.tmp`), once this process holds the
 * lock: those of a process that is gone, or older than {@link TMP_ABANDONED_MS}. Never this process's own (another
 * FileStore of it may be writing), nor a lock's temporary file (`.lock.<pid>.<n>.tmp`: a process waiting for the
 * lock writes one just before linking it into place, and its link would fail).
 */
async function removeAbandonedTemps(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) {
    if (!name.startsWith(".") || !name.endsWith(".tmp") || name.startsWith(LOCK_TMP_PREFIX)) continue;
    const pid = Number(/\.(\d+)\.\d+\.tmp$/.exec(name)?.[1] ?? NaN);
    if (pid === process.pid) continue;
    const file = path.join(dir, name);
    let abandoned = Number.isSafeInteger(pid) && !pidAlive(pid);
    if (!abandoned) {
      const st = await fs.lstat(file).catch(() => undefined);
      abandoned = st !== undefined && Date.now() - st.mtimeMs > TMP_ABANDONED_MS;
    }
    if (abandoned) await fs.rm(file, { force: true });
  }
}

/** Options of a {@link FileStore}. */
export interface FileStoreOptions {
  /** How long to wait for another process's lock of the directory (ms). Default 60,000. */
  lockTimeoutMs?: number;
  /** Called once when the lock is held by another process and this one starts waiting. */
  onLockWait?: (holder: { pid: number; host: string }) => void;
}

/** The default {@link ChannelStore}: JSON files with atomic writes under `dir`, one process at a time. */
export class FileStore implements ChannelStore {
  readonly dir: string;
  private ready?: Promise<void>;

  constructor(
    dir = ".channel",
    private readonly options: FileStoreOptions = {},
  ) {
    this.dir = path.resolve(dir);
  }

  get statePath(): string {
    return path.join(this.dir, STATE_FILE);
  }
  get sessionKeyPath(): string {
    return path.join(this.dir, SESSION_KEY_FILE);
  }

  /** Creates the directory, checks it is private, takes its lock, and removes other processes' temporary files. */
  private ensureDir(): Promise<void> {
    this.ready ??= (async () => {
      try {
        await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      } catch (cause) {
        throw new ClientError("store_failure", `cannot create the state directory ${this.dir}`, { cause });
      }
      await assertPrivate(this.dir, "the state directory");
      await acquireDirLock(this.dir, this.options.lockTimeoutMs ?? 60_000, this.options.onLockWait);
      await removeAbandonedTemps(this.dir);
    })().catch((e) => {
      this.ready = undefined;
      throw e instanceof ClientError ? e : new ClientError("store_failure", `cannot prepare the state directory ${this.dir}`, { cause: e });
    });
    return this.ready;
  }

  /** Hands the directory's lock over before this process exits (every FileStore of this process on `dir` loses it). */
  async release(): Promise<void> {
    this.ready = undefined;
    await releaseDirLock(this.dir);
  }

  async load(): Promise<ClientState | undefined> {
    await this.ensureDir();
    await assertPrivate(this.statePath, "the state file");
    const j = await readJson(this.statePath);
    return j === undefined ? undefined : stateFromJson(j);
  }

  async save(state: ClientState): Promise<void> {
    const text = JSON.stringify(stateToJson(state), null, 1); // serialised now: later mutations cannot tear it
    await this.ensureDir();
    try {
      await writeFileAtomic(this.statePath, text);
    } catch (cause) {
      throw new ClientError("store_failure", `cannot write ${this.statePath}`, { cause });
    }
  }

  async loadSessionKey(): Promise<SessionKeyRecord | undefined> {
    await this.ensureDir();
    await assertPrivate(this.sessionKeyPath, "the session key file");
    const j = (await readJson(this.sessionKeyPath)) as Partial<SessionKeyRecord> | undefined;
    if (j === undefined) return undefined;
    if (typeof j.privateKey !== "string" || !isHex(j.privateKey) || j.privateKey.length !== 66) {
      throw new ClientError("store_failure", `${this.sessionKeyPath} does not hold a private key`);
    }
    const address = privateKeyToAddress(j.privateKey as Hex);
    if (j.address && getAddress(j.address) !== address) {
      throw new ClientError("store_failure", `${this.sessionKeyPath}: the address does not match the key`);
    }
    return { privateKey: j.privateKey as Hex, address, createdAt: Number(j.createdAt ?? 0) };
  }

  /** Saves the session key; never replaces an existing one (`store_failure`: a key is never lost). */
  async saveSessionKey(key: SessionKeyRecord): Promise<void> {
    await this.ensureDir();
    try {
      await writeFileAtomic(this.sessionKeyPath, JSON.stringify(key, null, 1) + "\n", 0o600, true);
    } catch (cause) {
      const exists = (cause as NodeJS.ErrnoException).code === "EEXIST";
      throw new ClientError("store_failure", exists ? `${this.sessionKeyPath} already exists; it is never replaced` : `cannot write ${this.sessionKeyPath}`, { cause });
    }
  }
}
