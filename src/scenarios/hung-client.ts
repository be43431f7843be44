import { rowFor, secondsBetween } from './common.ts';
import { heartbeatArgs } from './heartbeat.ts';
import { keepaliveArgs, keepaliveSeconds } from './keepalive.ts';
import { defineScenario, is, within, type Check } from './types.ts';

/**
 * A frozen client (SIGSTOP: a hung process, a GC pause, a deadlock) whose kernel is fine.
 * Keepalive asks the kernel, and the kernel answers every probe, so keepalive never
 * fires; TCP_USER_TIMEOUT waits for unacknowledged data, and the kernel acknowledges
 * everything; a server with neither asks nothing at all. Heartbeats ask the application,
 * which cannot answer.
 */
export default defineScenario({
  id: 'hung-client',
  title: 'A hung client: keepalive and TCP_USER_TIMEOUT are fooled, heartbeats are not',
  description: 'Freeze the client process: its kernel answers keepalive probes forever; heartbeats detect it.',
  claim:
    'When the client process hangs but its kernel lives, neither keepalive (the kernel answers the probes) nor TCP_USER_TIMEOUT (the kernel acknowledges everything) nor a server without either detects it, while heartbeats close the connection after {hbInterval} × {hbMisses} s.',
  params: {
    idle: { type: 'integer', default: 2, min: 1, max: 60, unit: 'seconds', description: 'Keepalive idle.' },
    interval: { type: 'integer', default: 1, min: 1, max: 60, unit: 'seconds', description: 'Keepalive interval.' },
    count: { type: 'integer', default: 3, min: 1, max: 20, description: 'Keepalive probes.' },
    hbInterval: { type: 'number', default: 1, min: 0.2, max: 30, unit: 'seconds', description: 'Heartbeat interval.' },
    hbMisses: { type: 'integer', default: 3, min: 2, max: 20, description: 'Heartbeat misses allowed.' },
    userTimeout: { type: 'integer', default: 6000, min: 500, max: 60000, unit: 'ms', description: 'TCP_USER_TIMEOUT of the server that has keepalive and a user timeout.' },
    margin: { type: 'number', default: 3, min: 1, max: 60, unit: 'seconds', description: 'How long past the keepalive deadline to keep watching.' },
  },
  theory: (p) => ({
    summary: `Keepalive would give up after ${keepaliveSeconds(p)} s of unanswered probes, but the frozen client's kernel answers each probe; TCP_USER_TIMEOUT (${p.userTimeout / 1000} s) counts only unacknowledged time, and the kernel acknowledges at once. Heartbeats expect an answer from the application: ${+(p.hbInterval * p.hbMisses).toFixed(3)} s.`,
    expectedSeconds: +(p.hbInterval * p.hbMisses).toFixed(3),
    keepaliveSeconds: keepaliveSeconds(p),
  }),
  expectedDuration: (p) => Math.max(keepaliveSeconds(p) + p.margin, p.userTimeout / 1000 + 1, p.hbInterval * p.hbMisses + 2) + 4,
  async run(ctx, p) {
    ctx.step('Four servers: keepalive (port 7001), heartbeats (port 7002), neither (port 7003), keepalive with TCP_USER_TIMEOUT (port 7004).');
    const [ka, hb, none, ut] = await Promise.all([
      ctx.startServer(['--echo-delay', '0', ...keepaliveArgs(p)], { name: 'server-keepalive', port: 7001 }),
      ctx.startServer(['--echo-delay', '0', ...heartbeatArgs({ interval: p.hbInterval, misses: p.hbMisses })], { name: 'server-heartbeat', port: 7002 }),
      ctx.startServer(['--echo-delay', '0'], { name: 'server-none', port: 7003 }),
      ctx.startServer(['--echo-delay', '0', ...keepaliveArgs(p), '--user-timeout', String(p.userTimeout)], { name: 'server-user-timeout', port: 7004 }),
    ]);
    const clients = await Promise.all(
      (['keepalive', 'heartbeat', 'none', 'user-timeout'] as const).map((name, i) => ctx.startClient(['--count', '1'], { name: `client-${name}`, port: 7001 + i })),
    );
    const [kaPeer, hbPeer, nonePeer, utPeer] = clients.map((c) => c.entries('connect')[0]!.fields.local!) as [string, string, string, string];
    await Promise.all([0, 2, 3].map((i) => clients[i]!.waitFor('recv', () => true, ctx, 10_000, 0)));
    const pong = await hb.waitFor('pong', (e) => e.fields.peer === hbPeer, ctx, (p.hbInterval + 5) * 1000);
    ctx.step('Freeze every client process (SIGSTOP). Their kernel keeps running.');
    for (const c of clients) ctx.lab.signal(c.proc, 'SIGSTOP');
    const frozenAt = Date.now();
    const hbExpected = +(p.hbInterval * p.hbMisses).toFixed(3);
    const watchUntil = frozenAt + Math.max(keepaliveSeconds(p) + p.margin, p.userTimeout / 1000 + 1, hbExpected + 2) * 1000;
    ctx.openToLearner();
    const hbTimeout = await hb.waitFor(['timeout', 'error', 'close'], (e) => e.fields.peer === hbPeer, ctx, watchUntil - Date.now(), frozenAt);
    await ctx.sleep(Math.max(0, (watchUntil - Date.now()) / 1000));
    const { rows } = await ctx.snapshot();
    const kaRow = rowFor(rows, kaPeer);
    const ended = (server: typeof ka, peer: string) => server.log.some((e) => e.time >= frozenAt && ['error', 'close', 'timeout'].includes(e.event) && e.fields.peer === peer);
    const watched = secondsBetween(frozenAt, Date.now());
    return {
      noneDetected: ended(none, nonePeer),
      noneState: rowFor(rows, nonePeer)?.state ?? 'gone',
      userTimeoutDetected: ended(ut, utPeer),
      userTimeoutState: rowFor(rows, utPeer)?.state ?? 'gone',
      keepaliveDetected: ended(ka, kaPeer),
      keepaliveState: kaRow?.state ?? 'gone',
      keepaliveTimer: kaRow?.timer?.name ?? 'none',
      keepaliveWatchedSeconds: watched,
      heartbeatDetected: hbTimeout?.event === 'timeout',
      heartbeatDetectedAfterSeconds: hbTimeout ? secondsBetween(pong ? Math.max(pong.time, 0) : frozenAt, hbTimeout.time) : null,
    };
  },
  check(o, p, t): Check[] {
    return [
      is(`keepalive does not detect the hung client within ${keepaliveSeconds(p)} + ${p.margin} s`, o.keepaliveDetected, false),
      is('its connection is still ESTABLISHED', o.keepaliveState, 'ESTAB'),
      is('keepalive with TCP_USER_TIMEOUT does not detect it either', o.userTimeoutDetected, false),
      is('its connection is still ESTABLISHED too', o.userTimeoutState, 'ESTAB'),
      is('nor does a server with neither', o.noneDetected, false),
      is('heartbeats detect it', o.heartbeatDetected, true),
      within('after interval × misses since the last reply', o.heartbeatDetectedAfterSeconds, t.expectedSeconds!, 0.5),
    ];
  },
});
