/**
 * The tcpdump parser against real `tcpdump -l -n -tt -i eth0 tcp` output (tcpdump 4.99.3,
 * stdout and stderr together), captured on the server's side of the link by
 * test/fixtures/capture-parsers.py: server 10.99.0.1:7000, client 10.99.0.2.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { connectionKey, describePacket, isKeepaliveProbe, parseTcpdumpLine, type Packet } from '../../src/lab/tcpdump.ts';

const lines = (name: string) => readFileSync(new URL(`../fixtures/tcpdump-${name}.txt`, import.meta.url), 'utf8').split('\n');
const packets = (name: string) => lines(name).map(parseTcpdumpLine).filter((p): p is Packet => p !== null);
const SERVER = { address: '10.99.0.1', port: 7000 };

/** Each packet with the verdict of isKeepaliveProbe given the connection's previous packet. */
function probes(list: Packet[]): boolean[] {
  const last = new Map<string, Packet>();
  return list.map((p) => {
    const verdict = isKeepaliveProbe(p, last.get(connectionKey(p)));
    last.set(connectionKey(p), p);
    return verdict;
  });
}

describe('parseTcpdumpLine on real output', () => {
  it('returns null for what tcpdump prints on stderr, and for blank lines', () => {
    const all = lines('handshake-data');
    const ignored = all.filter((l) => parseTcpdumpLine(l) === null);
    expect(ignored).toEqual([
      'tcpdump: verbose output suppressed, use -v[v]... for full protocol decode',
      'listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes',
      '',
      '12 packets captured',
      '12 packets received by filter',
      '0 packets dropped by kernel',
      '',
    ]);
    expect(packets('handshake-data')).toHaveLength(12);
  });

  it('reads a handshake and data, with absolute sequence numbers on the SYNs', () => {
    const [syn, synAck, ack, data, dataAck, echo] = packets('handshake-data');
    expect(syn).toEqual({
      time: 1795595649.026352,
      src: { address: '10.99.0.2', port: 33574 },
      dst: SERVER,
      flags: 'S',
      syn: true,
      fin: false,
      rst: false,
      psh: false,
      ack: false,
      seq: { start: 2242473355, end: 2242473355 },
      win: 64240,
      length: 0,
      options: 'mss 1460,sackOK,TS val 1822332283 ecr 0,nop,wscale 10',
      raw: lines('handshake-data')[2],
    });
    expect(synAck).toMatchObject({ flags: 'S.', syn: true, ack: true, src: SERVER, seq: { start: 3008721131 }, ackNo: 2242473356, win: 65160 });
    expect(ack).toMatchObject({ flags: '.', syn: false, ack: true, ackNo: 1, win: 63, length: 0 });
    expect(ack!.seq).toBeUndefined(); // tcpdump prints no seq for a bare ACK
    expect(data).toMatchObject({ flags: 'P.', psh: true, ack: true, seq: { start: 1, end: 7 }, ackNo: 1, length: 6 });
    expect(dataAck).toMatchObject({ flags: '.', src: SERVER, ackNo: 7, length: 0 });
    expect(echo).toMatchObject({ flags: 'P.', src: SERVER, seq: { start: 1, end: 7 }, ackNo: 7, length: 6 });
    // The second connection: 11 bytes the server never reads.
    expect(packets('handshake-data').at(-2)).toMatchObject({ src: { port: 33586 }, seq: { start: 1, end: 12 }, length: 11 });
  });

  it('reads the retransmissions of unacknowledged data, then FIN and ACK', () => {
    const all = packets('retransmission-fin');
    expect(all).toHaveLength(22);
    const resent = all.filter((p) => p.src.port === 7000 && p.dst.port === 46828 && p.seq?.start === 6 && p.length === 7);
    expect(resent).toHaveLength(7); // the original and six retransmissions
    expect(resent.every((p) => p.flags === 'P.' && p.seq!.end === 13 && p.ackNo === 6)).toBe(true);
    const gaps = resent.slice(1).map((p, i) => Math.round((p.time - resent[i]!.time) * 1000));
    // A tail loss probe after ~200 ms, then the RTO doubling (the last one got through).
    expect(gaps).toEqual([206, 208, 412, 832, 1664, 3456]);
    const fin = all.find((p) => p.fin && p.src.port === 7000 && p.dst.port === 46828);
    expect(fin).toMatchObject({ flags: 'F.', seq: { start: 13, end: 13 }, ackNo: 6, length: 0 });
    // The first packet of an older connection this tcpdump saw: absolute numbers.
    const firstSeen = all.find((p) => p.src.port === 33574);
    expect(firstSeen).toMatchObject({ flags: 'F.', seq: { start: 2242473362 }, ackNo: 3008721138 });
    expect(probes(all).some(Boolean)).toBe(false);
  });

  it('reads resets: to a SYN on a closed port, and on close() with unread data', () => {
    const [syn, refused, reset] = packets('rst');
    expect(syn).toMatchObject({ flags: 'S', dst: { address: '10.99.0.1', port: 7999 } });
    expect(refused).toMatchObject({ flags: 'R.', rst: true, ack: true, seq: { start: 0 }, ackNo: syn!.seq!.start + 1, win: 0, length: 0 });
    expect(refused!.options).toBeUndefined();
    // SYN seq 2618456820 (tcpdump-handshake-data.txt) + 1 + the 11 unread bytes.
    expect(reset).toMatchObject({ flags: 'R.', rst: true, src: SERVER, dst: { port: 33586 }, ackNo: 2618456820 + 1 + 11 });
  });

  it('reads IPv6 and the interface and direction columns of -i any', () => {
    const all = packets('ipv6-any');
    expect(all).toHaveLength(11);
    expect(all[0]).toMatchObject({ flags: 'S', src: { address: '::1', port: 36076 }, dst: { address: '::1', port: 7001 } });
    expect(all.filter((p) => p.fin).map((p) => p.src.port)).toEqual([36076, 7001]);
    expect(describePacket(all[3]!)).toBe('[::1]:36076 > [::1]:7001 [P.] seq 1:4 ack 1 len 3');
  });
});

