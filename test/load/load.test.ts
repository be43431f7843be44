/**
 * A room's worth of labs at once, through the real server: every claim holds, every lab
 * really ran at the same time as the others, and nothing is left behind. The full-size
 * load (50 labs) is `npm run load`; this is its CI-sized run.
 */
import { describe, expect, it } from 'vitest';
import { runLoad } from '../../scripts/load.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';

const LABS = 16;

describe.skipIf(!capability.ok)(`load${skipReason}`, () => {
  it(`${LABS} labs at once, mixed detection scenarios: every claim holds, nothing is left behind`, { timeout: 120_000 }, async () => {
    const report = await runLoad({ labs: LABS, deadlineSeconds: 110 });
    const failures = report.failures.map((f) => `lab ${f.lab} ${f.scenario}: ${f.reason}`);

    expect(failures).toEqual([]);
    expect(report.claimsHeld).toBe(LABS);
    // At once, not one after the other: at some moment every lab was running.
    expect(report.peakConcurrentLabs).toBe(LABS);
    expect(report.deadlineHit).toBe(false);
    for (const [id, e] of Object.entries(report.detectionErrorMs)) {
      expect(e.runs, id).toBeGreaterThan(0);
    }
    // The server stopped on SIGTERM by itself, its labs went with it, and none of their
    // processes (namespace holders, demos, ss, tcpdump) outlived it.
    expect(report.serverEnded).toBe('exit 0');
    expect(report.leftBehind).toEqual([]);
    expect(labProcesses(report.serverPid)).toEqual([]);
    expect(report.serverRssPeakMb).toBeGreaterThan(0);
  });
});
