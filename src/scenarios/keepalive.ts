import { secondsBetween } from './common.ts';
import { defineScenario, within, type Check } from './types.ts';

export const keepaliveParams = {
  idle: { type: 'integer', default: 2, min: 1, max: 7200, unit: 'seconds', description: 'TCP_KEEPIDLE: silence before the first probe (Linux default 7200).' },
  interval: { type: 'integer', default: 1, min: 1, max: 600, unit: 'seconds', description: 'TCP_KEEPINTVL: time between probes (Linux default 75).' },
  count: { type: 'integer', default: 3, min: 1, max: 20, description: 'TCP_KEEPCNT: unanswered probes before the kernel gives up (Linux default 9).' },
} as const;

export const keepaliveArgs = (p: { idle: number; interval: number; count: number }): string[] => [
  '--mode', 'keepalive', '--keepalive-idle', String(p.idle), '--keepalive-interval', String(p.interval), '--keepalive-count', String(p.count),
];

export const keepaliveSeconds = (p: { idle: number; interval: number; count: number }): number => p.idle + p.interval * p.count;

/**
 * SO_KEEPALIVE with nothing pending: after `idle` seconds of silence the kernel sends a
 * probe every `interval` seconds; after `count` unanswered probes it drops the connection
 * and the application's next read fails with ETIMEDOUT.
 */
export default defineScenario({
  id: 'keepalive',
  title: 'SO_KEEPALIVE finds the vanished client',
  description: 'Keepalive on, nothing pending, client cut off: ETIMEDOUT after idle + interval × count.',
  claim: 'With keepalive idle {idle} s, interval {interval} s and {count} probes, the server gets ETIMEDOUT within 0.5 s of idle + interval × count after the last traffic.',
  params: keepaliveParams,
  theory: (p) => ({
    summary: `idle ${p.idle} s + ${p.count} × ${p.interval} s = ${keepaliveSeconds(p)} s after the last traffic (Linux defaults: 7200 + 9 × 75 = 7875 s, 2 h 11 min 15 s).`,
    expectedSeconds: keepaliveSeconds(p),
  }),
  expectedDuration: (p) => keepaliveSeconds(p) + 4,
  async run(ctx, p) {
    ctx.step(`Start the echo server with keepalive (idle ${p.idle} s, interval ${p.interval} s, ${p.count} probes), echoing at once.`);
    const server = await ctx.startServer(['--echo-delay', '0', ...keepaliveArgs(p)]);
    const client = await ctx.startClient(['--count', '1']);
    const peer = client.entries('connect')[0]!.fields.local!;
    const echoed = await client.waitFor('recv', () => true, ctx, 10_000, 0);
    if (!echoed) throw new Error('the client got no echo');
    ctx.step('The echo arrived: that is the last traffic. Cut the client off now.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    const expected = keepaliveSeconds(p);
    const error = await server.waitFor(['error', 'close'], (e) => e.fields.peer === peer, ctx, (expected + 10) * 1000, cutAt);
    return {
      expectedSeconds: expected,
      detectedAfterSeconds: error ? secondsBetween(cutAt, error.time) : null,
      // The kernel counts idle time from the last segment (the client's ACK of the echo,
      // sent as the echo arrived), a moment before the cut: theory is measured from there.
      detectedAfterLastTrafficSeconds: error ? secondsBetween(echoed.time, error.time) : null,
      serverError: error ? (error.fields.code ?? 'closed without error') : null,
      lastTrafficToCutSeconds: secondsBetween(echoed.time, cutAt),
    };
  },
  check(o, _p, t): Check[] {
    return [
      { name: 'the server gets ETIMEDOUT', held: o.serverError === 'ETIMEDOUT', detail: `server error: ${o.serverError}` },
      within('within 0.5 s of idle + interval × count after the last traffic', o.detectedAfterLastTrafficSeconds, t.expectedSeconds!, 0.5),
    ];
  },
});
