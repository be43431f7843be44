import {
  closeWhileCut,
  noticed,
  orphanGaveUpByTheRule,
  orphanGiveUpSeconds,
  retransmissionTimeoutSeconds,
  retransmissionTimes,
  rowFor,
  secondsBetween,
  secondsList,
  TAIL_LOSS_PROBE_SECONDS,
  timerTolerance,
} from './common.ts';
import { defineScenario, is, type Check } from './types.ts';

const ORDINALS = ['zeroth', 'first', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth', 'ninth', 'tenth'];

/** How late the timers must run for the (N+1)th timeout to be past the time (see orphanGiveUpSeconds). */
const lateNeeded = (n: number) => 0.2 / (retransmissionTimes(n + 1).at(-1)! - retransmissionTimes(1)[0]!);

function theory(p: { orphanRetries: number }) {
  const resends = retransmissionTimes(p.orphanRetries);
  const expectedSeconds = orphanGiveUpSeconds(p.orphanRetries);
  const laterGiveUp = retransmissionTimes(p.orphanRetries + 2).at(-1)!;
  return {
    summary:
      `The client's kernel sends the FIN at the close, a tail loss probe ${TAIL_LOSS_PROBE_SECONDS} s later, then retransmits it ${secondsList(resends)} s after the close. ` +
      `tcp_orphan_retries = ${p.orphanRetries} becomes a time, ${retransmissionTimeoutSeconds(p.orphanRetries).toFixed(1)} s from the first retransmission: ` +
      `the kernel checks at each timeout and gives up at the first one past that time, the ${ORDINALS[p.orphanRetries + 1]}, about ${expectedSeconds.toFixed(1)} s after the close, and forgets the connection ` +
      `(on paper that timeout comes 0.2 s short of the time, which timers running a little late make up for; if they run less than ${(100 * lateNeeded(p.orphanRetries)).toFixed(1)} % late, the kernel retransmits once more and gives up at the next timeout, ${laterGiveUp.toFixed(1)} s). ` +
      `With Linux's default (0, which means 8) it gives up about ${orphanGiveUpSeconds(0).toFixed(1)} s after the close.`,
    expectedSeconds,
    orphanRetriesAsSeconds: retransmissionTimeoutSeconds(p.orphanRetries),
    laterGiveUpSeconds: laterGiveUp,
    retransmissionSchedule: secondsList(resends),
    tailLossProbeSeconds: TAIL_LOSS_PROBE_SECONDS,
    defaultGiveUpSeconds: orphanGiveUpSeconds(0),
    defaultLastRetransmissionSeconds: retransmissionTimes(8).at(-1)!,
  };
}

/**
 * Experiment b, back too late: the client's app closes its connection while cut off, and
 * the client comes back with the same address, but only after its kernel has spent its
 * orphan retries on the FIN and forgotten the connection. There is nothing left to
 * deliver: the server's connection stays ESTABLISHED, as in experiment a. The lab lowers
 * net.ipv4.tcp_orphan_retries (a per-namespace sysctl) so that the give-up comes in
 * seconds, not the default's 100; the timeouts are the same doubling.
 *
 * Seen from the client host: its kernel's table (/proc, every 5 ms) for the retransmission
 * count and the give-up, and, with tcpdump, its link for every copy of the FIN that leaves
 * (the original, the tail loss probe and the retransmissions, all lost in the cut).
 */
export default defineScenario({
  id: 'experiment-b-too-late',
  title: "Experiment b, back too late: the client's kernel has given up on its FIN",
  description: "Send, cut, close the client; its kernel resends the FIN, gives up and forgets it; restore: the server's connection stays ESTAB.",
  claim:
    "The client's kernel retransmits the FIN with doubling timeouts and forgets the connection at the first timeout after the time tcp_orphan_retries ({orphanRetries}) stands for has passed; after the restore nothing reaches the server, whose connection stays ESTABLISHED.",
  params: {
    orphanRetries: {
      type: 'integer',
      default: 5,
      // Below 5, whether the kernel gives up at the (N+1)th timeout or one later depends on
      // a few percent of timer lateness (see orphanGiveUpSeconds): the theory would be a coin toss.
      min: 5,
      max: 7,
      description: "The lab's net.ipv4.tcp_orphan_retries: how many times a kernel retransmits for a connection no program holds (Linux default 0, which means 8: about 100 s).",
    },
    late: { type: 'number', default: 1, min: 0.5, max: 30, unit: 'seconds', description: "How long after the client's kernel gives up the network comes back." },
    watch: { type: 'number', default: 2, min: 1, max: 60, unit: 'seconds', description: 'How long to watch the server after the restore.' },
  },
  sysctls: (p) => ({ 'net.ipv4.tcp_orphan_retries': p.orphanRetries }),
  theory,
  expectedDuration: (p) => orphanGiveUpSeconds(p.orphanRetries) + p.late + p.watch + 4,
  async run(ctx, p) {
    if (ctx.lab.cutMethod !== 'bridge') {
      throw new Error(
        "this experiment needs a cut that lets the client's packets leave it (a kernel with bridges, and iproute2's bridge command): with the client's link set down instead, its kernel cannot send its FIN at all",
      );
    }
    const { server, peer, cutAt, copies, kernel } = await closeWhileCut(ctx, 'Cut the network, then close the client app: its kernel keeps the connection and resends the FIN.');
    const expected = theory(p).expectedSeconds;
    try {
      ctx.step(`Keep the network cut until the client's kernel gives up (theory: ${expected.toFixed(1)} s after the close).`);
      // Long enough for the later outcome too (timers running less late: one more timeout).
      const later = theory(p).laterGiveUpSeconds;
      const deadline = Date.now() + (later + timerTolerance(later) + 3) * 1000;
      while (kernel.gone === null && kernel.left === null && Date.now() < deadline) await ctx.sleep(0.05);
    } finally {
      kernel.stop();
    }
    if (kernel.gone !== null) await ctx.sleep(p.late);
    ctx.step('Restore the network with the same address.');
    await ctx.lab.restore();
    const restoredAt = Date.now();
    ctx.step(`Watch the server for ${p.watch} s.`);
    ctx.openToLearner();
    await ctx.sleep(p.watch);
    const { rows } = await ctx.snapshot();
    copies.stop();
    // From the close: the first copy of the FIN on the client's link, else the moment the
    // client's kernel showed FIN-WAIT-1 (the same within milliseconds).
    const closedAt = copies.times[0] ?? kernel.entered;
    const since = (t: number | null) => (t === null || closedAt === null ? null : secondsBetween(closedAt, t));
    const resends = kernel.resends.map((t) => since(t)!);
    const schedule = retransmissionTimes(resends.length);
    return {
      finRetransmissions: resends.length,
      finRetransmissionsSeconds: resends,
      retransmissionsOnSchedule: resends.length >= p.orphanRetries && resends.every((t, i) => Math.abs(t - schedule[i]!) <= timerTolerance(schedule[i]!)),
      gaveUpByTheRule: orphanGaveUpByTheRule(p.orphanRetries, resends, since(kernel.gone)),
      // Only with a capture on the client's link (tcpdump): null without.
      finCopiesSent: copies.available ? copies.times.filter((t) => kernel.gone === null || t <= kernel.gone).length : null,
      tailLossProbeSeconds: copies.available && copies.times.length > 1 ? since(copies.times[1]!) : null,
      clientGaveUp: kernel.gone !== null,
      clientGaveUpAfterSeconds: since(kernel.gone),
      restoredAfterGiveUpSeconds: kernel.gone === null ? null : secondsBetween(kernel.gone, restoredAt),
      serverState: rowFor(rows, peer)?.state ?? 'gone',
      serverNoticed: noticed(server, peer, cutAt) !== undefined,
      peer,
    };
  },
  check(o, p, t): Check[] {
    const checks: Check[] = [
      {
        name: `the client's kernel retransmits the FIN at ${t.retransmissionSchedule as string} s after the close`,
        held: o.retransmissionsOnSchedule === true,
        detail: `measured ${JSON.stringify(o.finRetransmissionsSeconds)} s (each within 0.05 s + 1/8 of its time)`,
      },
      {
        name: `and gives up at the first timeout ${(t.orphanRetriesAsSeconds as number).toFixed(1)} s or more after its first retransmission (tcp_orphan_retries = ${p.orphanRetries} as a time)`,
        held: o.gaveUpByTheRule === true,
        detail: `gave up ${String(o.clientGaveUpAfterSeconds)} s after the close, after ${String(o.finRetransmissions)} retransmissions (theory: about ${t.expectedSeconds!.toFixed(1)} s, after ${p.orphanRetries})`,
      },
      is('after the restore the server still shows the connection ESTABLISHED', o.serverState, 'ESTAB'),
      is('the server logged nothing about it', o.serverNoticed, false),
    ];
    // With a capture: the original, the tail loss probe and every retransmission left the client.
    if (o.finCopiesSent !== null) checks.push(is('every copy of the FIN left the client and was lost in the cut', o.finCopiesSent, (o.finRetransmissions as number) + 2));
    return checks;
  },
});
