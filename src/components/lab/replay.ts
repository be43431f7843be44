/**
 * Plays a recorded run's timeline back with its real timing: each event is delivered when
 * as many seconds have passed since Run as its `t` says.
 */
import type { TimelineEvent } from './types.ts';
import type { TableRow } from './sockets.ts';

export interface ReplayHandlers {
  event(e: TimelineEvent): void;
  progress(t: number, total: number): void;
  end(completed: boolean): void;
}

export class Replayer {
  readonly #timeline: TimelineEvent[];
  readonly #handlers: ReplayHandlers;
  readonly total: number;
  #index = 0;
  #startedAt = 0;
  #timer = 0;
  #progressTimer = 0;
  #running = false;

  constructor(timeline: TimelineEvent[], handlers: ReplayHandlers, total?: number) {
    this.#timeline = [...timeline].filter((e) => typeof e.t === 'number' && Number.isFinite(e.t)).sort((a, b) => a.t - b.t);
    this.#handlers = handlers;
    const last = this.#timeline.length ? this.#timeline[this.#timeline.length - 1]!.t : 0;
    this.total = Math.max(last, total ?? 0);
  }

  get running(): boolean {
    return this.#running;
  }

  /** The replay clock's zero on performance.now(): event t is at startedAt + t × 1000. */
  get startedAt(): number {
    return this.#startedAt;
  }

  start(): void {
    this.stop(false);
    this.#index = 0;
    this.#running = true;
    this.#startedAt = performance.now();
    this.#progressTimer = window.setInterval(() => this.#handlers.progress(this.#elapsed(), this.total), 200);
    this.#pump();
  }

  /** Stops; `completed` tells the end handler whether the run played out. */
  stop(notify = true, completed = false): void {
    const was = this.#running;
    this.#running = false;
    clearTimeout(this.#timer);
    clearInterval(this.#progressTimer);
    if (was && notify) this.#handlers.end(completed);
  }

  #elapsed(): number {
    return (performance.now() - this.#startedAt) / 1000;
  }

  #pump(): void {
    if (!this.#running) return;
    const now = this.#elapsed();
    // Deliver everything that is due (a burst of events at one instant arrives together).
    while (this.#index < this.#timeline.length && this.#timeline[this.#index]!.t <= now) {
      this.#handlers.event(this.#timeline[this.#index++]!);
      if (!this.#running) return;
    }
    if (this.#index >= this.#timeline.length) {
      this.#handlers.progress(this.total, this.total);
      this.stop(true, true);
      return;
    }
    const next = this.#timeline[this.#index]!.t;
    this.#timer = window.setTimeout(() => this.#pump(), Math.max(0, (next - now) * 1000));
  }
}

/**
 * Rebuilds the server's socket table from the kernel events of a timeline (socket-added,
 * socket-changed, socket-removed, each with the row's fields at that moment).
 */
export class SocketTableModel {
  readonly rows = new Map<string, TableRow>();

  clear(): void {
    this.rows.clear();
  }

  /** Applies one kernel event; returns true if the table changed. `clockZero` maps t to performance.now(). */
  apply(e: TimelineEvent, clockZero: number): boolean {
    if (e.source !== 'kernel' || !/^socket-(added|changed|removed)$/.test(e.event)) return false;
    const local = String(e.local ?? '?');
    const peer = String(e.peer ?? '?');
    const key = `${local}->${peer}`;
    if (e.event === 'socket-removed') return this.rows.delete(key);
    const timer =
      typeof e.timer === 'string' && e.timer !== ''
        ? { name: e.timer, expiresAt: clockZero + e.t * 1000 + (typeof e.timerMs === 'number' ? e.timerMs : 0), count: typeof e.timerCount === 'number' ? e.timerCount : 0 }
        : null;
    this.rows.set(key, {
      key,
      state: String(e.state ?? '?'),
      local,
      peer,
      sendQ: typeof e.sendQ === 'number' ? e.sendQ : 0,
      recvQ: typeof e.recvQ === 'number' ? e.recvQ : 0,
      timer,
    });
    return true;
  }

  list(): TableRow[] {
    return [...this.rows.values()];
  }
}
