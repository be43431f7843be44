/** The scenarios' theory: closed forms checked against a step-by-step model of the kernel's timers. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { retransmissionTimeoutSeconds } from '../../src/scenarios/common.ts';
import { userTimeoutTick } from '../../src/scenarios/keepalive-user-timeout.ts';

/** tcp_keepalive_timer(), tick by tick, for a peer that never answers (times in ms). */
function keepaliveWithUserTimeout(idleS: number, intervalS: number, userTimeoutMs: number): number {
  let now = idleS * 1000;
  let probesOut = 0;
  for (;;) {
    if (now >= userTimeoutMs && probesOut > 0) return now / 1000;
    probesOut++;
    now += intervalS * 1000;
  }
}

describe('theory', () => {
  it('keepalive with TCP_USER_TIMEOUT gives up at the first tick at or past the user timeout, never at the first tick', () => {
    expect(userTimeoutTick({ idle: 2, interval: 1 }, 3500)).toBe(4);
    expect(userTimeoutTick({ idle: 2, interval: 1 }, 6000)).toBe(6);
    expect(userTimeoutTick({ idle: 2, interval: 1 }, 500)).toBe(3); // a probe must be out first
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 1, max: 60 }), fc.integer({ min: 500, max: 120_000 }), (idle, interval, ut) => {
        expect(userTimeoutTick({ idle, interval }, ut)).toBeCloseTo(keepaliveWithUserTimeout(idle, interval, ut), 6);
      }),
    );
  });

  it('the retransmission timeout follows the kernel: 200 ms doubling, capped at 120 s', () => {
    expect(retransmissionTimeoutSeconds(5)).toBeCloseTo(12.6, 6);
    expect(retransmissionTimeoutSeconds(15)).toBeCloseTo(924.6, 6);
  });
});
