/**
 * A host's TCP table straight from the kernel: /proc/<pid>/net/tcp of any process in that
 * host's network namespace. No process is started, and nothing depends on a tool's output
 * format. Used where `ss` would cost too much (polling every few milliseconds, or 50 labs
 * polling at once) and where the host has no long-lived tool to ask (the client host once
 * its program has exited, when only its kernel holds the connection).
 *
 * A line (each 32-bit word of an address is printed as the number it is in memory, so
 * the bytes come reversed on a little-endian machine):
 *
 *   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
 *   0: 0A0200C0:A2F2 010200C0:1B58 04 00000001:00000000 01:0000003C 00000002     0        0 0 …
 *
 * st is the state (include/net/tcp_states.h), tr the kind of timer (1 retransmission, 2
 * keepalive, 3 TIME-WAIT, 4 zero-window probe), tm->when the ticks until it fires (USER_HZ,
 * 100 a second), retrnsmt the retransmissions so far (icsk_retransmits), "timeout" the
 * unanswered probes (icsk_probes_out), and inode 0 for an orphan: a connection no process
 * holds any more.
 */
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import type { TcpState } from './ss.ts';

/** /proc/net/tcp gives timer expiries in clock ticks (USER_HZ, 100 a second on Linux). */
export const TICK_MS = 10;

/** include/net/tcp_states.h, named as `ss` names them. */
const STATES: Record<number, TcpState> = {
  1: 'ESTAB',
  2: 'SYN-SENT',
  3: 'SYN-RECV',
  4: 'FIN-WAIT-1',
  5: 'FIN-WAIT-2',
  6: 'TIME-WAIT',
  7: 'CLOSE',
  8: 'CLOSE-WAIT',
  9: 'LAST-ACK',
  10: 'LISTEN',
  11: 'CLOSING',
};

const TIMERS: Record<number, string> = { 0: 'off', 1: 'on', 2: 'keepalive', 3: 'timewait', 4: 'persist' };

export interface ProcTcpRow {
  /** "192.0.2.10:41234" (IPv4) or "[::1]:7000" (IPv6), as the rest of the lab writes them. */
  local: string;
  peer: string;
  state: TcpState;
  /** The raw two-digit hex state, for a change signature. */
  st: string;
  sendQ: number;
  recvQ: number;
  /** on, keepalive, timewait, persist or off. */
  timer: string;
  /** When the timer fires, in ms from the read (0 with no timer). */
  timerMs: number;
  /** Retransmissions so far (icsk_retransmits). */
  retransmits: number;
  /** Unanswered keepalive or zero-window probes (icsk_probes_out). */
  probes: number;
  /** No process holds the socket (inode 0): the kernel alone keeps it. */
  orphan: boolean;
}

/** /proc prints each 32-bit word of an address as the number it is in memory: byte order matters. */
const LITTLE_ENDIAN = endianness() === 'LE';

function wordBytes(hex: string): number[] {
  const n = parseInt(hex, 16);
  const bytes = [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  return LITTLE_ENDIAN ? bytes.reverse() : bytes;
}

const ipv4 = (hex: string): string => wordBytes(hex).join('.');

/** RFC 5952: the longest run of two or more zero groups as "::", IPv4-mapped addresses dotted. */
function ipv6(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) bytes.push(...wordBytes(hex.slice(w * 8, w * 8 + 8)));
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const text = groups.map((g) => g.toString(16));
  if (best.len < 2) return text.join(':');
  return `${text.slice(0, best.at).join(':')}::${text.slice(best.at + best.len).join(':')}`;
}

function endpoint(text: string): string {
  const [addr = '', port = '0'] = text.split(':');
  const p = parseInt(port, 16);
  return addr.length === 8 ? `${ipv4(addr)}:${p}` : `[${ipv6(addr)}]:${p}`;
}

/** Parses the text of /proc/net/tcp or tcp6 (header included); lines it cannot read are skipped. */
export function parseProcTcp(text: string): ProcTcpRow[] {
  const rows: ProcTcpRow[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (!/^\d+:$/.test(f[0] ?? '') || f.length < 10) continue; // the header, or the end
    const state = STATES[parseInt(f[3]!, 16)];
    if (!state) continue;
    const [tx = '0', rx = '0'] = f[4]!.split(':');
    const [tr = '0', when = '0'] = f[5]!.split(':');
    const timer = parseInt(tr, 16);
    rows.push({
      local: endpoint(f[1]!),
      peer: endpoint(f[2]!),
      state,
      st: f[3]!,
      sendQ: parseInt(tx, 16),
      recvQ: parseInt(rx, 16),
      timer: TIMERS[timer] ?? 'unknown',
      timerMs: timer === 0 ? 0 : parseInt(when, 16) * TICK_MS,
      retransmits: parseInt(f[6]!, 16),
      probes: parseInt(f[8]!, 16),
      orphan: f[9] === '0',
    });
  }
  return rows;
}

/** The raw text of /proc/<pid>/net/tcp and tcp6 (tcp6 may be missing), or null if the process is gone. */
export function readProcTcpText(pid: number | undefined): string | null {
  if (pid === undefined) return null;
  let text = '';
  for (const file of ['tcp', 'tcp6']) {
    try {
      text += readFileSync(`/proc/${pid}/net/${file}`, 'latin1');
    } catch (err) {
      if (file === 'tcp' || (err as NodeJS.ErrnoException).code !== 'ENOENT') return null;
    }
  }
  return text;
}
