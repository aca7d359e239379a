/** The machine a benchmark ran on, and how busy it was (other processes share the cores). */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  os: string;
  date: string;
  commit: string;
}

export function machineInfo(): MachineInfo {
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    if (dirty) commit += " (with uncommitted changes)";
  } catch {
    // not a git checkout
  }
  const cpus = os.cpus();
  return {
    cpu: cpus[0] ? `${cpus[0].model.trim()}${cpus[0].speed ? ` (${cpus[0].speed} MHz)` : ""}` : "unknown",
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
    commit,
  };
}

/** One-minute load average (runnable processes, averaged), and the `uptime` line. */
export function load(): { one: number; line: string } {
  const [one, five, fifteen] = os.loadavg();
  return { one, line: `load average ${one.toFixed(2)}, ${five.toFixed(2)}, ${fifteen.toFixed(2)} (1, 5, 15 min) on ${os.cpus().length} cores` };
}

/** Whether the machine was busy enough that timings are not trustworthy: more runnable work than ~75% of the cores. */
export function busy(one: number): boolean {
  return one > os.cpus().length * 0.75;
}

function readProcStat(): { busy: number; total: number } | null {
  try {
    const cpu = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = cpu;
    const busyTicks = user + nice + system + irq + softirq + steal;
    return { busy: busyTicks, total: busyTicks + idle + iowait };
  } catch {
    return null;
  }
}

/** CPU seconds used by this process and its reaped children (utime + stime + cutime + cstime), or null. */
function ownCpuTicks(): number | null {
  try {
    const stat = fs.readFileSync("/proc/self/stat", "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    return f[11] + f[12] + f[13] + f[14];
  } catch {
    return null;
  }
}

export interface CpuShare {
  seconds: number;
  /** Average cores used by this benchmark (this process and its finished children). */
  ours: number;
  /** Average cores used by everything else on the machine. */
  others: number;
}

/**
 * Starts measuring who used the CPU (Linux /proc). Call the returned function after the section's child processes
 * have exited (their CPU is only accounted to us once they are reaped).
 */
export function cpuMeter(): () => CpuShare | null {
  const s0 = readProcStat();
  const o0 = ownCpuTicks();
  const t0 = performance.now();
  return () => {
    const s1 = readProcStat();
    const o1 = ownCpuTicks();
    const seconds = (performance.now() - t0) / 1000;
    if (!s0 || !s1 || o0 === null || o1 === null || seconds <= 0) return null;
    const ticksPerSecond = 100; // USER_HZ
    const machineBusy = (s1.busy - s0.busy) / ticksPerSecond;
    const ours = (o1 - o0) / ticksPerSecond;
    return { seconds, ours: ours / seconds, others: Math.max(0, machineBusy - ours) / seconds };
  };
}
