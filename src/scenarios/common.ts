/** Small helpers the scenarios share. */
import type { WireCapture, WireStatus } from '../lab/observers.ts';
import type { SocketRow, TcpState } from '../lab/ss.ts';
import { packetFields, type Packet } from '../lab/tcpdump.ts';
import type { Demo, LogEntry, RunContext } from './runner.ts';

export const key = (r: SocketRow): string => `${r.peer.address}:${r.peer.port}`;

/** The server's row for a client connection, by the client's address:port. */
export function rowFor(rows: SocketRow[], peer: string): SocketRow | undefined {
  return rows.find((r) => r.state !== 'LISTEN' && key(r) === peer);
}

/** Events in a server log that show it noticed a connection ending. */
export const NOTICE_EVENTS = ['close', 'error', 'timeout', 'bad-frame'];

export function noticed(server: Demo, peer: string, since = 0): LogEntry | undefined {
  return server.log.find((e) => e.time >= since && NOTICE_EVENTS.includes(e.event) && e.fields.peer === peer);
}

/** Seconds between two epoch-ms times, rounded to the millisecond. */
export const secondsBetween = (from: number, to: number): number => Math.round(to - from) / 1000;

/**
 * Starts a client that sends one frame and waits until the server has logged it.
 * Returns the client and its address:port as the server sees it.
 */
export async function connectAndSend(
  ctx: RunContext,
  server: Demo,
  clientArgs: string[] = [],
  options: { name?: string; port?: number } = {},
): Promise<{ client: Demo; peer: string }> {
  const client = await ctx.startClient(['--count', '1', ...clientArgs], options);
  const local = client.entries('connect')[0]!.fields.local!;
  const frame = await server.waitFor('frame', (e) => e.fields.peer === local, ctx, 10_000, 0);
  if (!frame) throw new Error(`the server did not receive the client's frame from ${local}`);
  return { client, peer: local };
}

/**
 * TCP's retransmission timeout after tcp_retries2 (RFC 6298 backoff from the 200 ms floor,
 * doubling up to TCP_RTO_MAX = 120 s), as Linux computes it in tcp_model_timeout().
 */
export function retransmissionTimeoutSeconds(retries2: number, rtoMin = 0.2, rtoMax = 120): number {
  let total = 0;
  let rto = rtoMin;
  for (let i = 0; i <= retries2; i++) {
    total += rto;
    rto = Math.min(rto * 2, rtoMax);
  }
  return total;
}

/** What the client's kernel did with a connection its program closed, seen from /proc. */
export interface ClientKernelWatch {
  /** Epoch ms the connection was first seen in FIN-WAIT-1 (the program closed it). */
  entered: number | null;
  /** Epoch ms of each retransmission the client's kernel made while in FIN-WAIT-1. */
  resends: number[];
  /** Epoch ms the connection left that state (the FIN was acknowledged), and the state it went to. */
  left: { time: number; to: string } | null;
  /** Epoch ms the client's kernel dropped the connection altogether while still in that state. */
  gone: number | null;
  /** Takes a last look (what happened since the last read counts), then stops watching. */
  stop(): void;
}

/** How often the client's table is read: a read costs about 0.1 ms (each host has a TCP hash table of its own: Lab.create). */
const CLIENT_POLL_MS = 5;

/**
 * Watches the client host's kernel hold a connection after its program has exited (an
 * orphan in FIN-WAIT-1): every retransmission of the FIN, and the moment the connection
 * leaves that state or disappears. Each is recorded on the timeline as the client
 * kernel's, so the client's terminal and the picture show what the kernel did for the
 * program it no longer has.
 */
