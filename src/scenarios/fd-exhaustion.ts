import { defineScenario, is, type Check } from './types.ts';

/**
 * The incident itself. Every vanished client leaves an ESTABLISHED connection, and each
 * holds a file descriptor in the server process. With a descriptor limit (ulimit -n),
 * accept() eventually fails with EMFILE and a new client cannot be served, though the
 * server process is alive and its listening socket is fine.
 */
export default defineScenario({
  id: 'fd-exhaustion',
  title: 'The incident: half-open connections exhaust the descriptors',
  description: 'Clients keep vanishing and reconnecting until accept() fails with EMFILE and a new client is not served.',
  claim: 'With a limit of {fdLimit} descriptors, half-open connections from vanished clients pile up until accept() fails with EMFILE, and then a new client cannot be served.',
  params: {
    fdLimit: { type: 'integer', default: 48, min: 32, max: 4096, description: 'The server process\'s descriptor limit (RLIMIT_NOFILE, as ulimit -n).' },
    perRound: { type: 'integer', default: 6, min: 1, max: 100, description: 'Connections each vanishing client opens.' },
    maxRounds: { type: 'integer', default: 40, min: 1, max: 200, description: 'Give up if accept has not failed after this many rounds.' },
  },
  theory: (p) => ({
    summary: `The process needs some descriptors of its own (stdio, epoll, Node's internals); the rest of the ${p.fdLimit} go to connections. Nothing ever closes a half-open one, so they only pile up.`,
  }),
  expectedDuration: (p) => Math.min(p.maxRounds, Math.ceil(p.fdLimit / p.perRound) + 2) * 1.5 + 6,
  async run(ctx, p) {
    ctx.step(`Start the echo server with a limit of ${p.fdLimit} descriptors, echoing at once.`);
    const server = await ctx.startServer(['--echo-delay', '0'], { fdLimit: p.fdLimit });
    const fdLimit = Number(server.entries('listen')[0]!.fields.fdLimit);
    let failure = null as null | { code: string; time: number };
    let rounds = 0;
    for (; rounds < p.maxRounds && !failure; rounds++) {
      ctx.step(`Round ${rounds + 1}: a client opens ${p.perRound} connections from ${ctx.lab.clientAddress}, then vanishes.`);
      const since = Date.now();
      const client = await ctx.startClient(['--connections', String(p.perRound), '--count', '1'], { name: `client-${rounds + 1}`, connections: p.perRound });
      // Wait until every connection got its echo, or accept failed.
      await Promise.race([
        client.waitFor('recv', () => client.entries('recv').length >= p.perRound, ctx, 10_000, 0),
        server.waitFor('accept-error', () => true, ctx, 10_000, since),
      ]);
      const err = server.entries('accept-error')[0];
      if (err) failure = { code: err.fields.code ?? 'unknown', time: err.time };
      await ctx.lab.cut();
      ctx.lab.signal(client.proc, 'SIGKILL');
      await ctx.race(client.proc.exited);
      await ctx.lab.restoreWithNewAddress();
    }
    const { rows } = await ctx.snapshot();
    const halfOpen = ctx.serverConnections(rows).filter((r) => r.state === 'ESTAB' && r.peer.address !== ctx.lab.clientAddress).length;
    let newClientServed = false;
    if (failure) {
      ctx.step(`accept() failed with ${failure.code}. A new client tries to connect from ${ctx.lab.clientAddress}.`);
      const client = await ctx.startClient(['--count', '1'], { name: 'client-new' });
      const recv = await client.waitFor('recv', () => true, ctx, 3000, 0);
      newClientServed = recv !== null;
    }
    return {
      fdLimit,
      rounds,
      halfOpenAtFailure: failure ? halfOpen : null,
      acceptError: failure?.code ?? null,
      newClientServed,
      acceptErrors: server.entries('accept-error').length,
      serverStillRunning: server.proc.running,
    };
  },
  check(o, p): Check[] {
    return [
      is('the server runs with the descriptor limit', o.fdLimit, p.fdLimit),
      is('accept() fails with EMFILE', o.acceptError, 'EMFILE'),
      { name: 'half-open connections fill the table', held: typeof o.halfOpenAtFailure === 'number' && o.halfOpenAtFailure > p.fdLimit / 3, detail: `${o.halfOpenAtFailure} half-open connections at the failure, limit ${p.fdLimit}` },
      is('a new client is not served', o.newClientServed, false),
      is('the server process itself is still running', o.serverStillRunning, true),
    ];
  },
});
