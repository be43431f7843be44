/**
 * Kernel observers: what the server's kernel says about its sockets (ss), and what
 * crosses the server's link (tcpdump). Both run inside the server host of a lab.
 */
import { EventEmitter } from 'node:events';
import type { HostName, Lab, LabProcess } from './lab.ts';
import { parseProcTcp, readProcTcpText } from './proc-tcp.ts';
import { diffRows, parseSs, type SocketChange, type SocketRow } from './ss.ts';
import { parseTcpdumpLine, type Packet } from './tcpdump.ts';

const SNAPSHOT_END = '@@keepalive-lab-snapshot@@';
/** A timer whose expiry moved by more than this was re-armed (not just polled later). */
const REARM_MS = 200;
/** Safety net: a fresh `ss` at least this often while a timer runs, whatever /proc says. */
const TIMER_RESYNC_MS = 5000;

interface KernelView {
  /** Addresses, state, queues, timer kind, retransmissions and probes of every socket, in order. */
  signature: string;
  /** When each socket's timer expires (ms since epoch), by local and remote address. */
  expiries: Map<string, number>;
}

/**
 * What a change of the `ss` table is made of, from /proc/<pid>/net/tcp{,6} of a process in
 * the server host (src/lab/proc-tcp.ts): addresses, state, queues, the kind of timer and
 * when it expires, retransmissions and unanswered probes. null if it cannot be read.
 */
function readKernel(pid: number | undefined, now: number): KernelView | null {
  const text = readProcTcpText(pid);
  if (text === null) return null;
  const lines: string[] = [];
  const expiries = new Map<string, number>();
  for (const r of parseProcTcp(text)) {
    lines.push(`${r.local} ${r.peer} ${r.st} ${r.sendQ}:${r.recvQ} ${r.timer} ${r.retransmits} ${r.probes}`);
    if (r.timer !== 'off') expiries.set(`${r.local} ${r.peer}`, now + r.timerMs);
  }
  return { signature: lines.join('\n'), expiries };
}

/** True if a timer started, or moved by more than a poll's jitter: it was re-armed. */
function rearmed(before: Map<string, number>, after: Map<string, number>): boolean {
  for (const [key, at] of after) {
    const was = before.get(key);
    if (was === undefined || Math.abs(at - was) > REARM_MS) return true;
  }
  return false;
}

/**
 * The server host's socket table as `ss -H -t -a -n -o -i` prints it, looked at every
 * `intervalMs`, reporting each snapshot and what changed since the last.
 *
 * Starting `ss` costs about 14 ms of CPU on a 2-core VM: polling it 4 times a second (with
 * a `sleep` process between polls) cost one lab 7.5% of a core, and 50 labs more than the
 * machine has. So every `intervalMs` the table is read from /proc instead (no process), and
 * `ss` runs only when something in it changed (a socket, its state, its queues, the kind of
 * its timer, its retransmission or probe count), when a timer was re-armed, when someone
 * asks for a fresh look (next()), and every few seconds while a timer runs. Between
 * snapshots a page counts a timer down itself. One long-lived shell runs `ss` each time it
 * reads a line on its stdin.
 */