export function watchClientKernel(ctx: RunContext, local: string, options: { recordResends?: boolean } = {}): ClientKernelWatch {
  const state: TcpState = 'FIN-WAIT-1';
  let active = true;
  const halt = () => {
    active = false;
    clearInterval(timer);
  };
  const watch: ClientKernelWatch = {
    entered: null,
    resends: [],
    left: null,
    gone: null,
    stop: () => {
      if (active) poll();
      halt();
    },
  };
  let seen = false;
  let retransmits = 0;
  const record = (at: number, event: string, line: string, extra: Record<string, unknown> = {}) =>
    ctx.record({ t: ctx.lab.t(at), source: 'client', event, name: 'client kernel', line, ...extra });
  const poll = () => {
    const rows = ctx.lab.tcpTable('client');
    if (!rows) return halt();
    const now = Date.now();
    const row = rows.find((r) => r.local === local && r.state !== 'LISTEN');
    if (!row) {
      if (seen && !watch.left) {
        watch.gone = now;
        record(now, 'kernel-gone', `gave up on ${local} in ${state} after ${retransmits} retransmission${retransmits === 1 ? '' : 's'}: the connection is forgotten`, { retransmits });
      }
      // Gone, or never there (the connection ended before the watch began).
      halt();
      return;
    }
    if (row.state !== state) {
      // Before: the program has not closed it yet. After: the server acknowledged the FIN.
      if (!seen) return;
      watch.left = { time: now, to: row.state };
      record(now, 'kernel-state', `${local}: ${state} → ${row.state} (the server acknowledged the FIN)`, { from: state, to: row.state });
      return halt();
    }
    if (!seen) {
      seen = true;
      watch.entered = now;
      record(now, 'kernel-state', `${local} is ${state}, held by the kernel alone${row.orphan ? ' (orphan)' : ''}`, { to: state });
    }
    if (row.retransmits > retransmits) {
      retransmits = row.retransmits;
      watch.resends.push(now);
      if (options.recordResends ?? true)
        record(now, 'kernel-resend', `resent the FIN of ${local} (retransmission ${retransmits}, next try in ${(row.timerMs / 1000).toFixed(1)} s)`, { retransmits, nextMs: row.timerMs });
    }
  };
  const timer = setInterval(poll, CLIENT_POLL_MS);
  poll();
  return watch;
}

/**
 * The tail loss probe: with one segment in flight (a lone FIN, say), the kernel sends a copy
 * of it one probe timeout after the first, 2 × SRTT + 200 ms (tcp_schedule_loss_probe(),
 * RFC 8985), before any retransmission timeout. It does not count as a retransmission. The
 * lab's round trip is a few microseconds, so: 0.2 s.
 */
export const TAIL_LOSS_PROBE_SECONDS = 0.2;

/**
 * How late a kernel timer may fire: the retransmission timeout is 200 ms plus the SRTT,
 * rounded up to the kernel's ticks, and the timer wheel fires a long timer up to 1/8 of
 * its timeout late. Measured here: about 5 % late, a little more with every doubling.
 */
export const timerTolerance = (seconds: number): number => 0.05 + seconds / 8;

/**
 * When a kernel sends the counted retransmissions of a lone segment on the lab's link, in
 * seconds after the first copy: one retransmission timeout (the 200 ms floor) after the
 * tail loss probe, doubling: 0.4, 0.8, 1.6, 3.2, 6.4 …
 */
export function retransmissionTimes(count: number, rtoMin = 0.2, rtoMax = 120): number[] {
  const at: number[] = [];
  let t = TAIL_LOSS_PROBE_SECONDS;
  let rto = rtoMin;
  for (let i = 0; i < count; i++) {
    t += rto;
    at.push(Math.round(t * 1000) / 1000);
    rto = Math.min(rto * 2, rtoMax);
  }
  return at;
}

/**
 * When the kernel gives up on a connection no program holds (an orphan: a FIN after the
 * program closed and exited), in seconds after the FIN. tcp_orphan_retries (N; 0 means 8)
 * is turned into a time, as tcp_retries2 is: tcp_model_timeout() = 0.2 × (2^(N+1) − 1) s
 * (retransmissionTimeoutSeconds), counted from the first retransmission (tp->retrans_stamp;
 * the tail loss probe does not set it). The kernel checks at each retransmission timeout
 * and gives up at the first one at which that time has passed (retransmits_timed_out()).
 *
 * On paper the (N+1)th timeout comes 0.2 s short of it, and the kernel would retransmit
 * once more. But a timeout is never on time: the RTO is 200 ms plus the SRTT, rounded up to
 * the kernel's ticks, and timers fire late; a total lateness of 0.2 s by then is enough
 * (measured here: about 4 %, 0.5 s by the sixth timeout; on a real network the RTO is above
 * its floor anyway). So: the (N+1)th timeout, 0.2 × 2^(N+1) s after the FIN, after N
 * retransmissions. orphanGaveUpByTheRule() checks a run against the rule itself.
 */
