/**
 * The lab's WebSocket protocol under property-based fuzzing, against the real server
 * (startServer, as `npm start` runs it) in a child process of its own.
 *
 * Whatever a page sends (any text, binary frames, any JSON, JSON shaped like a valid message
 * but wrong in one place, unknown scenarios and actions, parameters out of range, frames
 * that break RFC 6455, messages over the size limit, floods), it gets a clear error back or
 * the documented close code, the server never crashes, never starts a lab for it, and a
 * well-behaved page running real labs at the same time gets its results with their claims
 * holding. At the end the server holds no more memory or descriptors than before.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { describeRange, flagName } from '../../src/scenarios/params.ts';
import { ACTIONS, MAX_MESSAGE_BYTES, type ScenarioInfo, type ServerMessage } from '../../src/sidecar/protocol.ts';
import { capability, skipReason } from '../helpers/lab.ts';
import { fdTargets, labProcessesOf, until } from '../helpers/leftovers.ts';
import { ServerProcess } from '../helpers/server-process.ts';

type Err = Extract<ServerMessage, { type: 'error' }>;

/** A page: a WebSocket whose messages can be awaited one by one, in order. */
class Page {
  readonly ws: WebSocket;
  readonly received: ServerMessage[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  #read = 0;
  #wake: (() => void) | null = null;

  constructor(port: number) {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/api/lab`, { headers: { origin: `http://127.0.0.1:${port}` }, perMessageDeflate: false });
    pages.add(this);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => {
        pages.delete(this);
        this.#wake?.();
        resolve({ code, reason: reason.toString() });
      }),
    );
    this.ws.on('error', () => {}); // a close code is what the tests look at
    this.ws.on('message', (data) => {
      this.received.push(JSON.parse(data.toString()) as ServerMessage);
      this.#wake?.();
    });
  }

  static async open(port: number): Promise<Page> {
    const page = new Page(port);
    await page.opened;
    expect((await page.next())?.type).toBe('hello');
    return page;
  }

  /** The next message not yet read, or null if none comes within timeoutMs. */
  async next(timeoutMs = 5000): Promise<ServerMessage | null> {
    const end = Date.now() + timeoutMs;
    while (this.#read >= this.received.length) {
      if (this.ws.readyState === WebSocket.CLOSED || Date.now() >= end) return null;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, Math.min(100, end - Date.now()));
      });
    }
    return this.received[this.#read++]!;
  }

  /** Sends one message and returns the reply, which must be an error. */
  async errorFor(data: string | Uint8Array): Promise<Err> {
    this.ws.send(data, { binary: typeof data !== 'string' });
    const reply = await this.next();
    if (reply?.type !== 'error') throw new Error(`expected an error for ${shown(data)}, got ${JSON.stringify(reply)}`);
    return reply;
  }

  close(): void {
    this.ws.close();
  }
}

const shown = (data: string | Uint8Array) => (typeof data === 'string' ? JSON.stringify(data.slice(0, 200)) : `${data.length} binary bytes`);

const pages = new Set<Page>();
let server: ServerProcess;
let scenarios: ScenarioInfo[];
let baseline: Awaited<ReturnType<ServerProcess['measure']>>;
let baselineFds: string[];

/** A well-behaved page that runs real labs, one after another, for as long as the fuzzing lasts. */
const goodPage = {
  stop: false,
  results: [] as Array<Extract<ServerMessage, { type: 'result' }>['result']>,
  failures: [] as string[],
  loop: null as Promise<void> | null,
};

beforeAll(async () => {
  server = await ServerProcess.start({ maxLabs: 4 });
  const warmup = await Page.open(server.port);
  const hello = warmup.received[0] as Extract<ServerMessage, { type: 'hello' }>;
  scenarios = hello.scenarios;
  warmup.close();
  await warmup.closed;
  for (baseline = await server.measure(); baseline.sessions > 0; baseline = await server.measure()) await new Promise((r) => setTimeout(r, 50));
  baselineFds = fdTargets(server.pid);
  if (capability.ok) {
    goodPage.loop = (async () => {
      const page = await Page.open(server.port);
      while (!goodPage.stop) {
        page.ws.send(JSON.stringify({ type: 'run', scenario: 'keepalive', params: { idle: 2, interval: 1, count: 3 } }));
        let result = null;
        for (let m = await page.next(60_000); m; m = await page.next(60_000)) {
          if (m.type === 'result') result = m.result;
          if (m.type === 'error') goodPage.failures.push(m.message);
          if (m.type === 'stopped') break;
        }
        if (result) goodPage.results.push(result);
        else goodPage.failures.push('a run of the well-behaved page ended without a result');
      }
      page.close();
      await page.closed;
    })();
  }
});

