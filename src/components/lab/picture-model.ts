/**
 * The picture of a run, as data: what the timeline and the packet ladder under a lab
 * draw (./picture.ts turns this into SVG). Built from the run's own timeline events, live
 * or replayed, so it is plain functions of those events: no DOM, testable in Node on the
 * recordings in public/recordings/.
 *
 * - Marks on lanes (faults, client, wire, server kernel, server) at the time they happened.
 * - Bands for the time the network was cut or a client was frozen.
 * - The detection: when the fault happened, what the theory counts from, when the theory
 *   says the server should notice and when it did (or that it did not).
 * - Packets grouped by connection, each classified: handshake, data, bare ACK, keepalive
 *   probe (src/lab/tcpdump.ts's heuristic), retransmission, FIN, RST; lost if the server
 *   sent it while the client was cut off.
 */
import { isKeepaliveProbe, KEEPALIVE_MIN_GAP_S, type Packet } from '../../lab/tcpdump.ts';
import type { TimelineEvent } from './types.ts';

export type Lane = 'lab' | 'client' | 'wire' | 'kernel' | 'server';

export const LANES: ReadonlyArray<{ id: Lane; label: string }> = [
  { id: 'lab', label: 'Faults' },
  { id: 'client', label: 'Client' },
  { id: 'wire', label: 'Wire' },
  { id: 'kernel', label: 'Server kernel' },
  { id: 'server', label: 'Server' },
];

/** Colour families, from most to least alarming (a cluster takes its most alarming mark's). */
export type Tone = 'bad' | 'retrans' | 'probe' | 'fault' | 'fin' | 'data' | 'good' | 'quiet';
const TONE_ORDER: Tone[] = ['bad', 'retrans', 'probe', 'fault', 'fin', 'data', 'good', 'quiet'];

export interface Mark {
  t: number;
  lane: Lane;
  /** A short word: what happened (cut, probe, error, frame sent …). */
  kind: string;
  tone: Tone;
  /** One line for the tooltip and the text table. */
  label: string;
}

export interface Band {
  kind: 'cut' | 'frozen';
  from: number;
  /** null: still cut (or frozen) when the run ended or now. */
  to: number | null;
  label: string;
}

export interface Detection {
  /** The fault the server should notice (the first cut or freeze). */
  fault: { t: number; label: string } | null;
  /** What the theory counts from (the last traffic, the unacknowledged write …). */
  anchor: { t: number; label: string } | null;
  /** Where the theory puts the detection. */
  expected: { t: number; seconds: number; label: string } | null;
  /** Where the server did notice. `seconds` counts from the anchor (or the fault). */
  detected: { t: number; seconds: number; label: string } | null;
  /** Other deadlines worth showing (keepalive alone, on a connection that is not idle). */
  extra: Array<{ t: number; label: string }>;
  /** Who is watched, for the sentences ("the server", "server-user-timeout"). */
  who: string;
  /** What the watched one does when the moment comes: "noticed" (the fault), "gave up" (on its FIN). */
  verb: string;
}

export type PacketKind = 'syn' | 'synack' | 'data' | 'ack' | 'fin' | 'rst' | 'probe' | 'probe-ack' | 'retransmission';

export interface WirePacket {
  t: number;
  src: string;
  dst: string;
  /** Sent by the client side of the connection. */
  fromClient: boolean;
  flags: string;
  seq: string | null;
  ack: number | null;
  length: number;
  kind: PacketKind;
  /** Sent into the cut (by the server, or by the client's kernel): it never arrived. */
  lost: boolean;
  /** Seen on the client's own link (what its kernel sent into a cut), not on the server's. */
  clientLink?: boolean;
  /** "keepalive probe 2", "retransmission 3", "echo" … */
  note: string;
  /** The connection: the client's address:port. */
  conn: string;
}

export interface Connection {
  /** The client's address:port. */
  id: string;
  server: string;
  packets: WirePacket[];
  probes: number;
  retransmissions: number;
  resets: number;
  lost: number;
  first: number;
  last: number;
}

export interface PictureModel {
  scenario: string;
  /** The time axis: 0 (the lab started) to `end` seconds. */
  end: number;
  /** Now (live), or the last event (a finished run): how far the run has got. */
  now: number;
  marks: Mark[];
  bands: Band[];
  detection: Detection | null;
  connections: Connection[];
  /** Connections on the server (not the listener) over time, from the kernel's socket table. */
  sockets: Array<{ t: number; n: number }>;
  /** Plain sentences: the text alternative of the picture. */
  summary: string[];
  /** Events that arrived after the picture's store was full (not drawn). */
  dropped: number;
}

export interface PictureInput {
  scenario: string;
  events: readonly TimelineEvent[];
  /** The run's theory (live: the `started` message; replay: the recording). */
  theory?: { expectedSeconds?: number; [key: string]: unknown } | null;
  /** Set when the run is over: open bands close at the end of the run. */
  finished?: boolean;
  /** The time now (live, in seconds since the lab started), so the axis can run ahead of the events. */
  now?: number;
  dropped?: number;
}

// ── Small helpers ──────────────────────────────────────────────────────────────────────

const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
const fields = (e: TimelineEvent): Record<string, string> => (e.fields && typeof e.fields === 'object' ? (e.fields as Record<string, string>) : {});

