/**
 * The article's experiments and the incident, against the real kernel. Each test runs the
 * scenario exactly as `npm run lab -- run <id>` does and asserts what the kernel did.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { getScenario } from '../../src/scenarios/index.ts';
import { runScenario } from '../../src/scenarios/runner.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';

const run = (id: string, params: Record<string, unknown> = {}) => runScenario(getScenario(id)!, params);

describe.skipIf(!capability.ok)(`network experiments against the kernel${skipReason}`, () => {
  afterEach(() => {
    // Whatever the outcome, the lab left nothing running.
    expect(labProcesses(process.pid)).toEqual([]);
  });

  it('experiment a: the server keeps an ESTAB connection with no timer and notices nothing', async () => {
    const r = await run('experiment-a');
    expect(r.observations.serverState).toBe('ESTAB');
    expect(r.observations.serverTimer).toBe('none');
    expect(r.observations.serverNoticed).toBe(false);
    expect(r.observations.waitedSeconds).toBeGreaterThanOrEqual(10);
    expect(r.claimHeld).toBe(true);
  });

  it('experiment b: after reconnecting from new addresses, every old connection is still ESTAB', async () => {
    const r = await run('experiment-b', { reconnects: 2 });
    expect(r.observations.reconnects).toBe(2);
    expect(r.observations.oldConnectionsStillEstablished).toBe(true);
    expect(r.observations.oldConnectionsEstablished).toBe(2);
    expect(r.observations.newConnectionState).toBe('ESTAB');
    expect(r.claimHeld).toBe(true);
  });

  it("experiment b, same address: the client's pending FIN arrives after the restore", async () => {
    const r = await run('experiment-b-same-address');
    expect(r.observations.serverNoticed).toBe(true);
    expect(r.observations.noticedBeforeRestore).toBe(false);
    expect(r.observations.noticedAfterRestoreSeconds).toBeGreaterThanOrEqual(0);
    expect(r.claimHeld).toBe(true);
  });

  // Node never reports a failed accept(): only strace shows the EMFILE (CI installs it).
  it.skipIf(!capability.strace)(`fd-exhaustion: half-open connections pile up until accept fails with EMFILE${capability.strace ? '' : ' [skipped: strace is not installed]'}`, async () => {
    const r = await run('fd-exhaustion');
    expect(r.observations.fdLimit).toBe(48);
    expect(r.observations.acceptError).toBe('EMFILE');
    expect(r.observations.halfOpenAtFailure).toBeGreaterThan(16);
    expect(r.observations.newClientServed).toBe(false);
    expect(r.claimHeld).toBe(true);
  });
});
