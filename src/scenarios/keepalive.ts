import type { Packet } from '../lab/tcpdump.ts';
import type { RunContext } from './runner.ts';
import { rowFor, secondsBetween } from './common.ts';
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
 * The kernel's own defaults, read in a host of the lab: a new network namespace starts
 * with the kernel's built-in values (tcp_sk_init), whatever the machine's own sysctls say.
 */
export async function kernelDefaults(ctx: RunContext): Promise<Record<string, number | null>> {
  const names = ['tcp_keepalive_time', 'tcp_keepalive_intvl', 'tcp_keepalive_probes', 'tcp_retries2'];
  const r = await ctx.lab.exec('server', 'cat', names.map((n) => `/proc/sys/net/ipv4/${n}`));
  const values = r.stdout.trim().split('\n').map((v) => (/^\d+$/.test(v.trim()) ? Number(v) : null));
  return Object.fromEntries(names.map((n, i) => [n, values[i] ?? null]));
}

/**
 * Bare ACKs without data from the server to `peer` (host:port), which after a cut are
 * keepalive probes, and the RST the server sends when it gives up.
 */
export function probeCounter(ctx: RunContext, peer: string): { count: (since: number, until: number) => number; rstSent: () => boolean; stop: () => void } {
  const seen: Packet[] = [];
  let rst = false;
  const onPacket = (pk: Packet) => {
    if (`${pk.dst.address}:${pk.dst.port}` !== peer || pk.src.address !== ctx.lab.serverAddress) return;
    if (pk.flags === '.' && pk.length === 0) seen.push(pk);
    if (pk.rst) rst = true;
  };
  ctx.wire.on('packet', onPacket);
  return {
    count: (since, until) => seen.filter((pk) => pk.time * 1000 >= since && pk.time * 1000 <= until).length,
    rstSent: () => rst,
    stop: () => ctx.wire.off('packet', onPacket),
  };
}

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
    const defaults = kernelDefaults(ctx);
    const client = await ctx.startClient(['--count', '1']);
    const peer = client.entries('connect')[0]!.fields.local!;
    // What the kernel's socket table shows for this connection: the timer, and its count
    // of unanswered probes.
    const timers = new Set<string>();
    let probesInTable = 0;
    const watch = (rows: Parameters<typeof rowFor>[0]) => {
      const row = rowFor(rows, peer);
      if (!row?.timer) return;
      timers.add(row.timer.name);
      if (row.timer.name === 'keepalive') probesInTable = Math.max(probesInTable, row.timer.count);
    };
    ctx.sockets.on('snapshot', watch);
    const probes = probeCounter(ctx, peer);
    const echoed = await client.waitFor('recv', () => true, ctx, 10_000, 0);
    if (!echoed) throw new Error('the client got no echo');
    ctx.step('The echo arrived: that is the last traffic. Cut the client off now.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    const expected = keepaliveSeconds(p);
    ctx.openToLearner();
    const error = await server.waitFor(['error', 'close'], (e) => e.fields.peer === peer, ctx, (expected + 10) * 1000, cutAt);
    // Its last packets may come a moment after the server's log line.
    const onWire = await ctx.seesCutOnWire();
    if (onWire) await ctx.sleep(0.3);
    ctx.sockets.off('snapshot', watch);
    probes.stop();
    const d = await defaults;
    return {
      // Before the cut (the idle connection) and after it (the probes): the kernel's timer.
      serverTimer: timers.has('keepalive') ? 'keepalive' : ([...timers][0] ?? 'none'),
      probesInTable,
      probesOnWire: onWire ? probes.count(cutAt, error?.time ?? Date.now()) : null,
      rstOnWire: onWire ? probes.rstSent() : null,
      kernelDefaultKeepaliveTime: d.tcp_keepalive_time,
      kernelDefaultKeepaliveIntvl: d.tcp_keepalive_intvl,
      kernelDefaultKeepaliveProbes: d.tcp_keepalive_probes,
      kernelDefaultRetries2: d.tcp_retries2,
      expectedSeconds: expected,
      detectedAfterSeconds: error ? secondsBetween(cutAt, error.time) : null,
      // The kernel counts idle time from the last segment (the client's ACK of the echo,
      // sent as the echo arrived), a moment before the cut: theory is measured from there.
      detectedAfterLastTrafficSeconds: error ? secondsBetween(echoed.time, error.time) : null,
      serverError: error ? (error.fields.code ?? 'closed without error') : null,
      lastTrafficToCutSeconds: secondsBetween(echoed.time, cutAt),
    };
  },
  check(o, p, t): Check[] {
    return [
      { name: 'the idle connection has a keepalive timer', held: o.serverTimer === 'keepalive', detail: `timer seen: ${o.serverTimer}` },
      { name: 'the server gets ETIMEDOUT', held: o.serverError === 'ETIMEDOUT', detail: `server error: ${o.serverError}` },
      within('within 0.5 s of idle + interval × count after the last traffic', o.detectedAfterLastTrafficSeconds, t.expectedSeconds!, 0.5),
      // Only where the packets can be seen (tcpdump, and a cut that leaves the server's link up).
      ...(o.probesOnWire === null
        ? []
        : [{ name: `${p.count} probes go out unanswered`, held: o.probesOnWire === p.count, detail: `${o.probesOnWire} probes on the wire between the cut and the error` }]),
    ];
  },
});
