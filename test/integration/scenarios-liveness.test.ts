/** Keepalive and heartbeats against the kernel: detection times within tolerance. */
import { afterEach, describe, expect, it } from 'vitest';
import { getScenario } from '../../src/scenarios/index.ts';
import { runScenario } from '../../src/scenarios/runner.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';

const run = (id: string, params: Record<string, unknown> = {}) => runScenario(getScenario(id)!, params);

describe.skipIf(!capability.ok)(`liveness against the kernel${skipReason}`, () => {
  afterEach(() => expect(labProcesses(process.pid)).toEqual([]));

  it('keepalive: ETIMEDOUT within 0.5 s of idle + interval × count', async () => {
    const r = await run('keepalive', { idle: 2, interval: 1, count: 3 });
    expect(r.observations.expectedSeconds).toBe(5);
    expect(r.observations.serverError).toBe('ETIMEDOUT');
    expect(Math.abs((r.observations.detectedAfterLastTrafficSeconds as number) - 5)).toBeLessThanOrEqual(0.5);
    // Measured from the cut, a moment after the last traffic: a little sooner.
    expect(r.observations.detectedAfterSeconds as number).toBeLessThanOrEqual(r.observations.detectedAfterLastTrafficSeconds as number);
    expect(r.claimHeld).toBe(true);
  });

  it('keepalive with other settings follows the formula too', async () => {
    const r = await run('keepalive', { idle: 1, interval: 2, count: 2 });
    expect(Math.abs((r.observations.detectedAfterLastTrafficSeconds as number) - 5)).toBeLessThanOrEqual(0.5);
  });

  it('heartbeat: the server closes within 0.5 s of interval × misses', async () => {
    const r = await run('heartbeat', { interval: 0.5, misses: 4 });
    expect(r.observations.expectedSeconds).toBe(2);
    expect(r.observations.serverError).toBe('heartbeat timeout');
    expect(Math.abs((r.observations.detectedAfterLastReplySeconds as number) - 2)).toBeLessThanOrEqual(0.5);
    expect(r.claimHeld).toBe(true);
  });

  it('hung client: keepalive is fooled by the live kernel, heartbeats are not', async () => {
    const r = await run('hung-client');
    expect(r.observations.keepaliveDetected).toBe(false);
    expect(r.observations.keepaliveState).toBe('ESTAB');
    expect(r.observations.heartbeatDetected).toBe(true);
    expect(Math.abs((r.observations.heartbeatDetectedAfterSeconds as number) - 3)).toBeLessThanOrEqual(0.5);
    expect(r.claimHeld).toBe(true);
  });
});
