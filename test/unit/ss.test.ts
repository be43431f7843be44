/**
 * The ss parser against real `ss -H -t -a -n -o -i` output (iproute2 6.1, Linux 6.18),
 * captured by test/fixtures/capture-parsers.py: server 10.99.0.1:7000, client 10.99.0.2.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { diffRows, formatMs, formatRow, parseEndpoint, parseSs, parseSsDuration, type SocketRow } from '../../src/lab/ss.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/ss-${name}.txt`, import.meta.url), 'utf8');
const snapshot = (name: string) => parseSs(fixture(name));
const byPeerPort = (rows: SocketRow[], port: number) => {
  const row = rows.find((r) => r.peer.port === port);
  if (!row) throw new Error(`no row with peer port ${port}`);
  return row;
};

// The connections of the capture (client ports).
const IDLE = 33574; // hello/hello exchanged, then idle
const UNREAD = 33586; // client sent 11 bytes the server never reads
const KEEPALIVE = 33596; // SO_KEEPALIVE, idle 2 s, interval 1 s, 3 probes
const ECHO = 46828; // server writes 7 bytes into the cut

describe('parseSs on real output', () => {
  it('reads LISTEN and idle ESTAB rows with queues, addresses and internals', () => {
    const rows = snapshot('listen-idle');
    expect(rows).toHaveLength(3);
    const [listen, idle, unread] = rows;
    expect(listen).toMatchObject({
      key: '0.0.0.0:7000->0.0.0.0:*',
      state: 'LISTEN',
      recvQ: 0,
      sendQ: 16, // for a listener: the backlog
      local: { address: '0.0.0.0', port: 7000 },
      peer: { address: '0.0.0.0', port: 0 },
      timer: null,
      info: {},
    });
    expect(idle).toMatchObject({
      key: `10.99.0.1:7000->10.99.0.2:${IDLE}`,
      state: 'ESTAB',
      recvQ: 0,
      sendQ: 0,
      local: { address: '10.99.0.1', port: 7000 },
      peer: { address: '10.99.0.2', port: IDLE },
      timer: null,
    });
    expect(idle!.info).toEqual({ rtoMs: 204, rttMs: 0.021, lastSendMs: 816, lastRecvMs: 816, lastAckMs: 816 });
    expect(unread).toMatchObject({ state: 'ESTAB', recvQ: 11, sendQ: 0, timer: null });
  });

  it('reads the keepalive timer counting down and its unanswered probes', () => {
    expect(byPeerPort(snapshot('keepalive-idle'), KEEPALIVE).timer).toEqual({ name: 'keepalive', expiresMs: 1488, count: 0 });
    const probes = [1, 2, 3].map((n) => byPeerPort(snapshot(`keepalive-probe-${n}`), KEEPALIVE));
    expect(probes.map((r) => r.timer)).toEqual([
      { name: 'keepalive', expiresMs: 532, count: 1 },
      { name: 'keepalive', expiresMs: 556, count: 2 },
      { name: 'keepalive', expiresMs: 580, count: 3 },
    ]);
    // Probes are not data: lastsnd keeps growing; lastack stopped when the answers did.
    expect(probes.map((r) => r.info.lastSendMs)).toEqual([6512, 7512, 8512]);
    expect(probes.map((r) => r.info.lastAckMs)).toEqual([2484, 3484, 4484]);
    expect(probes.every((r) => r.state === 'ESTAB' && r.sendQ === 0)).toBe(true);
    // The idle connections beside it have no timer at all.
    expect(byPeerPort(snapshot('keepalive-probe-3'), IDLE).timer).toBeNull();
    // After the third unanswered probe the kernel dropped the connection.
    expect(snapshot('keepalive-dead').map((r) => r.peer.port)).toEqual([0, IDLE, UNREAD]);
  });

  it('reads the retransmission timer: count, backoff and RTO growing after the cut', () => {
    const rows = [0, 1, 2, 3, 4].map((n) => byPeerPort(snapshot(`retrans-${n}`), ECHO));
    expect(rows.every((r) => r.state === 'ESTAB' && r.sendQ === 7 && r.recvQ === 0)).toBe(true);
    expect(rows.map((r) => r.timer)).toEqual([
      { name: 'on', expiresMs: 92, count: 0 }, // "092ms"
      { name: 'on', expiresMs: 312, count: 1 },
      { name: 'on', expiresMs: 632, count: 2 },
      { name: 'on', expiresMs: 1280, count: 3 }, // "1.280ms" is 1 s 280 ms
      { name: 'on', expiresMs: 2576, count: 4 },
    ]);
    expect(rows.map((r) => r.info.rtoMs)).toEqual([204, 408, 816, 1632, 3264]);
    expect(rows.map((r) => r.info.backoff)).toEqual([undefined, 1, 2, 3, 4]);
    // retrans:1/N: one segment out, N resent in all (the tail loss probe included).
    expect(rows.map((r) => [r.info.retrans, r.info.retransTotal])).toEqual([
      [undefined, undefined],
      [1, 2],
      [1, 3],
      [1, 4],
      [1, 5],
    ]);
    expect(rows.slice(1).every((r) => r.info.unacked === 1 && r.info.lost === 1)).toBe(true);
  });

  it('reads the same timer when the cut is the client link going down', () => {
    const [, row, timewait] = snapshot('retrans-linkdown');
    expect(row).toMatchObject({ state: 'ESTAB', sendQ: 16, timer: { name: 'on', expiresMs: 640, count: 2 } });
    expect(row!.info).toMatchObject({ rtoMs: 816, backoff: 2, retrans: 1, retransTotal: 3, unacked: 1 });
    expect(timewait).toMatchObject({ state: 'TIME-WAIT', timer: { name: 'timewait', expiresMs: 57_000, count: 0 } });
  });

  it('reads the closing states', () => {
    // close() with 7 bytes unacknowledged: the FIN waits behind them (Send-Q 7 + FIN).
    expect(byPeerPort(snapshot('fin-wait-1'), ECHO)).toMatchObject({
      state: 'FIN-WAIT-1',
      sendQ: 8,
      timer: { name: 'on', expiresMs: 2448, count: 4 },
    });
    // An orphaned FIN-WAIT-2 runs tcp_fin_timeout, which ss names "timewait"; no internals.
    const fw2 = byPeerPort(snapshot('fin-wait-2'), ECHO);
    expect(fw2).toMatchObject({ state: 'FIN-WAIT-2', sendQ: 0, timer: { name: 'timewait', expiresMs: 59_000, count: 0 } });
    expect(fw2.info).toEqual({});
    expect(byPeerPort(snapshot('time-wait'), ECHO)).toMatchObject({
      state: 'TIME-WAIT',
      timer: { name: 'timewait', expiresMs: 59_000, count: 0 },
      info: {},
    });
    // The client closed first: the server holds CLOSE-WAIT with the FIN counted in Recv-Q.
    const closeWait = snapshot('close-wait');
    expect(closeWait.map((r) => r.state)).toEqual(['LISTEN', 'TIME-WAIT', 'CLOSE-WAIT', 'ESTAB']);
    expect(byPeerPort(closeWait, IDLE)).toMatchObject({ state: 'CLOSE-WAIT', recvQ: 1, sendQ: 0, timer: null });
    // The client's side of the echo connection: data + FIN arrived, unread.
    const client = parseSs(fixture('client-close-wait')).find((r) => r.local.port === ECHO);
    expect(client).toMatchObject({ state: 'CLOSE-WAIT', recvQ: 8, local: { address: '10.99.0.2' }, peer: { address: '10.99.0.1', port: 7000 } });
  });

  it('reads SYN-SENT on the client while its SYNs go into the cut', () => {
    const rows = snapshot('client-syn-sent');
    const syn = rows.find((r) => r.state === 'SYN-SENT');
    expect(syn).toMatchObject({
      sendQ: 1,
      peer: { address: '10.99.0.1', port: 7000 },
      timer: { name: 'on', expiresMs: 44, count: 3 },
      info: { rtoMs: 1000, unacked: 1, retrans: 0, retransTotal: 3 },
    });
    expect(rows.filter((r) => r.state === 'ESTAB')).toHaveLength(3);
  });

  it('reads IPv6, IPv4-mapped and wildcard addresses, and CLOSING', () => {
    const rows = snapshot('ipv6');
    expect(rows).toHaveLength(9);
    const find = (key: string) => rows.find((r) => r.key === key);
    expect(find('*:7001->*:*')).toMatchObject({ state: 'LISTEN', local: { address: '*', port: 7001 }, peer: { address: '*', port: 0 } });
    expect(find('[::1]:7002->[::]:*')).toMatchObject({ state: 'LISTEN', local: { address: '::1', port: 7002 }, peer: { address: '::', port: 0 } });
    expect(find('[::1]:7001->[::1]:54198')).toMatchObject({ state: 'ESTAB', recvQ: 3, local: { address: '::1', port: 7001 } });
    expect(find('[::ffff:127.0.0.1]:7001->[::ffff:127.0.0.1]:52802')).toMatchObject({
      state: 'ESTAB',
      local: { address: '::ffff:127.0.0.1', port: 7001 },
      peer: { address: '::ffff:127.0.0.1', port: 52802 },
    });
    expect(find('127.0.0.1:52802->127.0.0.1:7001')).toMatchObject({ state: 'ESTAB', peer: { port: 7001 } });
    expect(rows.find((r) => r.state === 'CLOSING')).toMatchObject({ recvQ: 1, sendQ: 17, timer: { name: 'on', count: 2 } });
  });
});

describe('parseSs is liberal', () => {
  it('skips headers, blank and unknown lines, and internals with no row above', () => {
    const out = [
      '\t ts sack rto:204',
      'State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process',
      'garbage',
      'ESTAB 0 0 1.2.3.4:5',
      'UNKNOWN 0 0 1.2.3.4:5 6.7.8.9:10',
      'ESTAB 0 x 1.2.3.4:5 6.7.8.9:10',
      '\t rto:999',
      '',
      'ESTAB 2 3 1.2.3.4:5 6.7.8.9:10 timer:(on,,3) users:(("node",pid=1,fd=20))',
      '\t rto:408 backoff:1 bytes_retrans:14 retrans:1/2 minrtt:0.004 rtt:0.5/0.25 probes:2',
    ].join('\n');
    const rows = parseSs(out);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ recvQ: 2, sendQ: 3, timer: { name: 'on', expiresMs: 0, count: 3 } });
    expect(rows[0]!.info).toEqual({ rtoMs: 408, backoff: 1, retrans: 1, retransTotal: 2, rttMs: 0.5, probes: 2 });
  });

  it('accepts -O (internals on the same line) and CRLF', () => {
    const rows = parseSs('ESTAB 0 7 10.0.0.1:7000 10.0.0.2:4000 timer:(persist,1min39sec,2) ts sack rto:204 unacked:1\r\n');
    expect(rows[0]).toMatchObject({ sendQ: 7, timer: { name: 'persist', expiresMs: 99_000, count: 2 }, info: { rtoMs: 204, unacked: 1 } });
  });

  it('gives duplicate rows distinct keys', () => {
    const rows = parseSs('LISTEN 0 4 0.0.0.0:80 0.0.0.0:*\nLISTEN 0 4 0.0.0.0:80 0.0.0.0:*\n');
    expect(rows.map((r) => r.key)).toEqual(['0.0.0.0:80->0.0.0.0:*', '0.0.0.0:80->0.0.0.0:*#2']);
  });

  it('never throws', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom('ESTAB', '0', ' ', '\t', '\n', ':', '[', ']', '*', 'timer:(', ',', ')', 'ms', 'sec', 'min', '1.2.3.4:5'))), (parts) => {
        expect(Array.isArray(parseSs(parts.join('')))).toBe(true);
        expect(Array.isArray(parseSs(parts.join(' ')))).toBe(true);
      }),
    );
  });
});

describe('ss details', () => {
  it('parses every form of print_ms_timer', () => {
    expect(parseSsDuration('092ms')).toBe(92);
    expect(parseSsDuration('1.280ms')).toBe(1280);
    expect(parseSsDuration('1.050ms')).toBe(1050);
    expect(parseSsDuration('59sec')).toBe(59_000);
    expect(parseSsDuration('1min39sec')).toBe(99_000);
    expect(parseSsDuration('1min')).toBe(60_000);
    expect(parseSsDuration('10min')).toBe(600_000);
    expect(parseSsDuration('')).toBe(0);
    expect(parseSsDuration('soon')).toBe(0);
  });

  it('parses endpoints', () => {
    expect(parseEndpoint('[::ffff:10.0.0.1]:22')).toEqual({ address: '::ffff:10.0.0.1', port: 22 });
    expect(parseEndpoint('[::1]:7000')).toEqual({ address: '::1', port: 7000 });
    expect(parseEndpoint('*:*')).toEqual({ address: '*', port: 0 });
    expect(parseEndpoint('127.0.0.53%lo:53')).toEqual({ address: '127.0.0.53', port: 53 });
    expect(parseEndpoint('[fe80::1]%eth0:22')).toEqual({ address: 'fe80::1', port: 22 });
    expect(parseEndpoint('nonsense')).toBeNull();
  });

  it('formats a row on one line', () => {
    expect(formatRow(byPeerPort(snapshot('retrans-3'), ECHO))).toBe('ESTAB      10.99.0.1:7000 <-> 10.99.0.2:46828  send-q 7  timer on 1.3s #3');
    expect(formatRow(snapshot('listen-idle')[0]!)).toBe('LISTEN     0.0.0.0:7000 <-> 0.0.0.0:*  send-q 16');
    expect(formatRow(byPeerPort(snapshot('time-wait'), ECHO))).toBe('TIME-WAIT  10.99.0.1:7000 <-> 10.99.0.2:46828  timer timewait 59s');
    expect(formatRow(parseSs(fixture('ipv6')).find((r) => r.recvQ === 3)!)).toBe('ESTAB      [::1]:7001 <-> [::1]:54198  recv-q 3');
    expect([92, 1280, 59_000, 99_000, 600_000].map(formatMs)).toEqual(['92ms', '1.3s', '59s', '1m39s', '10m']);
  });
});

describe('diffRows on real snapshots', () => {
  it('reports probes and retransmissions, but not a timer counting down', () => {
    const idle = snapshot('keepalive-idle');
    expect(diffRows(idle, idle)).toEqual([]);
    const probe1 = snapshot('keepalive-probe-1');
    const changes = diffRows(idle, probe1);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ kind: 'changed', fields: ['timer.count'], row: { peer: { port: KEEPALIVE } } });
    // Each unanswered probe is one change.
    expect(diffRows(probe1, snapshot('keepalive-probe-2')).map((c) => c.kind === 'changed' && c.fields)).toEqual([['timer.count']]);
    // Only the countdown differs between these two: nothing to report.
    const countdown = snapshot('keepalive-probe-3').map((r) => (r.timer ? { ...r, timer: { ...r.timer, expiresMs: 1 } } : r));
    expect(diffRows(snapshot('keepalive-probe-3'), countdown)).toEqual([]);
  });

  it('reports a connection appearing, a timer starting and a connection dying', () => {
    const added = diffRows(snapshot('listen-idle'), snapshot('keepalive-idle'));
    expect(added).toEqual([{ kind: 'added', row: expect.objectContaining({ peer: expect.objectContaining({ port: KEEPALIVE }) }) }]);
    const removed = diffRows(snapshot('keepalive-probe-3'), snapshot('keepalive-dead'));
    expect(removed).toMatchObject([{ kind: 'removed', row: { peer: { port: KEEPALIVE }, timer: { count: 3 } } }]);
    // The echo connection: a write into the cut adds Send-Q and the retransmission timer.
    const started = diffRows(snapshot('keepalive-dead'), snapshot('retrans-0'));
    expect(started.find((c) => c.row.peer.port === ECHO)).toMatchObject({ kind: 'added', row: { sendQ: 7 } });
    const grew = diffRows(snapshot('retrans-2'), snapshot('retrans-3'));
    expect(grew).toMatchObject([{ kind: 'changed', fields: ['timer.count'], previous: { timer: { count: 2 } }, row: { timer: { count: 3 } } }]);
  });

  it('names every field that changed while the connection closes', () => {
    const fin = diffRows(snapshot('retrans-4'), snapshot('fin-wait-1')).find((c) => c.row.peer.port === ECHO);
    expect(fin).toMatchObject({ kind: 'changed', fields: ['state', 'sendQ'] });
    const fw2 = diffRows(snapshot('fin-wait-1'), snapshot('fin-wait-2')).find((c) => c.row.peer.port === ECHO);
    expect(fw2).toMatchObject({ kind: 'changed', fields: ['state', 'sendQ', 'timer.name', 'timer.count'] });
    const tw = diffRows(snapshot('fin-wait-2'), snapshot('time-wait'));
    expect(tw).toMatchObject([{ kind: 'changed', fields: ['state'], row: { state: 'TIME-WAIT' }, previous: { state: 'FIN-WAIT-2' } }]);
    const cw = diffRows(snapshot('time-wait'), snapshot('close-wait'));
    expect(cw).toMatchObject([{ kind: 'changed', fields: ['state', 'recvQ'], row: { state: 'CLOSE-WAIT', peer: { port: IDLE } } }]);
  });
});
