/**
 * One WebSocket connection: at most one lab at a time, driven by validated messages.
 * Closing the connection stops the lab; `Sidecar` tears every lab down on shutdown.
 *
 * What a lab streams to its page is bounded, whatever its programs print:
 *   - each source (server, client, kernel, wire, lab) may send `maxLinesPerSecond` events a
 *     second on average, in bursts of up to `burstLines`; the rest is dropped and counted,
 *     and once a second the page gets a "[N lines dropped]" line in that source's pane;
 *   - a page that reads more slowly than the lab writes (a busy tab, a slow network) does
 *     not make us queue without end: past `HIGH_WATER_BYTES` waiting in the socket, events
 *     and socket tables are dropped and counted too (the next table resynchronises it);
 *     past `HARD_LIMIT_BYTES` (a page that reads nothing at all) the connection is closed.
 */
import type { WebSocket } from 'ws';
import { probeCapability } from '../lab/lab.ts';
import type { SocketRow } from '../lab/ss.ts';
import { ParamError, resolveParams } from '../scenarios/params.ts';
import { RunAbortedError, runScenario, type RunContext } from '../scenarios/runner.ts';
import type { Scenario, TimelineEvent } from '../scenarios/types.ts';
import { parseClientMessage, type Action, type ErrorCode, type LabState, type ScenarioInfo, type ServerMessage, type SocketRowMessage } from './protocol.ts';

export interface SidecarLimits {
  /** Labs running at once across all connections. */
  maxLabs: number;
  /** Longest a single lab may run, in seconds. */
  maxSeconds: number;
  /** Messages a connection may send per second before it is told to slow down. */
  maxMessagesPerSecond: number;
  /** Events a second each source of a lab may stream to its page, on average. */
  maxLinesPerSecond: number;
  /** Events a source may send at once before the per-second rate applies. */
  burstLines: number;
}

export const DEFAULT_LIMITS: SidecarLimits = { maxLabs: 8, maxSeconds: 300, maxMessagesPerSecond: 20, maxLinesPerSecond: 200, burstLines: 1000 };

/** Bytes waiting in a connection's socket past which events and tables are dropped. */
export const HIGH_WATER_BYTES = 1024 * 1024;
/** Bytes waiting past which the page is taken to be gone and the connection is closed. */
export const HARD_LIMIT_BYTES = 8 * 1024 * 1024;

/** The words a page shows when every lab slot is taken. */
export function capacityMessage(running: number): string {
  return `${running} labs running, try again in a moment`;
}

/** A token bucket: `rate` a second, up to `burst` at once; counts what it refused. */
class LineBudget {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #at: number;
  dropped = 0;

  constructor(rate: number, burst: number, now: number) {
    this.rate = rate;
    this.burst = burst;
    this.#tokens = burst;
    this.#at = now;
  }

