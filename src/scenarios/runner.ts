/**
 * Runs a scenario in a fresh lab: starts the demos, watches the kernel, injects the
 * faults the scenario asks for, and collects a timeline. Used by the CLI, the sidecar
 * and the tests alike.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseLogLine } from '../../demos/protocol.ts';
import { Lab, probeCapability, type HostName, type LabProcess } from '../lab/lab.ts';
import { SocketTable, WireCapture, type WireStatus } from '../lab/observers.ts';
import type { SocketChange, SocketRow } from '../lab/ss.ts';
import { packetFields, type Packet } from '../lab/tcpdump.ts';
import { resolveParams, type ParamSpecs } from './params.ts';
import { fillClaim, type Scenario, type ScenarioResult, type TimelineEvent } from './types.ts';

export const DEMOS_DIR = fileURLToPath(new URL('../../demos/', import.meta.url));
export const SERVER_SCRIPT = `${DEMOS_DIR}echo-server.ts`;
export const CLIENT_SCRIPT = `${DEMOS_DIR}client.ts`;
export const SERVER_PORT = 7000;

const MAX_TIMELINE = 20_000;

export interface LogEntry {
  time: number; // ms since epoch, as the demo stamped it
  event: string;
  fields: Record<string, string>;
  line: string;
}

export class RunAbortedError extends Error {
  override name = 'RunAbortedError';
}

/** A demo program running in the lab, with its parsed log. */
export class Demo {
  readonly proc: LabProcess;
  readonly log: LogEntry[] = [];
  #waiters = new Set<{ test: (e: LogEntry) => boolean; resolve: (e: LogEntry) => void }>();

  constructor(proc: LabProcess) {
    this.proc = proc;
    proc.on('line', (stream, line) => {
      if (stream !== 'stdout') return;
      const parsed = parseLogLine(line);
      if (!parsed) return;
      const entry: LogEntry = { time: parsed.time.getTime(), event: parsed.event, fields: parsed.fields, line };
      if (this.log.length < 50_000) this.log.push(entry);
      for (const w of this.#waiters) {
        if (w.test(entry)) {
          this.#waiters.delete(w);
          w.resolve(entry);
        }
      }
    });
  }

  get name(): string {
    return this.proc.name;
  }

  /** Entries of one event (optionally matching a predicate), in order. */
  entries(event: string, test: (e: LogEntry) => boolean = () => true): LogEntry[] {
    return this.log.filter((e) => e.event === event && test(e));
  }

  /** The next (or an already logged, if `since` is given) entry that matches. */
  waitFor(event: string | string[], test: (e: LogEntry) => boolean, ctx: RunContext, timeoutMs: number, since?: number): Promise<LogEntry | null> {
    const events = Array.isArray(event) ? event : [event];
    const match = (e: LogEntry) => events.includes(e.event) && test(e);
    if (since !== undefined) {
      const found = this.log.find((e) => e.time >= since && match(e));
      if (found) return Promise.resolve(found);
    }
    return ctx.race<LogEntry | null>(
      new Promise((resolve) => {
        // Settling clears the timer: a pending one would keep a finished run (and the CLI) alive.
        const w = {
          test: match,
          resolve: (e: LogEntry | null) => {
            clearTimeout(timer);
            resolve(e);
          },
        };
        this.#waiters.add(w);
        const timer = setTimeout(() => {
          this.#waiters.delete(w);
          resolve(null);
        }, timeoutMs);
        // A stopped run must not keep this timer (and the process) alive.
        ctx.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
        this.proc.exited.then(() =>
          setTimeout(() => {
            // Give the last lines a moment to be parsed, then stop waiting.
            if (this.#waiters.delete(w)) {
              clearTimeout(timer);
              resolve(null);
            }
          }, 50),
        );
      }),
    );
  }
}

export interface RunOptions {
  signal?: AbortSignal;
  /** Hard cap on a run's wall time; the lab is torn down when it passes. */
  maxSeconds?: number;
  /** Socket table poll period. */
  pollMs?: number;
}

/**
 * What a scenario's steps can do. Also an event emitter, so a sidecar or the CLI can
 * stream the run as it happens.
 */
