/**
 * Trainer mode (`npm start -- --host 0.0.0.0`): a real server bound to every address,
 * reached over real HTTP and WebSocket through this machine's network address where it has
 * one, and through 127.0.0.1 with other Host names. Without a valid token nothing is
 * served; the join link turns into a cookie; Host and Origin checks still hold. And by
 * default nothing listens beyond loopback.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AccessToken, generateToken, tokenProblem, UNAUTHORIZED_TITLE } from '../../src/server/access.ts';
import { parseStartArgs } from '../../src/server/main.ts';
import { chromiumAvailable, launch } from '../helpers/browser.ts';
import { freePort, startServerChild, startTestServer } from '../helpers/server.ts';
import { CheckedClient, expectValidMessages } from './checked-client.ts';

// Every message the sidecar sent in a test must fit its schema (src/sidecar/protocol.ts).
afterEach(() => expectValidMessages());

/** A non-loopback IPv4 address of this machine, if it has one. */
const LAN = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(address: string, port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: address, port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function upgrade(address: string, port: number, headers: Record<string, string>, query = ''): Promise<number | 'open'> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${address}:${port}/api/lab${query}`, { headers });
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('error', () => {});
  });
}

function refusesConnection(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

const token = generateToken();
let trainer: Awaited<ReturnType<typeof startTestServer>>;
let loopback: Awaited<ReturnType<typeof startTestServer>>;
/** Where tests connect to the trainer server, and the Host they name. */
let address: string;
let host: string;
let cookie: string;

beforeAll(async () => {
  trainer = await startTestServer({ host: '0.0.0.0', token });
  loopback = await startTestServer();
  address = LAN ?? '127.0.0.1';
  host = `${LAN ?? hostname().toLowerCase()}:${trainer.port}`;
  cookie = `keepalive_lab_token_${trainer.port}=${token}`;
});
afterAll(async () => {
  await trainer?.close();
  await loopback?.close();
});

describe('by default', () => {
  it('listens on 127.0.0.1 only: another address of this machine is refused at the TCP level', async () => {
    expect((loopback.server.address() as { address: string }).address).toBe('127.0.0.1');
    expect((await get('127.0.0.1', loopback.port, '/')).status).not.toBe(401);
    if (LAN) expect(await refusesConnection(LAN, loopback.port)).toBe(true);
  });

  it('refuses to start beyond loopback without a token, and a token on loopback', async () => {
    const port = await freePort();
    const { startServer } = await import('../../src/server/main.ts');
    await expect(startServer({ port, host: '0.0.0.0' })).rejects.toThrow(/needs an access token/);
    await expect(startServer({ port, host: '127.0.0.1', token })).rejects.toThrow(/only applies when serving other machines/);
    expect(await refusesConnection('127.0.0.1', port)).toBe(true);
  });
});

describe('trainer mode: the token', () => {
  it(`listens on every address${LAN ? `, reachable at ${LAN}` : ''}, and prints a join URL for it`, async () => {
    expect((trainer.server.address() as { address: string }).address).toBe('0.0.0.0');
    if (LAN) {
      expect(trainer.joinUrls).toContain(`http://${LAN}:${trainer.port}/?token=${token}`);
      expect(await refusesConnection(LAN, trainer.port)).toBe(false);
    }
    for (const url of trainer.joinUrls) expect(new URL(url).hostname).not.toMatch(/^127\.|^\[::1\]$|^\[fe80/);
    expect(trainer.localUrl).toBe(`http://127.0.0.1:${trainer.port}/?token=${token}`);
  });

  it('refuses pages and assets without a token with a 401 page that says how to join', async () => {
    for (const path of ['/', '/lab/experiment-a/', '/favicon.svg', '/_astro/anything.js', '/no-such-page']) {
      const r = await get(address, trainer.port, path, { host });
      expect(r.status, path).toBe(401);
      expect(r.headers['set-cookie']).toBeUndefined();
      expect(r.body).toContain(UNAUTHORIZED_TITLE);
      expect(r.body).toMatch(/join link/);
      expect(r.body).toContain('?token=');
    }
    // Through loopback too: in trainer mode every browser needs it.
    expect((await get('127.0.0.1', trainer.port, '/', { host: `127.0.0.1:${trainer.port}` })).status).toBe(401);
  });

  it('refuses a wrong token, in the URL or in the cookie', async () => {
    const wrong = generateToken();
    for (const r of [
      await get(address, trainer.port, `/?token=${wrong}`, { host }),
      await get(address, trainer.port, `/?token=${token.slice(0, -1)}`, { host }),
      await get(address, trainer.port, `/?token=`, { host }),
      await get(address, trainer.port, '/', { host, cookie: `keepalive_lab_token_${trainer.port}=${wrong}` }),
      // The right token under another port's cookie name (another server on this machine).
      await get(address, trainer.port, '/', { host, cookie: `keepalive_lab_token_${trainer.port + 1}=${token}` }),
    ]) {
      expect(r.status).toBe(401);
      expect(r.headers['set-cookie']).toBeUndefined();
    }
  });

  it('turns the join link into an HttpOnly, SameSite=Strict cookie and moves on to the same URL without the token', async () => {
    const r = await get(address, trainer.port, `/lab/experiment-a/?token=${token}&x=1`, { host });
    expect(r.status).toBe(200);
    const set = String(r.headers['set-cookie']);
    expect(set).toMatch(new RegExp(`^keepalive_lab_token_${trainer.port}=${token};`));
    expect(set).toMatch(/; HttpOnly/);
    expect(set).toMatch(/; SameSite=Strict/);
    expect(set).toMatch(/; Path=\//);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.body).toContain('location.replace("/lab/experiment-a/?x=1")');
    expect(r.body).toContain('content="0;url=/lab/experiment-a/?x=1"');
    expect(r.body).not.toContain(token);
  });

  it('never moves on to another site', async () => {
    for (const path of [`//evil.example/?token=${token}`, `/\\evil.example/?token=${token}`, `///evil.example/x?token=${token}`]) {
      const r = await get(address, trainer.port, path, { host });
      expect(r.status).toBe(200);
      const target = /location\.replace\("([^"]*)"\)/.exec(r.body)![1]!;
      expect(target, path).toMatch(/^\/(?![/\\])/);
      expect(new URL(target, 'http://ours.example').host).toBe('ours.example');
    }
  });

  it('serves with the cookie exactly what the loopback server serves', async () => {
    for (const path of ['/', '/favicon.svg', '/no-such-page']) {
      const expected = await get('127.0.0.1', loopback.port, path);
      const r = await get(address, trainer.port, path, { host, cookie: `other=1; ${cookie}; more=2` });
      expect(r.status, path).toBe(expected.status);
      expect(r.body.length, path).toBe(expected.body.length);
    }
  });

  it('compares tokens whatever their length, and only whole', () => {
    const access = new AccessToken(token, 1);
    expect(access.matches(token)).toBe(true);
    for (const t of ['', token.slice(1), token + 'x', token.toUpperCase(), 'x'.repeat(5000), null, undefined]) expect(access.matches(t)).toBe(false);
    expect(tokenProblem('short')).toMatch(/too short/);
    expect(tokenProblem('has spaces in it, which a URL would mangle')).toMatch(/only contain/);
    expect(tokenProblem(generateToken())).toBeNull();
    expect(generateToken()).not.toBe(generateToken());
    expect(Buffer.from(generateToken(), 'base64url').length * 8).toBeGreaterThanOrEqual(128);
  });

  it('generates tokens that can be passed back as `--token <token>`: none starts with a dash', () => {
    // A base64url token starts with '-' once in 64: parseArgs would take it for an option.
    const tokens = Array.from({ length: 2000 }, generateToken);
    expect(tokens.filter((t) => t.startsWith('-'))).toEqual([]);
    expect(new Set(tokens).size).toBe(tokens.length);
    for (const t of tokens.slice(0, 50)) expect(parseStartArgs(['--host', '0.0.0.0', '--token', t], {})).toMatchObject({ token: t, tokenFrom: '--token' });
  });
});

