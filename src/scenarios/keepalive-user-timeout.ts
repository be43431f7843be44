import { rowFor, secondsBetween } from './common.ts';
import { keepaliveArgs, keepaliveParams, keepaliveSeconds, probeCounter } from './keepalive.ts';
import { defineScenario, is, within, type Check } from './types.ts';

/**
 * When keepalive gives up on an idle connection that also has TCP_USER_TIMEOUT.
 *
 * tcp_keepalive_timer() (net/ipv4/tcp_timer.c) runs at idle, then every interval. With a
 * user timeout set it ignores TCP_KEEPCNT: it drops the connection at the first run at which
 * the time since the last segment received has reached the user timeout and at least one
 * probe is out. So the detection time is the first keepalive tick at or past the user
 * timeout, and never the first one (no probe is out yet): a user timeout shorter than
 * idle + interval × count detects sooner, a longer one later, with more probes than the
 * count.
 */
export function userTimeoutTick(p: { idle: number; interval: number }, userTimeoutMs: number): number {
  const ticks = Math.max(1, Math.ceil((userTimeoutMs / 1000 - p.idle) / p.interval - 1e-9));
  return +(p.idle + p.interval * ticks).toFixed(3);
}

export default defineScenario({
  id: 'keepalive-user-timeout',
  title: 'Keepalive and TCP_USER_TIMEOUT together: the probe count no longer counts',
  description: 'Idle connection, keepalive plus TCP_USER_TIMEOUT: the kernel gives up at the first probe tick past the user timeout, whatever TCP_KEEPCNT says.',
  claim:
    'On an idle connection with keepalive and TCP_USER_TIMEOUT, the kernel ignores the probe count: it gives up at the first keepalive tick at or past the user timeout after the last traffic, sooner than idle + interval × count with a short user timeout ({shortUserTimeout} ms), later with a long one ({userTimeout} ms).',
  params: {
    ...keepaliveParams,
    idle: { ...keepaliveParams.idle, max: 60 },
    interval: { ...keepaliveParams.interval, max: 60 },
    shortUserTimeout: { type: 'integer', default: 3500, min: 500, max: 120000, unit: 'ms', description: 'TCP_USER_TIMEOUT of the first server (shorter than idle + interval × count).' },
    userTimeout: { type: 'integer', default: 6000, min: 500, max: 120000, unit: 'ms', description: 'TCP_USER_TIMEOUT of the second server (longer than idle + interval × count).' },
  },
  theory: (p) => {
    const short = userTimeoutTick(p, p.shortUserTimeout);
    const long = userTimeoutTick(p, p.userTimeout);
    return {
      summary:
        `Keepalive alone: ${p.idle} + ${p.count} × ${p.interval} = ${keepaliveSeconds(p)} s. With TCP_USER_TIMEOUT the count is ignored: the first tick ` +
        `(${p.idle} s, then every ${p.interval} s) at or past ${p.shortUserTimeout / 1000} s is ${short} s; past ${p.userTimeout / 1000} s it is ${long} s.`,
      expectedSeconds: long,
      shortExpectedSeconds: short,
      keepaliveSeconds: keepaliveSeconds(p),
    };
  },
  expectedDuration: (p) => Math.max(userTimeoutTick(p, p.shortUserTimeout), userTimeoutTick(p, p.userTimeout)) + 4,
  async run(ctx, p) {
    ctx.step(`Two servers with keepalive (idle ${p.idle} s, interval ${p.interval} s, ${p.count} probes), echoing at once; TCP_USER_TIMEOUT ${p.shortUserTimeout} ms on port 7001, ${p.userTimeout} ms on port 7002.`);
    const [short, long] = await Promise.all([
      ctx.startServer(['--echo-delay', '0', ...keepaliveArgs(p), '--user-timeout', String(p.shortUserTimeout)], { name: 'server-short-timeout', port: 7001 }),
      ctx.startServer(['--echo-delay', '0', ...keepaliveArgs(p), '--user-timeout', String(p.userTimeout)], { name: 'server-long-timeout', port: 7002 }),
    ]);
    const [shortClient, longClient] = await Promise.all([
      ctx.startClient(['--count', '1'], { name: 'client-short-timeout', port: 7001 }),
      ctx.startClient(['--count', '1'], { name: 'client-long-timeout', port: 7002 }),
    ]);
    const shortPeer = shortClient.entries('connect')[0]!.fields.local!;
    const longPeer = longClient.entries('connect')[0]!.fields.local!;
    const shortProbes = probeCounter(ctx, shortPeer);
    const longProbes = probeCounter(ctx, longPeer);
    // The kernel's count of unanswered probes, as the socket table shows it.
    const inTable = { short: 0, long: 0 };
    const watch = (rows: Parameters<typeof rowFor>[0]) => {
      for (const [k, peer] of [['short', shortPeer], ['long', longPeer]] as const) {
        const t = rowFor(rows, peer)?.timer;
        if (t?.name === 'keepalive') inTable[k] = Math.max(inTable[k], t.count);
      }
    };
    ctx.sockets.on('snapshot', watch);
    const [shortEcho, longEcho] = await Promise.all([
      shortClient.waitFor('recv', () => true, ctx, 10_000, 0),
      longClient.waitFor('recv', () => true, ctx, 10_000, 0),
    ]);
    if (!shortEcho || !longEcho) throw new Error('a client got no echo');
    ctx.step('Both echoes arrived: the last traffic. Cut the clients off now.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    const t = { short: userTimeoutTick(p, p.shortUserTimeout), long: userTimeoutTick(p, p.userTimeout) };
    ctx.openToLearner();
    const [shortEnd, longEnd] = await Promise.all([
      short.waitFor(['error', 'close'], (e) => e.fields.peer === shortPeer, ctx, (t.short + 10) * 1000, cutAt),
      long.waitFor(['error', 'close'], (e) => e.fields.peer === longPeer, ctx, (t.long + 10) * 1000, cutAt),
    ]);
    const onWire = await ctx.seesCutOnWire();
    if (onWire) await ctx.sleep(0.3);
    ctx.sockets.off('snapshot', watch);
    shortProbes.stop();
    longProbes.stop();
    return {
      keepaliveSeconds: keepaliveSeconds(p),
      shortServerError: shortEnd ? (shortEnd.fields.code ?? 'closed without error') : null,
      shortDetectedAfterSeconds: shortEnd ? secondsBetween(shortEcho.time, shortEnd.time) : null,
      shortProbesInTable: inTable.short,
      shortProbesOnWire: onWire ? shortProbes.count(cutAt, shortEnd?.time ?? Date.now()) : null,
      serverError: longEnd ? (longEnd.fields.code ?? 'closed without error') : null,
      // Since the last traffic (the echo and the client's ACK of it), as the kernel counts.
      detectedAfterSeconds: longEnd ? secondsBetween(longEcho.time, longEnd.time) : null,
      lastTrafficToCutSeconds: secondsBetween(Math.max(shortEcho.time, longEcho.time), cutAt),
      probesInTable: inTable.long,
      probesOnWire: onWire ? longProbes.count(cutAt, longEnd?.time ?? Date.now()) : null,
    };
  },
  check(o, p, t): Check[] {
    const checks: Check[] = [
      is('the short user timeout ends the connection with ETIMEDOUT', o.shortServerError, 'ETIMEDOUT'),
      within(`at the first keepalive tick past ${p.shortUserTimeout} ms`, o.shortDetectedAfterSeconds, t.shortExpectedSeconds as number, 0.5),
      is('the long user timeout ends it with ETIMEDOUT too', o.serverError, 'ETIMEDOUT'),
      within(`at the first keepalive tick past ${p.userTimeout} ms, not at idle + interval × count`, o.detectedAfterSeconds, t.expectedSeconds!, 0.5),
    ];
    if (t.expectedSeconds! > keepaliveSeconds(p)) {
      const seen = o.probesOnWire === null ? `${o.probesInTable} in the socket table` : `${o.probesOnWire} on the wire, ${o.probesInTable} in the socket table`;
      checks.push({
        name: `more probes than TCP_KEEPCNT (${p.count}) go out before it gives up`,
        held: (o.probesInTable as number) > p.count && (o.probesOnWire === null || (o.probesOnWire as number) > p.count),
        detail: `probes: ${seen}`,
      });
    }
    return checks;
  },
});
