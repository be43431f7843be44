/**
 * Who may use the server: which Host names it answers to, and, in trainer mode (listening
 * beyond loopback), the access token every request must carry.
 *
 * The lab starts processes on this machine. On loopback (the default) only programs on
 * this machine can reach it, and the Host check keeps out pages that re-point their own
 * name at 127.0.0.1 (DNS rebinding). Serving a room opens the port to the network, so
 * there every page, asset and WebSocket needs the token the server printed at start:
 *
 *   - the join URL carries it once in its query string (`/?token=…`); that visit stores it
 *     in an HttpOnly, SameSite=Strict cookie and sends the browser on to the same URL
 *     without the token, so it does not stay in the address bar, history or a screenshot;
 *   - later requests carry the cookie; anything else gets a 401 page that says how to join;
 *   - tokens are compared in constant time (on their SHA-256 digests, so even the length
 *     of the expected token does not show in the timing).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname, networkInterfaces } from 'node:os';

/**
 * 32 random bytes (256 bits), URL-safe, and never starting with '-': a trainer who passes it
 * back as `--token <token>` must not have it taken for an option (1 token in 64 would be).
 */
export function generateToken(): string {
  for (;;) {
    const token = randomBytes(32).toString('base64url');
    if (!token.startsWith('-')) return token;
  }
}

/**
 * A chosen token must be as hard to guess as a generated one could reasonably be asked to
 * be (22 base64url characters carry 128 bits; 32 hex digits too), and must travel in a URL
 * and a cookie without escaping.
 */
export function tokenProblem(token: string): string | null {
  if (!/^[A-Za-z0-9_-]+$/.test(token)) return 'the token may only contain letters, digits, - and _';
  if (token.length < 22) return `the token is too short to be safe (${token.length} characters; at least 22, e.g. from 'openssl rand -hex 16')`;
  if (token.length > 256) return 'the token is too long (at most 256 characters)';
  return null;
}

const LOOPBACK_BINDS = new Set(['127.0.0.1', 'localhost', '::1']);

export function isLoopbackBind(host: string): boolean {
  return LOOPBACK_BINDS.has(host.toLowerCase());
}

/** `host` as it appears in a URL or a Host header: IPv6 addresses in brackets. */
function urlHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

interface InterfaceAddress {
  address: string;
  family: 'IPv4' | 'IPv6';
  internal: boolean;
  /** IPv6 link-local (fe80::/10): needs a zone id that browsers do not take in URLs. */
  linkLocal: boolean;
}

function interfaceAddresses(): InterfaceAddress[] {
  const found: InterfaceAddress[] = [];
  let interfaces: ReturnType<typeof networkInterfaces>;
  try {
    interfaces = networkInterfaces();
  } catch {
    // Some sandboxes refuse the call (uv_interface_addresses); the loopback names still hold.
    return found;
  }
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) {
      found.push({ address: a.address.toLowerCase(), family: a.family, internal: a.internal, linkLocal: a.family === 'IPv6' && /^fe[89ab]/i.test(a.address) });
    }
  }
  return found;
}

/**
 * The Host header values the server answers to.
 *
 * On loopback: 127.0.0.1, localhost and [::1], with our port.
 *
 * In trainer mode, bound to 0.0.0.0 (or ::), a trainee's browser sends whatever name led
 * it here. We accept exactly the names that lead to this machine: every address of every
 * interface (re-read every few seconds, as DHCP may change them), the machine's host name
 * (also with mDNS's `.local`), the loopback names, and names the trainer adds with
 * `--allow-host` (a DNS name of the machine, say). Any other name is refused, even with a
 * valid token. The token is what keeps a DNS-rebinding page out (it cannot know it, and
 * the cookie belongs to the name the trainee used, not the attacker's); refusing unknown
 * names as well costs a trainee on the printed URL nothing, and means a token that leaked
 * into some page's hands still cannot be used from a browser under that page's name.
 */
