/**
 * The server kernel's socket table, as `ss -H -t -a -n -o -i` (iproute2 6.1) prints it:
 * one line per socket, then (because of -i) a line of TCP internals that starts with a tab.
 * Both lines are right-padded with spaces; a TIME-WAIT socket's internals line is only
 * whitespace. Real examples (test/fixtures/ss-*.txt, captured on Linux 6.18):
 *
 *   LISTEN 0      16       0.0.0.0:7000   0.0.0.0:*
 *   	 bbr cwnd:10
 *   ESTAB  0      7      10.99.0.1:7000 10.99.0.2:46828 timer:(on,1.280ms,3)
 *   	 ts sack bbr wscale:10,10 rto:1632 backoff:3 … unacked:1 retrans:1/4 lost:1 …
 *   ESTAB  0      0      10.99.0.1:7000 10.99.0.2:33596 timer:(keepalive,532ms,1)
 *   FIN-WAIT-2 0  0      10.99.0.1:7000 10.99.0.2:46828 timer:(timewait,59sec,0)
 *   LISTEN 0      4                 *:7001        *:*          (dual-stack listener)
 *   ESTAB  0      0  [::ffff:127.0.0.1]:7001  [::ffff:127.0.0.1]:52802
 *
 * Timer values use ss's own format (iproute2 print_ms_timer): "092ms", "1.280ms" (that is
 * 1 s and 280 ms, not 1.28 ms), "59sec", "1min39sec", "10min", or empty when the timer is
 * due now (`timer:(on,,3)`). The count is retransmissions for `on`, unanswered probes for
 * `keepalive` and `persist`. An orphaned FIN-WAIT-2 socket shows `timewait` (tcp_fin_timeout).
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
  /** Without brackets or interface scope: "10.99.0.1", "::1", "::ffff:127.0.0.1", "*". */
  address: string;
  /** 0 for a wildcard port (`*`). */
  port: number;
}

export interface SocketTimer {
  /** on = retransmission (or SYN, tail loss probe), keepalive, timewait, persist, off, unknown. */
  name: 'on' | 'keepalive' | 'timewait' | 'persist' | 'off' | (string & {});
  /** Time left until the timer fires. */
  expiresMs: number;
  /** Retransmissions (timer on) or unanswered probes (keepalive, persist) so far. */
  count: number;
}

/** Fields of the -i line; only those present in the output are set. */
export interface SocketInfo {
  rtoMs?: number;
  rttMs?: number;
  backoff?: number;
  /** Segments retransmitted and not yet acknowledged (first number of `retrans:1/4`). */
  retrans?: number;
  /** All retransmissions of the connection, tail loss probes included (second number). */
  retransTotal?: number;
  unacked?: number;
  lost?: number;
  probes?: number;
  /** Since the last data sent (keepalive probes do not count). */
  lastSendMs?: number;
  lastRecvMs?: number;
  /** Since the last ACK received (a keepalive probe's answer counts). */
  lastAckMs?: number;
}

export interface SocketRow {
  /**
   * "local->peer" as ss printed them: stable for the life of the connection, across state
   * changes. In the rare case of two rows with the same text, later ones get "#2", "#3"….
   */
  key: string;
  state: TcpState;
  recvQ: number;
  sendQ: number;
  local: Endpoint;
  peer: Endpoint;
  timer: SocketTimer | null;
  info: SocketInfo;
}

/** ss's timer durations to milliseconds ("1.576ms" is 1 s 576 ms). Unknown text gives 0. */
export function parseSsDuration(text: string): number {
  const m = /^(?:(\d+)min)?(?:(\d+)(?:sec|\.(?=\d+ms)))?(?:(\d+)ms)?$/.exec(text.trim());
  if (!m) return 0;
  return Number(m[1] ?? 0) * 60_000 + Number(m[2] ?? 0) * 1000 + Number(m[3] ?? 0);
}