/** "4.85 s", "12 s", "2 min 5 s", "2 h 11 min 15 s". */
export function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 10) return `${+s.toFixed(2)} s`;
  if (s < 120) return `${+s.toFixed(1)} s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  return [h ? `${h} h` : '', m ? `${m} min` : '', sec ? `${sec} s` : ''].filter(Boolean).join(' ') || '0 s';
}

/** "7.01 s" on the run's clock. */
export const at = (t: number): string => `${t.toFixed(2)} s`;

function endpoint(text: string): { address: string; port: number } {
  const i = text.lastIndexOf(':');
  return { address: text.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(text.slice(i + 1)) };
}

/** The process name when a scenario runs several (server-keepalive, client-3), else ''. */
function who(e: TimelineEvent): string {
  const name = str(e.name);
  return name && name !== e.source ? `${name}: ` : '';
}

// ── Marks ──────────────────────────────────────────────────────────────────────────────

const LAB_FAULTS: Record<string, string> = {
  cut: 'network cut',
  restore: 'network restored',
  'restore-new-address': 'network restored, new address',
  freeze: 'process frozen',
  thaw: 'process thawed',
  kill: 'process killed',
  close: 'process closed',
  'send-frame': 'frame sent by hand',
};

const STRACE_ACCEPT = /accept4?\(.*\)\s*= -1 (EMFILE|ENFILE)/;

function appMark(e: TimelineEvent): Mark | null {
  const lane = e.source as 'server' | 'client';
  const f = fields(e);
  const w = who(e);
  const peer = f.peer ? ` ${f.peer}` : '';
  const mk = (kind: string, tone: Tone, label: string): Mark => ({ t: e.t, lane, kind, tone, label: `${w}${label}` });
  switch (e.event) {
    case 'listen':
      return mk('listen', 'quiet', `listening on ${str(f.addr)}`);
    case 'accept':
      return mk('accept', 'good', `accepted${peer}`);
    case 'connect':
      return mk('connect', 'good', `connected from ${str(f.local)}`);
    case 'send':
      return mk('frame sent', 'data', `frame sent (${str(f.bytes)} bytes)`);
    case 'frame':
      return mk('frame', 'data', `frame received from${peer || ' the client'}`);
    case 'echo':
      return mk('echo', 'data', `echo written${peer}${f.write ? `, write() ${f.write}` : ''}`);
    case 'recv':
      return mk('recv', 'data', `echo received`);
    case 'ping':
      return mk('ping', 'data', `heartbeat ping${peer}`);
    case 'pong':
      return mk('pong', 'data', `heartbeat reply${peer}`);
    case 'error':
      return mk('error', 'bad', `error ${str(f.code) || str(f.message)}${peer}`);
    case 'timeout':
      return mk('timeout', 'bad', `heartbeat timeout${peer}`);
    case 'close':
      return mk('close', f.hadError === 'true' ? 'bad' : 'fin', `connection closed${peer}${f.after ? ` after ${f.after}` : ''}`);
    case 'end':
      return mk('end', 'fin', `FIN received${peer}`);
    case 'accept-error':
      return mk('accept failed', 'bad', `accept() failed: ${str(f.code)}`);
    case 'bad-frame':
      return mk('bad frame', 'bad', `bad frame${peer}`);
    case 'exit':
      return mk('exit', 'quiet', `process ended${e.signal ? ` (${str(e.signal)})` : ` (exit ${str(e.code)})`}`);
    // What the client's kernel did for a connection its program had closed (src/scenarios/common.ts).
    case 'kernel-sent':
      return mk(e.copy === 1 ? 'FIN sent' : 'FIN resent', e.copy === 1 ? 'fin' : 'retrans', e.copy === 1 ? 'FIN sent' : e.copy === 2 ? 'FIN resent (tail loss probe)' : `FIN resent (retransmission ${Number(e.copy) - 2})`);
    case 'kernel-resend':
      return mk('FIN resent', 'retrans', `FIN resent (retransmission ${str(e.retransmits)})`);
    case 'kernel-gone':
      return mk('gave up', 'bad', 'gave up on the FIN: connection forgotten');
    case 'stderr': {
      const m = STRACE_ACCEPT.exec(str(e.line));
      return m ? mk('accept failed', 'bad', `accept() failed: ${m[1]} (strace)`) : null;
    }
    default:
      return null;
  }
}

function kernelMark(e: TimelineEvent): Mark | null {
  if (!/^socket-/.test(e.event) || e.state === 'LISTEN') return null;
  const peer = str(e.peer);
  const mk = (kind: string, tone: Tone, label: string): Mark => ({ t: e.t, lane: 'kernel', kind, tone, label: `${label} (${peer})` });
  if (e.event === 'socket-added') return mk('socket', 'quiet', `${str(e.state)} socket`);
  if (e.event === 'socket-removed') return mk('socket gone', 'quiet', 'socket gone');
  const changed = Array.isArray(e.changed) ? (e.changed as string[]) : [];
  if (changed.includes('state')) return mk('state', e.state === 'ESTAB' ? 'good' : 'fin', `${str(e.previousState)} → ${str(e.state)}`);
  const count = typeof e.timerCount === 'number' ? e.timerCount : 0;
  if ((changed.includes('timer.count') || changed.includes('timer')) && count > 0) {
    if (e.timer === 'keepalive') return mk('probe count', 'probe', `keepalive timer: ${count} probe${count === 1 ? '' : 's'} unanswered`);
    if (e.timer === 'on') return mk('retransmission count', 'retrans', `retransmission timer: ${count} retransmission${count === 1 ? '' : 's'}`);
  }
  if (changed.includes('sendQ') && typeof e.sendQ === 'number' && e.sendQ > 0) return mk('Send-Q', 'data', `Send-Q ${e.sendQ} bytes unacknowledged`);
  if (changed.includes('timer') && e.timer) return mk('timer', 'quiet', `${str(e.timer)} timer starts`);
  return null;
}

const PACKET_TONE: Record<PacketKind, Tone> = {
  syn: 'good',
  synack: 'good',
  data: 'data',
  ack: 'quiet',
  fin: 'fin',
  rst: 'bad',
  probe: 'probe',
  'probe-ack': 'quiet',
  retransmission: 'retrans',
};

// ── Wire ───────────────────────────────────────────────────────────────────────────────

interface Window {
  from: number;
  to: number;
}

/** The note of a copy that is a tail loss probe (RFC 8985), told apart only on the client's own capture. */
const TLP = 'tail loss probe';

function inWindows(t: number, windows: Window[]): boolean {
  return windows.some((w) => t >= w.from && t < w.to);
}

function asPacket(e: TimelineEvent): Packet {
  const flags = str(e.flags);
  const has = (c: string) => flags !== 'none' && flags.includes(c);
  const seqText = typeof e.seq === 'string' ? e.seq : null;
  const [a, b] = seqText ? seqText.split(':').map(Number) : [];
  return {
    time: e.t,
    src: endpoint(str(e.src)),
    dst: endpoint(str(e.dst)),
    flags,
    syn: has('S'),
    fin: has('F'),
    rst: has('R'),
    psh: has('P'),
    ack: has('.'),
    ...(seqText ? { seq: { start: a!, end: b ?? a! } } : {}),
    ...(typeof e.ack === 'number' ? { ackNo: e.ack } : {}),
    length: typeof e.length === 'number' ? e.length : 0,
    raw: '',
  };
}

/** Which side of a packet is the server: the lab's server address, else the SYN's receiver. */
function serverSide(serverAddress: string | null, p: Packet, synTo: Map<string, string>, key: string): 'src' | 'dst' {
  if (serverAddress) {
    if (p.src.address === serverAddress) return 'src';
    if (p.dst.address === serverAddress) return 'dst';
  }
  const known = synTo.get(key);
  if (known) return known === `${p.src.address}:${p.src.port}` ? 'src' : 'dst';
  return p.src.port < p.dst.port ? 'src' : 'dst';
}

/**
 * Packets by connection, classified. `cuts` are the windows in which the client was cut
 * off: what the server sent then was captured on its link but never arrived.
 */
export function classifyWire(events: readonly TimelineEvent[], serverAddress: string | null, cuts: Window[], app: readonly TimelineEvent[] = []): Connection[] {
  const conns = new Map<string, Connection>();
  const prevOf = new Map<string, Packet>();
  const seen = new Map<string, number>();
  const probeRun = new Map<string, number>();
  const synTo = new Map<string, string>();
  const clientCopied = new Set<string>();
  // Server log lines by client endpoint, to name a data segment (echo, ping, frame).
  const appBy = new Map<string, TimelineEvent[]>();
  for (const e of app) {
    const peer = fields(e).peer;
    if (!peer || !['echo', 'ping', 'pong', 'frame'].includes(e.event)) continue;
    const list = appBy.get(peer) ?? [];
    list.push(e);
    appBy.set(peer, list);
  }
  for (const e of events) {
    // What the client's kernel sent into a cut, from a capture on its own link (see
    // watchFinCopies in src/scenarios/common.ts): the server's capture never sees it.
    const clientLink = e.source === 'client' && e.event === 'kernel-sent' && typeof e.src === 'string' && inWindows(e.t, cuts);
    if (!clientLink && (e.source !== 'wire' || e.event !== 'packet')) continue;
    const p = asPacket(e);
    const src = str(e.src);
    const dst = str(e.dst);
    const key = src < dst ? `${src} ${dst}` : `${dst} ${src}`;
    if (p.syn && !p.ack) synTo.set(key, dst);
    const side = serverSide(serverAddress, p, synTo, key);
    const client = side === 'src' ? dst : src;
    const server = side === 'src' ? src : dst;
    const fromClient = side === 'dst';
    let conn = conns.get(client);
    if (!conn) {
      conn = { id: client, server, packets: [], probes: 0, retransmissions: 0, resets: 0, lost: 0, first: e.t, last: e.t };
      conns.set(client, conn);
    }
    const prev = prevOf.get(key);
    prevOf.set(key, p);
    let kind: PacketKind;
    let note = '';
    const seqKey = p.seq && (p.length > 0 || p.syn || p.fin) ? `${src}>${dst} ${e.seq} ${p.syn ? 'S' : ''}${p.fin ? 'F' : ''}` : null;
    const copies = seqKey ? (seen.get(seqKey) ?? 0) : 0;
    if (seqKey) seen.set(seqKey, copies + 1);
    if (seqKey && clientLink) clientCopied.add(seqKey);
    if (p.rst) kind = 'rst';
    else if (clientLink && typeof e.copy === 'number' && e.copy > 1) {
      // Numbered by the client's capture, which saw every copy: the second is the tail loss probe.
      kind = 'retransmission';
      note = e.copy === 2 ? TLP : `retransmission ${e.copy - 2}`;
      if (note !== TLP) conn.retransmissions++;
    } else if (copies > 0) {
      kind = 'retransmission';
      // After copies the client's own capture saw, the count goes on in its numbering.
      note = seqKey && clientCopied.has(seqKey) ? (copies === 1 ? TLP : `retransmission ${copies - 1}`) : `retransmission ${copies}`;
      if (note !== TLP) conn.retransmissions++;
    } else if (p.syn) kind = p.ack ? 'synack' : 'syn';
    else if (p.fin) kind = 'fin';
    else if (p.length > 0 && !isKeepaliveProbe(p, prev)) kind = 'data';
    else if (p.length <= 1 && prev && isKeepaliveProbe(p, prev)) {
      kind = 'probe';
      const n = (probeRun.get(`${src}>${dst}`) ?? 0) + 1;
      probeRun.set(`${src}>${dst}`, n);
      note = `keepalive probe ${n}`;
      conn.probes++;
    } else if (answersProbe(conn.packets[conn.packets.length - 1], p, fromClient)) {
      kind = 'probe-ack';
      note = 'answers the probe';
    } else kind = p.length > 0 ? 'data' : 'ack';
    if (kind !== 'probe' && kind !== 'probe-ack') probeRun.delete(`${src}>${dst}`);
    if (kind === 'data' && !note) note = appName(appBy.get(client), e.t, fromClient);
    if (kind === 'rst') conn.resets++;
    const lost = clientLink || (!fromClient && inWindows(e.t, cuts));
    if (lost) conn.lost++;
    conn.packets.push({
      t: e.t,
      src,
      dst,
      fromClient,
      flags: p.flags,
      seq: typeof e.seq === 'string' ? e.seq : null,
      ack: p.ackNo ?? null,
      length: p.length,
      kind,
      lost,
      note,
      conn: client,
      ...(clientLink ? { clientLink } : {}),
    });
    conn.last = e.t;
  }
  return [...conns.values()];
}

/** A bare ACK that comes back within a round trip of a probe: the peer's kernel answering it. */
function answersProbe(last: WirePacket | undefined, p: Packet, fromClient: boolean): boolean {
  return last !== undefined && last.kind === 'probe' && last.fromClient !== fromClient && p.ack && !p.psh && !p.syn && !p.fin && !p.rst && p.length === 0 && p.time - last.t < KEEPALIVE_MIN_GAP_S;
}

/** The server's log line that goes with a data segment: echo or ping (server → client), frame or pong (client → server). */
function appName(list: TimelineEvent[] | undefined, t: number, fromClient: boolean): string {
  if (!list) return '';
  const wanted = fromClient ? ['frame', 'pong'] : ['echo', 'ping'];
  // The list is in time order: start at the first entry that can match (a long run has many).
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.t < t - 0.1) lo = mid + 1;
    else hi = mid;
  }
  let best: TimelineEvent | null = null;
  // The server logs a frame after it arrived and an echo around when it leaves; under load, a little later.
  for (let i = lo; i < list.length && list[i]!.t <= t + 0.3; i++) {
    const e = list[i]!;
    if (wanted.includes(e.event) && (!best || Math.abs(e.t - t) < Math.abs(best.t - t))) best = e;
  }
  if (!best) return '';
  return best.event === 'frame' ? 'frame' : best.event === 'pong' ? 'heartbeat reply' : best.event === 'ping' ? 'heartbeat ping' : 'echo';
}

function packetLabel(p: WirePacket): string {
  const dir = p.fromClient ? 'client → server' : 'server → client';
  const what: Record<PacketKind, string> = {
    syn: 'SYN',
    synack: 'SYN-ACK',
    data: `data, ${p.length} bytes`,
    ack: 'ACK',
    fin: 'FIN',
    rst: 'RST',
    probe: 'keepalive probe',
    'probe-ack': 'ACK',
    retransmission: `retransmission, ${p.length} bytes`,
  };
  return `${dir}: ${p.note && p.kind !== 'retransmission' && p.kind !== 'probe' ? `${p.note} (${what[p.kind]})` : p.note || what[p.kind]}${p.lost ? ', lost (the client is cut off)' : ''}`;
}

// ── Bands ──────────────────────────────────────────────────────────────────────────────

function bandsOf(events: readonly TimelineEvent[], end: number | null): Band[] {
  const bands: Band[] = [];
  let cut: Band | null = null;
  const frozen = new Map<string, Band>();
  for (const e of events) {
    if (e.source !== 'lab') continue;
    if (e.event === 'cut' && !cut) {
      cut = { kind: 'cut', from: e.t, to: null, label: 'network cut' };
      bands.push(cut);
    } else if ((e.event === 'restore' || e.event === 'restore-new-address') && cut) {
      cut.to = e.t;
      cut = null;
    } else if (e.event === 'freeze') {
      const b: Band = { kind: 'frozen', from: e.t, to: null, label: `${str(e.process) || 'client'} frozen` };
      frozen.set(str(e.process), b);
      bands.push(b);
    } else if ((e.event === 'thaw' || e.event === 'kill') && frozen.has(str(e.process))) {
      frozen.get(str(e.process))!.to = e.t;
      frozen.delete(str(e.process));
    }
  }
  if (end !== null) for (const b of bands) b.to ??= end;
  // Freezes of several processes at once: one band.
  const merged: Band[] = [];
  for (const b of bands) {
    const last = merged.findLast((m) => m.kind === b.kind);
    if (last && b.kind === 'frozen' && b.from - last.from < 0.5) {
      last.to = last.to === null || b.to === null ? null : Math.max(last.to, b.to);
      last.label = 'clients frozen';
    } else merged.push({ ...b });
  }
  return merged;
}

// ── Detection ──────────────────────────────────────────────────────────────────────────

interface Match {
  source: 'server' | 'client' | 'lab';
  events: string[];
  /** The process name when the scenario runs several servers. */
  name?: string;
}

interface DetectionSpec {
  /** The fault the server must notice. */
  fault: 'cut' | 'freeze';
  /** What the theory counts from: the last such event before the fault, or the first after it. */
  anchor?: Match & { when: 'before' | 'after'; label: string };
  detect: Match;
  /** Theory keys with other deadlines to show (and where each counts from). */
  extra?: Array<{ key: string; label: string; anchor: Match & { when: 'before' | 'after' } }>;
  who?: string;
  verb?: string;
}

const NOTICE = ['error', 'close', 'timeout', 'end'];

/** "had not noticed", "had not given up". */
export const participle = (verb: string): string => (verb === 'gave up' ? 'given up' : verb);

/**
 * What each scenario measures, so the picture marks the same instants. The theory's
 * expectedSeconds counts from the anchor (see each scenario's theory in src/scenarios).
 */
const DETECTION: Record<string, DetectionSpec> = {
  keepalive: {
    fault: 'cut',
    anchor: { source: 'client', events: ['recv'], when: 'before', label: 'the last traffic' },
    detect: { source: 'server', events: NOTICE },
  },
  heartbeat: {
    fault: 'cut',
    anchor: { source: 'server', events: ['pong'], when: 'before', label: 'the last heartbeat reply' },
    detect: { source: 'server', events: NOTICE },
  },
  'hung-client': {
    fault: 'freeze',
    anchor: { source: 'server', name: 'server-heartbeat', events: ['pong'], when: 'before', label: 'the last heartbeat reply' },
    detect: { source: 'server', name: 'server-heartbeat', events: NOTICE },
    extra: [{ key: 'keepaliveSeconds', label: 'keepalive would have given up by now, had its probes gone unanswered', anchor: { source: 'client', name: 'client-keepalive', events: ['recv'], when: 'before' } }],
    who: 'the heartbeat server',
  },
  'keepalive-unacked': {
    fault: 'cut',
    anchor: { source: 'server', name: 'server-user-timeout', events: ['echo'], when: 'after', label: 'its unacknowledged write' },
    detect: { source: 'server', name: 'server-user-timeout', events: NOTICE },
    extra: [{ key: 'keepaliveSeconds', label: 'keepalive alone would fire on an idle connection', anchor: { source: 'server', name: 'server-keepalive', events: ['echo'], when: 'after' } }],
    who: 'the server with TCP_USER_TIMEOUT',
  },
  'keepalive-user-timeout': {
    fault: 'cut',
    anchor: { source: 'client', name: 'client-long-timeout', events: ['recv'], when: 'before', label: 'the last traffic' },
    detect: { source: 'server', name: 'server-long-timeout', events: NOTICE },
    extra: [
      { key: 'keepaliveSeconds', label: 'keepalive alone would give up here', anchor: { source: 'client', name: 'client-long-timeout', events: ['recv'], when: 'before' } },
      { key: 'shortExpectedSeconds', label: 'the server with the short user timeout gives up at this tick', anchor: { source: 'client', name: 'client-short-timeout', events: ['recv'], when: 'before' } },
    ],
    who: 'the server with the long user timeout',
  },
  'experiment-c': {
    fault: 'cut',
    anchor: { source: 'server', events: ['echo'], when: 'after', label: 'the unacknowledged write' },
    detect: { source: 'server', events: ['error', 'close'] },
  },
  'experiment-a': { fault: 'cut', detect: { source: 'server', events: NOTICE } },
  'experiment-b': { fault: 'cut', detect: { source: 'server', events: NOTICE } },
  // The client's kernel's timers start at the close (a few milliseconds after the cut).
  'experiment-b-same-address': {
    fault: 'cut',
    anchor: { source: 'lab', events: ['close'], when: 'after', label: 'the close' },
    detect: { source: 'server', events: NOTICE },
  },
  'experiment-b-too-late': {
    fault: 'cut',
    anchor: { source: 'lab', events: ['close'], when: 'after', label: 'the close' },
    detect: { source: 'client', events: ['kernel-gone'] },
    who: "the client's kernel",
    verb: 'gave up',
  },
};

const matches = (m: Match, e: TimelineEvent) => e.source === m.source && m.events.includes(e.event) && (m.name === undefined || e.name === m.name);

function find(events: readonly TimelineEvent[], m: Match, when: 'before' | 'after', t: number): TimelineEvent | undefined {
  return when === 'before' ? events.findLast((e) => e.t <= t && matches(m, e)) : events.find((e) => e.t >= t && matches(m, e));
}

function detectionOf(scenario: string, events: readonly TimelineEvent[], theory: PictureInput['theory']): Detection | null {
  if (scenario === 'fd-exhaustion') return null;
  const spec: DetectionSpec = DETECTION[scenario] ?? { fault: 'cut', detect: { source: 'server', events: NOTICE } };
  const faultEvent = events.find((e) => e.source === 'lab' && e.event === spec.fault);
  const several = events.filter((e) => e.source === 'lab' && e.event === spec.fault).length > 1;
  const label = `the ${several ? 'first ' : ''}${spec.fault === 'cut' ? 'cut' : 'freeze'}`;
  const d: Detection = { fault: null, anchor: null, expected: null, detected: null, extra: [], who: spec.who ?? 'the server', verb: spec.verb ?? 'noticed' };
  if (!faultEvent) return d;
  d.fault = { t: faultEvent.t, label };
  const anchorEvent = spec.anchor ? find(events, spec.anchor, spec.anchor.when, faultEvent.t) : undefined;
  if (spec.anchor && anchorEvent) d.anchor = { t: anchorEvent.t, label: spec.anchor.label };
  const from = d.anchor ?? d.fault;
  const expectedSeconds = typeof theory?.expectedSeconds === 'number' ? theory.expectedSeconds : null;
  // Without its anchor (not reached yet, live) the theory's deadline has no place yet.
  if (expectedSeconds !== null && (!spec.anchor || d.anchor)) {
    d.expected = { t: from.t + expectedSeconds, seconds: expectedSeconds, label: `theory: ${duration(expectedSeconds)} after ${from.label}` };
  }
  for (const x of spec.extra ?? []) {
    if (typeof theory?.[x.key] !== 'number') continue;
    const a = find(events, x.anchor, x.anchor.when, faultEvent.t);
    if (a) d.extra.push({ t: a.t + (theory[x.key] as number), label: `${x.label}: ${duration(theory[x.key] as number)}` });
  }
  const hit = events.find((e) => e.t >= faultEvent.t && matches(spec.detect, e));
  if (hit) {
    const f = fields(hit);
    const how = hit.event === 'error' ? `error ${f.code ?? ''}`.trim() : hit.event === 'timeout' ? 'heartbeat timeout' : hit.event === 'end' ? 'FIN' : hit.event === 'kernel-gone' ? 'the connection forgotten' : 'close';
    d.detected = { t: hit.t, seconds: hit.t - from.t, label: `${how}, ${duration(hit.t - from.t)} after ${from.label}` };
  }
  return d;
}

// ── Clusters (bounded drawing for long runs) ───────────────────────────────────────────

export interface Cluster {
  /** Where to draw it (px). */
  x: number;
  t0: number;
  t1: number;
  count: number;
  tone: Tone;
  /** The mark's kind, or "12 events". */
  kind: string;
  /** For the tooltip: the mark's label, or a count by kind. */
  label: string;
}

/**
 * Groups marks that would be drawn closer than `minGapPx` apart into one cluster, so a
 * lane never has more than width / minGapPx shapes however long the run.
 */
export function clusterMarks(marks: readonly Mark[], toX: (t: number) => number, minGapPx: number): Cluster[] {
  const sorted = [...marks].sort((a, b) => a.t - b.t);
  const out: Cluster[] = [];
  let group: Mark[] = [];
  const flush = () => {
    if (!group.length) return;
    const tone = TONE_ORDER.find((t) => group.some((m) => m.tone === t)) ?? 'quiet';
    const t0 = group[0]!.t;
    const t1 = group[group.length - 1]!.t;
    if (group.length === 1) out.push({ x: toX(t0), t0, t1, count: 1, tone, kind: group[0]!.kind, label: `${at(t0)}: ${group[0]!.label}` });
    else {
      const byKind = new Map<string, number>();
      for (const m of group) byKind.set(m.kind, (byKind.get(m.kind) ?? 0) + 1);
      const parts = [...byKind].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} × ${k}`);
      out.push({ x: (toX(t0) + toX(t1)) / 2, t0, t1, count: group.length, tone, kind: `${group.length} events`, label: `${at(t0)} to ${at(t1)}: ${parts.join(', ')}` });
    }
    group = [];
  };
  for (const m of sorted) {
    if (group.length && toX(m.t) - toX(group[0]!.t) >= minGapPx) flush();
    group.push(m);
  }
  flush();
  return out;
}

