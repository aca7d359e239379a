/**
 * A real PostgreSQL for tests (and benchmarks), without any setup:
 *
 * - `TEST_DATABASE_URL=postgres://...` given: that server is used; every test database is a fresh schema in it
 *   (dropped at the end), so the URL's role only needs `CREATE` on its database.
 * - else, when PostgreSQL's binaries are installed (`PG_BIN_DIR`, else on PATH, else Debian's
 *   `/usr/lib/postgresql/<v>/bin`, newest version first): a throwaway server is started once per test process:
 *   `initdb` into a temporary directory, `postgres` on 127.0.0.1 and a free port (Unix socket in the same
 *   directory), stopped and deleted when the process ends.
 *   PostgreSQL refuses to run as root, so as root it runs as the `postgres` system user (or `nobody`) through
 *   `runuser`/`su`, with the directory chowned to it.
 * - neither: {@link describePostgres} suites are skipped, with ONE line saying how to enable them; under
 *   `CI=true` they FAIL instead (CI must never pass by skipping them).
 *
 * ```ts
 * describePostgres("my PostgreSQL tests", function () {
 *   let url: string;
 *   before(async () => { url = await newTestDatabase(); });   // postgres://...?options=-c search_path=...
 * });
 * ```
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";

/** The line printed when PostgreSQL tests are skipped. */
export const POSTGRES_SKIP_LINE =
  "PostgreSQL tests skipped: no PostgreSQL found. Install it (apt-get install postgresql, or any initdb/postgres on PATH) or set TEST_DATABASE_URL=postgres://user:pass@host/db";

