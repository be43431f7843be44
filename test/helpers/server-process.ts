/**
 * The course server (startServer from src/server/main.ts, what `npm start` runs) in a child
 * process of its own, so a test can measure exactly its memory and descriptors from /proc,
 * see whether it is still alive, and ask it to collect garbage before a measurement.
 *
 * It runs under `setpriv --pdeathsig KILL`: if the test process dies, so does the server
 * (and then its labs, by their own pdeathsig).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from './server.ts';
import { alive, processStats } from './leftovers.ts';

const MAIN = fileURLToPath(new URL('../../src/server/main.ts', import.meta.url));

// stdin carries commands, one a line; the answers come back on stdout as `@<json>` lines.
const CHILD = `
import { createInterface } from 'node:readline';
import { startServer } from ${JSON.stringify(MAIN)};
const port = Number(process.env.KL_PORT);
const maxLabs = process.env.KL_MAX_LABS ? Number(process.env.KL_MAX_LABS) : undefined;
const server = await startServer({ port, host: '127.0.0.1', maxLabs });
const answer = (o) => process.stdout.write('@' + JSON.stringify(o) + '\\n');
answer({ listening: port });
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'gc') {
    globalThis.gc();
    globalThis.gc();
    answer({ gc: process.memoryUsage(), sessions: server.sidecar.sessions, labs: server.sidecar.slots.running });
  }
});
process.once('SIGINT', async () => {
  await server.close();
  process.exit(0);
});
`;

export interface ServerProcessOptions {
  maxLabs?: number;
  /** Extra environment, e.g. TMPDIR. */
  env?: Record<string, string>;
}

export class ServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything it wrote that was not an answer (it should write nothing). */
  output = '';
  #answers: Array<(o: Record<string, unknown>) => void> = [];

  private constructor(child: ChildProcess, port: number) {
    this.child = child;
    this.port = port;
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('@')) this.#answers.shift()?.(JSON.parse(line.slice(1)) as Record<string, unknown>);
      else this.output += line + '\n';
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.output += d));
  }

  static async start(options: ServerProcessOptions = {}): Promise<ServerProcess> {
    const port = await freePort();
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', process.execPath, '--expose-gc', '--input-type=module', '-e', CHILD], {
      env: { ...process.env, ...options.env, KL_PORT: String(port), ...(options.maxLabs ? { KL_MAX_LABS: String(options.maxLabs) } : {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const server = new ServerProcess(child, port);
    const listening = server.#next();
    const failed = server.exited.then((e) => {
      throw new Error(`the server exited before listening (${JSON.stringify(e)}): ${server.output}`);
    });
    await Promise.race([listening, failed]);
    return server;
  }

  #next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.#answers.push(resolve));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && alive(this.pid);
  }

  /** VmRSS and descriptor count, from /proc. */
  stats(): { rssKiB: number; fds: number } {
    return processStats(this.pid);
  }

  /** Collects garbage in the server, then measures: heap after GC, RSS and descriptors. */
  async measure(): Promise<{ rssKiB: number; fds: number; heapUsedKiB: number; externalKiB: number; sessions: number; labs: number }> {
    const answer = this.#next();
    this.child.stdin!.write('gc\n');
    const a = (await answer) as { gc: NodeJS.MemoryUsage; sessions: number; labs: number };
    // external: memory outside the JS heap that JS objects hold (Buffers among it).
    return { ...this.stats(), heapUsedKiB: Math.round(a.gc.heapUsed / 1024), externalKiB: Math.round(a.gc.external / 1024), sessions: a.sessions, labs: a.labs };
  }

  /** SIGINT, as Ctrl+C: every lab is stopped, then the process exits. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGINT');
    return this.exited;
  }
}
