/**
 * A room of trainees on one server: each connection has its own lab and nothing else, the
 * cap answers at once with a clear message, and a connection that died silently frees its
 * lab. Real labs, over real WebSockets.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';
import { startTestServer, TestClient } from '../helpers/server.ts';
import { CheckedClient, expectValidMessages } from './checked-client.ts';

// Every message the sidecar sent in a test must fit its schema (src/sidecar/protocol.ts).
afterEach(() => expectValidMessages());

let srv: Awaited<ReturnType<typeof startTestServer>>;
const clients: TestClient[] = [];

function client(): TestClient {
  const c = new CheckedClient(srv.port);
  clients.push(c);
  return c;
}

/** Waits until `c` has sent something new of `type` matching `test` (messages before `since` do not count). */
async function nextAfter<T extends Parameters<TestClient['next']>[0]>(c: TestClient, since: number, type: T, test: Parameters<TestClient['next']>[1] = () => true) {
  return c.next(type, (m) => c.messages.indexOf(m) >= since && (test as (m: unknown) => boolean)(m));
}

beforeAll(async () => {
  srv = await startTestServer({ maxLabs: 2, heartbeatMs: 400 });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await srv?.close();
  expect(labProcesses(process.pid)).toEqual([]);
});

describe.skipIf(!capability.ok)(`one lab per connection${skipReason}`, () => {
  it('a trainee can neither see nor act on another trainee’s lab', async () => {
    const a = client();
    const b = client();
    await a.next('hello');
    await b.next('hello');
    a.send({ type: 'run', scenario: 'hold', params: { wait: 60 } });
    await a.next('started');
    await a.next('state', (m) => m.state.running && m.state.client === 'running' && m.state.handsOn);

    // B has no lab: whatever it sends finds none, and there is no way to name A's.
    for (const msg of [{ type: 'stop' }, { type: 'action', action: 'cut' }, { type: 'action', action: 'kill-client' }, { type: 'action', action: 'send-frame', payload: 'hi' }]) {
      const since = b.messages.length;
      b.send(msg);
      expect((await nextAfter(b, since, 'error')).code).toBe('not-running');
    }
    for (const msg of [
      { type: 'stop', lab: 'kl1-1' },
      { type: 'action', action: 'cut', lab: 'kl1-1' },
      { type: 'action', action: 'cut', session: 0 },
    ]) {
      const since = b.messages.length;
      b.send(msg);
      expect((await nextAfter(b, since, 'error')).message).toMatch(/invalid message.*[Uu]nrecognized key/);
    }

    // B starts its own lab and cuts and kills in it: A's lab does not move.
    const bSince = b.messages.length;
    b.send({ type: 'run', scenario: 'hold', params: { wait: 60 } });
    await nextAfter(b, bSince, 'started');
    await nextAfter(b, bSince, 'state', (m) => (m as { state: { client: string; handsOn: boolean } }).state.client === 'running' && (m as { state: { handsOn: boolean } }).state.handsOn);
    const aSince = a.messages.length;
    b.send({ type: 'action', action: 'cut' });
    await nextAfter(b, bSince, 'state', (m) => !(m as { state: { linkUp: boolean } }).state.linkUp);
    b.send({ type: 'action', action: 'kill-client' });
    await nextAfter(b, bSince, 'state', (m) => (m as { state: { client: string } }).state.client === 'exited');
    // A's lab still works end to end: a frame from its client reaches its server.
    a.send({ type: 'action', action: 'send-frame', payload: 'still-here' });
    const frame = await nextAfter(a, aSince, 'event', (m) => {
      const e = (m as { event: { source: string; event: string; line?: string } }).event;
      return e.source === 'server' && e.event === 'frame' && /still-here/.test(e.line ?? '');
    });
    expect(frame).toBeTruthy();
    expect(b.messages.some((m) => m.type === 'event' && JSON.stringify(m).includes('still-here'))).toBe(false);
    const aNew = a.messages.slice(aSince);
    expect(aNew.filter((m) => m.type === 'event' && ['cut', 'kill'].includes(m.event.event))).toEqual([]);
    expect(aNew.filter((m) => m.type === 'state' && (!m.state.linkUp || m.state.client !== 'running'))).toEqual([]);
    // Each saw exactly one lab start: its own.
    expect(a.messages.filter((m) => m.type === 'started')).toHaveLength(1);
    expect(b.messages.filter((m) => m.type === 'started')).toHaveLength(1);
    // Nothing sent to a page carries a lab's internal id (kl<pid>-<n>), not even to its owner.
    for (const m of [...a.messages, ...b.messages]) expect(JSON.stringify(m)).not.toMatch(/kl\d+-\d+/);

    // B leaving stops B's lab only.
    const aBefore = a.messages.length;
    b.close();
    if (b.ws.readyState !== b.ws.CLOSED) await new Promise((r) => b.ws.once('close', r));
    const deadline = Date.now() + 5000;
    while (srv.sidecar.slots.running > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300));
    expect(srv.sidecar.slots.running).toBe(1);
    expect(a.messages.slice(aBefore).some((m) => m.type === 'stopped')).toBe(false);
    a.send({ type: 'stop' });
    await a.next('stopped');
    expect(srv.sidecar.slots.running).toBe(0);
  });

  it('when every slot is taken, says "N labs running, try again in a moment" at once, and the page can retry', async () => {
    const [a, b, c] = [client(), client(), client()];
    for (const x of [a, b, c]) await x.next('hello');
    a.send({ type: 'run', scenario: 'hold', params: { wait: 60 } });
    b.send({ type: 'run', scenario: 'hold', params: { wait: 60 } });
    await a.next('started');
    await b.next('started');
    const askedAt = Date.now();
    c.send({ type: 'run', scenario: 'hold', params: { wait: 60 } });
    const err = await c.next('error', () => true, 2000);
    expect(Date.now() - askedAt).toBeLessThan(1000);
    expect(err.code).toBe('capacity');
    expect(err.message).toBe('2 labs running, try again in a moment');
    expect(c.messages.some((m) => m.type === 'started')).toBe(false);
    // A slot frees: the same connection runs its lab.
    a.send({ type: 'stop' });
    await a.next('stopped');
    c.send({ type: 'run', scenario: 'hold', params: { wait: 60 } });
    await c.next('started');
    b.close();
    c.close();
    for (const x of [b, c]) if (x.ws.readyState !== x.ws.CLOSED) await new Promise((r) => x.ws.once('close', r));
    const deadline = Date.now() + 5000;
    while (srv.sidecar.slots.running > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(srv.sidecar.slots.running).toBe(0);
  });

  it('a page that vanished without closing (no pong) loses its connection and its lab within two pings', async () => {
    const a = client();
    await a.next('hello');
    a.send({ type: 'run', scenario: 'hold', params: { wait: 60 } });
    await a.next('started');
    expect(srv.sidecar.slots.running).toBe(1);
    const sessions = srv.sidecar.sessions;
    // Stop reading: the client's pong never goes out, as with a laptop whose lid was shut.
    const socket = (a.ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.pause();
    const stoppedAt = Date.now();
    while (srv.sidecar.slots.running > 0 && Date.now() - stoppedAt < 5000) await new Promise((r) => setTimeout(r, 50));
    expect(srv.sidecar.slots.running).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(3 * 400 + 2000); // two ping periods, plus the lab's teardown
    expect(srv.sidecar.sessions).toBe(sessions - 1);
    socket.destroy();
  });
});
