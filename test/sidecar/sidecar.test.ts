/**
 * The sidecar over a real WebSocket: validation, refusal of foreign origins and hosts,
 * actions, capacity, and teardown when the page goes away.
 */
import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';
import { startTestServer } from '../helpers/server.ts';
import { CheckedClient, expectValidMessages } from './checked-client.ts';

// Every message the sidecar sent in a test must fit its schema (src/sidecar/protocol.ts).
afterEach(() => expectValidMessages());

let srv: Awaited<ReturnType<typeof startTestServer>>;
beforeAll(async () => {
  srv = await startTestServer({ maxLabs: 2 });
});
afterAll(async () => {
  await srv?.close();
  expect(labProcesses(process.pid)).toEqual([]);
});

function httpStatus(path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: srv.port, path, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

function upgradeStatus(headers: Record<string, string>): Promise<number | 'open'> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/api/lab`, { headers });
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('error', () => {});
  });
}

describe('who may reach the sidecar', () => {
  it('refuses a WebSocket from a page of another origin', async () => {
    expect(await upgradeStatus({ origin: 'http://evil.example' })).toBe(403);
    expect(await upgradeStatus({ origin: `http://127.0.0.1:${srv.port + 1}` })).toBe(403);
    expect(await upgradeStatus({ origin: 'null' })).toBe(403);
  });

  it('refuses requests for a Host it does not serve (DNS rebinding)', async () => {
    expect(await httpStatus('/', { host: `evil.example:${srv.port}` })).toBe(403);
    expect(await upgradeStatus({ host: `evil.example:${srv.port}`, origin: `http://evil.example:${srv.port}` })).toBe(403);
  });

  it('accepts its own origin, under each loopback name', async () => {
    expect(await upgradeStatus({ origin: `http://127.0.0.1:${srv.port}` })).toBe('open');
    expect(await upgradeStatus({ host: `localhost:${srv.port}`, origin: `http://localhost:${srv.port}` })).toBe('open');
  });

  it('listens on loopback only', () => {
    const addr = srv.server.address() as { address: string };
    expect(addr.address).toBe('127.0.0.1');
  });
});

describe('messages', () => {
  it('says hello with the scenarios and whether the lab is live', async () => {
    const c = new CheckedClient(srv.port);
    const hello = await c.next('hello');
    expect(hello.live).toBe(capability.ok);
    expect(hello.scenarios.map((s) => s.id)).toContain('experiment-a');
    c.close();
  });

  it('answers every bad message with a clear error and keeps serving', async () => {
    const c = new CheckedClient(srv.port);
    await c.next('hello');
    const cases: Array<[unknown, RegExp]> = [
      ['not json', /not JSON/],
      [{ type: 'launch' }, /invalid message/],
      [{ type: 'run' }, /invalid message at 'scenario'/],
      [{ type: 'run', scenario: 'nope' }, /unknown scenario 'nope'/],
      [{ type: 'run', scenario: 'keepalive', params: { idle: -5 } }, /idle must be a whole number from 1 to 7200/],
      [{ type: 'run', scenario: 'keepalive', params: { idle: 'banana' } }, /idle must be a whole number/],
      [{ type: 'run', scenario: 'keepalive', params: { speed: 3 } }, /unknown parameter/],
      [{ type: 'action', action: 'explode' }, /invalid message at 'action'/],
      [{ type: 'action', action: 'cut' }, /needs a running lab/],
      [{ type: 'stop' }, /no lab is running/],
      [{ type: 'run', scenario: 'x'.repeat(100) }, /invalid message/],
    ];
    for (const [msg, expected] of cases) {
      const before = c.messages.length;
      c.send(msg);
      const err = await c.next('error', () => c.messages.length > before);
      expect(err.message).toMatch(expected);
    }
    // Still alive: a fresh hello on a new connection, and this one still answers.
    const before = c.messages.length;
    c.send({ type: 'stop' });
    await c.next('error', () => c.messages.length > before);
    c.close();
  });

  it('closes a connection that sends an oversized message, and others are unaffected', async () => {
    const big = new CheckedClient(srv.port);
    const other = new CheckedClient(srv.port);
    await big.next('hello');
    await other.next('hello');
    const closed = new Promise<number>((r) => big.ws.on('close', (code) => r(code)));
    big.send('x'.repeat(64 * 1024));
    expect(await closed).toBe(1009);
    const before = other.messages.length;
    other.send({ type: 'stop' });
    expect((await other.next('error', () => other.messages.length > before)).code).toBe('not-running');
    other.close();
  });
});

