/**
 * Packets on the wire, from `tcpdump -l -n -tt -i <if> tcp`:
 *
 *   1795590493.010136 IP 192.0.2.10.37726 > 192.0.2.1.7000: Flags [P.], seq 1:3, ack 1, win 63, options [nop,nop,TS val 1 ecr 2], length 2
 *
 * Sequence numbers are tcpdump's relative ones (absolute on the SYN).
 */
import type { Endpoint } from './ss.ts';

export interface Packet {
  /** Seconds since the epoch, as tcpdump stamped it. */
  time: number;
  src: Endpoint;
  dst: Endpoint;
  /** tcpdump's flags: S, S., ., P., F., R, R. … */
  flags: string;
  syn: boolean;
  fin: boolean;
  rst: boolean;
  psh: boolean;
  ack: boolean;
  seq?: { start: number; end: number };
  ackNo?: number;
  win?: number;
  length: number;
  options?: string;
  raw: string;
}

/** "192.0.2.10.37726" (IPv4: last dot), "2001:db8::1.443" (IPv6: last dot too). */
function endpoint(text: string): Endpoint | null {
  const i = text.lastIndexOf('.');
  if (i <= 0) return null;
  const port = Number(text.slice(i + 1));
  if (!Number.isInteger(port)) return null;
  return { address: text.slice(0, i), port };
}

const LINE = /^(\d+\.\d+) IP6? (\S+) > (\S+): Flags \[([^\]]*)\](.*)$/;

export function parseTcpdumpLine(line: string): Packet | null {
  const m = LINE.exec(line.trim());
  if (!m) return null;
  const src = endpoint(m[2]!);
  const dst = endpoint(m[3]!);
  if (!src || !dst) return null;
  const flags = m[4]!;
  const rest = m[5]!;
  const p: Packet = {
    time: Number(m[1]),
    src,
    dst,
    flags,
    syn: flags.includes('S'),
    fin: flags.includes('F'),
    rst: flags.includes('R'),
    psh: flags.includes('P'),
    ack: flags.includes('.'),
    length: 0,
    raw: line,
  };
  const seq = /, seq (\d+)(?::(\d+))?/.exec(rest);
  if (seq) p.seq = { start: Number(seq[1]), end: Number(seq[2] ?? seq[1]) };
  const ack = /, ack (\d+)/.exec(rest);
  if (ack) p.ackNo = Number(ack[1]);
  const win = /, win (\d+)/.exec(rest);
  if (win) p.win = Number(win[1]);
  const options = /, options \[([^\]]*)\]/.exec(rest);
  if (options) p.options = options[1];
  const length = /, length (\d+)/.exec(rest);
  if (length) p.length = Number(length[1]);
  return p;
}

/** `192.0.2.10:41234 > 192.0.2.1:7000 [P.] seq 1:8 ack 1 len 7` */
export function describePacket(p: Packet): string {
  const seq = p.seq ? ` seq ${p.seq.start === p.seq.end ? p.seq.start : `${p.seq.start}:${p.seq.end}`}` : '';
  const ack = p.ackNo !== undefined ? ` ack ${p.ackNo}` : '';
  return `${p.src.address}:${p.src.port} > ${p.dst.address}:${p.dst.port} [${p.flags}]${seq}${ack} len ${p.length}`;
}

/**
 * A Linux keepalive probe: a bare ACK (no SYN/FIN/RST, no payload) whose sequence number
 * is one below what the peer last acknowledged (snd_una − 1), so the peer must answer with
 * an ACK. tcpdump shows it with `seq N` where N is one less than the previous data end.
 * Without the previous packet we can only say "bare ACK carrying a sequence number".
 */
export function isKeepaliveProbe(p: Packet, lastAckedByPeer?: number): boolean {
  if (!p.ack || p.syn || p.fin || p.rst || p.length > 1 || !p.seq) return false;
  return lastAckedByPeer === undefined ? true : p.seq.start === lastAckedByPeer - 1;
}
