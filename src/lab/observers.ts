/**
 * Kernel observers: what the server's kernel says about its sockets (ss), and what
 * crosses the server's link (tcpdump). Both run inside the server host of a lab.
 */
import { EventEmitter } from 'node:events';
import type { Lab, LabProcess } from './lab.ts';
import { diffRows, parseSs, type SocketChange, type SocketRow } from './ss.ts';
import { parseTcpdumpLine, type Packet } from './tcpdump.ts';

const SNAPSHOT_END = '@@keepalive-lab-snapshot@@';

/**
 * Polls `ss -H -t -a -n -o -i` in the server host every `intervalMs` (one long-lived shell
 * loop, not a process per poll) and reports each snapshot and what changed since the last.
 */
export class SocketTable extends EventEmitter<{
  snapshot: [rows: SocketRow[], time: number];
  changes: [changes: SocketChange[], time: number];
}> {
  rows: SocketRow[] = [];
  readonly #proc: LabProcess;
  #buffer: string[] = [];
  #first = true;
  #waiters: Array<() => void> = [];

  constructor(lab: Lab, intervalMs = 250) {
    super();
    const seconds = (intervalMs / 1000).toFixed(3);
    this.#proc = lab.spawn('server', 'ss', 'sh', [
      '-c',
      `while :; do ss -H -t -a -n -o -i; echo ${SNAPSHOT_END}; sleep ${seconds}; done`,
    ]);
    this.#proc.on('line', (stream, line) => {
      if (stream !== 'stdout') return;
      if (line !== SNAPSHOT_END) {
        if (this.#buffer.length < 20000) this.#buffer.push(line);
        return;
      }
      const time = Date.now();
      const rows = parseSs(this.#buffer.join('\n'));
      this.#buffer = [];
      const changes = diffRows(this.#first ? [] : this.rows, rows);
      this.#first = false;
      this.rows = rows;
      this.emit('snapshot', rows, time);
      if (changes.length) this.emit('changes', changes, time);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  /** Resolves after the next complete snapshot (a fresh look at the kernel). */
  next(): Promise<SocketRow[]> {
    return new Promise((resolve) => this.#waiters.push(() => resolve(this.rows)));
  }

  stop(): void {
    this.#proc.signal('SIGKILL');
  }
}

export interface WireStatus {
  available: boolean;
  note?: string;
}

/**
 * Captures TCP packets on the server's side of the link with tcpdump, where it exists.
 */
export class WireCapture extends EventEmitter<{ packet: [Packet]; status: [WireStatus] }> {
  readonly ready: Promise<WireStatus>;
  #proc: LabProcess | null = null;

  constructor(lab: Lab, tcpdumpAvailable: boolean) {
    super();
    if (!tcpdumpAvailable) {
      this.ready = Promise.resolve({
        available: false,
        note: "tcpdump is not installed, so the packets are not shown (install it: 'sudo apt-get install tcpdump').",
      });
      return;
    }
    const proc = lab.spawn('server', 'tcpdump', 'tcpdump', ['-l', '--immediate-mode', '-n', '-tt', '-Z', 'root', '-i', lab.serverInterface, 'tcp']);
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
    this.#proc?.signal('SIGKILL');
  }
}