describe('trainer mode: the WebSocket', () => {
  it('refuses an upgrade without a valid token with 401', async () => {
    const origin = `http://${host}`;
    expect(await upgrade(address, trainer.port, { host, origin })).toBe(401);
    expect(await upgrade(address, trainer.port, { host, origin, cookie: `keepalive_lab_token_${trainer.port}=${generateToken()}` })).toBe(401);
    expect(await upgrade(address, trainer.port, { host, origin }, `?token=${generateToken()}`)).toBe(401);
  });

  it('opens for the cookie from its own origin, and for ?token= from a program', async () => {
    expect(await upgrade(address, trainer.port, { host, origin: `http://${host}`, cookie })).toBe('open');
    expect(await upgrade(address, trainer.port, { host }, `?token=${token}`)).toBe('open');
    const c = new CheckedClient(trainer.port, { host, origin: `http://${host}`, cookie }, { address });
    const hello = await c.next('hello');
    expect(hello.scenarios.length).toBeGreaterThan(0);
    c.close();
  });

  it('still refuses another origin, even with the cookie', async () => {
    for (const origin of ['http://evil.example', `http://evil.example:${trainer.port}`, `http://127.0.0.1:${trainer.port}`, `http://${host.replace(/:\d+$/, `:${trainer.port + 1}`)}`, 'null']) {
      expect(await upgrade(address, trainer.port, { host, origin, cookie }), origin).toBe(403);
    }
  });
});

