import { connectAndSend, noticed, rowFor } from './common.ts';
import { defineScenario, is, type Check } from './types.ts';

/**
 * Experiment b, the article's case: a phone loses signal, the app is closed, the phone
 * re-joins the mobile network with a new address and the app reconnects. The FIN the
 * phone's kernel owes the server for the old connection can no longer be sent (its source
 * address is gone), so every old connection stays ESTABLISHED on the server.
 */
export default defineScenario({
  id: 'experiment-b',
  title: 'Experiment b: reconnecting from a new address leaves the old connections behind',
  description: 'Send, cut, close the client, come back with a new address, reconnect (repeat): old connections stay ESTAB.',
  claim: 'After {reconnects} reconnects from new addresses, every old connection is still ESTABLISHED on the server beside the new one.',
  params: {
    reconnects: { type: 'integer', default: 2, min: 1, max: 10, description: 'How many times the client vanishes and comes back with a new address.' },
    settle: { type: 'number', default: 2, min: 0.5, max: 60, unit: 'seconds', description: 'How long to watch the server after the last reconnect.' },
  },
  theory: (p) => ({
    summary: `Each old connection's FIN is stuck in the client's kernel (FIN-WAIT-1) with a source address it no longer has; the server receives nothing, so ${p.reconnects} old connections stay ESTAB.`,
  }),
  expectedDuration: (p) => p.reconnects * 2 + p.settle + 3,
  async run(ctx, p) {
    ctx.step('Start the echo server (no echo).');
    const server = await ctx.startServer(['--no-echo']);
    const old: string[] = [];
    let current = await connectAndSend(ctx, server, [], { name: 'client-1' });
    for (let i = 1; i <= p.reconnects; i++) {
      ctx.step(`Round ${i}: cut the network, close the client app, come back with a new address.`);
      await ctx.lab.cut();
      ctx.lab.signal(current.client.proc, 'SIGTERM');
      await ctx.race(current.client.proc.exited);
      await ctx.lab.restoreWithNewAddress();
      old.push(current.peer);
      ctx.step(`Reconnect from ${ctx.lab.clientAddress}.`);
      current = await connectAndSend(ctx, server, [], { name: `client-${i + 1}` });
    }
    ctx.openToLearner();
    await ctx.sleep(p.settle);
    const { rows } = await ctx.snapshot();
    const oldConnections = old.map((peer) => ({ peer, state: rowFor(rows, peer)?.state ?? 'gone', noticed: noticed(server, peer) !== undefined }));
    const newRow = rowFor(rows, current.peer);
    // What the server saw, not what was asked: each reconnect is an accepted connection from
    // an address the client did not have before.
    const addresses = [...new Set(server.entries('accept').map((e) => (e.fields.peer ?? '').replace(/:\d+$/, '')))];
    return {
      reconnects: addresses.length - 1,
      clientAddresses: addresses,
      oldConnectionsStillEstablished: oldConnections.every((c) => c.state === 'ESTAB'),
      oldConnectionsEstablished: oldConnections.filter((c) => c.state === 'ESTAB').length,
      oldConnections,
      newConnectionState: newRow?.state ?? 'gone',
      serverNoticed: oldConnections.some((c) => c.noticed),
      establishedOnServer: rows.filter((r) => r.state === 'ESTAB').length,
    };
  },
  check(o, p): Check[] {
    return [
      is(`all ${p.reconnects} old connections are still ESTABLISHED`, o.oldConnectionsStillEstablished, true),
      is('the new connection is ESTABLISHED beside them', o.newConnectionState, 'ESTAB'),
      is('the server noticed none of the old ones ending', o.serverNoticed, false),
      is('reconnects from a new address, as the server saw them', o.reconnects, p.reconnects),
    ];
  },
});
