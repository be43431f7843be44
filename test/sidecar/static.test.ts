/**
 * The static file server (src/server/static.ts) over real HTTP: nothing outside its root
 * is served, whatever the path's encoding or a symbolic link inside the root says; caching
 * is decided on the file served, not the path asked for; and a file that vanishes between
 * its look-up and its read (a rebuild), the 404 page included, is answered, not a crash.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { serveStatic } from '../../src/server/static.ts';
import { startTestServer } from '../helpers/server.ts';
import { ensureBuilt } from '../helpers/site.ts';

// Files whose read fails as if they vanished after they were looked up (a rebuild).
const vanishing = vi.hoisted(() => new Set<string>());
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const createReadStream = ((path: string, ...rest: unknown[]) =>
    (fs.createReadStream as (...a: unknown[]) => unknown)(vanishing.has(basename(String(path))) ? `${String(path)}.vanished-during-a-rebuild` : path, ...rest)) as typeof fs.createReadStream;
  return { ...fs, createReadStream, default: { ...fs, createReadStream } };
});

interface Reply {
  status: number;
  headers: string;
  body: string;
}

function dechunk(text: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = text.indexOf('\r\n', at);
    if (eol === -1) return out;
    const size = parseInt(text.slice(at, eol), 16);
    if (!size) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** One request, written as is (no client normalises the path), over a new connection. */