export class SocketTable extends EventEmitter<{
  snapshot: [rows: SocketRow[], time: number];
  changes: [changes: SocketChange[], time: number];
}> {
  rows: SocketRow[] = [];
  readonly #proc: LabProcess;
  readonly #poller: NodeJS.Timeout;
  #buffer: string[] = [];
  #first = true;
  #waiters: Array<() => void> = [];
  /** Asked for while an `ss` was already running: served by the next one, which starts after. */
  #laterWaiters: Array<() => void> = [];
  #inFlight = false;
  #lastView: KernelView | null = null;
  #lastSnapshotAt = 0;

  constructor(lab: Lab, intervalMs = 250) {
    super();
    this.#proc = lab.spawn('server', 'ss', 'sh', ['-c', `while read -r _; do ss -H -t -a -n -o -i; echo ${SNAPSHOT_END}; done`], { stdin: true });
    this.#proc.on('line', (stream, line) => {
      if (stream !== 'stdout') return;
      if (line !== SNAPSHOT_END) {
        if (this.#buffer.length < 20000) this.#buffer.push(line);
        return;
      }
      const time = Date.now();
      const rows = parseSs(this.#buffer.join('\n'));
      this.#buffer = [];
      this.#inFlight = false;
      this.#lastSnapshotAt = time;
      const changes = diffRows(this.#first ? [] : this.rows, rows);
      this.#first = false;
      this.rows = rows;
      this.emit('snapshot', rows, time);
      if (changes.length) this.emit('changes', changes, time);
      for (const w of this.#waiters.splice(0)) w();
      if (this.#laterWaiters.length) {
        this.#waiters.push(...this.#laterWaiters.splice(0));
        this.#poll(true);
      }
    });
    this.#poller = setInterval(() => this.#poll(false), intervalMs);
    void this.#proc.exited.then(() => clearInterval(this.#poller));
    this.#poll(true);
  }

  #poll(force: boolean): void {
    if (this.#inFlight || !this.#proc.running) return;
    const now = Date.now();
    const view = readKernel(this.#proc.pid, now);
    const last = this.#lastView;
    const timers = this.rows.some((r) => r.timer !== null);
    const due =
      force ||
      this.#waiters.length > 0 ||
      view === null ||
      last === null ||
      view.signature !== last.signature ||
      rearmed(last.expiries, view.expiries) ||
      (timers && now - this.#lastSnapshotAt >= TIMER_RESYNC_MS);
    if (!due) return;
    this.#lastView = view;
    this.#inFlight = true;
    this.#proc.write('\n');
  }

  /** Resolves with a snapshot taken after this call (a fresh look at the kernel). */
  next(): Promise<SocketRow[]> {
    return new Promise((resolve) => {
      if (this.#inFlight) {
        // The `ss` running now may have read the kernel before whatever the caller just did.
        this.#laterWaiters.push(() => resolve(this.rows));
        return;
      }
      this.#waiters.push(() => resolve(this.rows));
      this.#poll(true);
    });
  }

  stop(): void {
    clearInterval(this.#poller);
    this.#proc.signal('SIGKILL');
  }
}

export interface WireStatus {
  available: boolean;
  note?: string;
}

/**
 * Captures TCP packets with tcpdump, where it exists: on the server's link (the wire every
 * lab shows), or on the client's, to see what the client's kernel sends into a cut.
 */
export class WireCapture extends EventEmitter<{ packet: [Packet]; status: [WireStatus] }> {
  readonly ready: Promise<WireStatus>;
  #proc: LabProcess | null = null;
  #stopped = false;

  constructor(lab: Lab, tcpdumpAvailable: boolean, host: HostName = 'server') {
    super();
    if (!tcpdumpAvailable) {
      this.ready = Promise.resolve({
        available: false,
        note: "tcpdump is not installed, so the packets are not shown (install it: 'sudo apt-get install tcpdump').",
      });
      return;
    }
    const iface = host === 'server' ? lab.serverInterface : lab.clientInterface;
    const proc = lab.spawn(host, host === 'server' ? 'tcpdump' : 'tcpdump-client', 'tcpdump', ['-l', '--immediate-mode', '-n', '-tt', '-Z', 'root', '-i', iface, 'tcp']);
    this.#proc = proc;
    this.ready = new Promise((resolve) => {
      const errors: string[] = [];
      const timer = setTimeout(() => resolve({ available: false, note: 'tcpdump did not start within 3 s.' }), 3000);
      proc.on('line', (stream, line) => {
        if (stream === 'stderr') {
          if (/^listening on /.test(line)) {
            clearTimeout(timer);
            resolve({ available: true });
          } else if (!/verbose output suppressed/.test(line)) errors.push(line);
          return;
        }
        const packet = parseTcpdumpLine(line);
        if (packet) this.emit('packet', packet);
      });
      proc.exited.then(() => {
        clearTimeout(timer);
        if (this.#stopped) {
          // Stopped by us (the run ended, or Stop while the lab was being made): not a failure of tcpdump.
          resolve({ available: false, note: 'The run ended before the capture started.' });
          return;
        }
        const reason = errors.join(' ').trim();
        const note =
          lab.mode === 'userns' && /change to|uid|Operation not permitted/i.test(reason)
            ? `tcpdump cannot run in a lab made by an ordinary user (it insists on switching to its own user, which this user namespace cannot do): ${reason}. Run the course as root to see the packets.`
            : `tcpdump stopped: ${reason || 'no reason given'}`;
        resolve({ available: false, note });
      });
    });
    this.ready.then((s) => this.emit('status', s));
  }

  stop(): void {
    this.#stopped = true;
    this.#proc?.signal('SIGKILL');
  }
}