export function orphanGiveUpSeconds(orphanRetries: number): number {
  const n = orphanRetries === 0 ? 8 : orphanRetries;
  return retransmissionTimes(n + 1).at(-1)!;
}

/** The resolution of a measured instant of the client's kernel (its table is read every 5 ms). */
const MEASURED_MS = 10;

/**
 * Did a kernel give up by retransmits_timed_out()'s rule, on measured instants (seconds
 * from the FIN)? At the timeout it gave up, the time since the first retransmission had
 * reached tcp_model_timeout(N); at its last retransmission it had not.
 */
export function orphanGaveUpByTheRule(orphanRetries: number, retransmissions: number[], gaveUp: number | null): boolean {
  const n = orphanRetries === 0 ? 8 : orphanRetries;
  const first = retransmissions[0];
  const last = retransmissions.at(-1);
  if (first === undefined || last === undefined || gaveUp === null) return false;
  const limit = retransmissionTimeoutSeconds(n);
  const slack = MEASURED_MS / 1000;
  return gaveUp - first >= limit - slack && last - first < limit + slack;
}

/** "0.2, 0.6, 1.4 and 3.0" */
export function secondsList(values: number[]): string {
  const s = values.map((v) => v.toFixed(1));
  return s.length > 1 ? `${s.slice(0, -1).join(', ')} and ${s.at(-1)}` : (s[0] ?? 'none');
}

/** Every copy of a FIN that `local` sends, as the client's own link saw it leave. */
export interface FinCopies {
  /** Epoch ms of each copy, in order. */
  readonly times: number[];
  /** False where the capture cannot see the copies (no tcpdump, or no bridge): times stays empty. */
  readonly available: boolean;
  stop(): void;
}

/**
 * Watches a capture on the client's link for the FINs a connection sends: the original,
 * the tail loss probe and every retransmission, each leaving the client whatever happens to
 * it on the way. Each is recorded on the timeline as the client kernel's.
 */
export function watchFinCopies(ctx: RunContext, capture: WireCapture, status: WireStatus, local: string): FinCopies {
  // A link set down (no bridge) lets nothing leave: the capture would see none of the copies.
  const copies: FinCopies = { times: [], available: status.available && ctx.lab.cutMethod === 'bridge', stop: () => capture.off('packet', onPacket) };
  const onPacket = (pk: Packet) => {
    if (!pk.fin || `${pk.src.address}:${pk.src.port}` !== local) return;
    const at = pk.time * 1000;
    copies.times.push(at);
    const n = copies.times.length;
    const what = n === 1 ? 'the FIN' : n === 2 ? 'a copy of the FIN (tail loss probe)' : `a copy of the FIN (retransmission ${n - 2})`;
    ctx.record({ t: ctx.lab.t(at), source: 'client', event: 'kernel-sent', name: 'client kernel', line: `sent ${what} from ${local}`, copy: n, ...packetFields(pk) });
  };
  capture.on('packet', onPacket);
  return copies;
}

/**
 * Experiment b's start: an echo server (no echo), a client that sends one frame, a cut, and
 * the client's app closed while cut off. Its kernel is watched from then on: every copy of
 * the FIN on the client's link (with tcpdump) and the connection in its table. The caller
 * stops both watches.
 */
export async function closeWhileCut(ctx: RunContext, step: string): Promise<{ server: Demo; peer: string; cutAt: number; copies: FinCopies; kernel: ClientKernelWatch }> {
  ctx.step('Start the echo server (no echo).');
  const server = await ctx.startServer(['--no-echo']);
  const capture = ctx.captureClientLink();
  // Ready before the connection: tcpdump numbers sequences from the first packet it sees,
  // and the FIN's must match the server capture's (which saw the SYN too).
  const status = await ctx.race(capture.ready);
  const { client, peer } = await connectAndSend(ctx, server);
  const copies = watchFinCopies(ctx, capture, status, peer);
  ctx.step(step);
  await ctx.lab.cut();
  const cutAt = Date.now();
  // The capture shows every copy of the FIN; without it, the kernel's count shows the retransmissions.
  const kernel = watchClientKernel(ctx, peer, { recordResends: !copies.available });
  try {
    ctx.lab.signal(client.proc, 'SIGTERM');
    await ctx.race(client.proc.exited);
  } catch (err) {
    kernel.stop();
    copies.stop();
    throw err;
  }
  return { server, peer, cutAt, copies, kernel };
}
