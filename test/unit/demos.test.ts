/**
 * demos/echo-server.ts and demos/client.ts as real processes on 127.0.0.1: their command
 * lines, and what they log. Only loopback traffic; no lab, no privileges.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameDecoder, HEARTBEAT, encodeFrame, isHeartbeat, parseLogLine, type LogLine } from '../../demos/protocol.ts';

const SERVER = new URL('../../demos/echo-server.ts', import.meta.url).pathname;
const CLIENT = new URL('../../demos/client.ts', import.meta.url).pathname;

/** A demo program running as a child process, with its log parsed as it arrives. */
class Demo {
  readonly child: ChildProcess;
  readonly log: LogLine[] = [];
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  #waiters = new Set<() => void>();

  /** fdLimit: run under `prlimit --nofile` (util-linux), which then execs node. */
  constructor(script: string, args: string[], options: { fdLimit?: number; stdin?: boolean } = {}) {
    const command = [process.execPath, script, ...args];
    if (options.fdLimit !== undefined) command.unshift('prlimit', `--nofile=${options.fdLimit}:${options.fdLimit}`, '--');
    this.child = spawn(command[0]!, command.slice(1), { stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    running.add(this.child);
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      const entry = parseLogLine(line);
      if (entry) this.log.push(entry);
      for (const wake of this.#waiters) wake();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code) => {
        running.delete(this.child);
        resolve(code);
      }),
    );
  }

  entries(event: string, test: (e: LogLine) => boolean = () => true): LogLine[] {
    return this.log.filter((e) => e.event === event && test(e));
  }

  /** The first entry of `event` that passes `test`, waiting for it if need be. */
  async waitFor(event: string, test: (e: LogLine) => boolean = () => true, timeoutMs = 10_000): Promise<LogLine> {
    const found = () => this.log.find((e) => e.event === event && test(e));
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = found();
        if (!e) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(e);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no '${event}' within ${timeoutMs} ms; log:\n${this.lines.join('\n')}\nstderr: ${this.stderr}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }
}

const running = new Set<ChildProcess>();
const sockets = new Set<net.Socket>();

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
  running.clear();
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Starts the echo server on a free loopback port and waits for its `listen` line. */
async function startServer(args: string[], options: { fdLimit?: number } = {}): Promise<{ server: Demo; port: number; listen: LogLine }> {
  const port = await freePort();
  const server = new Demo(SERVER, ['--host', '127.0.0.1', '--port', String(port), ...args], options);
  const listen = await server.waitFor('listen');
  return { server, port, listen };
}

/** Runs the client to completion. */
async function runClient(port: number, args: string[]): Promise<{ client: Demo; code: number | null }> {
  const client = new Demo(CLIENT, ['--port', String(port), ...args]);
  const code = await client.exited;
  return { client, code };
}

/** A raw TCP connection from the test itself, decoding whatever frames arrive. */
async function rawConnect(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port });
  sockets.add(socket);
  const decoder = new FrameDecoder();
  const frames: Buffer[] = [];
  socket.on('data', (chunk) => frames.push(...decoder.push(chunk)));
  socket.on('error', () => {}); // a reset is what some tests expect
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const local = `127.0.0.1:${socket.localPort}`;
  return { socket, frames, closed, local, connectedAt: Date.now() };
}

const seconds = (s: string | undefined) => Number(s?.replace(/s$/, ''));

