/**
 * Raw sockets outside Node's HTTP machinery: an upgrade request's socket (before or instead
 * of a WebSocket), a socket whose request could not be parsed. Node gives such a socket to
 * us with no 'error' listener; a peer that then resets the connection (ECONNRESET) would
 * raise an error nobody handles, and that ends the process, every trainee's lab with it.
 * So every handler that is given a raw socket guards it first, and a refusal is written,
 * then the socket destroyed (the HTTP server allows half-open sockets: one that was only
 * ended would wait for the peer's FIN for ever).
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

const guarded = new WeakSet<Duplex>();

/** Gives `socket` an 'error' listener (once) that destroys it: a reset peer cannot crash us. */
export function guardSocket(socket: Duplex): void {
  if (guarded.has(socket)) return;
  guarded.add(socket);
  socket.on('error', () => socket.destroy());
}

/** How long a refusal may take to leave before its socket is destroyed all the same. */
const REFUSAL_FLUSH_MS = 2000;

/** Answers on a raw socket with `status` and `body` (plain text), then destroys it. */
export function refuseSocket(socket: Duplex, status: number, body: string, headers: Record<string, string> = {}): void {
  guardSocket(socket);
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const text = body.endsWith('\n') ? body : body + '\n';
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const timer = setTimeout(() => socket.destroy(), REFUSAL_FLUSH_MS);
  timer.unref();
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${extra}\r\n${text}`,
    () => {
      clearTimeout(timer);
      socket.destroy();
    },
  );
}

/**
 * Is `address` (a socket's remoteAddress) this machine's loopback: 127.0.0.0/8, ::1, or an
 * IPv4 loopback address mapped into IPv6 (a dual-stack socket)?
 */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.toLowerCase();
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  const v4 = /^(?:::ffff:|0:0:0:0:0:ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  return v4 !== null && v4[1] === '127' && v4.slice(2).every((o) => Number(o) <= 255);
}
