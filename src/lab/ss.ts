/**
 * The server kernel's socket table, as `ss -H -t -a -n -o -i` prints it: one line per
 * socket, then (with -i) an indented line of TCP internals.
 *
 *   ESTAB  0  7  192.0.2.1:7000 192.0.2.10:51276 timer:(on,744ms,2)
 *   	 ts sack cubic wscale:10,10 rto:816 backoff:2 … unacked:1 lost:1 …
 *
 * Timer values use ss's own format (iproute2 print_ms_timer): "744ms", "1.576ms" (1 s and
 * 576 ms), "12sec", "1min39sec", "2min", or empty.
 */

export type TcpState =
  | 'ESTAB'
  | 'SYN-SENT'
  | 'SYN-RECV'
  | 'FIN-WAIT-1'
  | 'FIN-WAIT-2'
  | 'TIME-WAIT'
  | 'CLOSE'
  | 'UNCONN'
  | 'CLOSE-WAIT'
  | 'LAST-ACK'
  | 'LISTEN'
  | 'CLOSING';

const STATES = new Set<string>(['ESTAB', 'SYN-SENT', 'SYN-RECV', 'FIN-WAIT-1', 'FIN-WAIT-2', 'TIME-WAIT', 'CLOSE', 'UNCONN', 'CLOSE-WAIT', 'LAST-ACK', 'LISTEN', 'CLOSING']);

export interface Endpoint {
  address: string;
  /** 0 for a wildcard port (`*`). */
  port: number;
}

export interface SocketTimer {
  /** on = retransmission (or zero-window probe), keepalive, timewait, persist, off. */
  name: string;
  /** Time left until the timer fires. */
  expiresMs: number;
  /** Retransmissions (timer on) or unanswered probes (keepalive) so far. */
  count: number;
}

export interface SocketInfo {
  rtoMs?: number;
  rttMs?: number;
  backoff?: number;
  retrans?: number;
  retransTotal?: number;
  unacked?: number;
  lost?: number;
  probes?: number;
  lastSendMs?: number;
  lastRecvMs?: number;
  lastAckMs?: number;
}

export interface SocketRow {
  /** "local->peer": stable for the life of the connection. */
  key: string;
  state: TcpState;
  recvQ: number;
  sendQ: number;
  local: Endpoint;
  peer: Endpoint;
  timer: SocketTimer | null;
  info: SocketInfo;
}

/** ss's timer durations to milliseconds ("1.576ms" is 1 s 576 ms). */
export function parseSsDuration(text: string): number {
  if (!text) return 0;
  let ms = 0;
  let rest = text;
  const min = /^(\d+)min/.exec(rest);
  if (min) {
    ms += Number(min[1]) * 60_000;
    rest = rest.slice(min[0].length);
  }
  const secDot = /^(\d+)\.(\d+)ms$/.exec(rest);
  if (secDot) return ms + Number(secDot[1]) * 1000 + Number(secDot[2]);
  const sec = /^(\d+)sec/.exec(rest);
  if (sec) {
    ms += Number(sec[1]) * 1000;
    rest = rest.slice(sec[0].length);
  }
  const msOnly = /^(\d+)ms$/.exec(rest);
  if (msOnly) ms += Number(msOnly[1]);
  return ms;
}

/** "192.0.2.1:7000", "[::1]:7000", "[::ffff:10.0.0.1]:22", "0.0.0.0:*", "*:*", "[::]:7000" */
export function parseEndpoint(text: string): Endpoint | null {
  const m = /^(?:\[([^\]]+)\]|([^\s]*?)):(\d+|\*)$/.exec(text);
  if (!m) return null;
  const address = (m[1] ?? m[2] ?? '').replace(/%.*$/, ''); // drop "%lo"-style scope
  return { address: address || '*', port: m[3] === '*' ? 0 : Number(m[3]) };
}

function parseTimer(text: string): SocketTimer | null {
  const m = /timer:\(([^,)]*),([^,)]*),(\d+)\)/.exec(text);
  if (!m) return null;
  return { name: m[1]!, expiresMs: parseSsDuration(m[2]!), count: Number(m[3]) };
}

