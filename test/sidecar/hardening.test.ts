/**
 * What a remote peer without the token can send must never take the server down (and every
 * trainee's lab with it): request lines no URL parser takes, upgrade requests reset right
 * after their refusal, requests Node cannot parse, huge headers, cookies with broken %
 * escapes. Each attack goes over a real TCP connection to a real server, which must then
 * still serve a page and a lab's WebSocket. The servers attacked run as child processes, so
 * "still serving" means the process survived, not only that a test worker did.
 *
 * Also: peers beyond loopback are refused where no token guards the lab (npm start without
 * --host, npm run dev), the dev sidecar checks Host against the port Vite really took, and
 * lab connections are capped.
 */
import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { generateToken } from '../../src/server/access.ts';
import labSidecar from '../../src/sidecar/astro-integration.ts';
import { connectionCap, type Sidecar } from '../../src/sidecar/sidecar.ts';
import { isLoopbackAddress } from '../../src/sidecar/sockets.ts';
import { freePort, startServerChild, startTestServer, type ServerChild } from '../helpers/server.ts';
import { ensureBuilt } from '../helpers/site.ts';
import { CheckedClient, checkedMessages, expectValidMessages, serverMessageProblem } from './checked-client.ts';

// Every message the sidecar sent in a test must fit its schema (src/sidecar/protocol.ts).
afterEach(() => expectValidMessages());

/** A non-loopback IPv4 address of this machine, if it has one (to connect from). */
const LAN = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
const noLan = LAN ? '' : ' [skipped: this machine has no non-loopback IPv4 address to connect from]';

interface RawOptions {
  /** Connect to this address (default 127.0.0.1). */
  host?: string;
  /** Connect from this address. */
  from?: string;
  /** Reset the connection (TCP RST) right after sending, or once the first bytes of a reply arrive. */
  reset?: 'after-send' | 'after-reply';
}

/** Sends `data` as is over a new TCP connection; resolves with what came back once it closes (or after 3 s). */
function raw(port: number, data: string | Buffer, options: RawOptions = {}): Promise<string> {
  return new Promise((resolve) => {
    let reply = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(reply);
    };
    const s: Socket = connect({ host: options.host ?? '127.0.0.1', port, localAddress: options.from }, () => {
      s.write(data);
      if (options.reset === 'after-send') s.resetAndDestroy();
    });
    s.on('data', (d) => {
      reply += d.toString('latin1');
      if (options.reset === 'after-reply' && !s.destroyed) s.resetAndDestroy();
    });
    s.on('error', () => {});
    s.on('close', finish);
    const timer = setTimeout(() => {
      s.destroy();
      finish();
    }, 3000);
  });
}

const statusOf = (reply: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);

/** GET over HTTP: status and body. */
function get(port: number, path: string, headers: Record<string, string> = {}, options: { host?: string; from?: string } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: options.host ?? '127.0.0.1', port, path, headers, localAddress: options.from, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A WebSocket upgrade: 'open' (then closed), or the refusal's status and body. */
function upgrade(url: string, headers: Record<string, string> = {}, from?: string): Promise<{ status: number | 'open'; body: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers, localAddress: from });
    ws.on('open', () => {
      ws.close();
      resolve({ status: 'open', body: '' });
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('error', () => {});
  });
}

function upgradeRequest(path: string, host: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;
}

async function until(test: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!test() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return test();
}

const token = generateToken();
let loopback: ServerChild;
let trainer: ServerChild;
let died = '';

beforeAll(async () => {
  // The servers serve the built site: a page must be there to be refused or served.
  await ensureBuilt();
  [loopback, trainer] = await Promise.all([startServerChild('test', []), startServerChild('test', ['--host', '0.0.0.0', '--token', token])]);
  for (const [name, child] of [
    ['loopback', loopback],
    ['trainer', trainer],
  ] as const) {
    void child.exited.then((s) => (died += `the ${name} server exited (${JSON.stringify(s)}):\n${child.output()}\n`));
  }
});
afterAll(async () => {
  for (const child of [loopback, trainer]) {
    if (!child) continue;
    child.child.kill('SIGTERM');
    await child.exited;
  }
  // The schema check ran on real traffic in this file (hellos, errors, ...).
  expect(checkedMessages()).toBeGreaterThan(30);
});

/** The server still answers a page and opens a lab's WebSocket (which says hello). */
async function expectServing(child: ServerChild, mode: 'loopback' | 'trainer'): Promise<void> {
  expect(died).toBe('');
  const host = `127.0.0.1:${child.port}`;
  const cookie: Record<string, string> = mode === 'trainer' ? { cookie: `keepalive_lab_token_${child.port}=${token}` } : {};
  expect((await get(child.port, '/no-such-page', { host, ...cookie })).status).toBe(404);
  const c = new CheckedClient(child.port, { origin: `http://${host}`, ...cookie });
  await c.next('hello', () => true, 5000);
  c.close();
  expect(died).toBe('');
}