function raw(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => s.write(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`));
    let data = '';
    s.on('data', (d) => (data += d.toString()));
    s.on('error', reject);
    const timer = setTimeout(() => reject(new Error(`no complete answer to ${method} ${path} within 5 s; got ${JSON.stringify(data.slice(0, 200))}`)), 5000);
    s.on('close', () => {
      clearTimeout(timer);
      const [head = '', ...rest] = data.split('\r\n\r\n');
      let body = rest.join('\r\n\r\n');
      if (/transfer-encoding: chunked/i.test(head)) body = dechunk(body);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), headers: head.toLowerCase(), body });
    });
  });
}

let tmp: string;
let site: string;
let bare: string;
let server: Server;
let port: number;
let bareServer: Server;
let barePort: number;

async function serve(root: string): Promise<[Server, number]> {
  const s = createServer((req, res) => serveStatic(root, req, res));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return [s, (s.address() as AddressInfo).port];
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'keepalive-lab-static-'));
  // tmp/secret.txt, tmp/outside/secret.txt, tmp/site.html: what must never be served.
  writeFileSync(join(tmp, 'secret.txt'), 'SECRET-OUTSIDE');
  mkdirSync(join(tmp, 'outside'));
  writeFileSync(join(tmp, 'outside', 'secret.txt'), 'SECRET-OUTSIDE-DIR');
  writeFileSync(join(tmp, 'site.html'), 'SECRET-SIBLING');
  writeFileSync(join(tmp, 'bare.html'), 'SECRET-SIBLING');
  // The site, reached through a symbolic link to it (as a deploy might).
  const real = join(tmp, 'site-real');
  mkdirSync(join(real, 'course'), { recursive: true });
  mkdirSync(join(real, '_astro'));
  writeFileSync(join(real, 'index.html'), 'HOME');
  writeFileSync(join(real, '404.html'), 'NOT-FOUND-PAGE');
  writeFileSync(join(real, 'about.html'), 'ABOUT');
  writeFileSync(join(real, 'course', 'index.html'), 'COURSE');
  writeFileSync(join(real, '_astro', 'app.js'), 'APP');
  symlinkSync(join(tmp, 'secret.txt'), join(real, 'link-out.txt'));
  symlinkSync(join(tmp, 'outside'), join(real, 'dir-out'));
  symlinkSync('../site.html', join(real, 'course', 'sibling.html'));
  symlinkSync('index.html', join(real, 'link-in.html'));
  site = join(tmp, 'site');
  symlinkSync(real, site);
  // A root without index.html, next to tmp/bare.html.
  bare = join(tmp, 'bare');
  mkdirSync(bare);
  writeFileSync(join(bare, 'page.html'), 'PAGE');
  [server, port] = await serve(site);
  [bareServer, barePort] = await serve(bare);
});
afterAll(async () => {
  for (const s of [server, bareServer]) if (s) await new Promise<void>((r) => s.close(() => r()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the static server', () => {
  it('serves the site: pages, directories, extensionless names, a symbolic link within it', async () => {
    for (const [path, body] of [
      ['/', 'HOME'],
      ['/index.html', 'HOME'],
      ['/about', 'ABOUT'],
      ['/about.html', 'ABOUT'],
      ['/course/', 'COURSE'],
      ['/course', 'COURSE'],
      ['/course/./', 'COURSE'],
      ['/course/..', 'HOME'],
      ['/link-in.html', 'HOME'],
      ['/%61bout', 'ABOUT'],
    ]) {
      const r = await raw(port, path!);
      expect([r.status, r.body], path).toEqual([200, body]);
    }
  });

  it('never serves outside its root: .. plain, %-encoded, doubly encoded, with backslashes or NUL', async () => {
    const paths = [
      '/../secret.txt',
      '/course/../../secret.txt',
      '/%2e%2e/secret.txt',
      '/%2E%2E/secret.txt',
      '/.%2e/secret.txt',
      '/..%2fsecret.txt',
      '/%2e%2e%2fsecret.txt',
      '/course%2f..%2f..%2fsecret.txt',
      '/..%5csecret.txt',
      '/..\\secret.txt',
      '/%252e%252e/secret.txt',
      '/../outside/secret.txt',
      '/%2e%2e/site.html',
      '/..',
      '/%2e%2e',
      '/../site.html',
      '/../site-real/../secret.txt',
      '//../secret.txt',
      '/secret.txt%00.html',
      '/%00',
      '/%zz',
      '/%',
    ];
    for (const path of paths) {
      const r = await raw(port, path);
      expect(r.status, path).toBe(404);
      expect(r.body, path).not.toMatch(/SECRET/);
    }
  });

  it('does not follow a symbolic link inside the root that points out of it', async () => {
    for (const path of ['/link-out.txt', '/dir-out/secret.txt', '/dir-out/', '/course/sibling.html', '/course/sibling']) {
      const r = await raw(port, path);
      expect(r.status, path).toBe(404);
      expect(r.body, path).not.toMatch(/SECRET/);
    }
  });

  it('serves nothing beside the root for the root itself (no "<root>.html")', async () => {
    expect((await raw(barePort, '/page')).body).toBe('PAGE');
    for (const path of ['/', '/.', '/page/..', '/%2e']) {
      const r = await raw(barePort, path);
      expect(r.status, path).toBe(404);
      expect(r.body, path).not.toMatch(/SECRET/);
    }
  });

  it('caches for a year only what is under /_astro/, decided on the file served', async () => {
    const year = 'cache-control: public, max-age=31536000, immutable';
    expect((await raw(port, '/_astro/app.js')).headers).toContain(year);
    expect((await raw(port, '/course/../_astro/app.js')).headers).toContain(year);
    for (const path of ['/_astro/../index.html', '/_astro/%2e%2e/index.html', '/_astro/..%2findex.html', '/_astro/../about']) {
      const r = await raw(port, path);
      expect([r.status, r.body], path).toEqual([200, path.endsWith('about') ? 'ABOUT' : 'HOME']);
      expect(r.headers, path).not.toContain('immutable');
      expect(r.headers, path).toContain('cache-control: no-cache');
    }
  });

  it('a 404 page that vanishes during a rebuild: plain "Not found", and the server goes on', async () => {
    expect((await raw(port, '/nothing-here')).body).toBe('NOT-FOUND-PAGE');
    vanishing.add('404.html');
    try {
      for (let i = 0; i < 3; i++) {
        const r = await raw(port, '/nothing-here');
        expect(r.status).toBe(404);
        expect(r.body).toBe('Not found\n');
      }
    } finally {
      vanishing.delete('404.html');
    }
    expect((await raw(port, '/')).body).toBe('HOME');
  });

  it('a page that vanishes between its look-up and its read: 404, and the server goes on', async () => {
    vanishing.add('about.html');
    try {
      const r = await raw(port, '/about');
      expect(r.status).toBe(404);
      expect(r.body).toBe('NOT-FOUND-PAGE');
      vanishing.add('404.html');
      expect((await raw(port, '/about')).body).toBe('Not found\n');
    } finally {
      vanishing.clear();
    }
    expect((await raw(port, '/about')).body).toBe('ABOUT');
  });

  it('with no site at all (dist/ missing mid-rebuild): 404, no crash', async () => {
    const [s, p] = await serve(join(tmp, 'no-such-root'));
    try {
      expect((await raw(p, '/')).status).toBe(404);
      expect((await raw(p, '/', 'HEAD')).status).toBe(404);
    } finally {
      await new Promise<void>((r) => s.close(() => r()));
    }
  });
});

describe('npm start’s static files (dist/)', () => {
  const dist = fileURLToPath(new URL('../../dist/', import.meta.url));
  let srv: Awaited<ReturnType<typeof startTestServer>>;
  beforeAll(async () => {
    await ensureBuilt();
    srv = await startTestServer();
  });
  afterAll(async () => {
    await srv?.close();
  });

  it('the start page reached through /_astro/.. is not cached for a year; encoded traversal finds nothing', async () => {
    const asset = readdirSync(join(dist, '_astro')).find((f) => f.endsWith('.js'));
    expect(asset, 'dist/_astro has no script: is the site built?').toBeDefined();
    expect((await raw(srv.port, `/_astro/${asset}`)).headers).toContain('immutable');
    const r = await raw(srv.port, '/_astro/../index.html');
    expect(r.status).toBe(200);
    expect(r.headers).not.toContain('immutable');
    for (const path of ['/%2e%2e/package.json', '/..%2fpackage.json', '/../package.json', '/%2e%2e/src/server/main.ts']) {
      const x = await raw(srv.port, path);
      expect(x.status, path).toBe(404);
      expect(x.body, path).not.toMatch(/"name": "keepalive-lab"|startServer/);
    }
  });
});
