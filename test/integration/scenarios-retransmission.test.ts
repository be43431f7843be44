/** Experiment c and keepalive with data in flight: the retransmission timer's story. */
import { afterEach, describe, expect, it } from 'vitest';
import { getScenario } from '../../src/scenarios/index.ts';
import { runScenario } from '../../src/scenarios/runner.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';

const run = (id: string, params: Record<string, unknown> = {}) => runScenario(getScenario(id)!, params);

describe.skipIf(!capability.ok)(`retransmission against the kernel${skipReason}`, () => {
  afterEach(() => expect(labProcesses(process.pid)).toEqual([]));

  it('experiment c: write succeeds, Send-Q holds the bytes, retransmissions grow, then ETIMEDOUT', async () => {
    const r = await run('experiment-c', { retries2: 5 });
    expect(r.observations.writeSucceeded).toBe(true);
    expect(r.observations.sendQueueBytes).toBeGreaterThan(0);
    expect(r.observations.retransmits).toBeGreaterThanOrEqual(3);
    expect(r.observations.serverError).toBe('ETIMEDOUT');
    // tcp_retries2 = 5: a budget of 0.2 × (2^6 − 1) = 12.6 s after the write; the error comes
    // at the first retransmission timeout after it.
    expect(r.observations.errorAfterWriteSeconds).toBeGreaterThanOrEqual(12.55);
    expect(r.observations.errorAfterWriteSeconds).toBeLessThan(12.6 * 1.1 + 0.3);
    expect(r.claimHeld).toBe(true);
  });

  it('experiment c with TCP_USER_TIMEOUT: ETIMEDOUT once the timeout has passed since the write', async () => {
    const r = await run('experiment-c', { userTimeout: 3000, retries2: 15, echoDelay: 1 });
    expect(r.observations.serverError).toBe('ETIMEDOUT');
    expect(r.observations.errorAfterWriteSeconds).toBeGreaterThanOrEqual(2.95);
    expect(r.observations.errorAfterWriteSeconds).toBeLessThanOrEqual(4);
  });

  it('keepalive-unacked: keepalive never fires while the echo is unacknowledged; TCP_USER_TIMEOUT does', async () => {
    const r = await run('keepalive-unacked');
    expect(r.observations.keepaliveFired).toBe(false);
    expect(r.observations.keepaliveTimersSeen).toContain('on');
    expect(r.observations.keepaliveTimersSeen).not.toContain('keepalive');
    expect(r.observations.keepaliveState).toBe('ESTAB');
    expect(r.observations.userTimeoutDetected).toBe(true);
    expect(r.observations.userTimeoutDetectedAfterWriteSeconds).toBeGreaterThanOrEqual(5.95);
    expect(r.observations.userTimeoutDetectedAfterWriteSeconds).toBeLessThanOrEqual(7);
    // Heartbeats do not care about the bytes in flight: interval × misses after the last reply.
    expect(r.observations.heartbeatDetected).toBe(true);
    expect(Math.abs((r.observations.heartbeatDetectedAfterSeconds as number) - 3)).toBeLessThanOrEqual(0.5);
    expect(r.claimHeld).toBe(true);
  });
});
