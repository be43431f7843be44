/**
 * A program in a lab that prints without end (`yes`, millions of lines) must not grow the
 * server's memory without limit, nor flood the page: the server streams a bounded number of
 * lines a second with "[N lines dropped]" notices, and drops rather than queues when a page
 * reads slowly. The server runs as a child process, so its resident memory is its own.
 */
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, HIGH_WATER_BYTES } from '../../src/sidecar/session.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';
import { startServerChild, type ServerChild } from '../helpers/server.ts';
import { CheckedClient, expectValidMessages } from './checked-client.ts';

// Every message the sidecar sent in a test must fit its schema (src/sidecar/protocol.ts).
afterEach(() => expectValidMessages());

const FLOOD_SECONDS = 8;
/**
 * How much the server's memory may grow over a flood, in MiB. Measured: about 30 MiB as the
 * heap sizes itself to the load in the first seconds, then flat (a second flood right after
 * adds under 6; a 60 s flood ends 11 MiB above an 8 s one, its heap after GC flat).
 */
const RSS_GROWTH_LIMIT_MB = 60;

let srv: ServerChild;
beforeAll(async () => {
  // Niced: the flood keeps it busy on one core, and other test files measure kernel timing.
  if (capability.ok) srv = await startServerChild('test', [], process.env, { nice: 10 });
});
afterAll(async () => {
  if (!srv) return;
  srv.child.kill('SIGTERM');
  expect((await srv.exited).code).toBe(0);
  expect(labProcesses(srv.pid)).toEqual([]);
});

/** Samples the server's RSS every 200 ms until `done` settles; returns the samples in MiB. */
async function sampleRss(done: Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  let finished = false;
  void done.finally(() => (finished = true));
  while (!finished) {
    const mb = srv.rssMb();
    if (mb !== null) samples.push(mb);
    await new Promise((r) => setTimeout(r, 200));
  }
  return samples;
}

const dropped = (m: { type: string; event?: { event: string; source: string } }) => m.type === 'event' && m.event!.source === 'server' && m.event!.event === 'dropped';

describe.skipIf(!capability.ok)(`output without end${skipReason}`, () => {
  it('a page that reads: at most the line budget a second, "[N lines dropped]" for the rest, memory flat, others still served', async () => {
    const c = new CheckedClient(srv.port);
    await c.next('hello');
    const before = srv.rssMb()!;
    c.send({ type: 'run', scenario: 'flood', params: { seconds: FLOOD_SECONDS } });
    await c.next('started');
    const startedAt = Date.now();
    const result = c.next('result', () => true, 60_000);
    // Meanwhile another page connects and is answered promptly.
    const probe = (async () => {
      await new Promise((r) => setTimeout(r, (FLOOD_SECONDS / 2) * 1000));
      const other = new CheckedClient(srv.port);
      const t0 = Date.now();
      await other.next('hello', () => true, 5000);
      other.close();
      return Date.now() - t0;
    })();
    const rss = await sampleRss(result);
    const { result: r } = await result;
    const seconds = (Date.now() - startedAt) / 1000;
    const printed = r.observations.lines as number;
    const lines = c.messages.filter((m) => m.type === 'event' && m.event.source === 'server' && m.event.event === 'output').length;
    const notices = c.messages.filter(dropped).map((m) => (m as unknown as { event: { dropped: number; line: string } }).event);
    const droppedTotal = notices.reduce((n, e) => n + e.dropped, 0);
    console.log(
      `flood, reading page: the program printed ${printed} lines in ${seconds.toFixed(1)} s; the page got ${lines} and ${notices.length} notices ` +
        `(${droppedTotal} dropped), ${(c.bytes / 1024).toFixed(0)} KiB; server RSS ${before.toFixed(0)} MiB before, max ${Math.max(...rss).toFixed(0)} MiB, ` +
        `another page's hello took ${await probe} ms; RSS samples ${rss.map((x) => x.toFixed(0)).join(' ')}`,
    );
    expect(printed).toBeGreaterThan(100_000); // it really printed without end
    expect(lines).toBeLessThanOrEqual(DEFAULT_LIMITS.burstLines + DEFAULT_LIMITS.maxLinesPerSecond * seconds * 1.1);
    expect(lines).toBeGreaterThanOrEqual(DEFAULT_LIMITS.maxLinesPerSecond * (FLOOD_SECONDS - 1));
    expect(notices.length).toBeGreaterThanOrEqual(FLOOD_SECONDS - 1);
    for (const n of notices) expect(n.line).toBe(`[${n.dropped} line${n.dropped === 1 ? '' : 's'} dropped]`);
    // Every line was either sent or counted as dropped (the program printed on a little after
    // the scenario counted, until the lab was torn down).
    expect(lines + droppedTotal).toBeGreaterThanOrEqual(printed);
    expect(lines + droppedTotal).toBeLessThan(printed * 1.05);
    expect(Math.max(...rss) - before).toBeLessThan(RSS_GROWTH_LIMIT_MB);
    expect(await probe).toBeLessThan(2000);
    c.close();
  });

  it('a page that reads nothing for a while: the server drops instead of queueing, memory stays flat, and the page learns what it missed', async () => {
    const c = new CheckedClient(srv.port);
    await c.next('hello');
    const before = srv.rssMb()!;
    c.send({ type: 'run', scenario: 'flood', params: { seconds: FLOOD_SECONDS } });
    await c.next('started');
    const socket = (c.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    const paused = new Promise((r) => setTimeout(r, (FLOOD_SECONDS - 2) * 1000));
    const rss = await sampleRss(paused);
    const received = c.bytes;
    socket.resume();
    const { result: r } = await c.next('result', () => true, 60_000);
    await c.next('stopped');
    const printed = r.observations.lines as number;
    const notices = c.messages.filter(dropped).map((m) => (m as unknown as { event: { dropped: number } }).event.dropped);
    console.log(
      `flood, page not reading for ${FLOOD_SECONDS - 2} s: the program printed ${printed} lines; ` +
        `server RSS ${before.toFixed(0)} MiB before, max ${Math.max(...rss).toFixed(0)} MiB; the page then got ${((c.bytes - received) / 1024).toFixed(0)} KiB and notices of ${notices.reduce((a, b) => a + b, 0)} dropped lines`,
    );
    expect(printed).toBeGreaterThan(100_000);
    expect(Math.max(...rss) - before).toBeLessThan(RSS_GROWTH_LIMIT_MB);
    // What waited for the page was bounded by the high-water mark (plus what the kernel's socket buffers held).
    expect(c.bytes - received).toBeLessThan(HIGH_WATER_BYTES + 16 * 1024 * 1024);
    expect(notices.reduce((a, b) => a + b, 0)).toBeGreaterThan(printed / 2);
    c.close();
  });
});
