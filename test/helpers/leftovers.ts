/**
 * What a process holds and what labs leave behind, read from /proc and the host's own
 * network namespace: for tests that abort runs, flood servers and then check that nothing
 * piled up. Other test files (and other people) may run labs at the same time, so every
 * check here is scoped to the owners or the directory a test names.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { labProcesses } from './lab.ts';

/** Resident memory (VmRSS) and open file descriptors of a live process. */
export function processStats(pid: number): { rssKiB: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!rss) throw new Error(`no VmRSS for pid ${pid}`);
  return { rssKiB: Number(rss[1]), fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** Where each descriptor of a process points: 'socket:[123]', 'pipe:[9]', '/dev/null'… */
export function fdTargets(pid: number): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      targets.push(`${fd}→${readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      /* closed meanwhile */
    }
  }
  return targets;
}

/** True while the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Tagged lab processes (holders, demos, ss, tcpdump) whose owner is one of these pids. */
export function labProcessesOf(owners: Iterable<number>): Array<{ pid: number; tag: string; cmd: string }> {
  return [...owners].flatMap((owner) => labProcesses(owner));
}

export async function until(test: () => boolean, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (test()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return test();
}

/** Names of the links in this (the host's) network namespace. */
export function hostLinks(): string[] {
  const r = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip link show failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? l)
    .sort();
}

/**
 * Namespaces pinned by a bind mount (what `ip netns add` makes): a namespace held that way
 * outlives every process in it.
 */
export function nsMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => / - nsfs /.test(l))
    .map((l) => l.split(' ')[4]!)
    .sort();
}

/** Descriptors of a process that hold a namespace open (a namespace lives while one does). */
export function namespaceFds(pid: number): string[] {
  const held: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (/^(net|mnt|user|pid|uts|ipc|cgroup|time):\[/.test(target)) held.push(target);
    } catch {
      /* closed meanwhile */
    }
  }
  return held;
}

/** Raises this process's descriptor limit (soft and hard) to at least n, as root can. */
export function ensureFdLimit(n: number): number {
  const current = () => {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'))!;
    return Number(line.split(/\s{2,}/)[1]);
  };
  if (current() >= n) return current();
  // prlimit(2) on our own pid: Node has no setrlimit of its own.
  spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${n}:${n}`]);
  return current();
}