function parseInfo(text: string): SocketInfo {
  const info: SocketInfo = {};
  const num = (re: RegExp) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const set = <K extends keyof SocketInfo>(k: K, v: number | undefined) => {
    if (v !== undefined && Number.isFinite(v)) info[k] = v;
  };
  set('rtoMs', num(/\brto:([\d.]+)/));
  set('rttMs', num(/\brtt:([\d.]+)\//));
  set('backoff', num(/\bbackoff:(\d+)/));
  const retrans = /\bretrans:(\d+)\/(\d+)/.exec(text);
  if (retrans) {
    info.retrans = Number(retrans[1]);
    info.retransTotal = Number(retrans[2]);
  }
  set('unacked', num(/\bunacked:(\d+)/));
  set('lost', num(/\blost:(\d+)/));
  set('probes', num(/\bprobes:(\d+)/));
  set('lastSendMs', num(/\blastsnd:(\d+)/));
  set('lastRecvMs', num(/\blastrcv:(\d+)/));
  set('lastAckMs', num(/\blastack:(\d+)/));
  return info;
}

/** Parses the whole output; lines it does not understand are skipped, never fatal. */
export function parseSs(output: string): SocketRow[] {
  const rows: SocketRow[] = [];
  let last: SocketRow | null = null;
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    if (/^\s/.test(line)) {
      // The -i line belongs to the socket above it.
      if (last) Object.assign(last.info, parseInfo(line));
      continue;
    }
    const fields = line.trim().split(/\s+/);
    const [state, recvQ, sendQ, local, peer] = fields;
    const l = local ? parseEndpoint(local) : null;
    const p = peer ? parseEndpoint(peer) : null;
    if (!state || !STATES.has(state) || !l || !p || !/^\d+$/.test(recvQ ?? '') || !/^\d+$/.test(sendQ ?? '')) {
      last = null;
      continue;
    }
    last = {
      key: `${local}->${peer}`,
      state: state as TcpState,
      recvQ: Number(recvQ),
      sendQ: Number(sendQ),
      local: l,
      peer: p,
      timer: parseTimer(fields.slice(5).join(' ')),
      info: {},
    };
    rows.push(last);
  }
  return rows;
}

export type SocketChange =
  | { kind: 'added'; row: SocketRow }
  | { kind: 'removed'; row: SocketRow }
  | { kind: 'changed'; row: SocketRow; previous: SocketRow; fields: string[] };

/**
 * What changed between two snapshots. A timer counting down is not a change; its state,
 * queues, timer kind and retransmission/probe count are.
 */
export function diffRows(prev: SocketRow[], next: SocketRow[]): SocketChange[] {
  const before = new Map(prev.map((r) => [r.key, r]));
  const changes: SocketChange[] = [];
  for (const row of next) {
    const old = before.get(row.key);
    before.delete(row.key);
    if (!old) {
      changes.push({ kind: 'added', row });
      continue;
    }
    const fields: string[] = [];
    if (old.state !== row.state) fields.push('state');
    if (old.sendQ !== row.sendQ) fields.push('sendQ');
    if (old.recvQ !== row.recvQ) fields.push('recvQ');
    if ((old.timer?.name ?? null) !== (row.timer?.name ?? null)) fields.push('timer.name');
    if ((old.timer?.count ?? null) !== (row.timer?.count ?? null)) fields.push('timer.count');
    if (fields.length) changes.push({ kind: 'changed', row, previous: old, fields });
  }
  for (const row of before.values()) changes.push({ kind: 'removed', row });
  return changes;
}

const ep = (e: Endpoint) => `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port || '*'}`;

/** One line for a terminal: `ESTAB  192.0.2.1:7000 ⇄ 192.0.2.10:41234  send-q 5  timer on 1.6s #3` */
export function formatRow(row: SocketRow): string {
  const timer = row.timer ? `  timer ${row.timer.name} ${(row.timer.expiresMs / 1000).toFixed(1)}s #${row.timer.count}` : '';
  return `${row.state.padEnd(10)} ${ep(row.local)} ⇄ ${ep(row.peer)}  send-q ${row.sendQ}  recv-q ${row.recvQ}${timer}`;
}