export class RunContext extends EventEmitter<{
  timeline: [TimelineEvent];
  sockets: [rows: SocketRow[], t: number];
  wire: [WireStatus];
  /** Something a page's buttons depend on changed (link, client process). */
  state: [];
}> {
  readonly lab: Lab;
  readonly sockets: SocketTable;
  readonly wire: WireCapture;
  readonly timeline: TimelineEvent[] = [];
  readonly demos: Demo[] = [];
  readonly signal: AbortSignal;
  /** The client started last: the one the page's buttons act on. */
  currentClient: Demo | null = null;
  /**
   * The scenario has done its own steps and is watching: from now on the learner's faults
   * (cut, restore, freeze, send a frame…) are welcome. Before, one would break the script
   * (a cut before the client connects fails the run), so the page's buttons stay off.
   */
  handsOn = false;
  #dropped = 0;
  readonly #tcpdump: boolean;
  #clientCapture: WireCapture | null = null;

  constructor(lab: Lab, tcpdump: boolean, signal: AbortSignal, pollMs: number) {
    super();
    this.lab = lab;
    this.signal = signal;
    this.#tcpdump = tcpdump;
    lab.on('fault', (f) => {
      this.record({ t: lab.t(f.time), source: 'lab', event: f.action, ...(f.detail ?? {}) });
      this.emit('state');
    });
    this.sockets = new SocketTable(lab, pollMs);
    this.sockets.on('changes', (changes, time) => {
      for (const c of changes) this.record(socketEvent(lab.t(time), c));
    });
    this.sockets.on('snapshot', (rows, time) => this.emit('sockets', rows, lab.t(time)));
    this.wire = new WireCapture(lab, tcpdump);
    this.wire.on('packet', (p: Packet) => this.record({ t: lab.t(p.time * 1000), source: 'wire', event: 'packet', ...packetFields(p) }));
    this.wire.on('status', (s) => {
      this.emit('wire', s);
      if (!s.available) this.record({ t: lab.t(), source: 'wire', event: 'unavailable', note: s.note });
    });
  }

  record(e: TimelineEvent): void {
    if (this.timeline.length < MAX_TIMELINE) this.timeline.push(e);
    else this.#dropped++;
    this.emit('timeline', e);
  }

  get droppedEvents(): number {
    return this.#dropped;
  }

  /** A line of narration: what the scenario is doing now. */
  step(text: string): void {
    this.record({ t: this.lab.t(), source: 'lab', event: 'step', text });
  }

  /**
   * Does the capture see what the server sends to a cut-off client? Only with tcpdump and a
   * cut that leaves the server's link up (a bridge); a link set down sends nothing.
   */
  async seesCutOnWire(): Promise<boolean> {
    return (await this.wire.ready).available && this.lab.cutMethod === 'bridge';
  }

  /**
   * A capture on the client's link, for what the client's kernel sends into a cut (the
   * server's capture cannot see what is lost on the way). Not shown on the wire pane: a
   * scenario records what it needs from it. One per run, stopped with the run.
   */
  captureClientLink(): WireCapture {
    this.#clientCapture ??= new WireCapture(this.lab, this.#tcpdump, 'client');
    return this.#clientCapture;
  }

  /** Stops the socket table and the captures (the lab's teardown kills them anyway). */
  stopObservers(): void {
    this.sockets.stop();
    this.wire.stop();
    this.#clientCapture?.stop();
  }

  /** The scenario's own steps are done: the learner may poke the lab from now on (see handsOn). */
  openToLearner(): void {
    if (this.handsOn) return;
    this.handsOn = true;
    this.record({ t: this.lab.t(), source: 'lab', event: 'hands-on', text: 'Your turn: the fault buttons are live while the lab watches (what you do changes this run).' });
    this.emit('state');
  }

  /** Rejects with RunAbortedError when the run is stopped. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.signal.aborted) return Promise.reject(new RunAbortedError('stopped'));
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new RunAbortedError('stopped'));
      this.signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          this.signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (e) => {
          this.signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  }

  /** Waits, unless the run is stopped first (then rejects, and no timer is left behind). */
  async sleep(seconds: number): Promise<void> {
    try {
      await sleepFor(seconds * 1000, undefined, { signal: this.signal });
    } catch (err) {
      if (this.signal.aborted) throw new RunAbortedError('stopped');
      throw err;
    }
  }

  #attach(host: HostName, proc: LabProcess): Demo {
    const demo = new Demo(proc);
    this.demos.push(demo);
    proc.on('line', (stream, line) => {
      const parsed = stream === 'stdout' ? parseLogLine(line) : null;
      this.record({
        t: this.lab.t(parsed ? parsed.time.getTime() : Date.now()),
        source: host,
        event: parsed ? parsed.event : stream === 'stderr' ? 'stderr' : 'output',
        name: proc.name,
        line,
        ...(parsed ? { fields: parsed.fields } : {}),
      });
    });
    proc.exited.then((s) => {
      this.record({ t: this.lab.t(), source: host, event: 'exit', name: proc.name, code: s.code, signal: s.signal });
      this.emit('state');
    });
    if (host === 'client') {
      this.currentClient = demo;
      this.emit('state');
    }
    return demo;
  }

  /** Starts the echo server in the server host and waits until it listens. */
  async startServer(args: string[], options: { name?: string; fdLimit?: number; port?: number; traceAccept?: boolean } = {}): Promise<Demo> {
    const port = options.port ?? SERVER_PORT;
    const proc = this.lab.spawnNode('server', options.name ?? 'server', SERVER_SCRIPT, ['--port', String(port), ...args], {
      fdLimit: options.fdLimit,
      traceAccept: options.traceAccept,
    });
    const demo = this.#attach('server', proc);
    const listening = await demo.waitFor('listen', () => true, this, 10_000, 0);
    if (!listening) throw new Error(`the server did not start: ${proc.exitStatus ? `it exited (${JSON.stringify(proc.exitStatus)})` : 'no listen line within 10 s'}`);
    return demo;
  }

  /** Starts a client in the client host; resolves once every connection is up. */
  async startClient(args: string[], options: { name?: string; port?: number; connections?: number } = {}): Promise<Demo> {
    const port = options.port ?? SERVER_PORT;
    // Every packet of a run comes after a client starts: the wire view must miss none.
    await this.race(this.wire.ready);
    const proc = this.lab.spawnNode('client', options.name ?? 'client', CLIENT_SCRIPT, ['--host', this.lab.serverAddress, '--port', String(port), '--stdin', ...args], {
      stdin: true,
    });
    const demo = this.#attach('client', proc);
    const want = options.connections ?? 1;
    const connected = await demo.waitFor('connect', () => demo.entries('connect').length >= want, this, 10_000, 0);
    if (!connected) throw new Error(`the client did not connect within 10 s${proc.exitStatus ? ` (it exited: ${JSON.stringify(proc.exitStatus)})` : ''}`);
    return demo;
  }

  /** A fresh snapshot of the server's socket table. */
  async snapshot(): Promise<{ rows: SocketRow[]; time: number }> {
    const rows = await this.race(this.sockets.next());
    return { rows, time: Date.now() };
  }

  /** Connections on the server's port (not the listener). */
  serverConnections(rows: SocketRow[], port = SERVER_PORT): SocketRow[] {
    return rows.filter((r) => r.local.port === port && r.state !== 'LISTEN');
  }
}