  take(now: number): boolean {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** Shared across sessions: how many labs run now. */
export class LabSlots {
  readonly limits: SidecarLimits;
  running = 0;
  constructor(limits: SidecarLimits) {
    this.limits = limits;
  }
  take(): boolean {
    if (this.running >= this.limits.maxLabs) return false;
    this.running++;
    return true;
  }
  release(): void {
    this.running = Math.max(0, this.running - 1);
  }
}

export function scenarioInfo(s: Scenario): ScenarioInfo {
  const defaults = resolveParams(s.params, {});
  return { id: s.id, title: s.title, description: s.description, claim: s.claim, params: s.params, expectedSeconds: s.expectedDuration(defaults) };
}

function rowMessage(r: SocketRow): SocketRowMessage {
  return {
    key: r.key,
    state: r.state,
    local: `${r.local.address}:${r.local.port}`,
    peer: `${r.peer.address}:${r.peer.port}`,
    sendQ: r.sendQ,
    recvQ: r.recvQ,
    timer: r.timer ? { name: r.timer.name, expiresMs: r.timer.expiresMs, count: r.timer.count } : null,
  };
}

/** A table is "the same" if nothing but timer countdowns moved. */
function tableSignature(rows: SocketRowMessage[]): string {
  return rows.map((r) => `${r.key}|${r.state}|${r.sendQ}|${r.recvQ}|${r.timer?.name ?? ''}|${r.timer?.count ?? ''}`).join('\n');
}

export class LabSession {
  readonly #ws: WebSocket;
  readonly #slots: LabSlots;
  readonly #scenarios: readonly Scenario[];
  #controller: AbortController | null = null;
  #ctx: RunContext | null = null;
  #running: Promise<void> | null = null;
  #closed = false;
  #lastTable = '';
  /** The learner's faults in the current run, for its result. */
  #interventions: Array<{ action: string; t: number }> = [];
  #lastTableSent = 0;
  // A fixed one-second window: constant work per message, however hard a page floods.
  #windowStart = 0;
  #windowCount = 0;
  #budgets = new Map<string, LineBudget>();
  #noticeTimer: NodeJS.Timeout | null = null;
  #pendingTable: { t: number; rows: SocketRowMessage[] } | null = null;

  constructor(ws: WebSocket, slots: LabSlots, scenarios: readonly Scenario[]) {
    this.#ws = ws;
    this.#slots = slots;
    this.#scenarios = scenarios;
    ws.on('message', (data, isBinary) => this.#onMessage(isBinary ? null : data.toString()));
    ws.on('close', () => {
      this.#closed = true;
      void this.stop('connection closed');
    });
    ws.on('error', () => {
      /* the close handler stops the lab */
    });
    void this.#hello();
  }

  get busy(): boolean {
    return this.#running !== null;
  }

  /** Sends a message; returns false if it was not sent (connection gone, or a stream dropped for a slow page). */
  #send(msg: ServerMessage): boolean {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return false;
    const waiting = this.#ws.bufferedAmount;
    if (waiting > HARD_LIMIT_BYTES) {
      // Nothing read for megabytes: the page is gone or stuck. Closing stops its lab.
      this.#ws.terminate();
      return false;
    }
    if (waiting > HIGH_WATER_BYTES && (msg.type === 'event' || msg.type === 'sockets')) return false;
    this.#ws.send(JSON.stringify(msg));
    return true;
  }

  /** A timeline event, within its source's budget and the page's pace. */
  #event(e: TimelineEvent): void {
    const now = Date.now();
    let budget = this.#budgets.get(e.source);
    if (!budget) {
      budget = new LineBudget(this.#slots.limits.maxLinesPerSecond, this.#slots.limits.burstLines, now);
      this.#budgets.set(e.source, budget);
    }
    if (!budget.take(now) || !this.#send({ type: 'event', event: e })) budget.dropped++;
  }

  /** Tells the page, in each pane that lost lines, how many; sends a table it missed. */
  #flushDropped(): void {
    if (this.#pendingTable && this.#send({ type: 'sockets', ...this.#pendingTable })) this.#pendingTable = null;
    for (const [source, budget] of this.#budgets) {
      if (!budget.dropped) continue;
      const n = budget.dropped;
      const line = `[${n} line${n === 1 ? '' : 's'} dropped]`;
      const event = { t: this.#ctx?.lab.t() ?? 0, source: source as TimelineEvent['source'], event: 'dropped', dropped: n, line };
      if (this.#send({ type: 'event', event })) budget.dropped = 0;
    }
  }

  #error(code: ErrorCode, message: string): void {
    this.#send({ type: 'error', code, message });
  }

  async #hello(): Promise<void> {
    const cap = await probeCapability();
    this.#send({
      type: 'hello',
      live: cap.ok,
      reason: cap.reason,
      kernel: cap.kernel,
      mode: cap.mode,
      tcpdump: cap.tcpdump,
      scenarios: this.#scenarios.map(scenarioInfo),
      limits: { maxLabs: this.#slots.limits.maxLabs, maxSeconds: this.#slots.limits.maxSeconds },
    });
  }

  #onMessage(raw: string | null): void {
    const now = Date.now();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#windowCount = 0;
    }
    const max = this.#slots.limits.maxMessagesPerSecond;
    if (++this.#windowCount > max) {
      if (this.#windowCount === max + 1) this.#error('bad-message', `too many messages (at most ${max} a second); slow down`);
      return;
    }
    if (raw === null) return this.#error('bad-message', 'binary messages are not accepted; send JSON text');
    const parsed = parseClientMessage(raw);
    if (!parsed.ok) return this.#error('bad-message', parsed.error);
    const msg = parsed.message;
    switch (msg.type) {
      case 'run':
        return this.#run(msg.scenario, msg.params);
      case 'stop':
        if (!this.#running) return this.#error('not-running', 'no lab is running');
        void this.stop('stopped by the page');
        return;
      case 'action':
        void this.#action(msg.action, msg.payload);
        return;
    }
  }

  #state(): LabState {
    const ctx = this.#ctx;
    const client = ctx?.currentClient?.proc;
    return {
      running: this.#running !== null,
      linkUp: ctx ? ctx.lab.linkUp : true,
      client: !client ? 'none' : !client.running ? 'exited' : client.frozen ? 'frozen' : 'running',
      clientAddress: ctx ? ctx.lab.clientAddress : null,
      handsOn: ctx ? ctx.handsOn && !ctx.lab.closed : false,
    };
  }

  #sendState(): void {
    this.#send({ type: 'state', state: this.#state() });
  }

