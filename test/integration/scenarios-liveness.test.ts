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
    // The socket table showed the keepalive timer, and its probe counter reached the count.
    expect(r.observations.serverTimer).toBe('keepalive');
    expect(r.observations.probesInTable).toBeGreaterThanOrEqual(2);
    expect(r.observations.probesInTable).toBeLessThanOrEqual(3);
    if (capability.tcpdump && capability.bridge) expect(r.observations.probesOnWire).toBe(3);
    // A new namespace starts from the kernel's own defaults.
    expect([r.observations.kernelDefaultKeepaliveTime, r.observations.kernelDefaultKeepaliveIntvl, r.observations.kernelDefaultKeepaliveProbes, r.observations.kernelDefaultRetries2]).toEqual([7200, 75, 9, 15]);
    expect(r.claimHeld).toBe(true);
  });

  it('keepalive with TCP_USER_TIMEOUT: the first probe tick past the user timeout, whatever the count', async () => {
    const r = await run('keepalive-user-timeout', { idle: 2, interval: 1, count: 3, shortUserTimeout: 3500, userTimeout: 6000 });
    expect(r.theory.shortExpectedSeconds).toBe(4);
    expect(r.theory.expectedSeconds).toBe(6);
    expect(r.observations.shortServerError).toBe('ETIMEDOUT');
    expect(r.observations.serverError).toBe('ETIMEDOUT');
    expect(Math.abs((r.observations.shortDetectedAfterSeconds as number) - 4)).toBeLessThanOrEqual(0.5);
    expect(Math.abs((r.observations.detectedAfterSeconds as number) - 6)).toBeLessThanOrEqual(0.5);
    if (capability.tcpdump && capability.bridge) {
      expect(r.observations.shortProbesOnWire).toBe(2);
      expect(r.observations.probesOnWire).toBe(4); // more than the count of 3
    }
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

  it('hung client: keepalive and TCP_USER_TIMEOUT are fooled by the live kernel, heartbeats are not', async () => {
    const r = await run('hung-client');
    expect(r.observations.keepaliveDetected).toBe(false);
    expect(r.observations.keepaliveState).toBe('ESTAB');
    // Nor does TCP_USER_TIMEOUT (nothing stays unacknowledged), nor a server with neither.
    expect(r.observations.userTimeoutDetected).toBe(false);
    expect(r.observations.userTimeoutState).toBe('ESTAB');
    expect(r.observations.noneDetected).toBe(false);
    expect(r.observations.noneState).toBe('ESTAB');
    expect(r.observations.heartbeatDetected).toBe(true);
    expect(Math.abs((r.observations.heartbeatDetectedAfterSeconds as number) - 3)).toBeLessThanOrEqual(0.5);
    expect(r.claimHeld).toBe(true);
  });
});
