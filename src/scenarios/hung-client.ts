import { rowFor, secondsBetween } from './common.ts';
import { heartbeatArgs } from './heartbeat.ts';
import { keepaliveArgs, keepaliveSeconds } from './keepalive.ts';
import { defineScenario, is, within, type Check } from './types.ts';

/**
 * A frozen client (SIGSTOP: a hung process, a GC pause, a deadlock) whose kernel is fine.
 * Keepalive asks the kernel, and the kernel answers every probe, so keepalive never
 * fires. Heartbeats ask the application, which cannot answer.
 */
export default defineScenario({
  id: 'hung-client',
  title: 'A hung client: keepalive is fooled, heartbeats are not',
  description: 'Freeze the client process: its kernel answers keepalive probes forever; heartbeats detect it.',
  claim:
    'When the client process hangs but its kernel lives, keepalive never detects it (the kernel answers the probes), while heartbeats close the connection after {hbInterval} × {hbMisses} s.',
  params: {
    idle: { type: 'integer', default: 2, min: 1, max: 60, unit: 'seconds', description: 'Keepalive idle.' },
    interval: { type: 'integer', default: 1, min: 1, max: 60, unit: 'seconds', description: 'Keepalive interval.' },
    count: { type: 'integer', default: 3, min: 1, max: 20, description: 'Keepalive probes.' },
    hbInterval: { type: 'number', default: 1, min: 0.2, max: 30, unit: 'seconds', description: 'Heartbeat interval.' },
    hbMisses: { type: 'integer', default: 3, min: 1, max: 20, description: 'Heartbeat misses allowed.' },
    margin: { type: 'number', default: 3, min: 1, max: 60, unit: 'seconds', description: 'How long past the keepalive deadline to keep watching.' },
  },
  theory: (p) => ({
    summary: `Keepalive would give up after ${keepaliveSeconds(p)} s of unanswered probes, but the frozen client's kernel answers each probe. Heartbeats expect an answer from the application: ${+(p.hbInterval * p.hbMisses).toFixed(3)} s.`,
    expectedSeconds: +(p.hbInterval * p.hbMisses).toFixed(3),
    keepaliveSeconds: keepaliveSeconds(p),
  }),
  expectedDuration: (p) => Math.max(keepaliveSeconds(p) + p.margin, p.hbInterval * p.hbMisses + 2) + 4,
  async run(ctx, p) {
    ctx.step('Two servers: one with keepalive (port 7001), one with heartbeats (port 7002).');
    const [ka, hb] = await Promise.all([
      ctx.startServer(['--echo-delay', '0', ...keepaliveArgs(p)], { name: 'server-keepalive', port: 7001 }),
      ctx.startServer(['--echo-delay', '0', ...heartbeatArgs({ interval: p.hbInterval, misses: p.hbMisses })], { name: 'server-heartbeat', port: 7002 }),
    ]);
    const [kaClient, hbClient] = await Promise.all([
      ctx.startClient(['--count', '1'], { name: 'client-keepalive', port: 7001 }),
      ctx.startClient(['--count', '1'], { name: 'client-heartbeat', port: 7002 }),
    ]);
    const kaPeer = kaClient.entries('connect')[0]!.fields.local!;
    const hbPeer = hbClient.entries('connect')[0]!.fields.local!;
    await kaClient.waitFor('recv', () => true, ctx, 10_000, 0);
    const pong = await hb.waitFor('pong', (e) => e.fields.peer === hbPeer, ctx, (p.hbInterval + 5) * 1000);
    ctx.step('Freeze both client processes (SIGSTOP). Their kernel keeps running.');
    ctx.lab.signal(kaClient.proc, 'SIGSTOP');
    ctx.lab.signal(hbClient.proc, 'SIGSTOP');
    const frozenAt = Date.now();
    const hbExpected = +(p.hbInterval * p.hbMisses).toFixed(3);
    const watchUntil = frozenAt + Math.max(keepaliveSeconds(p) + p.margin, hbExpected + 2) * 1000;
    const hbTimeout = await hb.waitFor(['timeout', 'error', 'close'], (e) => e.fields.peer === hbPeer, ctx, watchUntil - Date.now(), frozenAt);
    await ctx.sleep(Math.max(0, (watchUntil - Date.now()) / 1000));
    const { rows } = await ctx.snapshot();
    const kaRow = rowFor(rows, kaPeer);
    const kaEnd = ka.log.find((e) => e.time >= frozenAt && ['error', 'close', 'timeout'].includes(e.event) && e.fields.peer === kaPeer);
    return {
      keepaliveDetected: kaEnd !== undefined,
      keepaliveState: kaRow?.state ?? 'gone',
      keepaliveTimer: kaRow?.timer?.name ?? 'none',
      keepaliveWatchedSeconds: secondsBetween(frozenAt, Date.now()),
      heartbeatDetected: hbTimeout?.event === 'timeout',
      heartbeatDetectedAfterSeconds: hbTimeout ? secondsBetween(pong ? Math.max(pong.time, 0) : frozenAt, hbTimeout.time) : null,
    };
  },
  check(o, p, t): Check[] {
    return [
      is(`keepalive does not detect the hung client within ${keepaliveSeconds(p)} + ${p.margin} s`, o.keepaliveDetected, false),
      is('its connection is still ESTABLISHED', o.keepaliveState, 'ESTAB'),
      is('heartbeats detect it', o.heartbeatDetected, true),
      within('after interval × misses since the last reply', o.heartbeatDetectedAfterSeconds, t.expectedSeconds!, 0.5),
    ];
  },
});
