import { secondsBetween } from './common.ts';
import { defineScenario, within, type Check } from './types.ts';

export const heartbeatArgs = (p: { interval: number; misses: number }): string[] => [
  '--mode', 'heartbeat', '--heartbeat-interval', String(p.interval), '--heartbeat-misses', String(p.misses),
];

/**
 * Application heartbeats: the server pings every `interval` seconds and closes a
 * connection from which nothing has arrived for interval × misses seconds.
 */
export default defineScenario({
  id: 'heartbeat',
  title: 'Heartbeats find the vanished client',
  description: 'Server pings every interval; no reply for interval × misses closes the connection.',
  claim: 'With a ping every {interval} s and {misses} missed replies allowed, the server closes the dead connection within 0.5 s of interval × misses after the last reply.',
  params: {
    interval: { type: 'number', default: 1, min: 0.2, max: 60, unit: 'seconds', description: 'How often the server sends a heartbeat.' },
    misses: { type: 'integer', default: 3, min: 2, max: 20, description: 'Missed replies before the server gives up.' },
  },
  theory: (p) => ({
    summary: `${p.misses} × ${p.interval} s = ${+(p.interval * p.misses).toFixed(3)} s of silence after the last reply.`,
    expectedSeconds: +(p.interval * p.misses).toFixed(3),
  }),
  expectedDuration: (p) => p.interval * (p.misses + 2) + 4,
  async run(ctx, p) {
    ctx.step(`Start the echo server with heartbeats every ${p.interval} s, ${p.misses} misses allowed.`);
    const server = await ctx.startServer(['--echo-delay', '0', ...heartbeatArgs(p)]);
    const client = await ctx.startClient(['--count', '1']);
    const peer = client.entries('connect')[0]!.fields.local!;
    const pong = await server.waitFor('pong', (e) => e.fields.peer === peer, ctx, (p.interval + 5) * 1000);
    if (!pong) throw new Error('the client never answered a heartbeat');
    ctx.step('The server just got a heartbeat reply: the last traffic. Cut the client off now.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    const expected = +(p.interval * p.misses).toFixed(3);
    ctx.openToLearner();
    const timeout = await server.waitFor(['timeout', 'error', 'close'], (e) => e.fields.peer === peer, ctx, (expected + 10) * 1000, cutAt);
    return {
      expectedSeconds: expected,
      detectedAfterSeconds: timeout ? secondsBetween(cutAt, timeout.time) : null,
      detectedAfterLastReplySeconds: timeout ? secondsBetween(pong.time, timeout.time) : null,
      serverError: timeout ? (timeout.event === 'timeout' ? 'heartbeat timeout' : (timeout.fields.code ?? timeout.event)) : null,
    };
  },
  check(o, _p, t): Check[] {
    return [
      { name: 'the server closes the connection for missed heartbeats', held: o.serverError === 'heartbeat timeout', detail: `server: ${o.serverError}` },
      within('within 0.5 s of interval × misses after the last reply', o.detectedAfterLastReplySeconds, t.expectedSeconds!, 0.5),
    ];
  },
});
