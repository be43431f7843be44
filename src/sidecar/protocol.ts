/**
 * The messages between a lesson page and the sidecar, over one WebSocket at /api/lab.
 * Both sides validate with these schemas; the page imports the types.
 *
 * One connection = at most one lab at a time. The page sends `run`, watches `event`,
 * `sockets`, `state` and finally `result`; it may send `action`s while the lab runs and
 * `stop` at any time. Closing the socket stops and tears down the lab. No message names a
 * lab: a connection can only ever see and drive its own.
 *
 * Streams are bounded (src/sidecar/session.ts): when a source sends more events than its
 * budget, or the page reads too slowly, the surplus is dropped and an event
 * `{ source, event: 'dropped', dropped: N, line: '[N lines dropped]' }` takes its place.
 * When every lab slot is taken, `run` gets `{ type: 'error', code: 'capacity' }` with the
 * message "N labs running, try again in a moment".
 */
import { z } from 'zod';

export const ACTIONS = [
  'cut',
  'restore',
  'restore-new-address',
  'close-client',
  'kill-client',
  'freeze-client',
  'thaw-client',
  'send-frame',
  'reconnect',
] as const;
export type Action = (typeof ACTIONS)[number];

export const MAX_MESSAGE_BYTES = 16 * 1024;

export const ClientMessage = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('run'),
      scenario: z.string().min(1).max(64),
      params: z.record(z.string().max(64), z.union([z.number(), z.string().max(64)])).default({}),
    })
    .strict(),
  z.object({ type: z.literal('stop') }).strict(),
  z
    .object({
      type: z.literal('action'),
      action: z.enum(ACTIONS),
      /** For send-frame: the payload text (1 to 1024 characters). */
      payload: z.string().min(1).max(1024).optional(),
    })
    .strict(),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

export interface ScenarioInfo {
  id: string;
  title: string;
  description: string;
  claim: string;
  params: Record<string, { type: string; default: number; min: number; max: number; unit?: string; description: string }>;
  expectedSeconds: number;
}

export interface SocketRowMessage {
  key: string;
  state: string;
  local: string;
  peer: string;
  sendQ: number;
  recvQ: number;
  timer: { name: string; expiresMs: number; count: number } | null;
}

export interface LabState {
  running: boolean;
  linkUp: boolean;
  client: 'none' | 'running' | 'frozen' | 'exited';
  clientAddress: string | null;
}

export type ServerMessage =
  | {
      type: 'hello';
      live: boolean;
      /** Why no live lab (when live is false), and what to do. */
      reason?: string;
      kernel: string;
      mode?: string;
      tcpdump: boolean;
      scenarios: ScenarioInfo[];
      limits: { maxLabs: number; maxSeconds: number };
    }
  | { type: 'started'; scenario: string; params: Record<string, number>; claim: string; theory: { summary: string; expectedSeconds?: number }; kernel: string; mode: string; server: string; client: string }
  | { type: 'event'; event: { t: number; source: string; event: string; [k: string]: unknown } }
  | { type: 'sockets'; t: number; rows: SocketRowMessage[] }
  | { type: 'wire-status'; available: boolean; note?: string }
  | { type: 'state'; state: LabState }
  | {
      type: 'result';
      result: {
        scenario: string;
        claim: string;
        claimHeld: boolean;
        kernel: string;
        mode: string;
        params: Record<string, number>;
        theory: { summary: string; expectedSeconds?: number };
        observations: Record<string, unknown>;
        checks: Array<{ name: string; held: boolean; detail: string }>;
        wallSeconds: number;
      };
    }
  | { type: 'stopped'; reason: string }
  | { type: 'error'; message: string; code: ErrorCode };

export type ErrorCode = 'bad-message' | 'unknown-scenario' | 'bad-params' | 'busy' | 'capacity' | 'no-lab' | 'not-running' | 'action-failed' | 'run-failed' | 'time-limit';

/** Parses and validates one raw WebSocket message; returns a readable error otherwise. */
export function parseClientMessage(raw: string): { ok: true; message: ClientMessage } | { ok: false; error: string } {
  if (raw.length > MAX_MESSAGE_BYTES) return { ok: false, error: `message too large (${raw.length} bytes; at most ${MAX_MESSAGE_BYTES})` };
  let data: unknown;
  let protoKey = false;
  try {
    // JSON.parse keeps "__proto__" as an ordinary key, which zod's records then drop without
    // a word: refuse it instead, so that {"params": {"__proto__": 5}} is an error, not defaults.
    data = JSON.parse(raw, (key, value: unknown) => {
      if (key === '__proto__') protoKey = true;
      return value;
    });
  } catch {
    return { ok: false, error: 'message is not JSON' };
  }
  if (protoKey) return { ok: false, error: "invalid message: '__proto__' is not allowed as a key" };
  const r = ClientMessage.safeParse(data);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const where = issue.path.length ? ` at '${issue.path.join('.')}'` : '';
    return { ok: false, error: `invalid message${where}: ${issue.message}` };
  }
  return { ok: true, message: r.data };
}