// ── The ladder ─────────────────────────────────────────────────────────────────────────

export type LadderRow =
  | { type: 'packet'; packet: WirePacket }
  | { type: 'gap'; seconds: number }
  | { type: 'elided'; count: number; from: number; to: number }
  | { type: 'fault'; t: number; label: string };

/** Above this silence between two rows, the ladder shows "… 2 s …" instead of drawing it to scale. */
export const LADDER_GAP_S = 0.3;

/**
 * The rows of one connection's ladder: its packets in order, the faults between them,
 * the silences; at most `max` packets (the first few and the latest, the rest counted).
 */
export function ladderRows(conn: Connection, faults: readonly TimelineEvent[], max = 60): LadderRow[] {
  const packets = conn.packets;
  const head = packets.length > max ? Math.min(8, Math.floor(max / 4)) : packets.length;
  const tail = packets.length > max ? max - head : 0;
  const shown: Array<WirePacket | { elided: number; from: number; to: number }> =
    packets.length > max
      ? [...packets.slice(0, head), { elided: packets.length - head - tail, from: packets[head]!.t, to: packets[packets.length - tail - 1]!.t }, ...packets.slice(packets.length - tail)]
      : [...packets];
  const faultRows = faults
    .filter((e) => e.source === 'lab' && ['cut', 'restore', 'restore-new-address', 'freeze', 'thaw', 'kill', 'close'].includes(e.event))
    .filter((e) => e.t >= conn.first - 0.001)
    .map((e) => ({ t: e.t, label: faultLabel(e) }));
  const rows: LadderRow[] = [];
  let fi = 0;
  let lastT: number | null = null;
  const gap = (t: number) => {
    if (lastT !== null && t - lastT > LADDER_GAP_S) rows.push({ type: 'gap', seconds: t - lastT });
    lastT = t;
  };
  for (const item of shown) {
    const t = 'elided' in item ? item.from : item.t;
    while (fi < faultRows.length && faultRows[fi]!.t <= t) {
      const f = faultRows[fi++]!;
      gap(f.t);
      rows.push({ type: 'fault', t: f.t, label: f.label });
    }
    if ('elided' in item) {
      rows.push({ type: 'elided', count: item.elided, from: item.from, to: item.to });
      lastT = item.to;
    } else {
      gap(item.t);
      rows.push({ type: 'packet', packet: item });
    }
  }
  // Faults after the last packet (the cut that nothing crossed afterwards), a few at most.
  for (const f of faultRows.slice(fi, fi + 3)) {
    gap(f.t);
    rows.push({ type: 'fault', t: f.t, label: f.label });
  }
  return rows;
}