describe('echo-server and client', () => {
  it('echoes each frame back; the client logs every echo and exits 0', async () => {
    const { server, port, listen } = await startServer(['--echo-delay', '0']);
    expect(listen.fields).toMatchObject({ addr: `127.0.0.1:${port}`, mode: 'none', echo: '0s', pid: String(server.child.pid) });
    expect(listen.fields.fdLimit).toMatch(/^(\d+|unlimited|unknown)$/);

    const { client, code } = await runClient(port, ['--count', '3', '--close-after', '0', '--payload', 'hi there']);
    expect(code, client.lines.join('\n')).toBe(0);

    const local = client.entries('connect')[0]!.fields.local!;
    expect(client.entries('connect')[0]!.fields).toMatchObject({ peer: `127.0.0.1:${port}`, conn: '1' });
    expect(client.entries('send')).toHaveLength(3);
    const recv = client.entries('recv');
    expect(recv).toHaveLength(3);
    for (const r of recv) {
      expect(r.fields).toMatchObject({ conn: '1', bytes: '8', text: 'hi there' });
      expect(r.fields.rtt).toMatch(/^\d+ms$/);
    }
    expect(client.entries('closing')[0]!.fields.reason).toBe('close-after');
    expect(client.entries('done')[0]!.fields).toMatchObject({ connections: '1', failed: '0' });

    // The server saw the same connection: accept, 3 frames, 3 echoes, then the client's FIN.
    await server.waitFor('close', (e) => e.fields.peer === local);
    const ofClient = (e: LogLine) => e.fields.peer === local;
    expect(server.entries('accept', ofClient)[0]!.fields.open).toBe('1');
    expect(server.entries('frame', ofClient).map((e) => e.fields.text)).toEqual(['hi there', 'hi there', 'hi there']);
    expect(server.entries('echo', ofClient).map((e) => e.fields)).toEqual(
      Array(3).fill({ peer: local, bytes: '8', write: 'ok', buffered: 'false' }),
    );
    expect(server.entries('end', ofClient)).toHaveLength(1);
    const close = server.entries('close', ofClient)[0]!;
    expect(close.fields).toMatchObject({ open: '0', hadError: 'false' });
    expect(close.fields.after).toMatch(/^\d+\.\d{3}s$/);
  });

  it('every line on stdout is a log line', async () => {
    const { server, port } = await startServer(['--echo-delay', '0', '--mode', 'heartbeat', '--heartbeat-interval', '0.1']);
    const { client } = await runClient(port, ['--count', '2', '--close-after', '0.3', '--size', '100']);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    for (const demo of [server, client]) {
      expect(demo.lines.length).toBeGreaterThan(3);
      for (const line of demo.lines) expect(parseLogLine(line), line).not.toBeNull();
    }
    expect(server.entries('shutdown')[0]!.fields.signal).toBe('SIGTERM');
  });

  it('drops a client that declares a frame above --max-frame; another client still gets its echo', async () => {
    const { server, port } = await startServer(['--echo-delay', '0', '--max-frame', '100']);
    const good = await rawConnect(port);
    good.socket.write(encodeFrame('before'));

    const bad = await rawConnect(port);
    bad.socket.write(Buffer.from([0x04, 0x00, 0x61, 0x62])); // declares 1024 bytes
    await bad.closed;
    const badFrame = await server.waitFor('bad-frame', (e) => e.fields.peer === bad.local);
    expect(badFrame.fields.reason).toBe('declared frame length 1024 exceeds the maximum of 100 bytes');
    await server.waitFor('close', (e) => e.fields.peer === bad.local);

    good.socket.write(encodeFrame('after'));
    await server.waitFor('echo', (e) => e.fields.peer === good.local && server.entries('echo', (x) => x.fields.peer === good.local).length === 2);
    await expect.poll(() => good.frames.map(String)).toEqual(['before', 'after']);
    expect(server.child.exitCode).toBeNull(); // still running

    // A client started now is served too.
    const { code, client } = await runClient(port, ['--count', '1', '--close-after', '0']);
    expect(code).toBe(0);
    expect(client.entries('recv')).toHaveLength(1);
  });

  it('heartbeat: pings every interval and closes a silent peer after interval × misses', async () => {
    const interval = 0.3;
    const misses = 2;
    const { server, port, listen } = await startServer(['--echo-delay', '0', '--mode', 'heartbeat', '--heartbeat-interval', String(interval), '--heartbeat-misses', String(misses)]);
    expect(listen.fields).toMatchObject({ mode: 'heartbeat', interval: '0.3s', misses: '2', detectAfter: '0.6s' });

    const silent = await rawConnect(port); // receives pings, never answers
    const closedAt = await silent.closed;
    const detection = (closedAt - silent.connectedAt) / 1000;
    expect(detection).toBeGreaterThan(interval * misses - 0.4);
    expect(detection).toBeLessThan(interval * misses + 0.4);
    expect(silent.frames.length).toBeGreaterThanOrEqual(1);
    expect(silent.frames.every(isHeartbeat)).toBe(true);

    const timeout = await server.waitFor('timeout', (e) => e.fields.peer === silent.local);
    expect(timeout.fields.reason).toBe('heartbeat');
    expect(Math.abs(seconds(timeout.fields.silentFor) - interval * misses)).toBeLessThan(0.4);
    expect(server.entries('ping', (e) => e.fields.peer === silent.local).length).toBeGreaterThanOrEqual(1);
  });

  it('heartbeat: a peer that answers every ping stays connected', async () => {
    const { server, port } = await startServer(['--echo-delay', '0', '--mode', 'heartbeat', '--heartbeat-interval', '0.2', '--heartbeat-misses', '2']);
    const client = new Demo(CLIENT, ['--port', String(port), '--count', '1']); // stays connected
    const local = (await client.waitFor('connect')).fields.local!;
    await client.waitFor('pong', () => client.entries('pong').length >= 5, 5000); // 1 s, well past 0.4 s
    expect(server.entries('pong', (e) => e.fields.peer === local).length).toBeGreaterThanOrEqual(4);
    expect(server.entries('timeout')).toEqual([]);
    expect(client.entries('ping').length).toBe(client.entries('pong').length);

    // SIGTERM: the client closes with a FIN, which the server sees as an orderly end.
    client.child.kill('SIGTERM');
    expect(await client.exited).toBe(0);
    expect(client.entries('closing')[0]!.fields.reason).toBe('SIGTERM');
    await server.waitFor('end', (e) => e.fields.peer === local);
    await server.waitFor('close', (e) => e.fields.peer === local && e.fields.hadError === 'false');
  });

  it('keepalive and --user-timeout: starts, logs its settings and serves', async () => {
    const { server, port, listen } = await startServer(['--echo-delay', '0', '--mode', 'keepalive', '--keepalive-idle', '4', '--user-timeout', '3000']);
    expect(listen.fields).toMatchObject({ mode: 'keepalive', idle: '4s', interval: '1s', count: '3', detectAfter: '7s', userTimeout: '3000ms' });
    const { code } = await runClient(port, ['--count', '1', '--close-after', '0']);
    expect(code).toBe(0);
    await server.waitFor('close');
    expect(server.entries('setsockopt-error')).toEqual([]);
  });

  it('client --stdin: each line typed goes out as a frame on every connection', async () => {
    const { server, port } = await startServer(['--echo-delay', '0']);
    const client = new Demo(CLIENT, ['--port', String(port), '--count', '0', '--connections', '2', '--stdin'], { stdin: true });
    await client.waitFor('connect', () => client.entries('connect').length === 2);
    client.child.stdin!.write('typed by hand\n\n');
    await client.waitFor('recv', () => client.entries('recv').length === 2);
    expect(client.entries('recv').map((e) => [e.fields.conn, e.fields.text]).sort()).toEqual([
      ['1', 'typed by hand'],
      ['2', 'typed by hand'],
    ]);
    expect(server.entries('frame')).toHaveLength(2); // the empty line sent nothing
    client.child.kill('SIGINT');
    expect(await client.exited).toBe(0);
  });

  it('--max-connections: refuses beyond the cap and says so', async () => {
    const { server, port } = await startServer(['--no-echo', '--max-connections', '1']);
    const first = await rawConnect(port);
    await server.waitFor('accept', (e) => e.fields.peer === first.local);
    const second = await rawConnect(port); // the kernel completes the handshake; Node closes it
    await second.closed;
    const refused = await server.waitFor('refused', (e) => e.fields.peer === second.local);
    expect(refused.fields).toMatchObject({ reason: 'max-connections', open: '1' });
    expect(server.entries('accept')).toHaveLength(1);
  });

  it('--no-echo reads frames and never answers', async () => {
    const { server, port, listen } = await startServer(['--no-echo']);
    expect(listen.fields.echo).toBe('off');
    const raw = await rawConnect(port);
    raw.socket.write(Buffer.concat([encodeFrame('one'), encodeFrame('two')]));
    await server.waitFor('frame', (e) => e.fields.text === 'two');
    await new Promise((r) => setTimeout(r, 200));
    expect(raw.frames).toEqual([]);
    expect(server.entries('echo')).toEqual([]);
  });

  it('the client exits 1 when it cannot connect', async () => {
    const port = await freePort(); // nothing listens there
    const { client, code } = await runClient(port, ['--count', '1']);
    expect(code).toBe(1);
    expect(client.entries('error')[0]!.fields.code).toBe('ECONNREFUSED');
    expect(client.entries('done')[0]!.fields.failed).toBe('1');
  });

  it('the server exits 1 when the port is taken', async () => {
    const { port } = await startServer(['--no-echo']);
    const second = new Demo(SERVER, ['--host', '127.0.0.1', '--port', String(port)]);
    expect(await second.exited).toBe(1);
    expect(second.entries('server-error')[0]!.fields).toMatchObject({ code: 'EADDRINUSE', syscall: 'listen' });
  });

  it.skipIf(spawnSync('prlimit', ['--version']).status !== 0)('out of file descriptors: clients are closed unserved, the server keeps running', async () => {
    const fdLimit = 64;
    const { server, port, listen } = await startServer(['--echo-delay', '0'], { fdLimit });
    expect(listen.fields.fdLimit).toBe(String(fdLimit));
    // More connections than the process can hold descriptors for. The kernel completes every
    // handshake; libuv accepts and closes the ones beyond the limit (EMFILE) at once.
    const peers = [];
    for (let i = 0; i < fdLimit; i++) peers.push(await rawConnect(port));
    const closedUnserved = await Promise.race([Promise.any(peers.map((p) => p.closed)), new Promise((r) => setTimeout(() => r(null), 5000))]);
    expect(closedUnserved).not.toBeNull();
    expect(server.entries('accept').length).toBeLessThan(fdLimit);
    expect(server.child.exitCode).toBeNull();

    // Once descriptors are free again, a new client is served.
    for (const p of peers) p.socket.destroy();
    await expect.poll(() => server.entries('close').length).toBe(server.entries('accept').length);
    const { code, client } = await runClient(port, ['--count', '1', '--close-after', '0']);
    expect(code).toBe(0);
    expect(client.entries('recv')).toHaveLength(1);
  });

  it('logs a heartbeat received from the peer as a pong', async () => {
    const { server, port } = await startServer(['--echo-delay', '0', '--mode', 'heartbeat', '--heartbeat-interval', '0.2']);
    const raw = await rawConnect(port);
    raw.socket.write(HEARTBEAT);
    await server.waitFor('pong', (e) => e.fields.peer === raw.local);
  });
});