/**
 * "10.99.0.1:7000", "[::1]:7000", "[::ffff:10.0.0.1]:22", "0.0.0.0:*", "*:*", "*:7001",
 * "[::]:*", "127.0.0.53%lo:53", "[fe80::1]%eth0:22".
 */
export function parseEndpoint(text: string): Endpoint | null {
  const m = /^(?:\[([^\]]+)\](?:%[^:\s]*)?|([^\s[\]]*?)):(\d+|\*)$/.exec(text);
  if (!m) return null;
  const address = (m[1] ?? m[2] ?? '').replace(/%.*$/, '');
  return { address: address || '*', port: m[3] === '*' ? 0 : Number(m[3]) };
}

function parseTimer(text: string): SocketTimer | null {
  const m = /timer:\(([^,()]*),([^,()]*),(\d+)\)/.exec(text);
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
  // (?<![\w]) rather than \b: "bytes_retrans:14" must not read as "retrans:14".
  set('rtoMs', num(/(?<![\w-])rto:([\d.]+)/));
  set('rttMs', num(/(?<![\w-])rtt:([\d.]+)\//));
  set('backoff', num(/(?<![\w-])backoff:(\d+)/));
  const retrans = /(?<![\w-])retrans:(\d+)\/(\d+)/.exec(text);
  if (retrans) {
    info.retrans = Number(retrans[1]);
    info.retransTotal = Number(retrans[2]);
  }
  set('unacked', num(/(?<![\w-])unacked:(\d+)/));
  set('lost', num(/(?<![\w-])lost:(\d+)/));
  set('probes', num(/(?<![\w-])probes:(\d+)/));
  set('lastSendMs', num(/(?<![\w-])lastsnd:(\d+)/));
  set('lastRecvMs', num(/(?<![\w-])lastrcv:(\d+)/));
  set('lastAckMs', num(/(?<![\w-])lastack:(\d+)/));
  return info;
}

/**
 * Parses the whole output. Lines it does not understand (a header, a non-TCP row, an
 * unknown state) are skipped, never fatal; an indented line belongs to the row above it.
 * Also accepts `-O` (one line per socket: the internals follow the timer on the same line).
 */
export function parseSs(output: string): SocketRow[] {
  const rows: SocketRow[] = [];
  const seen = new Map<string, number>();
  let last: SocketRow | null = null;
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    if (/^\s/.test(line)) {
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
    const rest = fields.slice(5).join(' ');
    let key = `${local}->${peer}`;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    if (n > 1) key += `#${n}`;
    last = {
      key,
      state: state as TcpState,
      recvQ: Number(recvQ),
      sendQ: Number(sendQ),
      local: l,
      peer: p,
      timer: parseTimer(rest),
      info: parseInfo(rest),
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
 * What changed between two snapshots, matched by key. A timer counting down is not a
 * change (it ticks at every poll); the state, the queues, the timer's kind and its
 * retransmission/probe count are: fields names them, from
 * 'state', 'sendQ', 'recvQ', 'timer.name', 'timer.count'.
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

const endpointText = (e: Endpoint) => `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port || '*'}`;

/** "92ms", "1.3s", "59s", "2m5s". */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 60_000) return `${Math.round(ms / 1000)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
}

/**
 * One line for a terminal; empty queues and a zero count are left out:
 * `ESTAB      10.99.0.1:7000 <-> 10.99.0.2:46828  send-q 7  timer on 1.3s #3`
 */
export function formatRow(row: SocketRow): string {
  const parts = [`${row.state.padEnd(10)} ${endpointText(row.local)} <-> ${endpointText(row.peer)}`];
  if (row.recvQ) parts.push(`recv-q ${row.recvQ}`);
  if (row.sendQ) parts.push(`send-q ${row.sendQ}`);
  if (row.timer) parts.push(`timer ${row.timer.name} ${formatMs(row.timer.expiresMs)}${row.timer.count ? ` #${row.timer.count}` : ''}`);
  return parts.join('  ');
}