function faultLabel(e: TimelineEvent): string {
  switch (e.event) {
    case 'cut':
      return 'network cut: nothing reaches the client';
    case 'restore':
      return 'network restored';
    case 'restore-new-address':
      return `network restored, client now ${str(e.to)}`;
    case 'freeze':
      return `${str(e.process) || 'client'} frozen (SIGSTOP)`;
    case 'thaw':
      return `${str(e.process) || 'client'} thawed`;
    case 'kill':
      return `${str(e.process) || 'client'} killed`;
    case 'close':
      return `${str(e.process) || 'client'} closed`;
    default:
      return e.event;
  }
}

/** The connection a reader most wants to see: the one the detection is about, else the busiest after the fault. */
export function defaultConnection(model: PictureModel, events: readonly TimelineEvent[]): string | null {
  if (!model.connections.length) return null;
  const d = model.detection;
  if (d?.detected) {
    const hit = events.find((e) => e.t === d.detected!.t && (e.source === 'server' || e.source === 'client') && fields(e).peer);
    const peer = hit ? fields(hit).peer : undefined;
    if (peer && model.connections.some((c) => c.id === peer)) return peer;
  }
  const score = (c: Connection) => c.probes * 3 + c.retransmissions * 3 + c.resets * 2 + c.lost + (d?.fault && c.last > d.fault.t ? 1 : 0);
  const best = [...model.connections].sort((a, b) => score(b) - score(a))[0]!;
  return score(best) > 0 ? best.id : model.connections[0]!.id;
}

