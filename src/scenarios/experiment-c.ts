import { connectAndSend, retransmissionTimeoutSeconds, rowFor, secondsBetween } from './common.ts';
import type { Packet } from '../lab/tcpdump.ts';
import { atLeastThenSoon, defineScenario, is, type Check } from './types.ts';


/**
 * How late after the write TCP_USER_TIMEOUT may end the connection. The kernel counts the
 * user timeout from the first retransmission (tp->retrans_stamp, set in
 * tcp_retransmit_skb()), not from the write: a tail loss probe (which does not count) and
 * one RTO of at least 200 ms come first, and since Linux 4.19 the retransmission timer is
 * clamped to fire at the deadline. Measured here 0.4–0.7 s after the limit (kernel 6.18).
 */
export const USER_TIMEOUT_LATENESS = 1;

function theory(p: { retries2: number; userTimeout: number }) {
  const byRetries = retransmissionTimeoutSeconds(p.retries2);
  const expectedSeconds = p.userTimeout > 0 ? Math.min(p.userTimeout / 1000, byRetries) : byRetries;
  return {
    summary:
      p.userTimeout > 0
        ? `TCP_USER_TIMEOUT = ${p.userTimeout} ms: the kernel gives up ${expectedSeconds.toFixed(1)} s after its first retransmission, a few hundred milliseconds after the unacknowledged write.`
        : `tcp_retries2 = ${p.retries2}: retransmissions back off from 0.2 s, doubling; the kernel gives up at the first retransmission timeout at least ${byRetries.toFixed(1)} s after the write (with the Linux default of 15: ${retransmissionTimeoutSeconds(15).toFixed(1)} s, over 15 minutes).`,
    expectedSeconds,
    defaultRetries2Seconds: retransmissionTimeoutSeconds(15),
  };
}

/**
 * Experiment c: the server writes its echo to a client that is already gone. write()
 * only copies bytes into the kernel's send buffer, so it succeeds. The kernel then
 * retransmits with exponential backoff until tcp_retries2 (or TCP_USER_TIMEOUT) gives up.
 */
export default defineScenario({
  id: 'experiment-c',
  title: 'Experiment c: writing to a vanished client succeeds',
  description: 'The server echoes to a cut-off client: write() succeeds, Send-Q fills, retransmissions back off until ETIMEDOUT.',
  claim:
    "The server's write() to the cut-off client succeeds; the bytes wait in Send-Q while the kernel retransmits with growing backoff, and only when its retry budget is spent does the server get ETIMEDOUT.",
  params: {
    echoDelay: { type: 'number', default: 3, min: 0.5, max: 60, unit: 'seconds', description: 'Delay before the server echoes (the article used 5 s).' },
    retries2: { type: 'integer', default: 5, min: 3, max: 15, description: 'The lab\'s net.ipv4.tcp_retries2 (Linux default 15, about 15 minutes).' },
    userTimeout: { type: 'integer', default: 0, min: 0, max: 120000, unit: 'ms, 0 = off', description: 'TCP_USER_TIMEOUT on the server socket.' },
  },
  sysctls: (p) => ({ 'net.ipv4.tcp_retries2': p.retries2 }),
  theory,
  expectedDuration: (p) => p.echoDelay + (p.userTimeout > 0 ? p.userTimeout / 1000 : retransmissionTimeoutSeconds(p.retries2)) + 4,
  async run(ctx, p) {
    const args = ['--echo-delay', String(p.echoDelay)];
    if (p.userTimeout > 0) args.push('--user-timeout', String(p.userTimeout));
    ctx.step(`Start the echo server (echo after ${p.echoDelay} s).`);
    const server = await ctx.startServer(args);
    const { peer } = await connectAndSend(ctx, server);
    ctx.step('Cut the client off before the echo is due.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    const echo = await server.waitFor('echo', (e) => e.fields.peer === peer, ctx, (p.echoDelay + 5) * 1000, cutAt);
    ctx.step('The server wrote its echo. Watch Send-Q and the retransmission timer.');
    // Every copy of the echo that leaves the server (the original, then the resends).
    const copies: number[] = [];
    const onPacket = (pk: Packet) => {
      if (`${pk.dst.address}:${pk.dst.port}` === peer && pk.length > 0) copies.push(pk.time * 1000);
    };
    ctx.wire.on('packet', onPacket);
    let sendQueueBytes = 0;
    let retransmits = 0;
    let timerName = 'none';
    const watch = (rows: Parameters<typeof rowFor>[0]) => {
      const row = rowFor(rows, peer);
      if (!row) return;
      sendQueueBytes = Math.max(sendQueueBytes, row.sendQ);
      if (row.timer) {
        if (row.timer.name === 'on') timerName = 'on';
        retransmits = Math.max(retransmits, row.timer.count);
      }
    };
    ctx.sockets.on('snapshot', watch);
    const expected = theory(p).expectedSeconds;
    ctx.openToLearner();
    const error = await server.waitFor(['error', 'close'], (e) => e.fields.peer === peer, ctx, (expected + 10) * 1000, cutAt);
    ctx.sockets.off('snapshot', watch);
    const onWire = await ctx.seesCutOnWire();
    if (onWire) await ctx.sleep(0.2);
    ctx.wire.off('packet', onPacket);
    // Times of the resends after the original (which left as the server wrote), and the gaps.
    const resends = copies.slice(1).map((t) => (t - copies[0]!) / 1000);
    const gaps = resends.map((t, i) => t - (i === 0 ? 0 : resends[i - 1]!));
    return {
      writeSucceeded: echo?.fields.write === 'ok',
      resendsOnWire: onWire ? resends.length : null,
      firstResendAfterWriteSeconds: onWire && resends.length ? +resends[0]!.toFixed(3) : null,
      // From the third gap on, each about twice the one before (the first two: tail loss probe, then the RTO).
      resendGapsDouble: onWire && gaps.length >= 4 ? gaps.slice(2).every((g, i) => g / gaps[i + 1]! > 1.6 && g / gaps[i + 1]! < 2.5) : null,
      resendGapsSeconds: onWire ? gaps.map((g) => +g.toFixed(3)) : null,
      sendQueueBytes,
      retransmits,
      timer: timerName,
      serverError: error?.fields.code ?? (error ? 'closed without error' : null),
      errorAfterWriteSeconds: echo && error ? secondsBetween(echo.time, error.time) : null,
      errorAfterCutSeconds: error ? secondsBetween(cutAt, error.time) : null,
    };
  },
  check(o, p, t): Check[] {
    return [
      is('write() reports success', o.writeSucceeded, true),
      { name: 'Send-Q holds the echoed bytes', held: (o.sendQueueBytes as number) > 0, detail: `max Send-Q ${o.sendQueueBytes} bytes` },
      { name: 'the retransmission timer runs and its count grows', held: o.timer === 'on' && (o.retransmits as number) >= 2, detail: `timer ${o.timer}, ${o.retransmits} retransmissions seen` },
      is('the server finally gets ETIMEDOUT', o.serverError, 'ETIMEDOUT'),
      p.userTimeout > 0
        ? atLeastThenSoon('it comes once TCP_USER_TIMEOUT has passed since the write', o.errorAfterWriteSeconds, t.expectedSeconds!, USER_TIMEOUT_LATENESS)
        : atLeastThenSoon(
            'it comes once the retry budget is spent, at the next retransmission timeout',
            o.errorAfterWriteSeconds,
            t.expectedSeconds!,
            t.expectedSeconds! * 0.1 + 0.3,
          ),
    ];
  },
});