afterAll(async () => {
  goodPage.stop = true;
  for (const p of pages) p.ws.terminate();
  await goodPage.loop;
  if (server) {
    const exit = await server.stop();
    expect(exit.code).toBe(0);
    expect(labProcessesOf([server.pid])).toEqual([]);
  }
});

// ---- what pages may send, and what they must get back ------------------------------

interface Case {
  data: string;
  code: Err['code'];
  /** The reply's message must match this. */
  says: RegExp;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const json = (v: unknown) => JSON.stringify(v);
const isMessageType = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v) && ['run', 'stop', 'action'].includes((v as { type?: unknown }).type as string);

/** Text that is not JSON at all. */
const notJson: fc.Arbitrary<Case> = fc
  .oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 200 }), fc.constantFrom('', '{', '{"type":"run"', "{'type':'stop'}", 'undefined', 'NaN', '[1,]'))
  .filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  })
  .map((data) => ({ data, code: 'bad-message', says: /^message is not JSON$/ }));

/** Any JSON value that is not shaped as one of the three messages. */
const notAMessage: fc.Arbitrary<Case> = fc
  .jsonValue({ maxDepth: 3 })
  .filter((v) => !isMessageType(v))
  .map((v) => ({ data: json(v), code: 'bad-message', says: /^invalid message/ }));

const notAString = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.object({ maxDepth: 1 }));
const notAnObject = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 10 }), fc.array(fc.integer(), { maxLength: 3 }));

/** Shaped like a valid message, wrong in exactly one place: the error names that place. */
function wrongInOnePlace(ids: string[]): fc.Arbitrary<Case> {
  const at = (path: string) => new RegExp(`^invalid message at '${esc(path)}': .+`);
  const extraKey = fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !['type', 'scenario', 'params', 'action', 'payload', '__proto__'].includes(k));
  const id = fc.constantFrom(...ids);
  return fc.oneof(
    fc.record({ type: notAString }).map((m) => ({ data: json(m), code: 'bad-message' as const, says: at('type') })),
    fc.record({ type: fc.string({ maxLength: 10 }).filter((t) => !['run', 'stop', 'action'].includes(t)) }).map((m) => ({ data: json(m), code: 'bad-message' as const, says: at('type') })),
    fc.record({ type: fc.constant('run'), scenario: notAString }).map((m) => ({ data: json(m), code: 'bad-message' as const, says: at('scenario') })),
    fc.record({ type: fc.constant('run'), scenario: fc.oneof(fc.constant(''), fc.string({ minLength: 65, maxLength: 300 })) }).map((m) => ({ data: json(m), code: 'bad-message' as const, says: at('scenario') })),
    fc.record({ type: fc.constant('run'), scenario: id, params: notAnObject }).map((m) => ({ data: json(m), code: 'bad-message' as const, says: at('params') })),
    fc
      .record({ type: fc.constant('run'), scenario: id, key: fc.string({ minLength: 1, maxLength: 20 }).filter((k) => k !== '__proto__'), value: fc.oneof(fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), fc.object({ maxDepth: 1 }), fc.string({ minLength: 65, maxLength: 100 })) })
      .map(({ key, value, ...m }) => ({ data: json({ ...m, params: { [key]: value } }), code: 'bad-message' as const, says: at(`params.${key}`) })),
    fc.record({ type: fc.constant('run'), scenario: id, params: fc.constant({}), extra: extraKey, value: fc.jsonValue({ maxDepth: 1 }) }).map(({ extra, value, ...m }) => ({ data: json({ ...m, [extra]: value }), code: 'bad-message' as const, says: /^invalid message: Unrecognized key/ })),
    fc.record({ type: fc.constant('stop'), extra: extraKey }).map(({ extra, ...m }) => ({ data: json({ ...m, [extra]: 1 }), code: 'bad-message' as const, says: /^invalid message: Unrecognized key/ })),
    fc.record({ type: fc.constant('action'), action: fc.oneof(notAString, fc.string({ maxLength: 30 }).filter((a) => !(ACTIONS as readonly string[]).includes(a))) }).map((m) => ({ data: json(m), code: 'bad-message' as const, says: at('action') })),
    fc.record({ type: fc.constant('action'), action: fc.constantFrom(...ACTIONS), payload: fc.oneof(notAString, fc.constant(''), fc.string({ minLength: 1025, maxLength: 2000 })) }).map((m) => ({ data: json(m), code: 'bad-message' as const, says: at('payload') })),
  );
}