  #run(id: string, rawParams: Record<string, unknown>): void {
    if (this.#running) return this.#error('busy', 'a lab is already running on this page; stop it first');
    const scenario = this.#scenarios.find((s) => s.id === id);
    if (!scenario) return this.#error('unknown-scenario', `unknown scenario '${id}'`);
    let params: Record<string, number>;
    try {
      params = resolveParams(scenario.params, rawParams);
    } catch (err) {
      return this.#error('bad-params', err instanceof ParamError ? err.message.replace(/^--/, '') : String(err));
    }
    if (!this.#slots.take()) {
      return this.#error('capacity', capacityMessage(this.#slots.running));
    }
    const controller = new AbortController();
    this.#controller = controller;
    this.#lastTable = '';
    this.#interventions = [];
    this.#budgets.clear();
    this.#pendingTable = null;
    this.#noticeTimer = setInterval(() => this.#flushDropped(), 1000);
    this.#running = (async () => {
      try {
        const result = await runScenario(scenario, params, {
          signal: controller.signal,
          maxSeconds: Math.min(this.#slots.limits.maxSeconds, scenario.expectedDuration(params) * 2 + 30),
          onContext: (ctx) => this.#watch(ctx, scenario, params),
        });
        const { timeline: _timeline, title: _title, ...rest } = result;
        this.#send({ type: 'result', result: { ...rest, interventions: this.#interventions } });
      } catch (err) {
        if (err instanceof RunAbortedError) return;
        const message = err instanceof Error ? err.message : String(err);
        this.#error(/limit of/.test(message) ? 'time-limit' : /namespace|unshare|lab/i.test(message) ? 'no-lab' : 'run-failed', message);
      } finally {
        clearInterval(this.#noticeTimer!);
        this.#noticeTimer = null;
        this.#flushDropped();
        this.#slots.release();
        this.#ctx = null;
        this.#controller = null;
        this.#running = null;
        this.#send({ type: 'stopped', reason: controller.signal.aborted ? 'stopped' : 'finished' });
        this.#sendState();
      }
    })();
  }

  #watch(ctx: RunContext, scenario: Scenario, params: Record<string, number>): void {
    this.#ctx = ctx;
    const lab = ctx.lab;
    this.#send({
      type: 'started',
      scenario: scenario.id,
      params,
      claim: scenario.claim.replace(/\{(\w+)\}/g, (m, k: string) => (k in params ? String(params[k]) : m)),
      theory: scenario.theory(params),
      kernel: lab.kernel,
      mode: lab.mode,
      server: lab.serverAddress,
      client: lab.clientAddress,
    });
    ctx.on('timeline', (e) => {
      // This run's events only: a context outlives its run by a moment (its last processes reaped).
      if (this.#ctx === ctx) this.#event(e);
    });
    ctx.on('wire', (s) => this.#send({ type: 'wire-status', available: s.available, note: s.note }));
    ctx.on('state', () => this.#sendState());
    ctx.on('sockets', (rows, t) => {
      const msgs = rows.map(rowMessage);
      const sig = tableSignature(msgs);
      const now = Date.now();
      // Send when something changed; while timers run, resync their countdown once a second.
      const timers = msgs.some((r) => r.timer);
      if (sig !== this.#lastTable || (timers && now - this.#lastTableSent >= 1000)) {
        this.#lastTable = sig;
        this.#lastTableSent = now;
        // A table dropped for a slow page waits (only the latest) for the next tick.
        this.#pendingTable = this.#send({ type: 'sockets', t, rows: msgs }) ? null : { t, rows: msgs };
      }
    });
    this.#sendState();
  }

  async #action(action: Action, payload?: string): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx || ctx.lab.closed) return this.#error('not-running', `'${action}' needs a running lab; press Run first`);
    // During the scenario's own steps a fault would break them (a cut before the client has
    // connected fails the run): the buttons open when it starts watching.
    if (!ctx.handsOn) return this.#error('not-yet', `'${action}': wait a moment, the scenario is still doing its own steps; the buttons open when it starts watching`);
    const client = ctx.currentClient;
    const needClient = (alive: boolean) => {
      if (!client || !client.proc.running) throw new Error('there is no client process running');
      if (alive && client.proc.frozen) throw new Error('the client is frozen; thaw it first');
      return client;
    };
    try {
      switch (action) {
        case 'cut':
          await ctx.lab.cut();
          break;
        case 'restore':
          await ctx.lab.restore();
          break;
        case 'restore-new-address':
          await ctx.lab.restoreWithNewAddress();
          break;
        case 'close-client':
          ctx.lab.signal(needClient(true).proc, 'SIGTERM');
          break;
        case 'kill-client':
          ctx.lab.signal(needClient(false).proc, 'SIGKILL');
          break;
        case 'freeze-client':
          if (needClient(false).proc.frozen) throw new Error('the client is already frozen');
          ctx.lab.signal(client!.proc, 'SIGSTOP');
          break;
        case 'thaw-client':
          if (!needClient(false).proc.frozen) throw new Error('the client is not frozen');
          ctx.lab.signal(client!.proc, 'SIGCONT');
          break;
        case 'send-frame': {
          const text = (payload ?? 'hello').replace(/[\r\n]+/g, ' ');
          needClient(true).proc.write(text + '\n');
          ctx.record({ t: ctx.lab.t(), source: 'lab', event: 'send-frame', text });
          break;
        }
        case 'reconnect':
          await ctx.startClient(['--count', '1'], { name: 'client' });
          break;
      }
      this.#interventions.push({ action, t: ctx.lab.t() });
    } catch (err) {
      this.#error('action-failed', `${action}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.#sendState();
    }
  }

  /** Stops the lab (if any) and waits until it is torn down. */
  async stop(_reason: string): Promise<void> {
    const running = this.#running;
    if (!running) return;
    this.#controller?.abort();
    await running;
  }
}