function socketEvent(t: number, c: SocketChange): TimelineEvent {
  const r = c.row;
  const base = {
    t,
    source: 'kernel' as const,
    event: `socket-${c.kind}`,
    local: `${r.local.address}:${r.local.port}`,
    peer: `${r.peer.address}:${r.peer.port}`,
    state: r.state,
    sendQ: r.sendQ,
    recvQ: r.recvQ,
    timer: r.timer ? r.timer.name : null,
    timerCount: r.timer ? r.timer.count : null,
    timerMs: r.timer ? r.timer.expiresMs : null,
  };
  return c.kind === 'changed' ? { ...base, changed: c.fields, previousState: c.previous.state } : base;
}


/**
 * Runs one scenario from start to teardown. Parameters are validated first (nothing is
 * started on bad input). The lab is always torn down, whatever happens.
 */
export async function runScenario(
  scenario: Scenario,
  rawParams: Record<string, unknown>,
  options: RunOptions & { onContext?: (ctx: RunContext) => void } = {},
): Promise<ScenarioResult> {
  const params = resolveParams(scenario.params as ParamSpecs, rawParams);
  const cap = await probeCapability();
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) controller.abort();
  const theory = scenario.theory(params);
  const maxSeconds = options.maxSeconds ?? Math.max(60, scenario.expectedDuration(params) * 2 + 30);
  const cap_timer = setTimeout(() => controller.abort(), maxSeconds * 1000);
  const started = Date.now();
  let lab: Lab;
  try {
    lab = await Lab.create({ sysctls: scenario.sysctls?.(params) });
  } catch (err) {
    // No lab, nothing to tear down; but the limit's timer would keep the process alive.
    clearTimeout(cap_timer);
    options.signal?.removeEventListener('abort', onAbort);
    throw err;
  }
  let ctx: RunContext | null = null;
  try {
    ctx = new RunContext(lab, cap.tcpdump, controller.signal, options.pollMs ?? 250);
    options.onContext?.(ctx);
    ctx.record({ t: 0, source: 'lab', event: 'ready', mode: lab.mode, kernel: lab.kernel, server: lab.serverAddress, client: lab.clientAddress });
    // No waiting for the observers here: the scenario's server starts while tcpdump and the
    // socket table start (that is most of what a learner waits for after Run). A new lab's
    // namespace has no sockets, so the table's first snapshot is measured from an empty
    // baseline whenever it comes; the capture only has to be ready before the first packet,
    // which startClient() waits for.
    const observations = await scenario.run(ctx, params);
    const checks = scenario.check(observations, params, theory);
    return {
      scenario: scenario.id,
      title: scenario.title,
      kernel: lab.kernel,
      mode: lab.mode,
      params,
      claim: fillClaim(scenario.claim, params),
      theory,
      observations,
      checks,
      claimHeld: checks.every((c) => c.held),
      wallSeconds: (Date.now() - started) / 1000,
      timeline: ctx.timeline,
    };
  } catch (err) {
    if (controller.signal.aborted && !options.signal?.aborted) {
      throw new Error(`the run passed its limit of ${maxSeconds} s and was stopped`);
    }
    throw err;
  } finally {
    clearTimeout(cap_timer);
    options.signal?.removeEventListener('abort', onAbort);
    ctx?.stopObservers();
    await lab.teardown();
  }
}
