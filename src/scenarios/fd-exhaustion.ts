import { probeCapability } from '../lab/lab.ts';
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
    const cap = await probeCapability();
    ctx.step(`Start the echo server with a limit of ${p.fdLimit} descriptors, echoing at once${cap.strace ? ', its failing accept() calls traced by strace' : ''}.`);
    const server = await ctx.startServer(['--echo-delay', '0'], { fdLimit: p.fdLimit, traceAccept: cap.strace });
    const fdLimit = Number(server.entries('listen')[0]!.fields.fdLimit);
    // Node never reports a failed accept(): libuv closes a spare descriptor, accepts the
    // connection, closes it and carries on, so the server logs nothing. strace sees the
    // kernel's answer: accept4(…) = -1 EMFILE (Too many open files).
    let failure = null as null | { code: string; time: number };
    const onLine = (stream: string, line: string) => {
      const m = /accept4?\(.*\)\s*= -1 (EMFILE|ENFILE)/.exec(line);
      if (stream === 'stderr' && m && !failure) failure = { code: m[1]!, time: Date.now() };
    };
    server.proc.on('line', onLine);
    let rounds = 0;
    let halfOpen = 0;
    for (; rounds < p.maxRounds && !failure; rounds++) {
      ctx.step(`Round ${rounds + 1}: a client opens ${p.perRound} connections from ${ctx.lab.clientAddress}, then vanishes.`);
      const client = await ctx.startClient(['--connections', String(p.perRound), '--count', '1'], { name: `client-${rounds + 1}`, connections: p.perRound });
      // Every connection got its echo, or one was closed unserved (accept failed).
      const outcome = await client.waitFor(['recv', 'close'], (e) => e.event === 'close' || client.entries('recv').length >= p.perRound, ctx, 10_000, 0);
      if (outcome?.event === 'close' && !failure && cap.strace) {
        // A connection closed unserved: strace's line about it may still be on its way.
        for (let i = 0; i < 20 && !failure; i++) await ctx.sleep(0.05);
      }
      if (outcome?.event === 'close' && !failure) failure = { code: cap.strace ? 'unknown' : 'not seen (no strace)', time: outcome.time };
      if (failure) {
        const { rows } = await ctx.snapshot();
        halfOpen = ctx.serverConnections(rows).filter((r) => r.state === 'ESTAB' && r.peer.address !== ctx.lab.clientAddress).length;
      }
      await ctx.lab.cut();
      ctx.lab.signal(client.proc, 'SIGKILL');
      await ctx.race(client.proc.exited);
      await ctx.lab.restoreWithNewAddress();
    }
    let newClientServed = false;
    if (failure) {
      ctx.step(`accept() failed (${failure.code}) with ${halfOpen} half-open connections. A new client tries to connect from ${ctx.lab.clientAddress}.`);
      const client = await ctx.startClient(['--count', '1'], { name: 'client-new' });
      const recv = await client.waitFor(['recv', 'close'], () => true, ctx, 3000, 0);
      newClientServed = recv?.event === 'recv';
    }
    server.proc.off('line', onLine);
    return {
      fdLimit,
      rounds,
      halfOpenAtFailure: failure ? halfOpen : null,
      acceptError: failure?.code ?? null,
      acceptErrorSeenBy: cap.strace ? 'strace' : 'client (closed unserved); install strace to see the failing accept()',
      newClientServed,
      serverLoggedTheFailure: server.log.some((e) => e.event === 'accept-error'),
      serverStillRunning: server.proc.running,
    };
  },
  check(o, p): Check[] {
    return [
      is('the server runs with the descriptor limit', o.fdLimit, p.fdLimit),
      o.acceptErrorSeenBy === 'strace'
        ? is('accept() fails with EMFILE', o.acceptError, 'EMFILE')
        : {
            name: 'accept() fails with EMFILE',
            held: false,
            detail: 'strace is not installed, so the failing accept() cannot be seen (Node never reports it); install strace and run again',
          },
      { name: 'half-open connections fill the table', held: typeof o.halfOpenAtFailure === 'number' && o.halfOpenAtFailure > p.fdLimit / 3, detail: `${o.halfOpenAtFailure} half-open connections at the failure, limit ${p.fdLimit}` },
      is('a new client is not served', o.newClientServed, false),
      is('the server process itself is still running', o.serverStillRunning, true),
    ];
  },
});
