/**
 * The course server (src/server/main.ts) as a child process, so that its memory and CPU
 * can be read from /proc without counting the measuring side, and so that a measurement
 * can check afterwards that the server's labs left nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { taggedProcesses } from '../../src/lab/lab.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/server/main.ts', import.meta.url));
/** Linux's USER_HZ: the unit of utime/stime in /proc/<pid>/stat on every common platform. */
const CLOCK_TICKS = 100;

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A process that a lab of `ownerPid` started (found by the KEEPALIVE_LAB tag in its environment). */
export interface TaggedProcess {
  pid: number;
  tag: string;
  cmd: string;
}

/** Processes on this machine that carry a lab tag (of `ownerPid`'s labs, or of any). */
export function labProcessesOf(ownerPid?: number): TaggedProcess[] {
  const found: TaggedProcess[] = [];
  for (const { pid, tag } of taggedProcesses()) {
    if (ownerPid !== undefined && !tag.startsWith(`${ownerPid}:`)) continue;
    try {
      found.push({ pid, tag, cmd: readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ').trim() });
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** utime + stime of the process itself, or (children) of its children that have exited and been reaped. */
function cpuSeconds(pid: number, children = false): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const [u, s] = children ? [13, 14] : [11, 12];
    return (Number(fields[u]) + Number(fields[s])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

export interface StopReport {
  /** How the server ended: 'exit 0' after SIGTERM, or 'killed' if it had to be. */
  ended: string;
  /** Lab processes still alive after the server was gone (and then killed by us). */
  leftBehind: TaggedProcess[];
}

export interface ServerChild {
  port: number;
  pid: number;
  /** Peak resident memory of the server process so far (VmHWM), in MiB. */
  peakRssMb(): number | null;
  rssMb(): number | null;
  cpuSeconds(): number | null;
  /**
   * CPU used by the server's finished children: every lab process the server started runs
   * under it (nsenter execs), and each reaps its own children (ss under its shell), so once
   * the labs are torn down this is what all of them cost.
   */
  childrenCpuSeconds(): number | null;
  /** Lines the server wrote (stdout and stderr), for diagnosis. */
  output: string[];
  /** SIGTERM (the server stops every lab), SIGKILL if it takes longer than `graceMs`; then checks for leftovers. */
  stop(graceMs?: number): Promise<StopReport>;
}

/**
 * Starts `node src/server/main.ts` on a free loopback port with room for `maxLabs` labs.
 * The child runs under `setpriv --pdeathsig KILL`: if this process dies, even by SIGKILL,
 * the server dies too, and its labs with it (each lab process has its own pdeathsig).
 */
export async function startServerChild(options: { maxLabs: number; startTimeoutMs?: number }): Promise<ServerChild> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'setpriv',
    ['--pdeathsig', 'KILL', '--', process.execPath, MAIN, '--port', String(port), '--no-build', '--max-labs', String(options.maxLabs)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line && output.length < 2000) output.push(line);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start the server (setpriv missing?)');

  // Ready when the port accepts connections (not when a given banner is printed: its wording may change).
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const deadline = Date.now() + startTimeoutMs;
  let status: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  void exited.then((s) => (status = s));
  while (!(await accepts(port))) {
    if (status) throw new Error(`the server exited at start (${JSON.stringify(status)}):\n${output.join('\n')}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server did not listen within ${startTimeoutMs} ms:\n${output.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  let stopping: Promise<StopReport> | null = null;
  return {
    port,
    pid,
    output,
    peakRssMb: () => {
      const kb = statusKb(pid, 'VmHWM');
      return kb === null ? null : kb / 1024;
    },
    rssMb: () => {
      const kb = statusKb(pid, 'VmRSS');
      return kb === null ? null : kb / 1024;
    },
    cpuSeconds: () => cpuSeconds(pid),
    childrenCpuSeconds: () => cpuSeconds(pid, true),
    stop(graceMs = 15_000) {
      stopping ??= (async () => {
        let ended: string;
        if (child.exitCode !== null || child.signalCode !== null) {
          ended = `had already exited (${child.exitCode ?? child.signalCode})`;
        } else {
          child.kill('SIGTERM');
          let timer: NodeJS.Timeout | undefined;
          const status = await Promise.race([exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), graceMs)))]);
          clearTimeout(timer);
          if (status) ended = status.code !== null ? `exit ${status.code}` : `signal ${status.signal}`;
          else {
            child.kill('SIGKILL');
            await exited;
            ended = `killed after ${graceMs} ms`;
          }
        }
        // The labs' processes die with the server (pdeathsig); give the kernel a moment to reap them.
        let left = labProcessesOf(pid);
        for (let i = 0; i < 30 && left.length; i++) {
          await new Promise((r) => setTimeout(r, 100));
          left = labProcessesOf(pid);
        }
        for (const p of left) {
          try {
            process.kill(p.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        return { ended, leftBehind: left };
      })();
      return stopping;
    },
  };
}
