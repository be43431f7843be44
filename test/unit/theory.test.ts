/** The scenarios' theory: closed forms checked against a step-by-step model of the kernel's timers. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { orphanGaveUpByTheRule, orphanGiveUpSeconds, retransmissionTimeoutSeconds, retransmissionTimes } from '../../src/scenarios/common.ts';
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

  it("an orphan's FIN: the tail loss probe at 0.2 s, retransmissions doubling from there, the give-up at the (N+1)th timeout", () => {
    expect(retransmissionTimes(5)).toEqual([0.4, 0.8, 1.6, 3.2, 6.4]);
    expect(orphanGiveUpSeconds(5)).toBeCloseTo(12.8, 6);
    // 0 means 8: the eighth retransmission at 51.2 s, the give-up at the next timeout.
    expect(retransmissionTimes(8).at(-1)).toBeCloseTo(51.2, 6);
    expect(orphanGiveUpSeconds(0)).toBeCloseTo(102.4, 6);
    expect(orphanGiveUpSeconds(0)).toBe(orphanGiveUpSeconds(8));
  });

  it("the give-up follows retransmits_timed_out(): the first timeout at which tcp_model_timeout(N) has passed since the first retransmission", () => {
    // Measured on this kernel (orphan retries 5): retransmissions and the give-up, from the FIN.
    expect(orphanGaveUpByTheRule(5, [0.415, 0.857, 1.69, 3.353, 6.81], 13.467)).toBe(true);
    // Too early: 12.6 s had not passed since the first retransmission.
    expect(orphanGaveUpByTheRule(5, [0.415, 0.857, 1.69, 3.353, 6.81], 12.9)).toBe(false);
    // Too late: it should have given up at the timeout that made the last retransmission.
    expect(orphanGaveUpByTheRule(4, [0.415, 0.857, 1.69, 3.353, 6.81], 13.467)).toBe(false);
    expect(orphanGaveUpByTheRule(5, [], 13.467)).toBe(false);
    expect(orphanGaveUpByTheRule(5, [0.4], null)).toBe(false);
    // Timers a little late, as every kernel's are (the RTO above its 200 ms floor, the timer
    // wheel's rounding): from orphan retries 5 up, 2 % is enough for the (N+1)th timeout,
    // after N retransmissions, as orphanGiveUpSeconds() says (up to 9: no timeout reaches the 120 s cap).
    fc.assert(
      fc.property(fc.integer({ min: 5, max: 9 }), fc.double({ min: 1.02, max: 1.125, noNaN: true }), (n, late) => {
        const times: number[] = [];
        let t = 0.2 * late;
        let rto = 0.2 * late;
        for (;;) {
          t += rto;
          rto *= 2;
          if (times.length && t - times[0]! >= retransmissionTimeoutSeconds(n)) break;
          times.push(t);
        }
        expect(times).toHaveLength(n);
        expect(t / late).toBeCloseTo(orphanGiveUpSeconds(n), 6);
        expect(orphanGaveUpByTheRule(n, times, t)).toBe(true);
      }),
    );
  });
});