describe('trainer mode: Host names', () => {
  it('answers to this machine’s addresses and host name, and refuses others even with the token (DNS rebinding)', async () => {
    const ok = [`127.0.0.1:${trainer.port}`, `localhost:${trainer.port}`, `${hostname().toLowerCase()}:${trainer.port}`, ...(LAN ? [`${LAN}:${trainer.port}`] : [])];
    for (const h of ok) expect((await get('127.0.0.1', trainer.port, '/no-such-page', { host: h, cookie })).status, h).toBe(404);
    for (const h of [`evil.example:${trainer.port}`, `${LAN ?? '127.0.0.1'}:${trainer.port + 1}`, `${LAN ?? '127.0.0.1'}`, `192.0.2.250:${trainer.port}`]) {
      const r = await get('127.0.0.1', trainer.port, `/?token=${token}`, { host: h, cookie });
      expect(r.status, `${h}: ${r.body}`).toBe(403);
      expect(await upgrade('127.0.0.1', trainer.port, { host: h, cookie }, `?token=${token}`), h).toBe(403);
    }
    // No Host at all (HTTP/1.0 allows leaving it out).
    const raw = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: trainer.port }, () => s.end(`GET /?token=${token} HTTP/1.0\r\nCookie: ${cookie}\r\n\r\n`));
      let data = '';
      s.on('data', (d) => (data += d.toString()));
      s.on('close', () => resolve(data));
    });
    expect(raw).toMatch(/^HTTP\/1\.\d 403/);
  });
});

describe.skipIf(!chromiumAvailable)('trainer mode in a browser', () => {
  it('a join link clicked on another site lets the browser in, cookie and all, and another site still cannot use the lab', async () => {
    // The "chat" page: another site (127.0.0.1, while the course is reached as localhost).
    const { createServer } = await import('node:http');
    const chatPort = await freePort();
    const join = `http://localhost:${trainer.port}/lab/?token=${token}`;
    const chat = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><a id="join" href="${join}">join the course</a>`);
    });
    await new Promise<void>((r) => chat.listen(chatPort, '127.0.0.1', () => r()));
    const browser = await launch();
    try {
      const page = await browser.context.newPage();
      const documents: Array<[string, number]> = [];
      page.on('response', (r) => {
        if (r.request().isNavigationRequest()) documents.push([r.url(), r.status()]);
      });
      await page.goto(`http://127.0.0.1:${chatPort}/`);
      await Promise.all([page.waitForURL(`http://localhost:${trainer.port}/lab/`), page.click('#join')]);
      // The URL bar lost the token; the page is the course's, not the 401 page.
      await page.waitForLoadState('load');
      expect(page.url()).toBe(`http://localhost:${trainer.port}/lab/`);
      expect(await page.title()).not.toBe(UNAUTHORIZED_TITLE);
      // Straight through: the join page, then the page itself with the cookie (a 303 would
      // have arrived without it: browsers withhold SameSite=Strict cookies on a redirect
      // another site set off).
      expect(documents.slice(1).map(([url]) => url)).toEqual([join, `http://localhost:${trainer.port}/lab/`]);
      expect(documents.map(([, status]) => status)).not.toContain(401);
      const cookies = await browser.context.cookies(`http://localhost:${trainer.port}/`);
      expect(cookies.find((c) => c.name === `keepalive_lab_token_${trainer.port}`)).toMatchObject({ httpOnly: true, sameSite: 'Strict', value: token });
      // Its own WebSocket opens (the cookie rides along) and says hello.
      const first = await page.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const ws = new globalThis.WebSocket(url);
            ws.onmessage = (m) => resolve(JSON.parse(String(m.data)).type);
            ws.onerror = () => resolve('error');
          }),
        `ws://localhost:${trainer.port}/api/lab`,
      );
      expect(first).toBe('hello');
      // The chat site, in the same browser, cannot open the lab.
      const chatPage = await browser.context.newPage();
      await chatPage.goto(`http://127.0.0.1:${chatPort}/`);
      const fromChat = await chatPage.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const ws = new globalThis.WebSocket(url);
            ws.onopen = () => resolve('open');
            ws.onerror = () => resolve('refused');
          }),
        `ws://localhost:${trainer.port}/api/lab`,
      );
      expect(fromChat).toBe('refused');
    } finally {
      await browser.close();
      await new Promise<void>((r) => chat.close(() => r()));
    }
  });
});