describe('keepalive probes on the wire', () => {
  const all = packets('keepalive');
  const verdicts = probes(all);
  const found = all.filter((_, i) => verdicts[i]);

  it('finds the two answered and the three unanswered probes, and nothing else', () => {
    expect(all).toHaveLength(11);
    expect(found.map((p) => p.time)).toEqual([1795595651.909114, 1795595653.925117, 1795595655.941093, 1795595656.965071, 1795595657.989100]);
    expect(found.every((p) => p.src.port === 7000 && p.flags === '.' && p.length === 0 && p.seq === undefined && p.ackNo === 1)).toBe(true);
    // Idle 2 s before a probe, then 1 s between unanswered probes.
    const gaps = found.slice(1).map((p, i) => Math.round((p.time - found[i]!.time) * 10) / 10);
    expect(gaps).toEqual([2, 2, 1, 1]);
  });

  it('does not take the answers for probes', () => {
    const answers = all.filter((p, i) => !verdicts[i] && p.src.port === 33596 && p.flags === '.');
    expect(answers.map((p) => p.time)).toEqual([1795595649.898675, 1795595651.90915, 1795595653.925145]); // handshake ACK + 2 answers
  });

  it('ends with the RST the kernel sends when it gives up, a probe interval after the last', () => {
    const rst = all.at(-1)!;
    expect(rst).toMatchObject({ flags: 'R.', rst: true, src: SERVER, seq: { start: 1 }, ackNo: 1 });
    expect(Math.round((rst.time - found.at(-1)!.time) * 10) / 10).toBe(1);
    expect(isKeepaliveProbe(rst)).toBe(false);
  });

  it('without context, any bare ACK is a candidate; data, SYN, FIN and RST never are', () => {
    expect(all.filter((p) => isKeepaliveProbe(p)).length).toBe(8);
    for (const p of [...packets('handshake-data'), ...packets('rst')]) {
      if (p.syn || p.fin || p.rst || p.length > 1) expect(isKeepaliveProbe(p)).toBe(false);
    }
  });

  it('accepts the one-garbage-byte form some stacks send', () => {
    const prev = parseTcpdumpLine('1700000000.000000 IP 10.0.0.2.5000 > 10.0.0.1.80: Flags [.], ack 1, win 502, length 0')!;
    const probe = parseTcpdumpLine('1700000045.000000 IP 10.0.0.1.80 > 10.0.0.2.5000: Flags [.], seq 0:1, ack 1, win 512, length 1')!;
    expect(probe.seq).toEqual({ start: 0, end: 1 });
    expect(isKeepaliveProbe(probe, prev)).toBe(true);
  });
});

describe('describePacket and odd lines', () => {
  it('describes packets in one short line', () => {
    const [syn, , ack, data] = packets('handshake-data');
    expect(describePacket(syn!)).toBe('10.99.0.2:33574 > 10.99.0.1:7000 [S] seq 2242473355 len 0');
    expect(describePacket(ack!)).toBe('10.99.0.2:33574 > 10.99.0.1:7000 [.] ack 1 len 0');
    expect(describePacket(data!)).toBe('10.99.0.2:33574 > 10.99.0.1:7000 [P.] seq 1:7 ack 1 len 6');
    expect(describePacket(packets('rst')[1]!)).toBe('10.99.0.1:7999 > 10.99.0.2:46014 [R.] seq 0 ack 4054387363 len 0');
  });

  it('returns null for non-TCP and malformed lines', () => {
    for (const line of [
      '1795595649.026352 IP 10.0.0.1.53 > 10.0.0.2.5000: 4660+ A? example. (29)',
      '1795595649.026352 ARP, Request who-has 10.99.0.2 tell 10.99.0.1, length 28',
      '1795595649.026352 IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 64',
      'IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S], seq 1, win 1, length 0',
      '1795595649.026352 IP 10.0.0.1.x > 10.0.0.2.2: Flags [S], seq 1, win 1, length 0',
      'tcpdump: eth9: No such device exists',
    ]) {
      expect(parseTcpdumpLine(line)).toBeNull();
    }
  });

  it('never throws', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string(), fc.constantFrom('1795595649.1 ', 'IP ', 'IP6 ', '10.0.0.1.7000', ' > ', ': Flags [', 'S.', ']', ', seq ', '1:', ', ack ', ', length ', '9'))),
        (parts) => {
          const p = parseTcpdumpLine(parts.join(''));
          expect(p === null || typeof p.time === 'number').toBe(true);
        },
      ),
    );
  });
});
