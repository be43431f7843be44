import { closeWhileCut, connectAndSend, noticed, retransmissionTimes, secondsBetween, secondsList, TAIL_LOSS_PROBE_SECONDS, timerTolerance } from './common.ts';
import { defineScenario, is, type Check } from './types.ts';

/**
 * The client's kernel sends the FIN at the close, a tail loss probe, then retransmissions
 * at 0.4, 0.8, 1.6, 3.2 … s, eight of them with Linux's default orphan retries (the last at
 * 51.2 s; `cut` stays below it): the first copy after the restore reaches the server. The
 * network comes back `cut` seconds after the cut, which comes a few milliseconds before the
 * close.
 */
function theory(p: { cut: number }) {
  const times = [0, TAIL_LOSS_PROBE_SECONDS, ...retransmissionTimes(8)];
  const delivered = times.findIndex((t) => t >= p.cut);
  const lost = times.slice(0, delivered);
  return {
    summary: `The client's kernel sends its FIN at the close and copies at ${secondsList(times.slice(1, 6))} s… (a tail loss probe, then retransmissions, the timeout doubling). The ${lost.length} sent during the ${p.cut} s cut are lost; the one at ${times[delivered]!.toFixed(1)} s reaches the server, which then sees the close.`,
    expectedSeconds: times[delivered]!,
    copiesLost: lost.length,
    retransmissionsLost: Math.max(0, lost.length - 2),
  };
}

/**
 * Experiment b, the other outcome: a laptop that comes back on the same network with the
 * same address. Its kernel kept the closed connection in FIN-WAIT-1 and kept retrying the
 * FIN with exponential backoff; once the link is back, the next retry reaches the server,
 * which then sees the close.
 */
export default defineScenario({
  id: 'experiment-b-same-address',
  title: 'Experiment b, same address: the pending FIN arrives after the restore',
  description: 'Send, cut, close the client, restore the same address: the queued FIN reaches the server, which sees the close.',
  claim: 'When the client comes back with the same address, the FIN its kernel kept retrying reaches the server, and the server sees the close.',
  params: {
    cut: { type: 'number', default: 2, min: 0.5, max: 50, unit: 'seconds', description: "How long the network stays cut (under 51.2 s, the client kernel's last retransmission)." },
    timeout: { type: 'number', default: 30, min: 5, max: 300, unit: 'seconds', description: 'How long to wait for the server to see the close after the restore.' },
  },
  theory,
  expectedDuration: (p) => p.cut + 10,
  async run(ctx, p) {
    const { server, peer, cutAt, copies, kernel } = await closeWhileCut(ctx, 'Cut the network, then close the client app: its kernel sends the FIN, which is lost, and keeps resending it.');
    let close: Awaited<ReturnType<typeof server.waitFor>> = null;
    let restoredAt = 0;
    try {
      await ctx.sleep(Math.max(0, p.cut - secondsBetween(cutAt, Date.now())));
      ctx.step('Restore the network with the same address.');
      await ctx.lab.restore();
      restoredAt = Date.now();
      close = await server.waitFor('close', (e) => e.fields.peer === peer, ctx, p.timeout * 1000, cutAt);
    } finally {
      kernel.stop();
      copies.stop();
    }
    const closedAt = copies.times[0] ?? kernel.entered;
    const since = (t: number | undefined | null) => (t == null || closedAt === null ? null : secondsBetween(closedAt, t));
    ctx.step('Reconnect.');
    const again = await connectAndSend(ctx, server, [], { name: 'client-2' });
    return {
      serverNoticed: close !== null,
      noticedBeforeRestore: noticed(server, peer, cutAt) !== undefined && (close?.time ?? Infinity) < restoredAt,
      noticedAfterRestoreSeconds: close ? secondsBetween(restoredAt, close.time) : null,
      noticedAfterCutSeconds: close ? secondsBetween(cutAt, close.time) : null,
      noticedAfterCloseSeconds: close ? since(close.time) : null,
      // The client's kernel, from its table: the retransmissions lost in the cut (the one that
      // got through is acknowledged within a millisecond, often before a read sees it).
      retransmissionsLost: kernel.resends.filter((t) => t < restoredAt).length,
      finAcknowledgedAfterCloseSeconds: kernel.left ? since(kernel.left.time) : null,
      // With a capture on the client's link (tcpdump), every copy of the FIN that left; else null.
      finCopiesLost: copies.available ? copies.times.filter((t) => t < restoredAt).length : null,
      deliveredCopyAfterCloseSeconds: copies.available ? since(copies.times.find((t) => t >= restoredAt)) : null,
      reconnected: again.peer !== peer,
      cutMethod: ctx.lab.cutMethod,
    };
  },
  check(o, p, t): Check[] {
    const at = t.expectedSeconds!;
    const checks: Check[] = [
      is('the server sees the close after the restore', o.serverNoticed, true),
      is('and not before (nothing crossed the cut link)', o.noticedBeforeRestore, false),
      is('the client reconnects', o.reconnected, true),
    ];
    // With the client's link set down instead of a bridge's port (no bridges here), its
    // kernel cannot send at all, and retries on another timer: the schedule does not apply.
    if (o.cutMethod !== 'bridge') return checks;
    checks.push(
      {
        name: `at the client kernel's first retransmission after the restore, ${at.toFixed(1)} s after the close`,
        held: typeof o.noticedAfterCloseSeconds === 'number' && Math.abs(o.noticedAfterCloseSeconds - at) <= timerTolerance(at),
        detail: `measured ${String(o.noticedAfterCloseSeconds)} s, theory ${at.toFixed(3)} s (tolerance ±${timerTolerance(at).toFixed(2)} s)`,
      },
      is(`the ${t.retransmissionsLost as number} retransmissions during the cut were lost`, o.retransmissionsLost, t.retransmissionsLost),
    );
    if (o.finCopiesLost !== null) checks.push(is(`the ${t.copiesLost as number} copies of the FIN sent during the cut left the client and were lost`, o.finCopiesLost, t.copiesLost));
    return checks;
  },
});