describe('npm start in trainer mode', () => {
  it('prints a join URL with the token for every network address, and the page refuses a request without it', async () => {
    const chosen = generateToken();
    const child = await startServerChild('main', ['--host', '0.0.0.0'], { ...process.env, KEEPALIVE_LAB_TOKEN: chosen });
    try {
      const out = child.output();
      expect(out).toMatch(/trainer mode/);
      if (LAN) expect(out).toContain(`http://${LAN}:${child.port}/?token=${chosen}`);
      expect(out).toContain(`http://127.0.0.1:${child.port}/?token=${chosen}`);
      expect(out).toMatch(/from KEEPALIVE_LAB_TOKEN/);
      expect((await get(address, child.port, '/', { host: `${LAN ?? 'localhost'}:${child.port}` })).status).toBe(401);
    } finally {
      child.child.kill('SIGTERM');
      expect((await child.exited).code).toBe(0);
    }
  });

  it('refuses bad options before starting anything', async () => {
    const cases: Array<[string[], string, RegExp]> = [
      [['--token', token], '', /^--token only applies with --host/],
      [['--allow-host', 'trainer.example'], '', /^--allow-host only applies with --host/],
      [['--host', '0.0.0.0', '--token', 'short'], '', /^--token: the token is too short/],
      [['--host', '0.0.0.0', '--token', 'not a url-safe token at all, no'], '', /^--token: the token may only contain/],
      [['--host', '0.0.0.0'], 'short', /^KEEPALIVE_LAB_TOKEN: the token is too short/],
      [['--host', 'trainer.example'], '', /^--host must be an IP address/],
      [['--max-labs', '0'], '', /^--max-labs must be a whole number from 1 to 500; got 0$/],
      [['--max-labs', '501'], '', /^--max-labs must be a whole number from 1 to 500; got 501$/],
      [['--max-labs', 'many'], '', /^--max-labs must be a whole number/],
      [['--port', '0'], '', /^--port must be a whole number from 1 to 65535/],
    ];
    for (const [args, envToken, message] of cases) expect(parseStartArgs(args, { KEEPALIVE_LAB_TOKEN: envToken }), args.join(' ')).toMatch(message);
    // The token's origin, and loopback ignoring the variable.
    expect(parseStartArgs(['--host', '0.0.0.0', '--token', token], { KEEPALIVE_LAB_TOKEN: generateToken() })).toMatchObject({ token, tokenFrom: '--token' });
    expect(parseStartArgs(['--host', '0.0.0.0'], { KEEPALIVE_LAB_TOKEN: token })).toMatchObject({ token, tokenFrom: 'KEEPALIVE_LAB_TOKEN' });
    expect(parseStartArgs(['--host', '0.0.0.0'], {})).toMatchObject({ tokenFrom: null, token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    const plain = parseStartArgs([], { KEEPALIVE_LAB_TOKEN: token });
    expect(plain).toMatchObject({ host: '127.0.0.1', port: 4321 });
    expect((plain as { token?: string }).token).toBeUndefined();
    expect(parseStartArgs(['--max-labs', '50'], {})).toMatchObject({ maxLabs: 50 });
    // And npm start exits with 2, printing nothing on stdout.
    const main = new URL('../../src/server/main.ts', import.meta.url).pathname;
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [main, '--no-build', '--host', '0.0.0.0', '--token', 'short']);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });
    expect(r).toEqual({ status: 2, stdout: '', stderr: expect.stringMatching(/^start: --token: the token is too short/) });
  });

  it('says how many labs it allows at once (--max-labs)', async () => {
    const child = await startServerChild('main', ['--host', '0.0.0.0', '--max-labs', '3'], { ...process.env, KEEPALIVE_LAB_TOKEN: generateToken() });
    child.child.kill('SIGTERM');
    await child.exited;
    expect(child.output()).toMatch(/up to 3 labs at once/);
  });

  it('makes a new random token when none is given', async () => {
    const env = { ...process.env };
    delete env.KEEPALIVE_LAB_TOKEN;
    const tokens: string[] = [];
    for (let i = 0; i < 2; i++) {
      const child = await startServerChild('main', ['--host', '0.0.0.0'], env);
      child.child.kill('SIGTERM');
      await child.exited;
      const m = /http:\/\/127\.0\.0\.1:\d+\/\?token=([A-Za-z0-9_-]+)/.exec(child.output());
      expect(m).not.toBeNull();
      tokens.push(m![1]!);
    }
    expect(tokens[0]).not.toBe(tokens[1]);
    for (const t of tokens) expect(Buffer.from(t, 'base64url').length).toBeGreaterThanOrEqual(16);
  });
});
