/**
 * The page's side of the sidecar protocol (src/sidecar/protocol.ts), shared by <Lab> and
 * <Compare>: open a WebSocket to /api/lab on the page's own origin, wait for the sidecar's
 * `hello` (or decide there is no lab server), then pass on every message. One connection
 * runs at most one lab at a time; closing it stops and tears down that lab.
 *
 * Also the recordings (public/recordings/<scenario>.json) for where no lab can run.
 */
import type { ClientMessage } from '../../sidecar/protocol.ts';
import type { HelloMessage, Recording, ServerMessage } from './types.ts';

/** How long to wait for the sidecar's hello before deciding there is none. */
export const HELLO_TIMEOUT_MS = 5000;

export interface ConnectionHandlers {
  /** Every message after the hello. */
  message(msg: ServerMessage): void;
  /** The connection closed after the hello. */
  close(ev: CloseEvent): void;
  /** The sidecar sent something that is not JSON. */
  invalid?(): void;
}

export type ConnectOutcome = { ok: true; hello: HelloMessage; connection: LabConnection } | { ok: false; reason: string };

export class LabConnection {
  readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    this.ws = ws;
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** False (and nothing sent) when the socket is not open. */
  send(msg: ClientMessage): boolean {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close(reason = 'done'): void {
    this.ws.close(1000, reason);
  }
}

/** Opens a connection and resolves once the sidecar said hello, or it is clear none will. */
export function connectLab(handlers: ConnectionHandlers, timeoutMs = HELLO_TIMEOUT_MS): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    let timer = 0;
    const settle = (outcome: ConnectOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    let ws: WebSocket;
    try {
      const url = new URL('/api/lab', location.href);
      url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
      ws = new WebSocket(url);
    } catch {
      settle({ ok: false, reason: 'no lab server reachable' });
      return;
    }
    const connection = new LabConnection(ws);
    timer = window.setTimeout(() => {
      ws.close();
      settle({ ok: false, reason: 'no lab server reachable (no answer from /api/lab)' });
    }, timeoutMs);
    ws.addEventListener('message', (ev) => {
      let msg: ServerMessage;
      try {
        msg = JSON.parse(String(ev.data)) as ServerMessage;
      } catch {
        handlers.invalid?.();
        return;
      }
      if (msg.type === 'hello' && !settled) settle({ ok: true, hello: msg as HelloMessage, connection });
      else if (settled) handlers.message(msg);
    });
    ws.addEventListener('close', (ev) => {
      if (!settled) settle({ ok: false, reason: 'no lab server reachable' });
      else handlers.close(ev);
    });
  });
}

export type RecordingStatus = 'present' | 'absent' | 'invalid';

/** A scenario's recording, checked for the fields a replay needs. */
export async function fetchRecording(base: string, scenario: string): Promise<{ status: RecordingStatus; recording: Recording | null }> {
  try {
    const res = await fetch(`${base.replace(/\/?$/, '/')}recordings/${encodeURIComponent(scenario)}.json`, { cache: 'no-cache' });
    if (!res.ok) return { status: 'absent', recording: null };
    const data = (await res.json()) as Partial<Recording>;
    if (!Array.isArray(data.timeline) || !Array.isArray(data.checks) || typeof data.claim !== 'string' || typeof data.observations !== 'object') {
      return { status: 'invalid', recording: null };
    }
    return { status: 'present', recording: data as Recording };
  } catch {
    return { status: 'absent', recording: null };
  }
}

/** "as root", "in a user namespace". */
export function modeText(mode: string | undefined): string {
  return mode === 'root' ? 'as root' : mode === 'userns' ? 'in a user namespace' : (mode ?? '');
}