describe.skipIf(!capability.ok)(`labs through the sidecar${skipReason}`, () => {
  it('runs a lab, applies an action, and tears it all down within 2 s of the page closing', async () => {
    const c = new CheckedClient(srv.port);
    await c.next('hello');
    c.send({ type: 'run', scenario: 'experiment-a', params: { wait: 60 } });
    await c.next('started');
    // The server's accept shows up in its terminal stream.
    await c.next('event', (m) => m.event.source === 'server' && m.event.event === 'accept');
    await c.next('event', (m) => m.event.source === 'lab' && m.event.event === 'cut');
    // The buttons open once the scenario has done its own steps (here: its cut).
    const state = await c.next('state', (m) => m.state.running && !m.state.linkUp && m.state.handsOn);
    expect(state.state.linkUp).toBe(false);
    await c.next('event', (m) => m.event.source === 'lab' && m.event.event === 'hands-on');
    c.send({ type: 'action', action: 'restore' });
    await c.next('event', (m) => m.event.source === 'lab' && m.event.event === 'restore');
    const rows = await c.next('sockets', (m) => m.rows.some((r) => r.state === 'ESTAB'));
    expect(rows.rows.find((r) => r.state === 'ESTAB')!.local).toMatch(/:7000$/);
    expect(labProcesses(process.pid).length).toBeGreaterThan(0);
    const closedAt = Date.now();
    c.close();
    while ((labProcesses(process.pid).length > 0 || srv.sidecar.slots.running > 0) && Date.now() - closedAt < 2000) await new Promise((r) => setTimeout(r, 50));
    expect(labProcesses(process.pid)).toEqual([]);
    expect(srv.sidecar.slots.running).toBe(0);
  });

  it("refuses a fault during the scenario's own steps, says why, and the run goes on", async () => {
    const c = new CheckedClient(srv.port);
    await c.next('hello');
    c.send({ type: 'run', scenario: 'experiment-a', params: { wait: 10 } });
    const started = await c.next('started');
    expect(started.scenario).toBe('experiment-a');
    // Before the scenario has cut the network itself: the learner's cut would break its steps.
    const before = await c.next('state', (m) => m.state.running);
    expect(before.state.handsOn).toBe(false);
    c.send({ type: 'action', action: 'cut' });
    const err = await c.next('error');
    expect(err.code).toBe('not-yet');
    expect(err.message).toMatch(/^'cut': wait a moment, the scenario is still doing its own steps/);
    // The scenario's own cut comes, then the buttons open; a restore is then applied and recorded.
    await c.next('state', (m) => m.state.handsOn && !m.state.linkUp);
    c.send({ type: 'action', action: 'restore' });
    await c.next('event', (m) => m.event.source === 'lab' && m.event.event === 'restore');
    const result = await c.next('result');
    expect(result.result.interventions.map((i) => i.action)).toEqual(['restore']);
    const stopped = await c.next('stopped');
    expect(stopped.reason).toBe('finished');
    c.close();
  });

  it('caps concurrent labs with a clear message', async () => {
    const clients = [new CheckedClient(srv.port), new CheckedClient(srv.port), new CheckedClient(srv.port)];
    for (const c of clients) await c.next('hello');
    clients[0]!.send({ type: 'run', scenario: 'experiment-a', params: { wait: 60 } });
    clients[1]!.send({ type: 'run', scenario: 'experiment-a', params: { wait: 60 } });
    await clients[0]!.next('started');
    await clients[1]!.next('started');
    clients[2]!.send({ type: 'run', scenario: 'experiment-a' });
    const err = await clients[2]!.next('error');
    expect(err.code).toBe('capacity');
    expect(err.message).toBe('2 labs running, try again in a moment');
    clients[0]!.send({ type: 'stop' });
    await clients[0]!.next('stopped');
    for (const c of clients) c.close();
  });
});