describe('request lines no URL parser takes', () => {
  const lines = ['GET //[ HTTP/1.1', 'GET http://a:b/ HTTP/1.1', 'GET http://[/ HTTP/1.1', `GET //[?token=${token} HTTP/1.1`, `GET http://a:b/?token=${token} HTTP/1.1`, 'GET * HTTP/1.1', 'GET /%zz%?token=%zz HTTP/1.1'];

  it('trainer mode: each is answered (400, or 401 without the token), and the server goes on serving', async () => {
    for (const line of lines) {
      const reply = await raw(trainer.port, `${line}\r\nHost: 127.0.0.1:${trainer.port}\r\nConnection: close\r\n\r\n`);
      expect([200, 400, 401], `${line} → ${reply.slice(0, 80)}`).toContain(statusOf(reply));
      // Only a path: an absolute URL is a bad request, whatever its token.
      if (/^GET (http|\*)/.test(line)) expect(statusOf(reply), line).toBe(400);
    }
    await expectServing(trainer, 'trainer');
  });

  it('on loopback too', async () => {
    for (const line of lines) {
      const reply = await raw(loopback.port, `${line}\r\nHost: 127.0.0.1:${loopback.port}\r\nConnection: close\r\n\r\n`);
      expect([400, 404], `${line} → ${reply.slice(0, 80)}`).toContain(statusOf(reply));
    }
    await expectServing(loopback, 'loopback');
  });

  it('as WebSocket upgrades', async () => {
    for (const child of [loopback, trainer]) {
      for (const path of ['//[', 'http://a:b/api/lab', '/api/lab?token=%zz', '//[/api/lab']) {
        const reply = await raw(child.port, upgradeRequest(path, `127.0.0.1:${child.port}`), { reset: 'after-reply' });
        // On loopback no token is needed: a broken one in the query changes nothing.
        const expected = child === loopback && path.startsWith('/api/lab') ? [101] : [400, 401, 404];
        expect(expected, `${path} → ${reply.slice(0, 80)}`).toContain(statusOf(reply));
      }
    }
    await expectServing(loopback, 'loopback');
    await expectServing(trainer, 'trainer');
  });
});

describe('upgrade refusals followed by a reset', () => {
  it('every kind of refusal, with the peer resetting before and after it: the server goes on serving', async () => {
    for (const [child, mode] of [
      [loopback, 'loopback'],
      [trainer, 'trainer'],
    ] as const) {
      const host = `127.0.0.1:${child.port}`;
      const refusals: Array<[string, number]> = [
        [upgradeRequest('/not-the-lab', host), 404],
        [upgradeRequest('/api/lab', `evil.example:${child.port}`), 403],
        [upgradeRequest('/api/lab', host, `Origin: http://evil.example\r\n${mode === 'trainer' ? `Cookie: keepalive_lab_token_${child.port}=${token}\r\n` : ''}`), 403],
        ...(mode === 'trainer' ? ([[upgradeRequest('/api/lab', host), 401]] as Array<[string, number]>) : []),
      ];
      for (const [request, status] of refusals) {
        // Answered and closed: the socket does not stay half-open.
        const reply = await raw(child.port, request);
        expect(statusOf(reply), `${mode}: ${request.split('\r\n')[0]}`).toBe(status);
        expect(reply).toMatch(/\r\nConnection: close\r\n/);
        for (let i = 0; i < 5; i++) {
          await raw(child.port, request, { reset: 'after-reply' });
          await raw(child.port, request, { reset: 'after-send' });
        }
      }
      await expectServing(child, mode);
    }
  });
});

