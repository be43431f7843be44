import { connectAndSend, noticed, rowFor, secondsBetween } from './common.ts';
import { defineScenario, is, type Check } from './types.ts';

/**
 * Experiment a of the article: the client sends a frame, then its network is cut.
 * Nothing crosses the link afterwards, so the server's kernel has no reason to change
 * anything: the connection stays ESTABLISHED, with no timer, for as long as we wait.
 */
export default defineScenario({
  id: 'experiment-a',
  title: 'Experiment a: the client vanishes, the server notices nothing',
  description: 'Send a frame, cut the client off: the server keeps an ESTAB connection with no timer.',
  claim: 'After the client is cut off, the server still shows the connection ESTABLISHED, with no timer, after {wait} s, and logs nothing.',
  params: {
    wait: { type: 'number', default: 10, min: 2, max: 600, unit: 'seconds', description: 'How long to watch the server after the cut.' },
  },
  theory: (p) => ({
    summary: `No segment crosses the link after the cut and nothing is waiting to be sent, so no timer runs: the socket stays ESTAB for ${p.wait} s and, without keepalive, forever.`,
  }),
  expectedDuration: (p) => p.wait + 3,
  async run(ctx, p) {
    ctx.step('Start the echo server (no echo, as in the article: it only reads).');
    const server = await ctx.startServer(['--no-echo']);
    ctx.step('Start a client; it sends one frame.');
    const { peer } = await connectAndSend(ctx, server);
    ctx.step('Cut the client\'s network: no FIN, no RST, nothing.');
    await ctx.lab.cut();
    const cutAt = Date.now();
    ctx.step(`Watch the server's kernel for ${p.wait} s.`);
    ctx.openToLearner();
    await ctx.sleep(p.wait);
    const { rows, time } = await ctx.snapshot();
    const row = rowFor(rows, peer);
    return {
      serverState: row?.state ?? 'gone',
      serverTimer: row?.timer?.name ?? 'none',
      sendQueueBytes: row?.sendQ ?? 0,
      waitedSeconds: secondsBetween(cutAt, time),
      serverNoticed: noticed(server, peer, cutAt) !== undefined,
      peer,
    };
  },
  check(o, p): Check[] {
    return [
      is('the server still shows the connection ESTABLISHED', o.serverState, 'ESTAB'),
      is('no timer runs on it', o.serverTimer, 'none'),
      is('the server logged nothing about it', o.serverNoticed, false),
      { name: `we waited at least ${p.wait} s`, held: (o.waitedSeconds as number) >= p.wait, detail: `waited ${o.waitedSeconds} s` },
    ];
  },
});
