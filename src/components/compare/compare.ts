/**
 * <Compare /> in the page: runs the detection scenarios through the sidecar, one WebSocket
 * (and so one lab) per scenario, a few at a time, and fills the table as results arrive.
 * Where no lab can run it fills the table from the recordings instead, marked as recorded
 * with the kernel they came from. The table's markup and the build-time theory are in
 * Compare.astro; the mapping from observations to cells in ./table.ts.
 */
import { connectLab, fetchRecording, modeText, type LabConnection } from '../lab/connection.ts';
import { formatDate } from '../lab/format.ts';
import type { Recording, RunResult } from '../lab/types.ts';
import { cellResult, cellText, COMPARE_SCENARIOS, type CellResult, type CellSpec } from './table.ts';

/** Labs at once: the timings stay honest on a small machine, and <Lab>s on the page still find room. */
const CONCURRENCY = 2;
/** When the sidecar is at its lab limit, try again this often, this many times. */
const RETRY_MS = 3000;
const RETRIES = 20;

type Mode = 'idle' | 'connecting' | 'live' | 'replay' | 'none';

export class CompareController {
  readonly root: HTMLElement;
  readonly #cells: CellSpec[];
  readonly #base: string;
  #mode: Mode = 'idle';
  #kernel = '';
  #running = false;
  #connections = new Set<LabConnection>();
  #stopped = false;
  #done = 0;
  #failed = new Set<string>();
  #recordedKernels = new Set<string>();
  /** Each cell's theory line as built, shown again while its run is pending. */
  readonly #theoryLine = new Map<string, string>();

  constructor(root: HTMLElement) {
    this.root = root;
    this.#cells = JSON.parse(root.dataset.cells ?? '[]') as CellSpec[];
    this.#base = (root.dataset.base ?? '/').replace(/\/?$/, '/');
    for (const td of root.querySelectorAll<HTMLElement>('td[data-cell]')) this.#theoryLine.set(td.dataset.cell!, td.querySelector('.cmp-sub')?.textContent?.trim() ?? '');
    this.#button('run').addEventListener('click', () => void this.run());
    this.#button('stop').addEventListener('click', () => this.stop());
    if ('IntersectionObserver' in window) {
      const io = new IntersectionObserver(
        (entries) => {
          if (entries.some((e) => e.isIntersecting)) {
            io.disconnect();
            void this.#detect();
          }
        },
        { rootMargin: '300px 0px' },
      );
      io.observe(root);
    } else void this.#detect();
    window.addEventListener('pagehide', () => this.stop());
    root.dataset.ready = 'true';
  }