describe('requests Node cannot parse, and odd headers', () => {
  it('answers 400 or 431 and closes; a reset meanwhile does no harm; the server goes on serving', async () => {
    for (const [child, mode] of [
      [loopback, 'loopback'],
      [trainer, 'trainer'],
    ] as const) {
      const host = `127.0.0.1:${child.port}`;
      expect(statusOf(await raw(child.port, 'GARBAGE\r\n\r\n'))).toBe(400);
      expect(statusOf(await raw(child.port, `GET / HTTP/1.1\r\nHost: ${host}\r\nContent-Length: abc\r\n\r\n`))).toBe(400);
      expect(statusOf(await raw(child.port, `GET / HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`))).toBe(431);
      expect(statusOf(await raw(child.port, `GET / HTTP/1.1\r\nHost: ${host}\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: 1\r\n`).join('')}\r\n`))).not.toBe(0);
      for (let i = 0; i < 5; i++) {
        await raw(child.port, 'GARBAGE\r\n\r\n', { reset: 'after-send' });
        await raw(child.port, 'GARBAGE\r\n\r\n', { reset: 'after-reply' });
        await raw(child.port, `GET / HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`, { reset: 'after-reply' });
      }
      // Cookies with broken % escapes, odd names and no value; a Host with odd characters.
      for (const cookie of ['%', '%zz', `keepalive_lab_token_${child.port}=%zz%`, `=; ;;=;keepalive_lab_token_${child.port}`, `keepalive_lab_token_${child.port}=${'%'.repeat(2000)}`]) {
        const r = await get(child.port, '/', { host, cookie });
        expect(r.status, cookie).toBe(mode === 'trainer' ? 401 : 200);
      }
      for (const h of ['[', '[::1', '%zz:1', `127.0.0.1:${child.port}:1`, ':'.repeat(100)]) {
        expect(statusOf(await raw(child.port, `GET / HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`)), h).toBe(403);
      }
      await expectServing(child, mode);
    }
  });
});

describe('the ServerMessage schema the tests hold the sidecar to', () => {
  it('takes what the sidecar sends and refuses what it must not', () => {
    const ok = [
      { type: 'hello', live: true, kernel: '6.18', mode: 'root', tcpdump: false, scenarios: [], limits: { maxLabs: 8, maxSeconds: 300 } },
      { type: 'event', event: { t: 1.5, source: 'server', event: 'accept', peer: '192.0.2.10:4000' } },
      { type: 'sockets', t: 2, rows: [{ key: 'k', state: 'ESTAB', local: '192.0.2.1:7000', peer: '192.0.2.10:4000', sendQ: 0, recvQ: 0, timer: null }] },
      { type: 'error', code: 'capacity', message: '8 labs running, try again in a moment' },
      { type: 'stopped', reason: 'finished' },
    ];
    for (const m of ok) expect(serverMessageProblem(JSON.stringify(m)), JSON.stringify(m)).toBeNull();
    const bad = [
      'not json',
      { type: 'hello', live: true },
      { type: 'launch' },
      { type: 'stopped', reason: 'finished', lab: 'kl1-1' },
      { type: 'error', code: 'oops', message: 'x' },
      { type: 'event', event: { t: 1, source: 'elsewhere', event: 'x' } },
      { type: 'state', state: { running: 'yes', linkUp: true, client: 'none', clientAddress: null } },
      { type: 'sockets', t: 2, rows: [{ key: 'k', state: 'ESTAB', local: 'a', peer: 'b', sendQ: '0', recvQ: 0, timer: null }] },
    ];
    for (const m of bad) expect(serverMessageProblem(typeof m === 'string' ? m : JSON.stringify(m)), JSON.stringify(m)).not.toBeNull();
  });
});

describe('loopback addresses', () => {
  it('tells loopback peers from others', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '::FFFF:127.0.0.9']) expect(isLoopbackAddress(a), a).toBe(true);
    for (const a of [undefined, '', '192.0.2.2', '10.0.0.1', '::', '::2', '::ffff:10.0.0.1', 'fe80::1', '128.0.0.1', '127.0.0.256', '1127.0.0.1', 'localhost']) expect(isLoopbackAddress(a), String(a)).toBe(false);
  });
});

describe.skipIf(!LAN)(`peers beyond loopback where no token guards the lab${noLan}`, () => {
  let srv: Awaited<ReturnType<typeof startTestServer>>;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(async () => {
    await srv?.close();
  });

  it(`npm start without --host: a peer at ${LAN} that reaches it all the same gets 403, page and WebSocket, whatever its headers`, async () => {
    const host = `127.0.0.1:${srv.port}`;
    // The same requests from loopback are served.
    expect((await get(srv.port, '/', { host })).status).toBe(200);
    expect((await upgrade(`ws://127.0.0.1:${srv.port}/api/lab`, { host })).status).toBe('open');
    const page = await get(srv.port, '/', { host }, { from: LAN });
    expect(page.status).toBe(403);
    expect(page.body).toMatch(/this machine only/);
    const ws = await upgrade(`ws://127.0.0.1:${srv.port}/api/lab`, { host }, LAN);
    expect(ws.status).toBe(403);
    expect(ws.body).toMatch(/this machine only/);
    expect(srv.sidecar.sessions).toBe(0);
  });
});

describe('npm run dev: the sidecar on Astro’s dev server', () => {
  let http: Server;
  let hooks: ReturnType<typeof labSidecar>['hooks'];
  let port: number;
  let configured: number;

  beforeAll(async () => {
    // Vite took another port than its config says (the configured one was busy), and it was
    // started with --host: it listens on every address.
    http = createServer((_req, res) => res.end('vite'));
    await new Promise<void>((r) => http.listen(0, '0.0.0.0', () => r()));
    port = (http.address() as AddressInfo).port;
    configured = await freePort();
    hooks = labSidecar().hooks;
    const server = { config: { server: { port: configured } }, httpServer: http };
    await hooks['astro:server:setup']!({ server } as never);
  });
  afterAll(async () => {
    await hooks['astro:server:done']?.({} as never);
    http.closeAllConnections();
    await new Promise<void>((r) => http.close(() => r()));
  });

  it('checks Host against the port Vite really listens on, not the configured one', async () => {
    const ws = await upgrade(`ws://127.0.0.1:${port}/api/lab`, { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` });
    expect(ws.status).toBe('open');
    const c = new CheckedClient(port, { origin: `http://localhost:${port}`, host: `localhost:${port}` });
    expect((await c.next('hello')).scenarios.length).toBeGreaterThan(0);
    c.close();
    expect((await upgrade(`ws://127.0.0.1:${port}/api/lab`, { host: `127.0.0.1:${configured}` })).status).toBe(403);
  });

  it.skipIf(!LAN)(`refuses a peer beyond loopback (${LAN ?? 'none'}), even naming 127.0.0.1 and sending no Origin${noLan}`, async () => {
    const ws = await upgrade(`ws://${LAN}:${port}/api/lab`, { host: `127.0.0.1:${port}` }, LAN);
    expect(ws.status).toBe(403);
    expect(ws.body).toMatch(/this machine only/);
    // Connected to 127.0.0.1 from that address: the same.
    expect((await upgrade(`ws://127.0.0.1:${port}/api/lab`, { host: `127.0.0.1:${port}` }, LAN)).status).toBe(403);
  });

  it('survives a reset after its refusal', async () => {
    for (let i = 0; i < 5; i++) {
      await raw(port, upgradeRequest('/api/lab', `evil.example:${port}`), { reset: 'after-reply' });
      await raw(port, upgradeRequest('/api/lab', `evil.example:${port}`), { reset: 'after-send' });
    }
    expect((await upgrade(`ws://127.0.0.1:${port}/api/lab`, { host: `127.0.0.1:${port}` })).status).toBe('open');
  });
});

describe('a cap on lab connections', () => {
  it('is four a lab slot, at least 32', () => {
    expect(connectionCap(1)).toBe(32);
    expect(connectionCap(8)).toBe(32);
    expect(connectionCap(30)).toBe(120);
    expect(connectionCap(500)).toBe(2000);
  });

  it('past it an upgrade gets 503 with a clear message; a closed connection frees its place', async () => {
    const srv = await startTestServer({ maxLabs: 1 });
    const sidecar: Sidecar = srv.sidecar;
    const clients: CheckedClient[] = [];
    try {
      expect(sidecar.maxConnections).toBe(32);
      for (let i = 0; i < 32; i++) clients.push(new CheckedClient(srv.port));
      await Promise.all(clients.map((c) => c.next('hello')));
      expect(sidecar.connections).toBe(32);
      const refused = await upgrade(`ws://127.0.0.1:${srv.port}/api/lab`, { origin: `http://127.0.0.1:${srv.port}` });
      expect(refused.status).toBe(503);
      expect(refused.body).toMatch(/^Service Unavailable: 32 lab connections are open, the most this server takes \(32\); close a tab or try again in a moment\n$/);
      expect(sidecar.sessions).toBe(32);
      // Refusals do not count, nor do half-done handshakes that were reset.
      for (let i = 0; i < 5; i++) await raw(srv.port, upgradeRequest('/api/lab', `127.0.0.1:${srv.port}`), { reset: 'after-reply' });
      expect(sidecar.connections).toBe(32);
      // Everyone else is still served.
      const before = clients[0]!.messages.length;
      clients[0]!.send({ type: 'stop' });
      expect((await clients[0]!.next('error', () => clients[0]!.messages.length > before)).code).toBe('not-running');
      clients.pop()!.close();
      expect(await until(() => sidecar.connections === 31, 2000)).toBe(true);
      const c = new CheckedClient(srv.port);
      clients.push(c);
      await c.next('hello');
      expect(sidecar.connections).toBe(32);
    } finally {
      for (const c of clients) c.close();
      await srv.close();
    }
  });

  it('in trainer mode, upgrades without the token never take a place', async () => {
    const srv = await startTestServer({ host: '0.0.0.0', token, maxLabs: 1 });
    try {
      const host = `127.0.0.1:${srv.port}`;
      for (let i = 0; i < 40; i++) expect((await upgrade(`ws://127.0.0.1:${srv.port}/api/lab`, { host })).status).toBe(401);
      expect(srv.sidecar.connections).toBe(0);
      expect((await upgrade(`ws://127.0.0.1:${srv.port}/api/lab?token=${token}`, { host })).status).toBe('open');
    } finally {
      await srv.close();
    }
  });
});
