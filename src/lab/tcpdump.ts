/**
 * Packets on the wire, from `tcpdump -l -n -tt -i <if> tcp` (tcpdump 4.99). Real lines
 * (test/fixtures/tcpdump-*.txt):
 *
 *   1795595659.698151 IP 10.99.0.2.46828 > 10.99.0.1.7000: Flags [S], seq 2409195438, win 64240, options [mss 1460,sackOK,TS val 1186572084 ecr 0,nop,wscale 10], length 0
 *   1795595659.914693 IP 10.99.0.1.7000 > 10.99.0.2.46828: Flags [P.], seq 6:13, ack 6, win 64, options [nop,nop,TS val 1768279419 ecr 1186572084], length 7
 *   1795595651.909114 IP 10.99.0.1.7000 > 10.99.0.2.33596: Flags [.], ack 1, win 64, options [nop,nop,TS val 2483307429 ecr 3517310899], length 0
 *   1795595667.481375 IP 10.99.0.1.7999 > 10.99.0.2.46014: Flags [R.], seq 0, ack 4054387363, win 0, length 0
 *
 * - tcpdump prints `seq` only for a segment with data, SYN, FIN or RST: a bare ACK (and so
 *   a Linux keepalive probe) has no seq at all.
 * - Sequence numbers are relative to the first packet of the connection that this tcpdump
 *   process saw; that first packet shows them absolute (the SYN, or whatever came first
 *   if tcpdump started mid-connection).
 * - Its stderr ("listening on eth0, …", "12 packets captured") parses to null.
 */
import type { Endpoint } from './ss.ts';

export interface Packet {
  /** Seconds since the epoch, as tcpdump stamped it. */
  time: number;
  src: Endpoint;
  dst: Endpoint;
  /** tcpdump's flags as printed: S, S., ., P., F., FP., R, R. … ("none" for no flags). */
  flags: string;
  syn: boolean;
  fin: boolean;
  rst: boolean;
  psh: boolean;
  ack: boolean;
  /** Absent on a segment without data, SYN, FIN or RST. `end` = `start` when no range. */
  seq?: { start: number; end: number };
  ackNo?: number;
  win?: number;
  /** TCP payload bytes. */
  length: number;
  /** Inside `options [...]`, e.g. "nop,nop,TS val 1 ecr 2". */
  options?: string;
  /** The line as tcpdump printed it. */
  raw: string;
}

/** "10.99.0.2.46828" (IPv4: the port follows the last dot), "::1.7001" (IPv6: the same). */
function endpoint(text: string): Endpoint | null {
  const i = text.lastIndexOf('.');
  if (i <= 0) return null;
  const portText = text.slice(i + 1);
  if (!/^\d+$/.test(portText)) return null;
  return { address: text.slice(0, i), port: Number(portText) };
}

// The optional "eth0 Out " is what tcpdump prints with `-i any`.
const LINE = /^(\d+(?:\.\d+)?)\s+(?:\S+\s+(?:In|Out|B|M|P)\s+)?IP6?\s+(\S+)\s+>\s+(\S+):\s+Flags\s+\[([^\]]*)\](.*)$/;

/** One line of tcpdump's output; null when it is not a TCP packet line. Never throws. */
export function parseTcpdumpLine(line: string): Packet | null {
  const m = LINE.exec(line.trim());
  if (!m) return null;
  const src = endpoint(m[2]!);
  const dst = endpoint(m[3]!);
  const time = Number(m[1]);
  if (!src || !dst || !Number.isFinite(time)) return null;
  const flags = m[4]!;
  const rest = m[5]!;
  const has = (f: string) => flags !== 'none' && flags.includes(f);
  const p: Packet = {
    time,
    src,
    dst,
    flags,
    syn: has('S'),
    fin: has('F'),
    rst: has('R'),
    psh: has('P'),
    ack: has('.'),
    length: 0,
    raw: line,
  };
  const seq = /,\s*seq (\d+)(?::(\d+))?/.exec(rest);
  if (seq) p.seq = { start: Number(seq[1]), end: Number(seq[2] ?? seq[1]) };
  const ack = /,\s*ack (\d+)/.exec(rest);
  if (ack) p.ackNo = Number(ack[1]);
  const win = /,\s*win (\d+)/.exec(rest);
  if (win) p.win = Number(win[1]);
  const options = /,\s*options \[([^\]]*)\]/.exec(rest);
  if (options) p.options = options[1];
  const length = /,\s*length (\d+)/.exec(rest);
  if (length) p.length = Number(length[1]);
  return p;
}

