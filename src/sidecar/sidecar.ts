/**
 * The sidecar's front door: which requests may reach the lab at all.
 *
 * The sidecar starts processes on this machine, so:
 *   - it listens on loopback unless a trainer asks otherwise (see src/server/main.ts);
 *   - every request must name a Host we serve: a page on evil.example whose name was
 *     re-pointed at 127.0.0.1 (DNS rebinding) sends Host: evil.example and is refused;
 *   - a WebSocket upgrade must come from one of our own origins: a page of another origin
 *     open in the same browser cannot drive the lab (browsers always send Origin on
 *     WebSocket requests). Clients that send no Origin at all are not browsers, and could
 *     run processes on this machine anyway.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { sweepOrphans } from '../lab/lab.ts';
import { MAX_MESSAGE_BYTES } from './protocol.ts';
import { DEFAULT_LIMITS, LabSession, LabSlots, type SidecarLimits } from './session.ts';

export const LAB_PATH = '/api/lab';

export interface SidecarOptions {
  /** host:port values we answer to, e.g. ['127.0.0.1:4321', 'localhost:4321']. */
  allowedHosts: string[];
  limits?: Partial<SidecarLimits>;
}

export function loopbackHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
}

export class Sidecar {
  readonly slots: LabSlots;
  readonly #wss: WebSocketServer;
  readonly #allowedHosts: Set<string>;
  readonly #sessions = new Set<LabSession>();

  constructor(options: SidecarOptions) {
    this.#allowedHosts = new Set(options.allowedHosts.map((h) => h.toLowerCase()));
    this.slots = new LabSlots({ ...DEFAULT_LIMITS, ...options.limits });
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
    // Whatever labs a killed earlier server left behind, remove now.
    sweepOrphans();
  }

  /** Is this request's Host one we serve? (Call for every HTTP request too.) */
  hostAllowed(req: IncomingMessage): boolean {
    const host = (req.headers.host ?? '').toLowerCase();
    return this.#allowedHosts.has(host);
  }

  /** Is this WebSocket's Origin our own? */
  originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    try {
      const u = new URL(origin);
      return (u.protocol === 'http:' || u.protocol === 'https:') && this.#allowedHosts.has(u.host.toLowerCase());
    } catch {
      return false;
    }
  }

  /** Handles an HTTP upgrade. Returns false if the path is not ours (let others handle it). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = (req.url ?? '').split('?')[0];
    if (path !== LAB_PATH) return false;
    const refuse = (status: number, reason: string) => {
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(reason)}\r\n\r\n${reason}`);
    };
    if (!this.hostAllowed(req)) {
      refuse(403, 'Forbidden: unknown Host');
      return true;
    }
    if (!this.originAllowed(req)) {
      refuse(403, 'Forbidden: cross-origin WebSocket');
      return true;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const session = new LabSession(ws, this.slots);
      this.#sessions.add(session);
      ws.on('close', () => this.#sessions.delete(session));
    });
    return true;
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  /** Stops every lab and closes every connection. */
  async close(): Promise<void> {
    const sessions = [...this.#sessions];
    for (const client of this.#wss.clients) client.close(1001, 'server shutting down');
    await Promise.all(sessions.map((s) => s.stop('server shutting down')));
    this.#wss.close();
  }
}