/** Valid messages that name a scenario that does not exist. */
function unknownScenario(ids: string[]): fc.Arbitrary<Case> {
  return fc
    .string({ unit: 'grapheme', minLength: 1, maxLength: 20 })
    .filter((s) => !ids.includes(s))
    .map((scenario) => ({ data: json({ type: 'run', scenario }), code: 'unknown-scenario' as const, says: new RegExp(`^unknown scenario '${esc(scenario)}'$`) }));
}

/** A valid value for a parameter. */
function inRange(spec: ScenarioInfo['params'][string]): fc.Arbitrary<number> {
  return spec.type === 'integer' ? fc.integer({ min: spec.min, max: spec.max }) : fc.double({ min: spec.min, max: spec.max, noNaN: true });
}

/** A value the parameter refuses: out of range, not whole where it must be, not a number at all. */
function outOfRange(spec: ScenarioInfo['params'][string]): fc.Arbitrary<number | string> {
  const below = fc.integer({ min: -1e12, max: Math.ceil(spec.min) - 1 });
  const above = fc.integer({ min: Math.floor(spec.max) + 1, max: 1e12 });
  const bad: Array<fc.Arbitrary<number | string>> = [below, above, below.map(String), above.map((v) => `${v}`), fc.stringMatching(/^[a-zA-Z ,]{0,12}$/)];
  if (spec.type === 'integer' && spec.max - spec.min >= 1) bad.push(fc.integer({ min: spec.min, max: spec.max - 1 }).map((v) => v + 0.5));
  return fc.oneof(...bad);
}

/**
 * A known scenario with exactly one parameter wrong (the others valid or left out): an
 * unknown name, or a value outside what the hello message says the parameter takes.
 */
function badParams(list: ScenarioInfo[]): fc.Arbitrary<Case> {
  return fc.constantFrom(...list).chain((s) => {
    const names = Object.keys(s.params);
    const others = fc.subarray(names).chain((keys) => fc.record(Object.fromEntries(keys.map((k) => [k, inRange(s.params[k]!)]))));
    const unknown = fc
      .tuple(others, fc.string({ minLength: 1, maxLength: 20 }).filter((k) => !names.includes(k) && k !== '__proto__'))
      .map(([params, key]) => ({
        data: json({ type: 'run', scenario: s.id, params: { ...params, [key]: 1 } }),
        code: 'bad-params' as const,
        says: new RegExp(`^unknown parameter --${esc(flagName(key))}; `),
      }));
    if (!names.length) return unknown;
    const wrongValue = fc.tuple(others, fc.constantFrom(...names)).chain(([params, key]) =>
      outOfRange(s.params[key]!).map((value) => ({
        data: json({ type: 'run', scenario: s.id, params: { ...params, [key]: value } }),
        code: 'bad-params' as const,
        says: new RegExp(`^${esc(flagName(key))} must be ${esc(describeRange({ ...s.params[key]!, type: s.params[key]!.type as 'number' | 'integer' }))}; got `),
      })),
    );
    return fc.oneof(unknown, wrongValue);
  });
}

/** Valid messages that need a running lab, on a page that has none. */
const needsALab: fc.Arbitrary<Case> = fc.oneof(
  fc.constant({ data: json({ type: 'stop' }), code: 'not-running' as const, says: /^no lab is running$/ }),
  fc.record({ action: fc.constantFrom(...ACTIONS), payload: fc.option(fc.string({ minLength: 1, maxLength: 1024 }), { nil: undefined }) }).map(({ action, payload }) => ({
    data: json({ type: 'action', action, payload }),
    code: 'not-running' as const,
    says: new RegExp(`^'${action}' needs a running lab`),
  })),
);

function anyCase(): fc.Arbitrary<Case> {
  const ids = scenarios.map((s) => s.id);
  return fc.oneof(notJson, notAMessage, wrongInOnePlace(ids), unknownScenario(ids), badParams(scenarios), needsALab);
}

/** A clear error: a known code and one readable line, no stack trace or internals. */
function expectClear(err: Err, c: Case): void {
  expect(err.code, c.data).toBe(c.code);
  expect(err.message, c.data).toMatch(c.says);
  expect(err.message).not.toMatch(/\bat .+:\d+:\d+\)?$|TypeError|ReferenceError|\[object Object\]/m);
  expect(err.message.length).toBeLessThan(2000);
}

