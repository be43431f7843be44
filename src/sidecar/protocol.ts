/**
 * The messages between a lesson page and the sidecar, over one WebSocket at /api/lab.
 * The sidecar validates what pages send with `ClientMessage`; `ServerMessage` is the schema of
 * what it sends back, which the tests hold every received message to. The page imports the
 * types only (`import type`), so zod stays out of its bundle.
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

export const ERROR_CODES = ['bad-message', 'unknown-scenario', 'bad-params', 'busy', 'capacity', 'no-lab', 'not-running', 'not-yet', 'action-failed', 'run-failed', 'time-limit'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Where a timeline event comes from: a pane of the page (src/scenarios/types.ts). */
export const EVENT_SOURCES = ['lab', 'server', 'client', 'kernel', 'wire'] as const;

const ParamSpecInfo = z.strictObject({
  type: z.string(),
  default: z.number(),
  min: z.number(),
  max: z.number(),
  unit: z.string().optional(),
  description: z.string(),
});

export const ScenarioInfo = z.strictObject({
  id: z.string(),
  title: z.string(),
  description: z.string(),
  claim: z.string(),
  params: z.record(z.string(), ParamSpecInfo),
  expectedSeconds: z.number(),
});
export type ScenarioInfo = z.infer<typeof ScenarioInfo>;

export const SocketRowMessage = z.strictObject({
  key: z.string(),
  state: z.string(),
  local: z.string(),
  peer: z.string(),
  sendQ: z.number(),
  recvQ: z.number(),
  timer: z.strictObject({ name: z.string(), expiresMs: z.number(), count: z.number() }).nullable(),
});
export type SocketRowMessage = z.infer<typeof SocketRowMessage>;

export const LabState = z.strictObject({
  running: z.boolean(),
  linkUp: z.boolean(),
  client: z.enum(['none', 'running', 'frozen', 'exited']),
  clientAddress: z.string().nullable(),
  /** The scenario has done its own steps and watches: the learner's faults are welcome now. */
  handsOn: z.boolean(),
});
export type LabState = z.infer<typeof LabState>;

/** A scenario's theory may carry more than its summary (the numbers behind it). */
const Theory = z.looseObject({ summary: z.string(), expectedSeconds: z.number().optional() });
const NumberParams = z.record(z.string(), z.number());

/**
 * What the sidecar sends. The sidecar builds these from typed values; tests parse every
 * message they receive with this schema (test/sidecar/checked-client.ts), so a malformed
 * one fails a test. The page takes the type only (no zod in its bundle).
 */
export const ServerMessage = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('hello'),
    live: z.boolean(),
    /** Why no live lab (when live is false), and what to do. */
    reason: z.string().optional(),
    kernel: z.string(),
    mode: z.string().optional(),
    tcpdump: z.boolean(),
    scenarios: z.array(ScenarioInfo),
    limits: z.strictObject({ maxLabs: z.number().int().positive(), maxSeconds: z.number().positive() }),
  }),
  z.strictObject({
    type: z.literal('started'),
    scenario: z.string(),
    params: NumberParams,
    claim: z.string(),
    theory: Theory,
    kernel: z.string(),
    mode: z.string(),
    server: z.string(),
    client: z.string(),
  }),
  z.strictObject({
    type: z.literal('event'),
    event: z.looseObject({
      t: z.number(),
      source: z.string().refine((s) => (EVENT_SOURCES as readonly string[]).includes(s), { message: `source must be one of ${EVENT_SOURCES.join(', ')}` }),
      event: z.string(),
    }),
  }),
  z.strictObject({ type: z.literal('sockets'), t: z.number(), rows: z.array(SocketRowMessage) }),
  z.strictObject({ type: z.literal('wire-status'), available: z.boolean(), note: z.string().optional() }),
  z.strictObject({ type: z.literal('state'), state: LabState }),
  z.strictObject({
    type: z.literal('result'),
    result: z.strictObject({
      scenario: z.string(),
      claim: z.string(),
      claimHeld: z.boolean(),
      kernel: z.string(),
      mode: z.string(),
      params: NumberParams,
      theory: Theory,
      observations: z.record(z.string(), z.unknown()),
      checks: z.array(z.strictObject({ name: z.string(), held: z.boolean(), detail: z.string() })),
      wallSeconds: z.number(),
      /** What the learner did to this run (its claim is about the run without them). */
      interventions: z.array(z.strictObject({ action: z.string(), t: z.number() })),
    }),
  }),
  z.strictObject({ type: z.literal('stopped'), reason: z.string() }),
  z.strictObject({ type: z.literal('error'), message: z.string().min(1), code: z.enum(ERROR_CODES) }),
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

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