describe('command lines', () => {
  const run = (script: string, args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 30_000 });

  it.each([
    ['echo-server', SERVER, ['--port', '--echo-delay', '--no-echo', '--mode', '--keepalive-idle', '--keepalive-interval', '--keepalive-count', '--heartbeat-interval', '--heartbeat-misses', '--user-timeout', '--max-frame', '--max-connections']],
    ['client', CLIENT, ['--host', '--port', '--count', '--payload', '--size', '--every', '--connections', '--close-after', '--stdin']],
  ])('%s --help exits 0 and lists every flag', (_name, script, flags) => {
    const r = run(script, ['--help']);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    for (const flag of flags) expect(r.stdout).toContain(flag);
  });

  const bad: Array<['echo-server' | 'client', string[], RegExp]> = [
    ['echo-server', ['--bogus'], /^echo-server: unknown option --bogus/],
    ['echo-server', ['--port', '70000'], /--port must be a whole number from 1 to 65535; got "70000"/],
    ['echo-server', ['--port', 'abc'], /--port must be a whole number from 1 to 65535/],
    ['echo-server', ['--port'], /--port needs a value/],
    ['echo-server', ['--echo-delay', '-1'], /--echo-delay/],
    ['echo-server', ['--echo-delay=-1'], /--echo-delay must be a number from 0 to 3600; got "-1"/],
    ['echo-server', ['--echo-delay', '1e3'], /--echo-delay must be a number from 0 to 3600/],
    ['echo-server', ['--mode', 'magic'], /--mode must be one of none, keepalive, heartbeat; got "magic"/],
    ['echo-server', ['--mode', 'keepalive', '--keepalive-count', '128'], /--keepalive-count must be a whole number from 1 to 127/],
    ['echo-server', ['--mode', 'heartbeat', '--heartbeat-interval', '0.05'], /--heartbeat-interval must be a number from 0.1 to 3600/],
    ['echo-server', ['--mode', 'heartbeat', '--heartbeat-misses', '1'], /--heartbeat-misses must be a whole number from 2 to 100/],
    ['echo-server', ['--keepalive-idle', '5'], /--keepalive-idle needs --mode keepalive/],
    ['echo-server', ['--user-timeout', '0'], /--user-timeout must be a whole number from 1 to 2147483647/],
    ['echo-server', ['--max-frame', '65536'], /--max-frame must be a whole number from 0 to 65535/],
    ['echo-server', ['--no-echo', '--echo-delay', '1'], /--echo-delay and --no-echo/],
    ['echo-server', ['stray'], /unexpected argument 'stray'/],
    ['client', ['--count', '-'], /--count must be a whole number from 0 to 100000/],
    ['client', ['--count', '100001'], /--count must be a whole number from 0 to 100000/],
    ['client', ['--size', '0'], /--size must be a whole number from 1 to 65535/],
    ['client', ['--connections', '1001'], /--connections must be a whole number from 1 to 1000/],
    ['client', ['--every', 'soon'], /--every must be a number from 0 to 3600/],
    ['client', ['--payload', ''], /--payload must be 1 to 65535 bytes/],
    ['client', ['--payload', 'x', '--size', '3'], /--payload and --size/],
    ['client', ['--colse-after', '1'], /^client: unknown option --colse-after/],
  ];
  it.each(bad)('%s %j: one line on stderr, exit 2', (name, args, message) => {
    const r = run(name === 'client' ? CLIENT : SERVER, args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });
});
