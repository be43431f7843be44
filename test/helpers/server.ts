/**
 * The course server for tests: in-process on a free port, or as a child process (so that a
 * test can SIGKILL it, or read its memory without counting its own).
 *
 * Run as a program, this file is such a child: `node test/helpers/server.ts --port N
 * [--max-labs N] [--host H --token T]` serves the course's scenarios plus the test-only
 * ones below, and prints `listening <port>` once it listens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort } from '../../scripts/lib/server.ts';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { startServer, type StartOptions } from '../../src/server/main.ts';
import { scenarios as courseScenarios } from '../../src/scenarios/index.ts';
import type { Scenario } from '../../src/scenarios/types.ts';
import type { ServerMessage } from '../../src/sidecar/protocol.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export { freePort };

/**
 * Test-only scenarios, real labs all the same: `hold` keeps an echo server and a connected
 * client for `wait` seconds and does nothing else (so a test alone decides what happens);
 * `flood` runs a program in the server host that prints without end (`yes`), its lines
 * going to the server's terminal like a demo's.
 */
export const testScenarios: Scenario[] = [
  {
    id: 'hold',
    title: 'Hold a connection (test)',
    description: 'An echo server and a connected client, left alone.',
    claim: 'The lab stays up for {wait} s.',
    params: { wait: { type: 'number', default: 30, min: 1, max: 600, unit: 'seconds', description: 'How long to hold.' } },
    theory: () => ({ summary: 'Nothing happens unless the page acts.' }),
    expectedDuration: (p) => p.wait + 3,
    async run(ctx, p) {
      const server = await ctx.startServer(['--no-echo']);
      await ctx.startClient(['--count', '1']);
      ctx.openToLearner();
      await ctx.sleep(p.wait);
      return { serverLines: server.log.length };
    },
    check: () => [{ name: 'held', held: true, detail: '' }],
  },
  {
    id: 'flood',
    title: 'A program that prints without end (test)',
    description: '`yes` in the server host for a while.',
    claim: 'The server survives {seconds} s of endless output.',
    params: { seconds: { type: 'number', default: 10, min: 1, max: 120, unit: 'seconds', description: 'How long to print.' } },
    theory: () => ({ summary: 'Output is bounded per source and per page.' }),
    expectedDuration: (p) => p.seconds + 3,
    async run(ctx, p) {
      const proc = ctx.lab.spawn('server', 'flood', 'yes', ['flood: this program prints this line without end']);
      let lines = 0;
      proc.on('line', (stream, line) => {
        lines++;
        ctx.record({ t: ctx.lab.t(), source: 'server', event: stream === 'stderr' ? 'stderr' : 'output', name: 'flood', line });
      });
      await ctx.sleep(p.seconds);
      return { lines };
    },
    check: (o) => [{ name: 'it printed', held: (o.lines as number) > 0, detail: `${o.lines} lines` }],
  },
];

export const allTestScenarios: Scenario[] = [...courseScenarios, ...testScenarios];

export async function startTestServer(options: Partial<StartOptions> = {}) {
  const started = await startServer({ port: await freePort(), host: '127.0.0.1', scenarios: allTestScenarios, ...options });
  return started;
}

export interface ServerChild {
  child: ChildProcess;
  pid: number;
  port: number;
  /** Everything it printed, stdout and stderr. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resident memory now, in MiB (null once gone). */
  rssMb(): number | null;
}

/**
 * Starts a server as a child process, under `setpriv --pdeathsig KILL` so that it dies
 * with the test, and resolves once it listens. `program` is 'main' (npm start itself) or
 * 'test' (this file: the course plus the test scenarios). `nice` lowers its priority (and
 * its labs'), so that a test that keeps it busy leaves the CPU to other tests' timing.
 */
export async function startServerChild(program: 'main' | 'test', args: string[], env: NodeJS.ProcessEnv = process.env, options: { nice?: number } = {}): Promise<ServerChild> {
  const port = await freePort();
  const script = program === 'main' ? `${ROOT}src/server/main.ts` : fileURLToPath(import.meta.url);
  const nice = options.nice ? ['nice', '-n', String(options.nice)] : [];
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...nice, process.execPath, script, '--port', String(port), ...(program === 'main' ? ['--no-build'] : []), ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const ready = program === 'main' ? new RegExp(`http://127\\.0\\.0\\.1:${port}/`) : new RegExp(`^listening ${port}$`, 'm');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start within 20 s:\n${output}`)), 20_000);
    const check = () => {
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    void exited.then((s) => {
      clearTimeout(timer);
      reject(new Error(`the server exited at start (${JSON.stringify(s)}):\n${output}`));
    });
  });
  return {
    child,
    pid: child.pid!,
    port,
    output: () => output,
    exited,
    rssMb: () => {
      try {
        return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
      } catch {
        return null;
      }
    },
  };
}

/** A WebSocket client that collects every server message and can wait for one. */
export class TestClient {
  readonly ws: WebSocket;
  readonly messages: ServerMessage[] = [];
  #waiters: Array<{ test: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }> = [];
  readonly opened: Promise<void>;
  /** Bytes of messages received. */
  bytes = 0;

  constructor(port: number, headers: Record<string, string> = { origin: `http://127.0.0.1:${port}` }, options: { address?: string; query?: string } = {}) {
    this.ws = new WebSocket(`ws://${options.address ?? '127.0.0.1'}:${port}/api/lab${options.query ?? ''}`, { headers });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', (data) => {
      const text = data.toString();
      this.bytes += text.length;
      const m = JSON.parse(text) as ServerMessage;
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.test(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  send(m: unknown): void {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }

  next<T extends ServerMessage['type']>(type: T, test: (m: Extract<ServerMessage, { type: T }>) => boolean = () => true, timeoutMs = 30_000): Promise<Extract<ServerMessage, { type: T }>> {
    const already = this.messages.find((m) => m.type === type && test(m as Extract<ServerMessage, { type: T }>));
    if (already) return Promise.resolve(already as Extract<ServerMessage, { type: T }>);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no '${type}' message within ${timeoutMs} ms; got ${this.messages.map((m) => m.type).join(', ')}`)), timeoutMs);
      this.#waiters.push({
        test: (m) => m.type === type && test(m as Extract<ServerMessage, { type: T }>),
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Extract<ServerMessage, { type: T }>);
        },
      });
    });
  }

  close(): void {
    this.ws.close();
  }
}

async function runAsChild(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      token: { type: 'string' },
      'max-labs': { type: 'string' },
    },
  });
  const { port, close } = await startServer({
    port: Number(values.port),
    host: values.host,
    token: values.token,
    maxLabs: values['max-labs'] ? Number(values['max-labs']) : undefined,
    scenarios: allTestScenarios,
  });
  process.stdout.write(`listening ${port}\n`);
  const stop = () => void close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await runAsChild();