// ── The whole picture ──────────────────────────────────────────────────────────────────

export function buildPicture(input: PictureInput): PictureModel {
  const events = [...input.events].filter((e) => Number.isFinite(e.t)).sort((a, b) => a.t - b.t);
  const lastT = events.length ? events[events.length - 1]!.t : 0;
  const ready = events.find((e) => e.source === 'lab' && e.event === 'ready');
  const serverAddress = ready && typeof ready.server === 'string' ? ready.server : null;
  const end0 = Math.max(lastT, input.now ?? 0);
  const bands = bandsOf(events, input.finished ? lastT : end0);
  const cutWindows = bands.filter((b) => b.kind === 'cut').map((b) => ({ from: b.from, to: b.to ?? Infinity }));
  const app = events.filter((e) => e.source === 'server');
  const connections = classifyWire(events, serverAddress, cutWindows, app);

  const marks: Mark[] = [];
  for (const e of events) {
    if (e.source === 'lab' && LAB_FAULTS[e.event]) {
      const proc = e.process ? ` (${str(e.process)})` : '';
      const extra = e.event === 'restore-new-address' ? `: ${str(e.from)} → ${str(e.to)}` : e.event === 'cut' && e.method ? ` (${e.method === 'bridge' ? 'path dropped' : 'link down'})` : '';
      marks.push({ t: e.t, lane: 'lab', kind: e.event, tone: 'fault', label: `${LAB_FAULTS[e.event]}${proc}${extra}` });
    } else if (e.source === 'server' || e.source === 'client') {
      const m = appMark(e);
      if (m) marks.push(m);
    } else if (e.source === 'kernel') {
      const m = kernelMark(e);
      if (m) marks.push(m);
    }
  }
  for (const c of connections) {
    // The client's own capture is on the client's lane already (its kernel's marks).
    for (const p of c.packets) if (!p.clientLink) marks.push({ t: p.t, lane: 'wire', kind: p.kind === 'probe-ack' ? 'ack' : p.kind, tone: p.lost && p.kind === 'data' ? 'retrans' : PACKET_TONE[p.kind], label: packetLabel(p) });
  }

  // Server connections over time (not the listener), from the kernel's socket events.
  const open = new Set<string>();
  const sockets: Array<{ t: number; n: number }> = [];
  for (const e of events) {
    if (e.source !== 'kernel' || e.state === 'LISTEN') continue;
    const key = `${str(e.local)}>${str(e.peer)}`;
    const before = open.size;
    if (e.event === 'socket-added') open.add(key);
    else if (e.event === 'socket-removed') open.delete(key);
    if (open.size !== before) sockets.push({ t: e.t, n: open.size });
  }

  const detection = detectionOf(input.scenario, events, input.theory);
  // The axis reaches the theory's deadline when it is near (live: ahead of the events), not
  // when it is hours away: then the picture marks it at the edge instead.
  let end = Math.max(end0, 1);
  const deadlines = [detection?.expected?.t, ...(detection?.extra.map((x) => x.t) ?? [])].filter((t): t is number => t !== undefined);
  for (const t of deadlines) if (t <= Math.max(end * 2, end + 30)) end = Math.max(end, t + 0.3);

  const model: PictureModel = { scenario: input.scenario, end, now: input.finished ? lastT : Math.max(lastT, input.now ?? 0), marks, bands, detection, connections, sockets, summary: [], dropped: input.dropped ?? 0 };
  model.summary = summarize(model, events, Boolean(input.finished), model.now);
  return model;
}

