import { connectAndSend, noticed, secondsBetween } from './common.ts';
import { defineScenario, is, type Check } from './types.ts';

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
    cut: { type: 'number', default: 2, min: 0.5, max: 60, unit: 'seconds', description: 'How long the network stays cut.' },
    timeout: { type: 'number', default: 30, min: 5, max: 300, unit: 'seconds', description: 'How long to wait for the server to see the close after the restore.' },
  },
  theory: (p) => ({
    summary: `The client's kernel retransmits its FIN at 0.2, 0.6, 1.4, 3.0, 6.2 s… after the close (RTO doubling). After a ${p.cut} s cut, the first retry after the restore reaches the server.`,
  }),
  expectedDuration: (p) => p.cut + 10,
  async run(ctx, p) {
    ctx.step('Start the echo server (no echo).');
    const server = await ctx.startServer(['--no-echo']);
    const { client, peer } = await connectAndSend(ctx, server);
    ctx.step('Cut the network, then close the client app: its kernel queues a FIN it cannot send.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    ctx.lab.signal(client.proc, 'SIGTERM');
    await ctx.race(client.proc.exited);
    await ctx.sleep(p.cut);
    ctx.step('Restore the network with the same address.');
    await ctx.lab.restore();
    const restoredAt = Date.now();
    const close = await server.waitFor('close', (e) => e.fields.peer === peer, ctx, p.timeout * 1000, cutAt);
    ctx.step('Reconnect.');
    const again = await connectAndSend(ctx, server, [], { name: 'client-2' });
    return {
      serverNoticed: close !== null,
      noticedBeforeRestore: noticed(server, peer, cutAt) !== undefined && (close?.time ?? Infinity) < restoredAt,
      noticedAfterRestoreSeconds: close ? secondsBetween(restoredAt, close.time) : null,
      noticedAfterCutSeconds: close ? secondsBetween(cutAt, close.time) : null,
      reconnected: again.peer !== peer,
    };
  },
  check(o): Check[] {
    return [
      is('the server sees the close after the restore', o.serverNoticed, true),
      is('and not before (nothing crossed the cut link)', o.noticedBeforeRestore, false),
      is('the client reconnects', o.reconnected, true),
    ];
  },
});
