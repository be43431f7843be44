/** Starts the course server in-process on a free loopback port, for tests. */
import { createServer } from 'node:net';
import WebSocket from 'ws';
import { startServer } from '../../src/server/main.ts';
import type { ServerMessage } from '../../src/sidecar/protocol.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export async function startTestServer(options: { maxLabs?: number } = {}) {
  const port = await freePort();
  const started = await startServer({ port, host: '127.0.0.1', ...options });
  return { port, ...started };
}

/** A WebSocket client that collects every server message and can wait for one. */
export class TestClient {
  readonly ws: WebSocket;
  readonly messages: ServerMessage[] = [];
  #waiters: Array<{ test: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }> = [];
  readonly opened: Promise<void>;

  constructor(port: number, headers: Record<string, string> = { origin: `http://127.0.0.1:${port}` }) {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/api/lab`, { headers });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as ServerMessage;
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.test(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  send(m: unknown): void {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }

  next<T extends ServerMessage['type']>(type: T, test: (m: Extract<ServerMessage, { type: T }>) => boolean = () => true, timeoutMs = 30_000): Promise<Extract<ServerMessage, { type: T }>> {
    const already = this.messages.find((m) => m.type === type && test(m as Extract<ServerMessage, { type: T }>));
    if (already) return Promise.resolve(already as Extract<ServerMessage, { type: T }>);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no '${type}' message within ${timeoutMs} ms; got ${this.messages.map((m) => m.type).join(', ')}`)), timeoutMs);
      this.#waiters.push({
        test: (m) => m.type === type && test(m as Extract<ServerMessage, { type: T }>),
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Extract<ServerMessage, { type: T }>);
        },
      });
    });
  }

  close(): void {
    this.ws.close();
  }
}
