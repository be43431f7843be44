/**
 * demos/echo-server.ts against hostile and broken clients, as a real process on 127.0.0.1:
 * random bytes, lengths above --max-frame, frames split at every byte, a client that sends
 * one byte a second, thousands of connections opened and abandoned. It must never crash,
 * must log and drop each client that breaks the protocol, must keep serving everyone else,
 * and its memory must stay bounded (VmRSS from /proc, with tolerances).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFrame, parseLogLine, type LogLine } from '../../demos/protocol.ts';
import { freePort } from '../helpers/server.ts';
import { ensureFdLimit, processStats, until } from '../helpers/leftovers.ts';

const SCRIPT = new URL('../../demos/echo-server.ts', import.meta.url).pathname;
const MAX_FRAME = 1024;

/** The echo server as a child process, its log indexed by peer as it arrives. */
class EchoServer {
  readonly child: ChildProcess;
  readonly port: number;
  readonly byPeer = new Map<string, LogLine[]>();
  readonly counts = new Map<string, number>();
  readonly exited: Promise<number | null>;
  stray = '';
  #wakers = new Set<() => void>();

  #heapAnswers: Array<(heapUsed: number) => void> = [];

  constructor(port: number, args: string[]) {
    this.port = port;
    // The program as it is, plus a hook (preloaded, outside its code) that collects garbage
    // on SIGUSR2 and reports the heap: what remains then is what the server really holds.
    const gcHook = `data:text/javascript,process.on('SIGUSR2',()=>{globalThis.gc();globalThis.gc();process.stderr.write('kl-gc '+process.memoryUsage().heapUsed+'\\n')})`;
    this.child = spawn(process.execPath, ['--expose-gc', `--import=${gcHook}`, SCRIPT, '--host', '127.0.0.1', '--port', String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    servers.add(this);
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const entry = parseLogLine(line);
      if (!entry) {
        this.stray += line + '\n';
        return;
      }
      this.counts.set(entry.event, (this.counts.get(entry.event) ?? 0) + 1);
      const peer = entry.fields.peer;
      if (peer) {
        const list = this.byPeer.get(peer) ?? [];
        list.push(entry);
        this.byPeer.set(peer, list);
      }
      for (const wake of this.#wakers) wake();
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      const gc = /^kl-gc (\d+)$/.exec(line);
      if (gc) this.#heapAnswers.shift()?.(Number(gc[1]));
      else this.stray += line + '\n';
    });
  }

  /** After a full garbage collection: VmRSS and the JS heap in use, in KiB. */
  async measureAfterGc(): Promise<{ rssKiB: number; heapKiB: number }> {
    const heap = new Promise<number>((resolve) => this.#heapAnswers.push(resolve));
    this.child.kill('SIGUSR2');
    const heapUsed = await heap;
    return { rssKiB: this.stats().rssKiB, heapKiB: Math.round(heapUsed / 1024) };
  }

  static async start(args: string[]): Promise<EchoServer> {
    const server = new EchoServer(await freePort(), args);
    if (!(await server.until(() => server.count('listen') === 1, 10_000))) throw new Error(`the echo server did not start: ${server.stray}`);
    return server;
  }

  count(event: string): number {
    return this.counts.get(event) ?? 0;
  }

  /**
   * Where the log of a connection from this peer address that is opening now starts. Ports
   * get reused: an earlier connection from the same address ended with its 'close' line
   * (our tests wait for it), and the new one's 'accept' may already be here.
   */
  startOf(peer: string): number {
    const all = this.byPeer.get(peer) ?? [];
    for (let i = all.length - 1; i >= 0; i--) if (all[i]!.event === 'close') return i + 1;
    return 0;
  }

  /** Resolves true once test() holds (checked on every log line), false after timeoutMs. */
  until(test: () => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        this.#wakers.delete(check);
        clearTimeout(timer);
        resolve(ok);
      };
      const check = () => test() && done(true);
      const timer = setTimeout(() => done(test()), timeoutMs);
      this.#wakers.add(check);
      check();
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  stats() {
    return processStats(this.child.pid!);
  }

  async stop(): Promise<number | null> {
    servers.delete(this);
    if (this.alive) this.child.kill('SIGTERM');
    return this.exited;
  }
}

const servers = new Set<EchoServer>();
const clients = new Set<net.Socket>();
afterAll(async () => {
  for (const c of clients) c.destroy();
  await Promise.all([...servers].map((s) => s.stop()));
});

/**
 * What a stream of bytes means under the protocol, worked out independently of demos/protocol.ts:
 * the whole frames it holds, in order, until (if ever) a header declares more than max.
 */
function frameModel(stream: Uint8Array, max: number): { frames: Buffer[]; oversize: number | null } {
  const frames: Buffer[] = [];
  let i = 0;
  while (stream.length - i >= 2) {
    const declared = stream[i]! * 256 + stream[i + 1]!;
    if (declared > max) return { frames, oversize: declared };
    if (stream.length - i - 2 < declared) break;
    frames.push(Buffer.from(stream.subarray(i + 2, i + 2 + declared)));
    i += 2 + declared;
  }
  return { frames, oversize: null };
}

/** A raw TCP client that keeps every byte it receives, and reads its own lines of the server's log. */
async function connect(server: EchoServer) {
  const socket = net.connect({ host: '127.0.0.1', port: server.port });
  clients.add(socket);
  socket.setNoDelay(true);
  const received: Buffer[] = [];
  socket.on('data', (d) => received.push(d));
  socket.on('error', () => {}); // a reset from the server is one of the outcomes we check
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      clients.delete(socket);
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const peer = `127.0.0.1:${socket.localPort}`;
  const from = server.startOf(peer);
  const log = () => (server.byPeer.get(peer) ?? []).slice(from);
  return {
    socket,
    closed,
    peer,
    /** The server's log lines about this connection, in order. */
    log,
    events: () => log().map((e) => e.event),
    entry: (event: string) => log().find((e) => e.event === event),
    /** Whole frames received so far (the echoes). */
    echoes: () => frameModel(Buffer.concat(received), 65535).frames,
    write: (bytes: Uint8Array) => new Promise<void>((resolve) => socket.write(bytes, () => resolve())),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client connecting now gets its frame echoed: the server is alive and serving. */
async function servesAFreshClient(server: EchoServer): Promise<void> {
  expect(server.alive).toBe(true);
  const c = await connect(server);
  await c.write(encodeFrame('still serving'));
  expect(await until(() => c.echoes().length === 1, 5000)).toBe(true);
  expect(c.echoes()[0]!.toString()).toBe('still serving');
  c.socket.destroy();
  // Gone on the server's side too, so a count of its descriptors taken next is settled.
  expect(await server.until(() => c.events().includes('close'), 5000)).toBe(true);
}

/** Splits bytes at the given cut points (any numbers; taken modulo the length, sorted). */
function chunksAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => (bytes.length ? c % bytes.length : 0)))].filter((c) => c > 0).sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const c of at) {
    chunks.push(bytes.subarray(from, c));
    from = c;
  }
  chunks.push(bytes.subarray(from));
  return chunks.filter((c) => c.length > 0);
}

