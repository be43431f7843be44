/**
 * A page's side of the lab WebSocket (src/sidecar/protocol.ts), timed: what a learner's
 * browser would receive, and when.
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { parseLogLine } from '../../demos/protocol.ts';
import type { ServerMessage } from '../../src/sidecar/protocol.ts';

export type RunResult = Extract<ServerMessage, { type: 'result' }>['result'];
type Hello = Extract<ServerMessage, { type: 'hello' }>;

/** Errors the sidecar sends instead of starting a lab (no 'stopped' follows them). */
const REFUSALS = new Set(['bad-message', 'unknown-scenario', 'bad-params', 'busy', 'capacity']);

export interface RunRecord {
  scenario: string;
  result: RunResult | null;
  error: { code: string; message: string } | null;
  /** 'run' sent → first output line of a demo server (source 'server') received, in ms. */
  firstServerLineMs: number | null;
  /** 'run' sent → first output line of a demo client received, in ms: the lab is up. */
  firstClientLineMs: number | null;
  /** 'run' sent → 'stopped' received, in ms: the run's wall time as the page sees it. */
  wallMs: number | null;
  /** performance.now() when 'run' was sent, 'started' received and 'stopped' received. */
  sentAt: number | null;
  startedAt: number | null;
  stoppedAt: number | null;
  /** For each timestamped demo line: its arrival here (Date.now()) minus the time the demo stamped on it, in ms. */
  lineLatenciesMs: number[];
  /** True when we stopped the run ourselves (or gave up waiting). */
  stoppedByUs: boolean;
}

export interface RunOptions {
  params?: Record<string, number>;
  /** Send 'stop' as soon as the first demo server line arrives. */
  stopAfterFirstServerLine?: boolean;
  /** Called once, when the first output line of a demo client arrives (the lab is up). */
  onClientUp?: () => void;
  /** Give up (send 'stop', then close) after this long. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A run's record before anything has happened (or when it could not start: set `error`). */
export function emptyRecord(scenario: string, error: RunRecord['error'] = null): RunRecord {
  return {
    scenario,
    result: null,
    error,
    firstServerLineMs: null,
    firstClientLineMs: null,
    wallMs: null,
    sentAt: null,
    startedAt: null,
    stoppedAt: null,
    lineLatenciesMs: [],
    stoppedByUs: false,
  };
}

export class LabClient {
  readonly ws: WebSocket;
  readonly hello: Promise<Hello>;
  #listener: ((m: ServerMessage, arrivedAt: number, arrivedWall: number) => void) | null = null;
  #closed: Promise<void>;

  constructor(port: number) {
    const origin = `http://127.0.0.1:${port}`;
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/api/lab`, { headers: { origin }, perMessageDeflate: false });
    this.#closed = new Promise((resolve) => this.ws.once('close', () => resolve()));
    this.hello = new Promise((resolve, reject) => {
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`the server refused the WebSocket: HTTP ${res.statusCode}`)));
      this.ws.once('close', () => reject(new Error('the WebSocket closed before hello')));
      this.ws.on('message', (data) => {
        // Times first: parsing is part of what the page pays, but not of the transport.
        const arrivedAt = performance.now();
        const arrivedWall = Date.now();
        const m = JSON.parse(data.toString()) as ServerMessage;
        if (m.type === 'hello') resolve(m);
        this.#listener?.(m, arrivedAt, arrivedWall);
      });
    });
    this.ws.on('error', () => {
      /* reported through hello or the run's close handling */
    });
  }

  /** Runs one scenario to its end (or until stopped) and returns what the page saw. */
  async run(scenario: string, options: RunOptions = {}): Promise<RunRecord> {
    await this.hello;
    if (this.#listener) throw new Error('one run at a time per connection');
    const rec = emptyRecord(scenario);
    if (options.signal?.aborted) {
      rec.error = { code: 'not-started', message: 'stopped before Run was pressed' };
      return rec;
    }
    const sentAt = performance.now();
    rec.sentAt = sentAt;
    return new Promise<RunRecord>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let closeTimer: NodeJS.Timeout | undefined;
      const finish = () => {
        clearTimeout(timer);
        clearTimeout(closeTimer);
        this.#listener = null;
        options.signal?.removeEventListener('abort', giveUp);
        this.ws.off('close', onClose);
        resolve(rec);
      };
      const stop = () => {
        rec.stoppedByUs = true;
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'stop' }));
      };
      const giveUp = () => {
        stop();
        // If the server does not answer the stop, closing the socket stops the lab too.
        closeTimer = setTimeout(() => {
          this.ws.close();
          finish();
        }, 10_000);
      };
      const onClose = () => {
        if (!rec.error && !rec.result) rec.error = { code: 'closed', message: 'the WebSocket closed during the run' };
        finish();
      };
      this.ws.on('close', onClose);
      if (options.timeoutMs) timer = setTimeout(giveUp, options.timeoutMs);
      options.signal?.addEventListener('abort', giveUp, { once: true });

      this.#listener = (m, arrivedAt, arrivedWall) => {
        switch (m.type) {
          case 'started':
            rec.startedAt = arrivedAt;
            break;
          case 'event': {
            const e = m.event;
            if ((e.source === 'server' || e.source === 'client') && typeof e.line === 'string') {
              if (e.source === 'server' && rec.firstServerLineMs === null) {
                rec.firstServerLineMs = arrivedAt - sentAt;
                if (options.stopAfterFirstServerLine) stop();
              }
              if (e.source === 'client' && rec.firstClientLineMs === null) {
                rec.firstClientLineMs = arrivedAt - sentAt;
                options.onClientUp?.();
              }
              const parsed = parseLogLine(e.line);
              if (parsed) rec.lineLatenciesMs.push(arrivedWall - parsed.time.getTime());
            }
            break;
          }
          case 'result':
            rec.result = m.result;
            break;
          case 'error':
            rec.error ??= { code: m.code, message: m.message };
            if (REFUSALS.has(m.code)) {
              rec.wallMs = arrivedAt - sentAt;
              finish();
            }
            break;
          case 'stopped':
            rec.stoppedAt = arrivedAt;
            rec.wallMs = arrivedAt - sentAt;
            finish();
            break;
        }
      };
      this.ws.send(JSON.stringify({ type: 'run', scenario, params: options.params ?? {} }));
    });
  }

  close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    return this.#closed;
  }
}