  #button(name: string): HTMLButtonElement {
    return this.root.querySelector<HTMLButtonElement>(`button[data-action="${name}"]`)!;
  }

  #q(name: string): HTMLElement {
    return this.root.querySelector<HTMLElement>(`[data-compare="${name}"]`)!;
  }

  #status(text: string): void {
    this.#q('status').textContent = text;
  }

  #controls(): void {
    this.#button('run').disabled = this.#running || this.#mode === 'connecting';
    this.#button('stop').disabled = !this.#running;
    this.root.dataset.mode = this.#mode;
    this.root.dataset.running = String(this.#running);
  }

  /** Is there a live lab? Asks the sidecar once; without one, shows the recordings. */
  async #detect(): Promise<void> {
    if (this.#mode !== 'idle' && this.#mode !== 'none') return;
    this.#mode = 'connecting';
    this.#status('Looking for a lab server…');
    this.#controls();
    const outcome = await connectLab({ message: () => {}, close: () => {} });
    if (outcome.ok && outcome.hello.live) {
      outcome.connection.close('probe only');
      this.#mode = 'live';
      this.#kernel = outcome.hello.kernel;
      this.#q('caption-detail').textContent = `Live on this machine: Linux ${outcome.hello.kernel}${outcome.hello.mode ? ` (${modeText(outcome.hello.mode)})` : ''}.`;
      this.#status(`Press Run: ${COMPARE_SCENARIOS.length} scenarios run, ${CONCURRENCY} at a time, in their own labs (about a minute).`);
    } else {
      if (outcome.ok) outcome.connection.close('no live lab');
      await this.#replay(outcome.ok ? (outcome.hello.reason ?? 'no live lab can run on this machine') : outcome.reason);
    }
    this.#controls();
  }

  async #replay(reason: string): Promise<void> {
    const recordings = await Promise.all(COMPARE_SCENARIOS.map(async (id) => [id, (await fetchRecording(this.#base, id)).recording] as const));
    const have = recordings.filter(([, r]) => r !== null);
    if (!have.length) {
      this.#mode = 'none';
      this.#q('caption-detail').textContent = 'No live lab here, and no recordings.';
      this.#status(`Why not live: ${reason}. To run it live: on Linux, get the course and run npm start (see the README).`);
      return;
    }
    this.#mode = 'replay';
    this.#recordedKernels.clear();
    for (const [id, rec] of recordings) {
      if (rec) {
        this.#recordedKernels.add(`Linux ${rec.kernel} (${formatDate(rec.recordedAt)})`);
        this.#fill(id, rec.observations, rec.theory, `Recorded on Linux ${rec.kernel}, ${formatDate(rec.recordedAt)}`);
      } else this.#fillError(id, 'no recording of this scenario');
    }
    this.root.dataset.recorded = 'true';
    this.#q('caption-detail').textContent = `Recorded runs, not live: ${[...this.#recordedKernels].join(', ')}.`;
    this.#status(`Why not live: ${reason.replace(/\.$/, '')}. The table shows recordings of real runs. To run it live: on Linux, get the course and run npm start (see the README).`);
  }

  async run(): Promise<void> {
    if (this.#running) return;
    if (this.#mode === 'idle' || this.#mode === 'none') await this.#detect();
    if (this.#mode === 'replay') {
      // Nothing runs here: show the recordings again (a fresh look at what they hold).
      this.#status('No live lab on this machine: the table shows recorded runs (see above).');
      return;
    }
    if (this.#mode !== 'live') return;
    this.#running = true;
    this.#stopped = false;
    this.#done = 0;
    this.#failed.clear();
    delete this.root.dataset.recorded;
    for (const c of this.#cells) this.#setCell(c, 'pending', { main: 'waiting…', sub: this.#theoryLine.get(`${c.fault}:${c.strategy}`) ?? '' });
    this.#controls();
    this.#progress();
    const queue = [...COMPARE_SCENARIOS];
    const worker = async () => {
      for (let id = queue.shift(); id && !this.#stopped; id = queue.shift()) {
        await this.#runOne(id);
        this.#done++;
        this.#progress();
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    this.#running = false;
    const ran = COMPARE_SCENARIOS.length - this.#failed.size;
    this.#status(
      this.#stopped
        ? 'Stopped; the labs were torn down.'
        : this.#failed.size
          ? `Done: ${ran} of ${COMPARE_SCENARIOS.length} scenarios ran on Linux ${this.#kernel}; the cells say why the others did not. Run tries again.`
          : `Done: every scenario ran on Linux ${this.#kernel}, with its default parameters.`,
    );
    this.#controls();
  }

  stop(): void {
    if (!this.#running) return;
    this.#stopped = true;
    for (const c of this.#connections) c.close('stopped');
    this.#connections.clear();
  }

  #progress(): void {
    if (this.#running) this.#status(`Running: ${this.#done} of ${COMPARE_SCENARIOS.length} scenarios done…`);
  }

  /** One scenario in its own lab; resolves when its lab is gone. */
  async #runOne(id: string): Promise<void> {
    let failures = 0;
    for (let attempt = 0; attempt <= RETRIES && !this.#stopped; attempt++) {
      const outcome = await new Promise<'done' | 'retry' | 'failed'>((resolve) => {
        let connection: LabConnection | null = null;
        let finished = false;
        const finish = (how: 'done' | 'retry' | 'failed') => {
          if (finished) return;
          finished = true;
          if (connection) {
            this.#connections.delete(connection);
            connection.close('done');
          }
          resolve(how);
        };
        void connectLab({
          message: (msg) => {
            switch (msg.type) {
              case 'started':
                this.#pending(id, 'running…');
                return;
              case 'result':
                this.#fillResult(id, msg.result);
                return;
              case 'stopped':
                finish('done');
                return;
              case 'error':
                if (msg.code === 'capacity') {
                  this.#pending(id, 'waiting for a free lab…');
                  finish('retry');
                } else if (msg.code === 'run-failed' && failures === 0) {
                  // A lab that could not start in time on a busy machine: once more.
                  this.#pending(id, 'trying again…');
                  finish('failed');
                } else if (!['action-failed', 'not-running', 'bad-message'].includes(msg.code)) {
                  this.#fillError(id, msg.message);
                  finish('done');
                }
                return;
            }
          },
          close: () => {
            if (!finished && !this.#stopped) this.#fillError(id, 'the connection to the lab server closed');
            if (this.#stopped) this.#pending(id, 'stopped');
            finish('done');
          },
        }).then((o) => {
          if (!o.ok || !o.hello.live) {
            this.#fillError(id, o.ok ? (o.hello.reason ?? 'no live lab') : o.reason);
            if (o.ok) o.connection.close('no live lab');
            finish('done');
            return;
          }
          connection = o.connection;
          if (this.#stopped) return finish('done');
          this.#connections.add(connection);
          this.#pending(id, 'starting a lab…');
          if (!connection.send({ type: 'run', scenario: id, params: {} })) finish('done');
        });
      });
      if (outcome === 'done') return;
      if (outcome === 'failed') failures++;
      else await new Promise((r) => setTimeout(r, RETRY_MS));
    }
    if (!this.#stopped) this.#fillError(id, 'the lab server stayed busy');
  }

  #pending(id: string, text: string): void {
    for (const c of this.#cells) if (c.scenario === id) this.#setCell(c, 'pending', { main: text, sub: this.#theoryLine.get(`${c.fault}:${c.strategy}`) ?? '' });
  }

  #fillResult(id: string, r: RunResult): void {
    this.#fill(id, r.observations, r.theory as Record<string, unknown>, null);
  }

  #fill(id: string, observations: Record<string, unknown>, theory: Recording['theory'] | Record<string, unknown>, recorded: string | null): void {
    for (const c of this.#cells) {
      if (c.scenario !== id) continue;
      const r: CellResult = cellResult(c, observations, theory as Record<string, unknown>);
      const text = cellText(r);
      this.#setCell(c, r.state, text, recorded);
    }
  }

  #fillError(id: string, why: string): void {
    this.#failed.add(id);
    for (const c of this.#cells) if (c.scenario === id) this.#setCell(c, 'error', { main: 'could not run', sub: why });
  }

  #setCell(c: CellSpec, state: string, text: { main: string; sub: string }, recorded: string | null = null): void {
    const td = this.root.querySelector<HTMLElement>(`[data-cell="${c.fault}:${c.strategy}"]`);
    if (!td) return;
    td.dataset.state = state;
    const main = document.createElement('span');
    main.className = 'cmp-main';
    main.textContent = text.main;
    const parts: Node[] = [main];
    if (text.sub) {
      const sub = document.createElement('span');
      sub.className = 'cmp-sub';
      sub.textContent = text.sub;
      parts.push(sub);
    }
    if (recorded) {
      const tag = document.createElement('span');
      tag.className = 'cmp-recorded';
      tag.title = recorded;
      tag.textContent = 'recorded';
      parts.push(tag);
    }
    td.replaceChildren(...parts);
  }
}

export function initCompares(): void {
  for (const root of document.querySelectorAll<HTMLElement>('[data-compare-root]')) {
    if (root.dataset.ready) continue;
    try {
      new CompareController(root);
    } catch (err) {
      console.error(err);
    }
  }
}