export class ServedHosts {
  readonly port: number;
  readonly trainer: boolean;
  readonly #extra: Set<string>;
  #names = new Set<string>();
  #readAt = 0;

  constructor(port: number, options: { trainer: boolean; extraNames?: string[] }) {
    this.port = port;
    this.trainer = options.trainer;
    this.#extra = new Set((options.extraNames ?? []).map((n) => n.toLowerCase()));
  }

  #current(): Set<string> {
    if (this.trainer && Date.now() - this.#readAt < 5000) return this.#names;
    const names = new Set(['127.0.0.1', 'localhost', '[::1]']);
    if (this.trainer) {
      for (const a of interfaceAddresses()) names.add(urlHost(a.address));
      const name = hostname().toLowerCase();
      if (name) {
        const short = name.split('.')[0]!;
        for (const n of [name, short, `${short}.local`]) names.add(n);
      }
      for (const n of this.#extra) names.add(n);
    }
    this.#names = names;
    this.#readAt = Date.now();
    return names;
  }

  /** Is `host` (a Host header, or the host:port of an Origin) one we serve? */
  allows(host: string | undefined): boolean {
    if (!host) return false;
    const m = /^(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$/i.exec(host.toLowerCase());
    if (!m) return false;
    // Browsers leave out the port only when it is the scheme's default.
    const port = m[2] === undefined ? 80 : Number(m[2]);
    if (port !== this.port) return false;
    return this.#current().has(m[1]!);
  }

  /** Join URLs for other machines: one per non-loopback address the server listens on. */
  joinUrls(bind: string, token: string): string[] {
    const bindAll = bind === '0.0.0.0' || bind === '::';
    const urls: string[] = [];
    for (const a of interfaceAddresses()) {
      if (a.internal || a.linkLocal) continue;
      // 0.0.0.0 takes IPv4 only; :: takes both (dual stack); an address, itself alone.
      const listens = bindAll ? bind === '::' || a.family === 'IPv4' : a.address === bind.toLowerCase();
      if (listens) urls.push(`http://${urlHost(a.address)}:${this.port}/?token=${token}`);
    }
    return urls;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Escapes text for HTML (the pages below only ever contain our own text). */
function html(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** Trainer mode's token: checks requests, turns a join link into a cookie. */
export class AccessToken {
  readonly cookieName: string;
  readonly #token: string;
  readonly #digest: Buffer;

  constructor(token: string, port: number) {
    const problem = tokenProblem(token);
    if (problem) throw new Error(problem);
    this.#token = token;
    this.#digest = digest(token);
    // Cookies ignore ports: two servers on one machine must not overwrite each other's.
    this.cookieName = `keepalive_lab_token_${port}`;
  }

  /** Constant-time: the time taken does not depend on how much of `candidate` is right. */
  matches(candidate: string | null | undefined): boolean {
    if (typeof candidate !== 'string' || candidate.length > 1024) return false;
    return timingSafeEqual(digest(candidate), this.#digest);
  }

  #cookieValues(req: IncomingMessage): string[] {
    const values: string[] = [];
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq !== -1 && part.slice(0, eq).trim() === this.cookieName) values.push(part.slice(eq + 1).trim());
    }
    return values;
  }

  /** The request carries the token in our cookie. */
  hasCookie(req: IncomingMessage): boolean {
    // Evaluate every value (a browser may send two cookies of one name), without stopping early.
    return this.#cookieValues(req).reduce((ok, v) => this.matches(v) || ok, false);
  }

  /**
   * For the WebSocket: the cookie, or `?token=` on its URL (for programs that are not
   * browsers: a load script, a test).
   */
  allowsUpgrade(req: IncomingMessage): boolean {
    return this.hasCookie(req) || this.matches(queryToken(req.url));
  }

  /**
   * Gates a page or asset request. Returns true when it may be served; otherwise it has
   * answered the request itself (a 401 page, or the step from join link to cookie).
   */
  gate(req: IncomingMessage, res: ServerResponse): boolean {
    const url = requestTarget(req.url);
    if (url === null) {
      res.writeHead(400, { ...PAGE_HEADERS, 'content-type': 'text/plain; charset=utf-8' }).end('Bad Request: the request target must be a path\n');
      return false;
    }
    const offered = url.searchParams.get('token');
    if (offered === null) {
      if (this.hasCookie(req)) return true;
      unauthorized(res, false);
      return false;
    }
    if (!this.matches(offered)) {
      unauthorized(res, true);
      return false;
    }
    url.searchParams.delete('token');
    // Only a path on this server: "//evil.example" or "/\evil.example" would leave it.
    const target = '/' + url.pathname.replace(/^[/\\]+/, '') + url.search;
    // Not a 303: a join link is usually clicked in a chat or a mail, another site, and a
    // browser does not send SameSite=Strict cookies on a redirect that another site set
    // off, so the redirected request would arrive without the cookie just set. A page of
    // our own that moves on by itself makes a same-site request, which carries it.
    res.writeHead(200, {
      ...PAGE_HEADERS,
      'set-cookie': `${this.cookieName}=${this.#token}; Path=/; HttpOnly; SameSite=Strict`,
    });
    const t = html(target);
    const js = JSON.stringify(target).replace(/</g, '\\u003c');
    res.end(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${t}">` +
        `<title>Joining Keepalive Lab</title></head><body><p>Joining… <a href="${t}">continue</a></p>` +
        `<script>location.replace(${js})</script></body></html>`,
    );
    return false;
  }
}

/**
 * A request's target as a URL, if it is a path (origin-form, `/…`); null otherwise (an
 * absolute URL, `*`, or something no URL parser takes). Never throws: a request line such
 * as `GET //[ HTTP/1.1` or `GET http://a:b/ HTTP/1.1` must not end the server. The path is
 * read as a path, `//evil.example/x` included (pathname `//evil.example/x`, not a host).
 */
export function requestTarget(url: string | undefined): URL | null {
  if (url === undefined || !url.startsWith('/')) return null;
  try {
    return new URL(`http://placeholder${url}`);
  } catch {
    return null;
  }
}

/** The `token` query parameter of a request URL, if any. */
export function queryToken(url: string | undefined): string | null {
  return requestTarget(url)?.searchParams.get('token') ?? null;
}

export const UNAUTHORIZED_TITLE = 'This Keepalive Lab needs its join link';

function unauthorized(res: ServerResponse, wrongToken: boolean): void {
  res.writeHead(401, PAGE_HEADERS);
  const why = wrongToken
    ? 'The link you opened carries a token this server does not know: it may be from an earlier session (the server makes a new token each time it starts).'
    : 'This browser has not joined yet, or it joined an earlier session of the server.';
  // A browser that joined but followed a link from another site withheld the SameSite=Strict
  // cookie; a same-origin request from this page carries it, and then one reload is enough.
  res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${html(UNAUTHORIZED_TITLE)}</title>
<style>body{font:1.05rem/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}code{background:#eee;padding:0 .25em}</style>
</head><body>
<h1>${html(UNAUTHORIZED_TITLE)}</h1>
<p>${html(why)}</p>
<p>A trainer is running this course for a room. It runs real programs on the trainer's machine, so only people with the join link may use it.</p>
<ol>
<li>Ask your trainer for the join link. It was printed when the course server started and looks like <code>http://10.0.0.5:4321/?token=…</code>.</li>
<li>Open it once in this browser. The browser then remembers it until it is closed or the server restarts; the token leaves the address bar.</li>
</ol>
<p>Running the course on your own machine instead? <code>npm start</code> serves it at <code>http://127.0.0.1:4321/</code> with no token.</p>
<script>
fetch(location.href, { method: 'HEAD', credentials: 'same-origin', cache: 'no-store' }).then((r) => { if (r.ok) location.reload(); }, () => {});
</script>
</body></html>
`);
}
