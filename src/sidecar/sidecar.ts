/**
 * The sidecar's front door: which requests may reach the lab at all.
 *
 * The sidecar starts processes on this machine, so:
 *   - it listens on loopback unless a trainer asks otherwise (see src/server/main.ts), and
 *     then every request must carry the trainer's access token (src/server/access.ts);
 *   - every request must name a Host we serve: a page on evil.example whose name was
 *     re-pointed at our address (DNS rebinding) sends Host: evil.example and is refused;
 *   - a WebSocket upgrade must come from the page's own origin (the Origin header names the
 *     Host the request went to): a page of another origin open in the same browser cannot
 *     drive the lab (browsers always send Origin on WebSocket requests). Clients that send
 *     no Origin at all are not browsers; on loopback they could run processes on this
 *     machine anyway, and in trainer mode they still need the token;
 *   - where the sidecar is meant for this machine only (npm start without --host, npm run
 *     dev), a peer that is not on loopback is refused whatever its headers say, in case the
 *     server was bound more widely than meant (`astro dev --host`);
 *   - connections are capped (`connectionCap`): labs are capped by --max-labs, and idle
 *     connections, each with its session and timers, must not pile up without end either.
 *
 * Each connection is one `LabSession` with at most one lab. A session holds no name or id
 * that another connection could address: what a connection sees and acts on is its own lab.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { sweepOrphans } from '../lab/lab.ts';
import { scenarios as builtInScenarios } from '../scenarios/index.ts';
import type { Scenario } from '../scenarios/types.ts';
import { MAX_MESSAGE_BYTES } from './protocol.ts';
import { DEFAULT_LIMITS, LabSession, LabSlots, type SidecarLimits } from './session.ts';
import { guardSocket, isLoopbackAddress, refuseSocket } from './sockets.ts';

export const LAB_PATH = '/api/lab';

export interface SidecarOptions {
  /** Host header values we answer to (e.g. ['127.0.0.1:4321', 'localhost:4321']), or a test for them. */
  allowedHosts: string[] | ((host: string) => boolean);
  /** Trainer mode: does this upgrade request carry the access token? Unset on loopback. */
  authorized?: (req: IncomingMessage) => boolean;
  limits?: Partial<SidecarLimits>;
  /** The scenarios pages may run (default: the course's own). */
  scenarios?: readonly Scenario[];
  /**
   * Ping period, ms. A page whose connection died without a close (a laptop lid shut, Wi-Fi
   * gone: this course's very subject) misses its pong and is dropped by the next ping, so
   * its lab and its slot are freed within two periods instead of at the lab's time limit.
   */
  heartbeatMs?: number;
  /** Refuse WebSocket peers that are not on this machine's loopback (npm start without --host, npm run dev). */
  loopbackPeersOnly?: boolean;
  /** Lab connections open at once; default `connectionCap(maxLabs)`. */
  maxConnections?: number;
}

/**
 * How many lab connections (open pages, each holding a session) the sidecar takes at once:
 * four a lab slot, at least 32. A room's trainees each have a tab or two open while only
 * some run a lab; past this, an upgrade is answered 503 and the page plays its recording.
 */
export function connectionCap(maxLabs: number): number {
  return Math.max(32, 4 * maxLabs);
}

export function loopbackHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
}

export class Sidecar {
  readonly slots: LabSlots;
  readonly scenarios: readonly Scenario[];
  readonly #wss: WebSocketServer;
  readonly #hostAllowed: (host: string) => boolean;
  readonly #authorized: (req: IncomingMessage) => boolean;
  readonly #sessions = new Set<LabSession>();
  readonly #alive = new WeakSet<WebSocket>();
  readonly #heartbeat: NodeJS.Timeout;
  readonly #loopbackPeersOnly: boolean;
  /** Lab connections open at once, from accepted upgrade to closed socket. */
  #connections = 0;
  readonly maxConnections: number;

  constructor(options: SidecarOptions) {
    const hosts = options.allowedHosts;
    if (typeof hosts === 'function') this.#hostAllowed = hosts;
    else {
      const set = new Set(hosts.map((h) => h.toLowerCase()));
      this.#hostAllowed = (host) => set.has(host.toLowerCase());
    }
    this.#authorized = options.authorized ?? (() => true);
    this.slots = new LabSlots({ ...DEFAULT_LIMITS, ...options.limits });
    this.scenarios = options.scenarios ?? builtInScenarios;
    this.#loopbackPeersOnly = options.loopbackPeersOnly ?? false;
    this.maxConnections = options.maxConnections ?? connectionCap(this.slots.limits.maxLabs);
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
    this.#heartbeat = setInterval(() => this.#ping(), options.heartbeatMs ?? 15_000);
    this.#heartbeat.unref();
    // Whatever labs a killed earlier server left behind, remove now.
    sweepOrphans();
  }

  #ping(): void {
    for (const ws of this.#wss.clients) {
      if (!this.#alive.has(ws)) {
        ws.terminate();
        continue;
      }
      this.#alive.delete(ws);
      ws.ping();
    }
  }

  /** Is this request's Host one we serve? (Call for every HTTP request too.) */
  hostAllowed(req: IncomingMessage): boolean {
    const host = req.headers.host;
    return host !== undefined && this.#hostAllowed(host);
  }

  /** Is this WebSocket's Origin the page's own (the host this request was sent to)? */
  originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    try {
      const u = new URL(origin);
      const host = (req.headers.host ?? '').toLowerCase();
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.host.toLowerCase() === new URL(`${u.protocol}//${host}`).host && this.#hostAllowed(host);
    } catch {
      return false;
    }
  }

  /** Handles an HTTP upgrade. Returns false if the path is not ours (let others handle it). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = (req.url ?? '').split('?')[0];
    if (path !== LAB_PATH) return false;
    guardSocket(socket);
    const refuse = (status: number, reason: string, headers?: Record<string, string>) => refuseSocket(socket, status, reason, headers);
    if (this.#loopbackPeersOnly && !isLoopbackAddress(req.socket.remoteAddress)) {
      refuse(403, 'Forbidden: this lab serves this machine only');
      return true;
    }
    if (!this.hostAllowed(req)) {
      refuse(403, 'Forbidden: unknown Host');
      return true;
    }
    if (!this.#authorized(req)) {
      refuse(401, 'Unauthorized: open the join link (with its token) in this browser first');
      return true;
    }
    if (!this.originAllowed(req)) {
      refuse(403, 'Forbidden: cross-origin WebSocket');
      return true;
    }
    if (this.#connections >= this.maxConnections) {
      refuse(503, `Service Unavailable: ${this.#connections} lab connections are open, the most this server takes (${this.maxConnections}); close a tab or try again in a moment`, { 'Retry-After': '5' });
      return true;
    }
    if (socket.destroyed) return true; // the peer is gone already
    // Counted from here until the socket closes, whether the handshake succeeds or not.
    this.#connections++;
    socket.once('close', () => this.#connections--);
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#alive.add(ws);
      ws.on('pong', () => this.#alive.add(ws));
      const session = new LabSession(ws, this.slots, this.scenarios);
      this.#sessions.add(session);
      ws.on('close', () => this.#sessions.delete(session));
    });
    return true;
  }

  /** Lab connections open now (including those still in their handshake). */
  get connections(): number {
    return this.#connections;
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  /** Stops every lab and closes every connection. */
  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    const sessions = [...this.#sessions];
    for (const client of this.#wss.clients) client.close(1001, 'server shutting down');
    await Promise.all(sessions.map((s) => s.stop('server shutting down')));
    this.#wss.close();
  }
}