const endpointText = (e: Endpoint) => `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}`;

/** `10.99.0.2:41234 > 10.99.0.1:7000 [P.] seq 1:8 ack 1 len 7` */
export function describePacket(p: Packet): string {
  const seq = p.seq ? ` seq ${p.seq.start === p.seq.end ? p.seq.start : `${p.seq.start}:${p.seq.end}`}` : '';
  const ack = p.ackNo !== undefined ? ` ack ${p.ackNo}` : '';
  return `${endpointText(p.src)} > ${endpointText(p.dst)} [${p.flags}]${seq}${ack} len ${p.length}`;
}

/** The same for both directions of a connection: use it to find a packet's `prev`. */
export function connectionKey(p: Packet): string {
  const a = endpointText(p.src);
  const b = endpointText(p.dst);
  return a < b ? `${a} ${b}` : `${b} ${a}`;
}

const sameWay = (a: Packet, b: Packet) =>
  a.src.address === b.src.address && a.src.port === b.src.port && a.dst.address === b.dst.address && a.dst.port === b.dst.port;

/** A bare ACK: nothing but the ACK flag, and at most one byte (see isKeepaliveProbe). */
const bareAck = (p: Packet) => p.ack && !p.syn && !p.fin && !p.rst && !p.psh && p.length <= 1;

/** A reply to a probe arrives within a round trip; probes come whole seconds apart. */
export const KEEPALIVE_MIN_GAP_S = 0.5;

/**
 * Is this a keepalive probe? Heuristic, from what tcpdump shows.
 *
 * Linux sends a probe as a bare ACK without data whose sequence number is snd_una − 1 (a
 * byte the peer already acknowledged), so the peer must answer with an ACK. As tcpdump
 * prints no seq for a segment without data, that probe looks exactly like any bare ACK:
 * `Flags [.], ack 1, win 64, length 0`. (Some other stacks send one garbage byte instead,
 * `Flags [.], seq 0:1, ack 1, length 1`; that form is accepted too.) The context tells:
 *
 * `prev` is the previous packet of the same connection, either direction (see
 * connectionKey). `p` is a probe if it is a bare ACK of at most one byte and
 *  - prev went the same way and was a bare ACK with the same ack number (a probe after an
 *    unanswered one), or
 *  - prev came from the peer, was itself a bare ACK (nothing to acknowledge), and `p`
 *    follows it after at least KEEPALIVE_MIN_GAP_S: the answer to a probe comes within a
 *    round trip, a probe comes after the idle time or the probe interval (whole seconds).
 * Without `prev`, any bare ACK of at most one byte may be a probe: the answer is true.
 * Not detected: a window update after a long stall looks the same (rare in this lab).
 */
export function isKeepaliveProbe(p: Packet, prev?: Packet): boolean {
  if (!bareAck(p)) return false;
  if (!prev) return true;
  if (sameWay(p, prev)) return bareAck(prev) && prev.ackNo === p.ackNo;
  return bareAck(prev) && p.time - prev.time >= KEEPALIVE_MIN_GAP_S;
}

/** A packet as a timeline event's fields (src, dst, flags, seq, ack, length). */
export function packetFields(p: Packet): Record<string, unknown> {
  return {
    src: `${p.src.address}:${p.src.port}`,
    dst: `${p.dst.address}:${p.dst.port}`,
    flags: p.flags,
    seq: p.seq ? (p.seq.start === p.seq.end ? `${p.seq.start}` : `${p.seq.start}:${p.seq.end}`) : null,
    ack: p.ackNo ?? null,
    length: p.length,
  };
}
