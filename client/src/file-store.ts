/**
 * The default store: two JSON files under a directory (default `.channel/`), written atomically
 * (temporary file, fsync, rename, fsync of the directory) so a crash leaves the old file or the new one.
 * - `state.json`: channels, amounts signed, last receipts, route terms.
 * - `session-key.json`: the voucher-signing session key (mode 0600), kept apart so deleting the state keeps the
 *   key, and the client can recover its channels from the chain and the provider.
 */
import { promises as fs, constants as fsConstants } from "node:fs";
import path from "node:path";
import { getAddress, isHex, type Hex } from "viem";
import { privateKeyToAddress } from "viem/accounts";
import { ClientError } from "./errors";
import { stateFromJson, stateToJson, type ChannelStore, type ClientState, type SessionKeyRecord } from "./store";

export const STATE_FILE = "state.json";
export const SESSION_KEY_FILE = "session-key.json";

let tmpCounter = 0;

/** Writes `data` to `file` atomically and durably, with the given mode. */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
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
    await fs.rename(tmp, file);
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

/** The default {@link ChannelStore}: JSON files with atomic writes under `dir`. */
export class FileStore implements ChannelStore {
  readonly dir: string;
  private ready?: Promise<void>;

  constructor(dir = ".channel") {
    this.dir = path.resolve(dir);
  }

  get statePath(): string {
    return path.join(this.dir, STATE_FILE);
  }
  get sessionKeyPath(): string {
    return path.join(this.dir, SESSION_KEY_FILE);
  }

  private ensureDir(): Promise<void> {
    this.ready ??= (async () => {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      // Temporary files of a write that crashed before its rename are garbage.
      for (const name of await fs.readdir(this.dir)) {
        if (name.startsWith(".") && name.endsWith(".tmp")) await fs.rm(path.join(this.dir, name), { force: true });
      }
    })().catch((cause) => {
      this.ready = undefined;
      throw new ClientError("store_failure", `cannot create the state directory ${this.dir}`, { cause });
    });
    return this.ready;
  }

  async load(): Promise<ClientState | undefined> {
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

  async saveSessionKey(key: SessionKeyRecord): Promise<void> {
    await this.ensureDir();
    try {
      await writeFileAtomic(this.sessionKeyPath, JSON.stringify(key, null, 1) + "\n", 0o600);
    } catch (cause) {
      throw new ClientError("store_failure", `cannot write ${this.sessionKeyPath}`, { cause });
    }
  }
}