/** Where PostgreSQL's server binaries are (`initdb`, `postgres`, `pg_ctl`), or null. */
export function findPostgresBinDir(): string | null {
  const has = (dir: string) => ["initdb", "postgres", "pg_ctl"].every((b) => isExecutable(path.join(dir, b)));
  // PG_BIN_DIR, when set, is the only place looked at (a wrong one means "not installed").
  if (process.env.PG_BIN_DIR) return has(process.env.PG_BIN_DIR) ? process.env.PG_BIN_DIR : null;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir || !has(dir)) continue;
    // Debian's /usr/bin/pg_ctl* wrappers need a cluster; resolve symlinks to the real bindir when possible.
    try {
      return path.dirname(fs.realpathSync(path.join(dir, "postgres")));
    } catch {
      return dir;
    }
  }
  // Debian/Ubuntu keep them off PATH: /usr/lib/postgresql/<version>/bin. Take the newest.
  const root = "/usr/lib/postgresql";
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(root).filter((v) => /^[0-9]+(\.[0-9]+)?$/.test(v));
  } catch {
    versions = [];
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (has(path.join(root, v, "bin"))) return path.join(root, v, "bin");
  return null;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Whether PostgreSQL tests can run here, and how. */
export function postgresStatus(): { available: true; how: "external" | "throwaway"; binDir?: string } | { available: false } {
  if (process.env.TEST_DATABASE_URL) return { available: true, how: "external" };
  const binDir = findPostgresBinDir();
  return binDir ? { available: true, how: "throwaway", binDir } : { available: false };
}

/** Whether `CI` is set to a true value: skipping PostgreSQL tests is then a failure. */
export function isCI(): boolean {
  const v = (process.env.CI ?? "").toLowerCase();
  return v !== "" && v !== "0" && v !== "false";
}

// ---------------------------------------------------------------------------------------------------------------
// Throwaway server

export interface ThrowawayPostgresOptions {
  /**
   * fsync WAL and data files (default false: a test server's data only has to survive process crashes, which
   * PostgreSQL guarantees without fsync; benchmarks pass true to measure real commit costs).
   */
  fsync?: boolean;
  maxConnections?: number;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>;
}

/** A PostgreSQL server in a temporary directory; {@link stop} deletes everything. */
export interface ThrowawayPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication on loopback). */
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** How to run a PostgreSQL binary: directly, or (as root) as an unprivileged user. */
function runAs(): { user: string; uid: number; gid: number } | null {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return null;
  for (const user of ["postgres", "nobody"]) {
    const r = spawnSync("id", ["-u", user], { encoding: "utf8" });
    const g = spawnSync("id", ["-g", user], { encoding: "utf8" });
    if (r.status === 0 && g.status === 0) return { user, uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  }
  throw new Error("running as root and there is neither a `postgres` nor a `nobody` user to run PostgreSQL as");
}

function command(bin: string, args: string[], as: { user: string } | null): [string, string[]] {
  if (!as) return [bin, args];
  if (isExecutable("/usr/sbin/runuser") || isExecutable("/sbin/runuser") || isExecutable("/usr/bin/runuser")) {
    return ["runuser", ["-u", as.user, "--", bin, ...args]];
  }
  const quoted = [bin, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  return ["su", ["-s", "/bin/sh", as.user, "-c", quoted]];
}

function runSync(bin: string, args: string[], as: { user: string } | null, cwd: string): void {
  const [cmd, argv] = command(bin, args, as);
  const r = spawnSync(cmd, argv, { cwd, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${path.basename(bin)} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || String(r.error ?? "")).trim()}`);
}

/**
 * Starts a PostgreSQL server in a new temporary directory on 127.0.0.1 and a free port; resolves once it accepts
 * connections. Needs the server binaries ({@link findPostgresBinDir}).
 */
export async function startThrowawayPostgres(opts: ThrowawayPostgresOptions = {}): Promise<ThrowawayPostgres> {
  const binDir = findPostgresBinDir();
  if (!binDir) throw new Error(POSTGRES_SKIP_LINE);
  const as = runAs();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-pg-"));
  const data = path.join(dir, "data");
  const sock = path.join(dir, "sock");
  fs.mkdirSync(sock);
  if (as) {
    fs.chownSync(dir, as.uid, as.gid);
    fs.chownSync(sock, as.uid, as.gid);
  }
  fs.chmodSync(dir, 0o700);
  let child: ChildProcess | null = null;
  try {
    runSync(path.join(binDir, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"], as, dir);
    const settings: Record<string, string | number> = {
      listen_addresses: "127.0.0.1",
      unix_socket_directories: sock,
      max_connections: opts.maxConnections ?? 200,
      shared_buffers: "64MB",
      fsync: opts.fsync ? "on" : "off",
      full_page_writes: opts.fsync ? "on" : "off",
      logging_collector: "off",
      log_min_messages: "warning",
      ...opts.settings,
    };
    let lastError = "";
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const args = ["-D", data, "-p", String(port), ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
      const [cmd, argv] = command(path.join(binDir, "postgres"), args, as);
      let log = "";
      child = spawn(cmd, argv, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout?.on("data", (b: Buffer) => (log = (log + b.toString()).slice(-4000)));
      child.stderr?.on("data", (b: Buffer) => (log = (log + b.toString()).slice(-4000)));
      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
      let up = false;
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const done = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 100))]);
        if (done) break;
        const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
        try {
          await c.connect();
          await c.query("SELECT 1");
          up = true;
          break;
        } catch {
          // not yet
        } finally {
          await c.end().catch(() => undefined);
        }
      }
      if (up) {
        const server = child;
        const stop = makeStopper(server, binDir, data, dir, as);
        return { url, port, dir, stop };
      }
      lastError = log.trim();
      killPostgres(data, child);
      await exited;
      child = null;
      if (!/could not bind|Address already in use/i.test(lastError)) break;
    }
    throw new Error(`PostgreSQL did not start: ${lastError.split("\n").slice(-5).join(" | ")}`);
  } catch (e) {
    if (child) killPostgres(data, child);
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Immediate shutdown: the postmaster itself (behind runuser/su the child is only the wrapper), then the wrapper. */
function killPostgres(data: string, child: ChildProcess): void {
  const pid = postmasterPid(data);
  if (pid) {
    try {
      process.kill(pid, "SIGQUIT");
    } catch {
      // already gone
    }
  }
  child.kill("SIGKILL");
}

function postmasterPid(data: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function makeStopper(child: ChildProcess, binDir: string, data: string, dir: string, as: { user: string } | null) {
  let stopped: Promise<void> | null = null;
  // If the test process exits without calling stop(), still stop the server and delete its files (synchronously).
  const onExit = () => {
    killPostgres(data, child);
    try {
      const [cmd, argv] = command(path.join(binDir, "pg_ctl"), ["status", "-D", data], as);
      for (let i = 0; i < 50 && spawnSync(cmd, argv).status === 0; i++) spawnSync("sleep", ["0.1"]);
    } catch {
      // best effort
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  return () =>
    (stopped ??= (async () => {
      process.removeListener("exit", onExit);
      const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => child.once("exit", () => r()));
      const pid = postmasterPid(data);
      // SIGINT = "fast" shutdown: roll back open transactions, disconnect clients, checkpoint, exit.
      if (pid) {
        try {
          process.kill(pid, "SIGINT");
        } catch {
          // already gone
        }
      } else child.kill("SIGINT");
      const timer = setTimeout(() => killPostgres(data, child), 10_000);
      await exited;
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
    })());
}

// ---------------------------------------------------------------------------------------------------------------
// Test databases (one schema each) on the process-wide server

interface TestPostgres {
  /** URL of the server's admin database. */
  baseUrl: string;
  external: boolean;
  schemas: string[];
  stop(): Promise<void>;
}

let shared: Promise<TestPostgres> | null = null;
let schemaCounter = 0;

/** The process-wide PostgreSQL for tests: TEST_DATABASE_URL, or a throwaway server started on first use. */
export function testPostgres(): Promise<TestPostgres> {
  shared ??= (async (): Promise<TestPostgres> => {
    const external = process.env.TEST_DATABASE_URL;
    if (external) {
      const c = new pg.Client({ connectionString: external, connectionTimeoutMillis: 10_000 });
      try {
        await c.connect();
        await c.query("SELECT 1");
      } catch (e) {
        throw new Error(`TEST_DATABASE_URL is set but unusable: ${(e as Error).message}`);
      } finally {
        await c.end().catch(() => undefined);
      }
      const t: TestPostgres = {
        baseUrl: external,
        external: true,
        schemas: [],
        async stop() {
          if (!t.schemas.length) return;
          const c2 = new pg.Client({ connectionString: external });
          await c2.connect();
          try {
            for (const s of t.schemas.splice(0)) await c2.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
          } finally {
            await c2.end();
          }
        },
      };
      return t;
    }
    const server = await startThrowawayPostgres();
    return { baseUrl: server.url, external: false, schemas: [], stop: () => server.stop() };
  })();
  return shared;
}

/** Appends `-c search_path=<schema>` to a connection URL's `options`. */
export function withSearchPath(url: string, schema: string): string {
  const u = new URL(url);
  const options = [u.searchParams.get("options"), `-c search_path=${schema}`].filter(Boolean).join(" ");
  u.searchParams.set("options", options);
  return u.toString();
}

/**
 * A new, empty database for one test (a fresh schema on the test server; its URL selects it through
 * `options=-c search_path=...`). Everything is removed when the test process ends.
 */
export async function newTestDatabase(label = "t"): Promise<string> {
  const t = await testPostgres();
  const schema = `${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase().slice(0, 20)}_${process.pid}_${++schemaCounter}`;
  const c = new pg.Client({ connectionString: t.baseUrl });
  await c.connect();
  try {
    await c.query(`CREATE SCHEMA "${schema}"`);
  } finally {
    await c.end();
  }
  t.schemas.push(schema);
  return withSearchPath(t.baseUrl, schema);
}

/** Stops the process-wide test server (or drops the schemas made on TEST_DATABASE_URL). Runs after all tests. */
export async function stopTestPostgres(): Promise<void> {
  const s = shared;
  shared = null;
  if (s) await (await s.catch(() => null))?.stop();
}

let skipped = 0;

/**
 * `describe` for suites that need PostgreSQL: runs them when {@link postgresStatus} finds one; otherwise skips
 * them with one line of explanation, or, under `CI=true`, fails (a skipped PostgreSQL test is a CI failure).
 */
export function describePostgres(title: string, fn: (this: Mocha.Suite) => void): void {
  const status = postgresStatus();
  if (status.available) {
    describe(title, fn);
    return;
  }
  if (isCI()) {
    describe(title, () => {
      it("needs PostgreSQL (CI=true forbids skipping)", () => {
        throw new Error(`CI=true and no PostgreSQL: a skipped PostgreSQL test is a failure. ${POSTGRES_SKIP_LINE.replace(/^.*?found\. /, "")}`);
      });
    });
    return;
  }
  skipped++;
  describe.skip(title, fn);
}

// Root hooks (this file is loaded by mocha like every file under test/): stop the shared server after all tests,
// and say once why PostgreSQL suites were skipped.
if (typeof after === "function") {
  after(async function () {
    this.timeout(30_000);
    await stopTestPostgres();
    if (skipped > 0) console.log(`\n  ${POSTGRES_SKIP_LINE}`);
  });
}
