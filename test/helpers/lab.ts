/** Test helpers: can a lab run here, and what did a lab leave behind? */
import { labProcessesOf } from '../../scripts/lib/server.ts';
import { probeCapability } from '../../src/lab/lab.ts';

export const capability = await probeCapability();

/** Title suffix that says why kernel tests are skipped on this machine. */
export const skipReason = capability.ok ? '' : ` [skipped: no lab can run here: ${capability.reason}]`;

/** Processes on this machine that carry a lab tag (optionally: of this owner pid). */
export const labProcesses = labProcessesOf;
