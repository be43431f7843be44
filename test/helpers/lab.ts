/** Test helpers: can a lab run here, and what did a lab leave behind? */
import { readdirSync, readFileSync } from 'node:fs';
import { probeCapability } from '../../src/lab/lab.ts';

export const capability = await probeCapability();

/** Title suffix that says why kernel tests are skipped on this machine. */
export const skipReason = capability.ok ? '' : ` [skipped: no lab can run here: ${capability.reason}]`;

/** Processes on this machine that carry a lab tag (optionally: of this owner pid). */
export function labProcesses(ownerPid?: number): Array<{ pid: number; tag: string; cmd: string }> {
  const found: Array<{ pid: number; tag: string; cmd: string }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').find((e) => e.startsWith('KEEPALIVE_LAB='));
      if (!env) continue;
      const tag = env.slice('KEEPALIVE_LAB='.length);
      if (ownerPid !== undefined && !tag.startsWith(`${ownerPid}:`)) continue;
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'latin1').replace(/\0/g, ' ').trim();
      found.push({ pid: Number(d), tag, cmd });
    } catch {
      /* gone or not readable */
    }
  }
  return found;
}
