/**
 * The start-up sweep: what labs of an earlier, killed server (or CLI run) left behind.
 *
 * A lab's processes die with their owner (pdeathsig), and its namespaces, links and
 * bridge die with its processes, so after a SIGKILL there is usually nothing left. If a
 * process escaped (pdeathsig is lost when an intermediate process re-parents), it still
 * carries its lab's KEEPALIVE_LAB=<owner pid>:<owner start time>:<lab id> tag: we list
 * such processes whose owner is gone, let `sweepOrphans()` (the one place that kills them)
 * remove them, and report what went.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { sweepOrphans, taggedProcesses } from '../lab/lab.ts';

export interface Leftover {
  pid: number;
  /** The lab it belonged to (the KEEPALIVE_LAB tag). */
  tag: string;
  cmd: string;
  /** Its network namespace, e.g. net:[4026532301]. */
  netns: string | null;
}

export interface SweepReport {
  removed: Leftover[];
  /** Processes that were still there after the sweep (should be none). */
  remaining: Leftover[];
}

function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Tagged processes whose owner is no longer running (the same rule as sweepOrphans()). */
export function findLeftovers(): Leftover[] {
  const found: Leftover[] = [];
  for (const { pid, tag } of taggedProcesses()) {
    const [ownerPid, ownerStart] = tag.split(':');
    const owner = Number(ownerPid);
    if (owner === process.pid) continue;
    const ownerStarted = startTime(owner);
    if (ownerStarted !== null && ownerStarted === ownerStart) continue; // its owner still runs
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ').trim();
      let netns: string | null = null;
      try {
        netns = readlinkSync(`/proc/${pid}/ns/net`);
      } catch {
        /* not ours to read */
      }
      found.push({ pid, tag, cmd, netns });
    } catch {
      /* gone meanwhile, or not readable */
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    // A killed process stays a zombie until its parent (gone) is replaced by init and reaps it.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Finds, removes and reports what dead labs left. Waits (briefly) until they are gone. */
export async function sweepAtStart(waitMs = 3000): Promise<SweepReport> {
  const found = findLeftovers();
  sweepOrphans();
  const deadline = Date.now() + waitMs;
  let remaining = found.filter((p) => alive(p.pid));
  while (remaining.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    remaining = remaining.filter((p) => alive(p.pid));
  }
  return { removed: found.filter((p) => !remaining.includes(p)), remaining };
}

/** Lines for the console: what the sweep removed, in a few lines. */
export function describeSweep(report: SweepReport): string[] {
  if (!report.removed.length && !report.remaining.length) return ['Start-up sweep: nothing left behind by earlier runs.'];
  const lines: string[] = [];
  if (report.removed.length) {
    const labs = new Set(report.removed.map((p) => p.tag.split(':').slice(2).join(':')));
    const namespaces = new Set(report.removed.map((p) => p.netns).filter(Boolean));
    lines.push(
      `Start-up sweep: removed ${report.removed.length} process${report.removed.length === 1 ? '' : 'es'} of ${labs.size} lab${labs.size === 1 ? '' : 's'} ` +
        `an earlier run left behind, holding ${namespaces.size} network namespace${namespaces.size === 1 ? '' : 's'} (gone with them):`,
    );
    for (const p of report.removed.slice(0, 10)) lines.push(`  pid ${p.pid} (lab ${p.tag.split(':').slice(2).join(':')}, ${p.netns ?? 'netns unknown'}): ${p.cmd.slice(0, 120)}`);
    if (report.removed.length > 10) lines.push(`  … and ${report.removed.length - 10} more`);
  }
  for (const p of report.remaining) lines.push(`Start-up sweep: could not remove pid ${p.pid} (${p.cmd.slice(0, 120)}); kill it by hand.`);
  return lines;
}