// ---- raw WebSocket frames ------------------------------------------------------------

/** A client frame built by hand: whatever the test asks for, valid or not. */
function frame(o: { fin?: boolean; rsv?: number; opcode: number; mask?: boolean; payload: Uint8Array; declared?: number }): Buffer {
  const { fin = true, rsv = 0, opcode, mask = true, payload } = o;
  const length = o.declared ?? payload.length;
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  if (length < 126) head.push((mask ? 0x80 : 0) | length);
  else if (length < 65536) head.push((mask ? 0x80 : 0) | 126, length >> 8, length & 0xff);
  else {
    head.push((mask ? 0x80 : 0) | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(length));
    head.push(...big);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([Buffer.from(head), key, masked]);
}

/** A WebSocket connection by hand over TCP: the handshake, then any bytes. */
async function rawSocket(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  let buffer = Buffer.alloc(0);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('data', (d) => (buffer = Buffer.concat([buffer, d])));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    `GET /api/lab HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  expect(await until(() => buffer.includes('\r\n\r\n'), 5000)).toBe(true);
  expect(buffer.subarray(0, 12).toString()).toBe('HTTP/1.1 101');
  const start = buffer.indexOf('\r\n\r\n') + 4;
  /** The server's frames so far: [opcode, payload]. */
  const frames = () => {
    const out: Array<[number, Buffer]> = [];
    let i = start;
    while (buffer.length - i >= 2) {
      let len = buffer[i + 1]! & 0x7f;
      let at = i + 2;
      if (len === 126) {
        if (buffer.length - at < 2) break;
        len = buffer.readUInt16BE(at);
        at += 2;
      } else if (len === 127) {
        if (buffer.length - at < 8) break;
        len = Number(buffer.readBigUInt64BE(at));
        at += 8;
      }
      if (buffer.length - at < len) break;
      out.push([buffer[i]! & 0x0f, buffer.subarray(at, at + len)]);
      i = at + len;
    }
    return out;
  };
  const closeCode = () => {
    const close = frames().find(([op]) => op === 8);
    return close ? close[1].readUInt16BE(0) : null;
  };
  return { socket, closed, frames, closeCode };
}

/** CPU time a process has used (user + system), in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

// ---- the tests ----------------------------------------------------------------------

describe('the lab WebSocket under fuzzing', () => {
  it('any text message gets one clear error, never a lab', async () => {
    const counts = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(anyCase(), { minLength: 1, maxLength: 6 }), async (cases) => {
        const page = await Page.open(server.port);
        for (const c of cases) {
          expectClear(await page.errorFor(c.data), c);
          counts.set(c.code, (counts.get(c.code) ?? 0) + 1);
        }
        // Nothing else came: no 'started', no second reply.
        expect(await page.next(50)).toBeNull();
        page.close();
        await page.closed;
      }),
      { numRuns: 250 },
    );
    // Every kind of reply was exercised.
    for (const code of ['bad-message', 'unknown-scenario', 'bad-params', 'not-running']) expect(counts.get(code) ?? 0, code).toBeGreaterThan(10);
    expect(server.alive).toBe(true);
  });

  it('parameters named like Object.prototype members are unknown parameters, not ignored', async () => {
    // JSON.parse gives '__proto__' as an own key; a parser that copies keys by assignment
    // drops it silently and starts a lab with the defaults instead of saying what is wrong.
    const page = await Page.open(server.port);
    onTestFinished(() => page.close());
    for (const key of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype']) {
      // Refused as an unknown parameter, or as a key no message may carry: either way, named.
      const c: Case =
        key === '__proto__'
          ? { data: `{"type":"run","scenario":"keepalive","params":{"${key}":5}}`, code: 'bad-message', says: /__proto__/ }
          : { data: `{"type":"run","scenario":"keepalive","params":{"${key}":5}}`, code: 'bad-params', says: new RegExp(`^unknown parameter --${esc(flagName(key))}; `) };
      page.ws.send(c.data);
      const reply = await page.next();
      if (reply?.type === 'started') {
        page.ws.send(json({ type: 'stop' }));
        for (let m = await page.next(); m && m.type !== 'stopped'; m = await page.next());
      }
      expect(reply?.type, `${c.data} got ${JSON.stringify(reply).slice(0, 200)}`).toBe('error');
      const err = reply as Err;
      expectClear(err, key === '__proto__' && err.code === 'bad-params' ? { ...c, code: 'bad-params' } : c);
    }
  });

  it('binary messages of any bytes get one clear error', async () => {
    const page = await Page.open(server.port);
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: MAX_MESSAGE_BYTES }), async (bytes) => {
        // Within the page's message rate (20 a second), so every one is answered.
        if (++sent % 15 === 0) await new Promise((r) => setTimeout(r, 1000));
        const err = await page.errorFor(bytes);
        expect(err.code).toBe('bad-message');
        expect(err.message).toBe('binary messages are not accepted; send JSON text');
      }),
      { numRuns: 45 },
    );
    page.close();
  });

  it(`a message over ${MAX_MESSAGE_BYTES} bytes closes that page with 1009 (message too big); up to it, an error`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: MAX_MESSAGE_BYTES - 3, max: 1 << 20 }), fc.boolean(), fc.integer({ min: 1, max: 4 }), async (size, binary, fragments) => {
        const page = await Page.open(server.port);
        const data = binary ? randomBytes(size) : 'x'.repeat(size);
        // Sent whole, or in fragments (continuation frames) that add up to the same size.
        const step = Math.ceil(size / fragments);
        for (let i = 0; i < size; i += step) page.ws.send(data.slice(i, i + step), { binary, fin: i + step >= size });
        if (size > MAX_MESSAGE_BYTES) {
          expect((await page.closed).code).toBe(1009);
        } else {
          const reply = await page.next();
          expect(reply).toMatchObject({ type: 'error', code: 'bad-message' });
          page.close();
        }
      }),
      { numRuns: 30 },
    );
    expect(server.alive).toBe(true);
  });

  it('frames that break RFC 6455 close the connection with its code; any bytes at all never crash the server', async () => {
    const hello = new TextEncoder().encode('{"type":"stop"}');
    const cases: Array<[string, Buffer, number]> = [
      ['unmasked (a client must mask)', frame({ opcode: 1, mask: false, payload: hello }), 1002],
      ['a reserved bit set', frame({ opcode: 1, rsv: 4, payload: hello }), 1002],
      ['a reserved opcode', frame({ opcode: 3, payload: hello }), 1002],
      ['a continuation with nothing to continue', frame({ opcode: 0, payload: hello }), 1002],
      ['a fragmented ping', frame({ opcode: 9, fin: false, payload: hello }), 1002],
      ['a ping over 125 bytes', frame({ opcode: 9, payload: new Uint8Array(126) }), 1002],
      ['text that is not UTF-8', frame({ opcode: 1, payload: Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]) }), 1007],
      ['a declared length of 2^62', frame({ opcode: 2, payload: new Uint8Array(0), declared: 2 ** 62 }), 1009],
    ];
    for (const [what, bytes, code] of cases) {
      const raw = await rawSocket(server.port);
      raw.socket.write(bytes);
      await raw.closed;
      expect(raw.closeCode(), what).toBe(code);
    }
    // Any bytes after the handshake: the server answers, closes, or waits for more; it never
    // falls over, and a page opened next is served.
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (bytes) => {
        const raw = await rawSocket(server.port);
        raw.socket.write(bytes);
        await new Promise((r) => setTimeout(r, 20));
        raw.socket.destroy();
        await raw.closed;
      }),
      { numRuns: 100 },
    );
    expect(server.alive).toBe(true);
    const page = await Page.open(server.port);
    expect((await page.errorFor(json({ type: 'stop' }))).code).toBe('not-running');
    page.close();
  });

  it('a flood of messages costs the server little and delays no other page; the flooder is answered up to the rate limit', async () => {
    const page = await Page.open(server.port);
    const other = await Page.open(server.port);
    const cpuBefore = cpuSeconds(server.pid);
    const N = 50_000; // 350 KB on the wire
    for (let i = 0; i < N; i++) page.ws.send(i % 2 ? '{"type":"stop"}' : 'x');
    const floodStart = Date.now();
    // Sent while the server reads the flood: answered at once all the same.
    const t = Date.now();
    other.ws.send(json({ type: 'stop' }));
    expect(await other.next(60_000)).toMatchObject({ type: 'error', code: 'not-running' });
    const otherWaitedMs = Date.now() - t;
    const replies: ServerMessage[] = [];
    for (let m = await page.next(15_000); m; m = await page.next(1000)) replies.push(m);
    const cpu = cpuSeconds(server.pid) - cpuBefore;
    const figures = `${N} messages: server CPU ${cpu.toFixed(2)} s, another page waited ${otherWaitedMs} ms, ${replies.length} replies`;
    console.info(figures);

    // The first 20 messages of a second are answered, each with its own error, in order;
    // the 21st is told to slow down, the rest of that second is dropped.
    const errors = replies as Err[];
    expect(errors.every((m) => m.type === 'error'), figures).toBe(true);
    errors.slice(0, 20).forEach((m, i) => expect(m.code).toBe(i % 2 ? 'not-running' : 'bad-message'));
    expect(errors[20]?.message).toMatch(/^too many messages \(at most 20 a second\); slow down$/);
    const seconds = Math.ceil((Date.now() - floodStart) / 1000) + 1;
    expect(errors.length, figures).toBeLessThanOrEqual(21 * seconds);
    // Reading it was cheap, and nobody else waited for it. (Keeping every message's time
    // in a list to count them makes each message cost as much as the whole last second's:
    // 50,000 messages then take seconds of CPU while every other page waits.)
    expect(cpu, figures).toBeLessThan(2);
    expect(otherWaitedMs, figures).toBeLessThan(1000);
    // After a quiet second the flooder is served again.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await page.errorFor(json({ type: 'stop' }))).code).toBe('not-running');
    page.close();
    other.close();
  });

  it('a flood of connections: greeted up to the cap, refused with 503 past it, and all of them go away without a trace', async () => {
    // The server runs with --max-labs 4: at most max(32, 4 × 4) = 32 lab connections at once.
    const CAP = 32;
    const tries = await Promise.allSettled(Array.from({ length: 300 }, () => Page.open(server.port)));
    const opened = tries.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []));
    const refused = tries.flatMap((t) => (t.status === 'rejected' ? [String(t.reason)] : []));
    expect(opened.every((p) => p.received[0]?.type === 'hello')).toBe(true);
    // The well-behaved page (and any other open one) holds a place too.
    expect(opened.length).toBeGreaterThanOrEqual(CAP - 4);
    expect(opened.length).toBeLessThanOrEqual(CAP);
    expect(refused.length).toBe(300 - opened.length);
    for (const r of refused) expect(r).toMatch(/503/);
    // Half go away politely, half vanish (TCP reset, no close frame).
    opened.forEach((p, i) => (i % 2 ? p.close() : p.ws.terminate()));
    await Promise.all(opened.map((p) => p.closed));
    expect(await until(() => server.stats().fds <= baseline.fds + (goodPage.loop ? 40 : 0), 5000)).toBe(true);
    // Their places are free again.
    const again = await Page.open(server.port);
    expect(again.received[0]?.type).toBe('hello');
    again.close();
    await again.closed;
    expect(server.alive).toBe(true);
  });
});

describe.skipIf(!capability.ok)(`a well-behaved page, meanwhile${skipReason}`, () => {
  it('ran real labs throughout the fuzzing; every result arrived and its claim held', async () => {
    goodPage.stop = true;
    await goodPage.loop;
    expect(goodPage.failures).toEqual([]);
    expect(goodPage.results.length).toBeGreaterThanOrEqual(1);
    console.info(`the well-behaved page ran ${goodPage.results.length} labs meanwhile; detected after ${goodPage.results.map((r) => r.observations.detectedAfterSeconds).join(', ')} s (expected 5)`);
    for (const r of goodPage.results) {
      expect(r.scenario).toBe('keepalive');
      expect(r.claimHeld, JSON.stringify(r.checks)).toBe(true);
    }
  });
});

describe('afterwards', () => {
  it('the server holds no more memory or descriptors than before the fuzzing', async () => {
    goodPage.stop = true;
    await goodPage.loop;
    // Pages a failed test above left open are the test's, not the server's.
    for (const p of pages) p.ws.terminate();
    expect(await until(() => server.stats().fds === baseline.fds, 5000), `descriptors now: ${fdTargets(server.pid).join(' ')}; before: ${baselineFds.join(' ')}`).toBe(true);
    const after = await server.measure();
    const figures = `server before the fuzzing ${JSON.stringify(baseline)}, after ${JSON.stringify(after)}`;
    console.info(figures);
    expect(after.sessions, figures).toBe(0);
    expect(after.labs, figures).toBe(0);
    // The heap after a full collection: what the server still holds for all those pages.
    expect(after.heapUsedKiB - baseline.heapUsedKiB, figures).toBeLessThan(4 * 1024);
    expect(after.rssKiB - baseline.rssKiB, figures).toBeLessThan(96 * 1024);
    expect(server.alive).toBe(true);
  });
});
