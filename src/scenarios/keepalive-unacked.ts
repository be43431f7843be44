import { rowFor, secondsBetween } from './common.ts';
import { heartbeatArgs } from './heartbeat.ts';
import { keepaliveArgs, keepaliveSeconds } from './keepalive.ts';
import { USER_TIMEOUT_LATENESS } from './experiment-c.ts';
import { atLeastThenSoon, defineScenario, is, within, type Check } from './types.ts';

/**
 * Keepalive only runs on an idle connection. With unacknowledged data in flight the
 * kernel's retransmission timer owns the connection and the keepalive timer stays out of
 * the way (tcp_keepalive_timer returns early while packets are out), so the article's fix
 * does not cover its own experiment c. TCP_USER_TIMEOUT bounds how long sent data may stay
 * unacknowledged, and does. Heartbeats do too: their deadline does not care what the
 * kernel is doing with the bytes.
 */
export default defineScenario({
  id: 'keepalive-unacked',
  title: 'Keepalive with data in flight: it never fires; TCP_USER_TIMEOUT does',
  description: 'Keepalive on, an echo pending after the cut: keepalive stays silent, TCP_USER_TIMEOUT detects it.',
  claim:
    'With an echo unacknowledged after the cut, keepalive does not fire even well after idle + interval × count; a server with TCP_USER_TIMEOUT = {userTimeout} ms gets ETIMEDOUT once {userTimeout} ms have passed since its write, and one with heartbeats closes the connection {hbInterval} × {hbMisses} s after the last reply.',
  params: {
    idle: { type: 'integer', default: 2, min: 1, max: 60, unit: 'seconds', description: 'Keepalive idle.' },
    interval: { type: 'integer', default: 1, min: 1, max: 60, unit: 'seconds', description: 'Keepalive interval.' },
    count: { type: 'integer', default: 3, min: 1, max: 20, description: 'Keepalive probes.' },
    echoDelay: { type: 'number', default: 1, min: 0.2, max: 30, unit: 'seconds', description: 'Delay before the echo that will never be acknowledged.' },
    userTimeout: { type: 'integer', default: 6000, min: 500, max: 60000, unit: 'ms', description: 'TCP_USER_TIMEOUT on the second server.' },
    hbInterval: { type: 'number', default: 1, min: 0.2, max: 30, unit: 'seconds', description: 'Heartbeat interval of the third server.' },
    hbMisses: { type: 'integer', default: 3, min: 2, max: 20, description: 'Heartbeat misses allowed by the third server.' },
    margin: { type: 'number', default: 3, min: 1, max: 60, unit: 'seconds', description: 'How long past the keepalive deadline to keep watching.' },
  },
  theory: (p) => ({
    summary: `Keepalive alone would fire ${keepaliveSeconds(p)} s after the last traffic on an idle connection, but this one is not idle: the retransmission timer runs instead (tcp_retries2 = 15: about 924.6 s). TCP_USER_TIMEOUT gives up ${p.userTimeout / 1000} s after the first retransmission, which comes a few hundred milliseconds after the write. Heartbeats: ${p.hbMisses} × ${p.hbInterval} s after the last reply.`,
    expectedSeconds: p.userTimeout / 1000,
    keepaliveSeconds: keepaliveSeconds(p),
    heartbeatExpectedSeconds: +(p.hbInterval * p.hbMisses).toFixed(3),
  }),
  expectedDuration: (p) => p.echoDelay + Math.max(keepaliveSeconds(p) + p.margin, p.userTimeout / 1000 + 1, p.hbInterval * p.hbMisses + 2) + 4,
  async run(ctx, p) {
    ctx.step('Three servers echoing after a delay: keepalive (port 7001), keepalive and TCP_USER_TIMEOUT (port 7002), heartbeats (port 7003).');
    const delay = ['--echo-delay', String(p.echoDelay)];
    const echo = [...delay, ...keepaliveArgs(p)];
    const [ka, ut, hb] = await Promise.all([
      ctx.startServer(echo, { name: 'server-keepalive', port: 7001 }),
      ctx.startServer([...echo, '--user-timeout', String(p.userTimeout)], { name: 'server-user-timeout', port: 7002 }),
      ctx.startServer([...delay, ...heartbeatArgs({ interval: p.hbInterval, misses: p.hbMisses })], { name: 'server-heartbeat', port: 7003 }),
    ]);
    const [kaClient, utClient, hbClient] = await Promise.all([
      ctx.startClient(['--count', '1'], { name: 'client-keepalive', port: 7001 }),
      ctx.startClient(['--count', '1'], { name: 'client-user-timeout', port: 7002 }),
      ctx.startClient(['--count', '1'], { name: 'client-heartbeat', port: 7003 }),
    ]);
    const kaPeer = kaClient.entries('connect')[0]!.fields.local!;
    const utPeer = utClient.entries('connect')[0]!.fields.local!;
    const hbPeer = hbClient.entries('connect')[0]!.fields.local!;
    await Promise.all([
      ka.waitFor('frame', (e) => e.fields.peer === kaPeer, ctx, 10_000, 0),
      ut.waitFor('frame', (e) => e.fields.peer === utPeer, ctx, 10_000, 0),
      hb.waitFor('frame', (e) => e.fields.peer === hbPeer, ctx, 10_000, 0),
    ]);
    ctx.step('Cut the network before the echoes are written.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    const [kaEcho, utEcho] = await Promise.all([
      ka.waitFor('echo', (e) => e.fields.peer === kaPeer, ctx, (p.echoDelay + 5) * 1000, cutAt),
      ut.waitFor('echo', (e) => e.fields.peer === utPeer, ctx, (p.echoDelay + 5) * 1000, cutAt),
    ]);
    const kaTimers = new Set<string>();
    const watch = (rows: Parameters<typeof rowFor>[0]) => {
      const r = rowFor(rows, kaPeer);
      if (r?.timer) kaTimers.add(r.timer.name);
    };
    // From a look at the kernel taken after the echoes were written: one that was already
    // under way may still show the idle connection's keepalive timer.
    watch((await ctx.snapshot()).rows);
    ctx.sockets.on('snapshot', watch);
    const watchUntil = (kaEcho?.time ?? Date.now()) + Math.max(keepaliveSeconds(p) + p.margin, p.userTimeout / 1000 + 1) * 1000;
    // The verdict is the time the server logged, not when its line reached us: on a busy
    // machine (a room of labs) the line may come a moment after the claim's own lateness.
    const utDeadline = (utEcho?.time ?? Date.now()) + (p.userTimeout / 1000 + USER_TIMEOUT_LATENESS + 2) * 1000;
    const hbDeadline = cutAt + (p.hbInterval * p.hbMisses + 2) * 1000;
    ctx.openToLearner();
    const [utEnd, hbEnd] = await Promise.all([
      ut.waitFor(['error', 'close'], (e) => e.fields.peer === utPeer, ctx, Math.max(0, utDeadline - Date.now()), cutAt),
      hb.waitFor(['timeout', 'error', 'close'], (e) => e.fields.peer === hbPeer, ctx, Math.max(0, hbDeadline - Date.now()), cutAt),
    ]);
    // The heartbeat deadline runs from the last frame the server received (a pong, or the frame).
    const lastHeard = hb.log.filter((e) => e.fields.peer === hbPeer && (e.event === 'pong' || e.event === 'frame') && e.time <= (hbEnd?.time ?? Date.now())).at(-1);
    await ctx.sleep(Math.max(0, (watchUntil - Date.now()) / 1000));
    ctx.sockets.off('snapshot', watch);
    const { rows } = await ctx.snapshot();
    const kaRow = rowFor(rows, kaPeer);
    const kaEnd = ka.log.find((e) => e.time >= cutAt && ['error', 'close'].includes(e.event) && e.fields.peer === kaPeer);
    return {
      keepaliveFired: kaEnd !== undefined,
      keepaliveTimersSeen: [...kaTimers],
      keepaliveState: kaRow?.state ?? 'gone',
      keepaliveSendQueueBytes: kaRow?.sendQ ?? 0,
      keepaliveWatchedAfterWriteSeconds: kaEcho ? secondsBetween(kaEcho.time, Date.now()) : null,
      userTimeoutDetected: utEnd?.fields.code === 'ETIMEDOUT',
      userTimeoutDetectedAfterWriteSeconds: utEcho && utEnd ? secondsBetween(utEcho.time, utEnd.time) : null,
      heartbeatDetected: hbEnd?.event === 'timeout',
      heartbeatDetectedAfterSeconds: hbEnd && lastHeard ? secondsBetween(lastHeard.time, hbEnd.time) : null,
    };
  },
  check(o, p, t): Check[] {
    const timers = o.keepaliveTimersSeen as string[];
    return [
      is(`keepalive does not fire within ${keepaliveSeconds(p)} + ${p.margin} s`, o.keepaliveFired, false),
      { name: 'the retransmission timer runs, not the keepalive timer', held: timers.includes('on') && !timers.includes('keepalive'), detail: `timers seen: ${timers.join(', ') || 'none'}` },
      is('TCP_USER_TIMEOUT detects the dead peer (ETIMEDOUT)', o.userTimeoutDetected, true),
      atLeastThenSoon('once TCP_USER_TIMEOUT has passed since the write', o.userTimeoutDetectedAfterWriteSeconds, t.expectedSeconds!, USER_TIMEOUT_LATENESS),
      is('heartbeats detect the dead peer', o.heartbeatDetected, true),
      within('after interval × misses since the last reply', o.heartbeatDetectedAfterSeconds, t.heartbeatExpectedSeconds as number, 0.5),
    ];
  },
});