const payload = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });

describe('echo server under fuzzing', () => {
  it('any bytes in any chunks: echoes every whole frame, logs and drops a client at the first length above --max-frame', async () => {
    const server = await EchoServer.start(['--echo-delay', '0', '--max-frame', String(MAX_FRAME)]);
    let dropped = 0;
    let kept = 0;
    await fc.assert(
      fc.asyncProperty(
        // Well-formed frames (some empty: heartbeats, never echoed), then any bytes at all.
        fc.array(payload(300), { maxLength: 8 }),
        fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 2000 })),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (frames, garbage, cuts) => {
          const stream = Buffer.concat([...frames.map((f) => encodeFrame(f)), garbage]);
          const expected = frameModel(stream, MAX_FRAME);
          const echoed = expected.frames.filter((f) => f.length > 0);
          const c = await connect(server);
          for (const chunk of chunksAt(stream, cuts)) await c.write(chunk);

          if (expected.oversize !== null) {
            dropped++;
            await c.closed;
            expect(await server.until(() => c.events().includes('close'), 5000)).toBe(true);
            expect(c.entry('bad-frame')?.fields.reason).toBe(`declared frame length ${expected.oversize} exceeds the maximum of ${MAX_FRAME} bytes`);
            // Frames completed before the bad header may or may not have been echoed (those
            // in the same read are dropped with it), but never anything else, never out of order.
            const got = c.echoes();
            expect(got.length).toBeLessThanOrEqual(echoed.length);
            got.forEach((g, i) => expect(g.equals(echoed[i]!)).toBe(true));
          } else {
            kept++;
            expect(await until(() => c.echoes().length >= echoed.length, 5000)).toBe(true);
            expect(c.echoes().map((f) => f.toString('hex'))).toEqual(echoed.map((f) => f.toString('hex')));
            // An incomplete frame at the end is no reason to drop a client: it is still connected.
            expect(c.socket.readyState).toBe('open');
            c.socket.end();
            await c.closed;
            expect(await server.until(() => c.events().includes('close'), 5000)).toBe(true);
            const events = c.events();
            expect(events).not.toContain('bad-frame');
            expect(events.filter((e) => e === 'frame')).toHaveLength(echoed.length);
            expect(events.filter((e) => e === 'pong')).toHaveLength(expected.frames.length - echoed.length);
          }
        },
      ),
      { numRuns: 150 },
    );
    // Both outcomes were exercised, and the server is still serving.
    expect(dropped).toBeGreaterThan(10);
    expect(kept).toBeGreaterThan(10);
    await servesAFreshClient(server);
    expect(server.stray).toBe('');
    await server.stop();
  });

  it('a header above --max-frame, wherever it falls and however it is split: logged with its length, client dropped', async () => {
    const server = await EchoServer.start(['--echo-delay', '0', '--max-frame', String(MAX_FRAME)]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(payload(50).filter((p) => p.length > 0), { maxLength: 3 }),
        fc.integer({ min: MAX_FRAME + 1, max: 65535 }),
        fc.uint8Array({ maxLength: 100 }),
        fc.boolean(),
        async (before, declared, after, splitHeader) => {
          const c = await connect(server);
          const header = Buffer.from([declared >> 8, declared & 0xff]);
          await c.write(Buffer.concat(before.map((f) => encodeFrame(f))));
          if (splitHeader) {
            // The two bytes of the length in two reads.
            await c.write(header.subarray(0, 1));
            await sleep(5);
            await c.write(Buffer.concat([header.subarray(1), after]));
          } else {
            await c.write(Buffer.concat([header, after]));
          }
          await c.closed;
          expect(await server.until(() => c.events().includes('close'), 5000)).toBe(true);
          expect(c.entry('bad-frame')?.fields.reason).toBe(`declared frame length ${declared} exceeds the maximum of ${MAX_FRAME} bytes`);
        },
      ),
      { numRuns: 60 },
    );
    await servesAFreshClient(server);
    await server.stop();
  });

  it('frames split at every byte still decode: one cut anywhere, and one byte per write', async () => {
    const server = await EchoServer.start(['--echo-delay', '0']);
    await fc.assert(
      fc.asyncProperty(fc.array(payload(12), { minLength: 1, maxLength: 4 }), async (frames) => {
        const stream = Buffer.concat(frames.map((f) => encodeFrame(f)));
        const echoed = frames.filter((f) => f.length > 0).map((f) => Buffer.from(f).toString('hex'));
        const runs: Array<Promise<void>> = [];
        // Every cut point: the first part, a pause long enough for the server to read it
        // alone, then the rest.
        for (let cut = 1; cut < stream.length; cut++) {
          runs.push(
            (async () => {
              const c = await connect(server);
              await c.write(stream.subarray(0, cut));
              await sleep(15);
              await c.write(stream.subarray(cut));
              expect(await until(() => c.echoes().length >= echoed.length, 5000)).toBe(true);
              expect(c.echoes().map((f) => f.toString('hex'))).toEqual(echoed);
              c.socket.destroy();
            })(),
          );
        }
        // Every byte in a write of its own.
        runs.push(
          (async () => {
            const c = await connect(server);
            for (const byte of stream) {
              await c.write(Buffer.from([byte]));
              await sleep(1);
            }
            expect(await until(() => c.echoes().length >= echoed.length, 5000)).toBe(true);
            expect(c.echoes().map((f) => f.toString('hex'))).toEqual(echoed);
            c.socket.destroy();
          })(),
        );
        await Promise.all(runs);
      }),
      { numRuns: 12 },
    );
    expect(server.count('bad-frame')).toBe(0);
    await servesAFreshClient(server);
    await server.stop();
  });
});