// ── The text alternative ───────────────────────────────────────────────────────────────

function times(list: number[], max = 4): string {
  const shown = list.slice(0, max).map((t) => at(t));
  return list.length > max ? `${shown.join(', ')} …` : shown.join(', ');
}

function summarize(m: PictureModel, events: readonly TimelineEvent[], finished: boolean, now: number): string[] {
  const out: string[] = [];
  if (!events.length) return out;
  const cuts = m.bands.filter((b) => b.kind === 'cut');
  const frozen = m.bands.filter((b) => b.kind === 'frozen');
  const faults: string[] = [];
  if (cuts.length === 1) faults.push(`the network was cut at ${at(cuts[0]!.from)}${cuts[0]!.to !== null && events.some((e) => e.source === 'lab' && e.event.startsWith('restore')) ? ` and restored at ${at(cuts[0]!.to)}` : ''}`);
  else if (cuts.length > 1) faults.push(`the network was cut ${cuts.length} times (${times(cuts.map((b) => b.from))})`);
  if (frozen.length) faults.push(`${frozen.map((b) => b.label).join(', ')} at ${times(frozen.map((b) => b.from))}`);
  out.push(`${finished ? 'A run of' : 'Running for'} ${duration(now)}${faults.length ? `: ${faults.join('; ')}` : ''}.`);

  const packets = m.connections.flatMap((c) => c.packets);
  if (packets.length) {
    const probes = packets.filter((p) => p.kind === 'probe');
    const answered = packets.filter((p) => p.kind === 'probe-ack').length;
    // The tail loss probe is a copy, but not a retransmission: the kernel does not count it as one.
    const retrans = packets.filter((p) => p.kind === 'retransmission' && p.note !== TLP);
    const probesTl = packets.filter((p) => p.note === TLP);
    const resets = packets.filter((p) => p.kind === 'rst');
    const lost = packets.filter((p) => p.lost);
    const parts = [`${packets.length} packet${packets.length === 1 ? '' : 's'} on ${m.connections.length} connection${m.connections.length === 1 ? '' : 's'}`];
    if (probes.length) parts.push(`${probes.length} keepalive probe${probes.length === 1 ? '' : 's'} (${times(probes.map((p) => p.t))})${answered ? `, ${answered} answered by the client's kernel` : ', none answered'}`);
    if (probesTl.length) parts.push(`${probesTl.length} tail loss probe${probesTl.length === 1 ? '' : 's'} (${times(probesTl.map((p) => p.t))})`);
    if (retrans.length) parts.push(`${retrans.length} retransmission${retrans.length === 1 ? '' : 's'} (${times(retrans.map((p) => p.t))}), further apart each time`);
    if (resets.length) parts.push(`${resets.length} RST (${times(resets.map((p) => p.t))})`);
    const lostByServer = lost.filter((p) => !p.fromClient).length;
    const lostByClient = lost.length - lostByServer;
    if (lostByServer && cuts.length) parts.push(`${lostByServer} sent by the server while the client was cut off, lost`);
    if (lostByClient) parts.push(`${lostByClient} sent by the client's kernel into the cut (seen on the client's own link), lost`);
    out.push(`On the wire: ${parts.join('; ')}.`);
  } else if (events.some((e) => e.source === 'wire' && e.event === 'unavailable')) out.push('No packets: there is no capture in this lab.');

  const kernelCounts = m.marks.filter((k) => k.lane === 'kernel' && (k.kind === 'probe count' || k.kind === 'retransmission count'));
  if (!packets.length && kernelCounts.length) out.push(`The server's kernel counted ${kernelCounts.map((k) => k.label).slice(-1)[0]}.`);

  const acceptFailures = m.marks.filter((k) => k.kind === 'accept failed');
  if (acceptFailures.length) {
    const maxOpen = m.sockets.reduce((a, s) => Math.max(a, s.n), 0);
    out.push(`accept() failed ${acceptFailures.length} time${acceptFailures.length === 1 ? '' : 's'}, first at ${at(acceptFailures[0]!.t)}; the server held up to ${maxOpen} connections.`);
  }

  const d = m.detection;
  if (d?.fault) {
    if (d.detected) out.push(`${cap(d.who)} ${d.verb} at ${at(d.detected.t)} (${d.detected.label})${d.expected ? `; ${d.expected.label}` : ''}.`);
    else {
      const watched = now - d.fault.t;
      out.push(`${cap(d.who)} ${finished ? `had not ${participle(d.verb)}` : `has not ${participle(d.verb)} yet,`} ${duration(Math.max(0, watched))} after ${d.fault.label}${d.expected ? ` (${d.expected.label}, at ${at(d.expected.t)})` : ''}.`);
    }
    for (const x of d.extra) out.push(`${cap(x.label)} (at ${at(x.t)}).`);
  }
  if (m.dropped) out.push(`${m.dropped} later events are not drawn (the picture keeps a bounded number).`);
  return out;
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
