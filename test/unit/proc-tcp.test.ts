/** The kernel's TCP table as /proc/net/tcp prints it (fixtures read from a real lab, Linux 6.18). */
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseProcTcp } from '../../src/lab/proc-tcp.ts';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, '../fixtures', name), 'latin1');

describe('/proc/net/tcp', () => {
  it("reads the server's listener and connection: addresses in host byte order, ports, state, queues", () => {
    const rows = parseProcTcp(fixture('proc-net-tcp-server.txt'));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ local: '0.0.0.0:7000', peer: '0.0.0.0:0', state: 'LISTEN', timer: 'off', orphan: false });
    expect(rows[1]).toMatchObject({ local: '192.0.2.1:7000', state: 'ESTAB', sendQ: 0, recvQ: 2, timer: 'off', retransmits: 0, probes: 0, orphan: false });
    expect(rows[1]!.peer).toMatch(/^192\.0\.2\.10:\d+$/);
  });

  it("reads an orphan in FIN-WAIT-1: the retransmission timer, when it fires, the retransmissions so far, no inode", () => {
    const [row, ...rest] = parseProcTcp(fixture('proc-net-tcp-client.txt'));
    expect(rest).toEqual([]);
    expect(row).toMatchObject({ local: '192.0.2.10:50930', peer: '192.0.2.1:7000', state: 'FIN-WAIT-1', sendQ: 5, timer: 'on', timerMs: 740, retransmits: 2, orphan: true });
  });

  it('writes IPv6 addresses as RFC 5952 does: the longest run of zeros compressed, IPv4-mapped ones dotted', () => {
    // Each 32-bit word as this machine prints it (the fixtures above come from a little-endian one).
    const word = (bytes: number[]) => (endianness() === 'LE' ? [...bytes].reverse() : bytes).map((b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
    const row = (addr: number[]) =>
      `   0: ${[0, 4, 8, 12].map((i) => word(addr.slice(i, i + 4))).join('')}:1B58 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0`;
    const local = (addr: number[]) => parseProcTcp(row(addr))[0]!.local;
    expect(local([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])).toBe('[fe80::1]:7000');
    // The longer of two runs of zeros: 2001:db8:0:0:1:0:0:0 → 2001:db8:0:0:1::
    expect(local([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])).toBe('[2001:db8:0:0:1::]:7000');
    // A single zero group stays as it is.
    expect(local([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1])).toBe('[2001:db8:0:1:1:1:1:1]:7000');
    expect(local([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10])).toBe('[::ffff:192.0.2.10]:7000');
  });

  it('reads IPv6 addresses word by word, and skips the header, blank lines and lines it cannot read', () => {
    // ::1 port 7000 listening, as /proc/net/tcp6 prints it on a little-endian machine.
    const line = '   0: 00000000000000000000000001000000:1B58 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0';
    const header = '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
    expect(parseProcTcp(`${header}\n${line}\n\n   1: garbage\n`)).toEqual([
      { local: '[::1]:7000', peer: '[::]:0', state: 'LISTEN', st: '0A', sendQ: 0, recvQ: 0, timer: 'off', timerMs: 0, retransmits: 0, probes: 0, orphan: false },
    ]);
  });
});