describe('slow and numerous clients', () => {
  it('one byte a second: held with bounded state and echoed when whole (no liveness check), dropped by heartbeat', async () => {
    const plain = await EchoServer.start(['--echo-delay', '0', '--max-frame', String(MAX_FRAME)]);
    const heartbeat = await EchoServer.start(['--echo-delay', '0', '--max-frame', String(MAX_FRAME), '--mode', 'heartbeat', '--heartbeat-interval', '0.5', '--heartbeat-misses', '2']);
    const before = plain.stats();

    // 100 clients send one byte a second: 80 of them the start of a frame of the largest size
    // the server accepts, 20 a small frame. Without a liveness check the server holds them
    // all, each with never more than one frame's worth (2 + --max-frame bytes).
    const lorises = await Promise.all(Array.from({ length: 100 }, () => connect(plain)));
    const text = 'slow';
    const frame = encodeFrame(text);
    const maxHeader = Buffer.from([MAX_FRAME >> 8, MAX_FRAME & 0xff]);
    const big = lorises.slice(0, 80);
    const small = lorises.slice(80);
    const hbLoris = await connect(heartbeat);
    const hbStart = Date.now();
    const hbClosedAt = hbLoris.closed.then(() => Date.now());
    for (let i = 0; i < frame.length; i++) {
      await Promise.all([
        ...small.map((c) => c.write(frame.subarray(i, i + 1))),
        ...big.map((c) => c.write(i < 2 ? maxHeader.subarray(i, i + 1) : Buffer.from('x'))),
        hbLoris.write(i < 2 ? maxHeader.subarray(i, i + 1) : Buffer.from('x')),
      ]);
      if (i === 3) {
        // Mid-trickle: held, nothing decoded yet, and other clients are served at once.
        for (const c of lorises) expect(c.events()).toEqual(['accept']);
        const t = Date.now();
        await servesAFreshClient(plain);
        expect(Date.now() - t).toBeLessThan(2000);
      }
      if (i < frame.length - 1) await sleep(1000);
    }
    // The small frames are now whole and echoed; the big ones are held, still incomplete.
    for (const c of small) expect(await until(() => c.echoes().length === 1, 5000)).toBe(true);
    for (const c of small) expect(c.echoes()[0]!.toString()).toBe(text);
    for (const c of big) expect(c.events()).toEqual(['accept']);
    const during = plain.stats();
    // Per client: a frame buffer (at most 2 + 1024 bytes) plus Node's socket; 16 KiB is generous.
    expect(during.rssKiB - before.rssKiB).toBeLessThan(100 * 16 + 16 * 1024);
    expect(during.fds - before.fds).toBe(100);

    // With heartbeats, bytes that never make a whole frame do not count as life: dropped
    // after interval × misses (1 s) although a byte arrived every second.
    const hbHeldMs = (await hbClosedAt) - hbStart;
    const timeout = hbLoris.entry('timeout');
    expect(timeout?.fields.reason).toBe('heartbeat');
    expect(hbHeldMs).toBeGreaterThan(900);
    expect(hbHeldMs).toBeLessThan(4000);
    expect(Number(timeout!.fields.silentFor!.replace(/s$/, ''))).toBeGreaterThanOrEqual(0.9);
    expect(Number(timeout!.fields.silentFor!.replace(/s$/, ''))).toBeLessThan(2.5);

    for (const c of lorises) c.socket.destroy();
    expect(await plain.until(() => lorises.every((c) => c.events().includes('close')), 5000)).toBe(true);
    expect(await until(() => plain.stats().fds === before.fds, 2000)).toBe(true);
    await plain.stop();
    await heartbeat.stop();
  });

  it('2000 connections opened and abandoned, three times: every one logged and closed, descriptors back, memory bounded', async () => {
    const N = 2000;
    ensureFdLimit(N + 1000);
    const server = await EchoServer.start(['--echo-delay', '0']); // the default --max-frame, 65535
    await servesAFreshClient(server);
    const base = { ...(await server.measureAfterGc()), fds: server.stats().fds };
    const rounds: Array<{ growthKiB: number; rssKiB: number; heapKiB: number }> = [];
    for (let round = 0; round < 3; round++) {
      const before = server.stats().rssKiB;
      const accepts = server.count('accept');
      const open: Array<Awaited<ReturnType<typeof connect>>> = [];
      // In batches: the listen backlog is finite, and a full one only delays handshakes.
      for (let b = 0; b < N; b += 200) {
        open.push(
          ...(await Promise.all(
            Array.from({ length: 200 }, async (_, i) => {
              const c = await connect(server);
              const kind = (b + i) % 6;
              if (kind === 1) await c.write(Buffer.from([0xff])); // half a header
              else if (kind === 2) await c.write(encodeFrame('abandoned')); // whose echo it never reads
              else if (kind >= 3) await c.write(Buffer.from([0xff, 0xff, 1, 2, 3])); // announces 64 KiB, sends 3 bytes
              return c; // kind 0 sends nothing at all
            }),
          )),
        );
      }
      expect(await server.until(() => server.count('accept') === accepts + N, 10_000)).toBe(true);
      await sleep(200);
      const peak = server.stats();
      expect(peak.fds - base.fds).toBe(N);
      // Memory follows what the clients sent, not what they announced: 1000 of them announced
      // 64 KiB each (64 MiB in all) and sent 3 bytes of it.
      const growthKiB = peak.rssKiB - before;
      expect(growthKiB, `RSS grew ${(growthKiB / 1024).toFixed(1)} MiB for ${N} connections`).toBeLessThan(N * 12);

      // Abandoned: half vanish with a reset, half with a FIN.
      const closes = server.count('close');
      open.forEach((c, i) => (i % 2 ? c.socket.resetAndDestroy() : c.socket.destroy()));
      expect(await server.until(() => server.count('close') === closes + N, 15_000)).toBe(true);
      for (const c of open) expect(c.events().at(-1)).toBe('close');
      expect(await until(() => server.stats().fds === base.fds, 5000)).toBe(true);
      rounds.push({ growthKiB, ...(await server.measureAfterGc()) });
    }
    const figures = `echo server: base ${JSON.stringify(base)}, after each round of ${N} connections ${JSON.stringify(rounds)}`;
    console.info(figures);
    // Nothing of the 6000 connections stays in the heap...
    expect(rounds[2]!.heapKiB - rounds[0]!.heapKiB, figures).toBeLessThan(1024);
    // ...and the process keeps at most a bounded amount of the memory it used for them (the
    // allocator and V8 keep freed pages for reuse rather than give them back).
    expect(rounds[2]!.rssKiB - base.rssKiB, figures).toBeLessThan(64 * 1024);
    await servesAFreshClient(server);
    expect(server.stray).toBe('');
    expect(await server.stop()).toBe(0);
  });
});
