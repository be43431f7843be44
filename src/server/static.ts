/** Serves the built site from dist/: files only, no listing, no escaping the folder. */
import { createReadStream, realpathSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml',
  '.wasm': 'application/wasm',
  '.pf_fragment': 'application/octet-stream',
  '.pf_index': 'application/octet-stream',
  '.pf_meta': 'application/octet-stream',
  '.pagefind': 'application/octet-stream',
};

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'SAMEORIGIN',
};

/** Is `path` `root` itself or inside it? (Both absolute and normalized.) */
function within(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * The file a URL path names under `root`: its real path (symbolic links resolved) and that
 * path relative to the real root; or null. Nothing outside `root` is ever named: not by
 * `..` (plain or %-encoded), not by a symbolic link inside `root` that points out of it.
 */
export function fileAt(root: string, urlPath: string): { file: string; relative: string } | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch {
    return null; // no site built (or it is being rebuilt)
  }
  const base = resolve(root);
  const full = resolve(base, '.' + (decoded.startsWith('/') ? decoded : '/' + decoded));
  if (!within(base, full)) return null;
  // `/course` may be course.html or course/index.html; `/course/` and the root itself (which
  // has no name of its own inside itself), only index.html.
  const candidates = full === base || decoded.endsWith('/') ? [join(full, 'index.html')] : [full, join(full, 'index.html'), full + '.html'];
  for (const candidate of candidates) {
    try {
      if (!statSync(candidate).isFile()) continue;
      const real = realpathSync(candidate);
      if (within(realRoot, real)) return { file: real, relative: relative(realRoot, real) };
    } catch {
      /* next */
    }
  }
  return null;
}

/** Streams `file`, headers first once it is open; if it cannot be read, `fallback` answers. */
function sendFile(res: ServerResponse, file: string, status: number, headers: Record<string, string>, fallback: () => void): void {
  const stream = createReadStream(file);
  let opened = false;
  stream.on('error', () => {
    if (!opened) fallback();
  });
  // A page that goes away before the file opens must not leave it open.
  res.once('close', () => stream.destroy());
  stream.once('open', () => {
    opened = true;
    if (res.destroyed) return stream.destroy();
    res.writeHead(status, headers);
    // Either side failing ends both (a file that vanishes mid-way: the page gets a cut response).
    pipeline(stream, res, () => {});
  });
}

export function serveStatic(root: string, req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', ...SECURITY_HEADERS }).end();
    return;
  }
  const path = (req.url ?? '/').split('?')[0]!;
  const found = fileAt(root, path);
  const notFound = () => {
    if (res.headersSent || res.destroyed) return;
    const page = req.method === 'GET' ? fileAt(root, '/404.html') : null;
    const headers = { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache', ...SECURITY_HEADERS };
    // The 404 page may vanish during a rebuild: then plain words.
    const plain = () => {
      if (!res.headersSent && !res.destroyed) res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n');
    };
    if (page) sendFile(res, page.file, 404, headers, plain);
    else plain();
  };
  if (!found) return notFound();
  const type = TYPES[extname(found.file)] ?? 'application/octet-stream';
  // Decided on the file served, not on the path asked for (`/_astro/../index.html` is the
  // start page, which must not be cached for a year).
  const immutable = found.relative.split(sep)[0] === '_astro';
  const headers = {
    'content-type': type,
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    ...SECURITY_HEADERS,
  };
  if (req.method === 'HEAD') {
    res.writeHead(200, headers).end();
    return;
  }
  // Gone between the look-up and the read (a rebuild): not found after all.
  sendFile(res, found.file, 200, headers, notFound);
}
