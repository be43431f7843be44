/**
 * The lab on a lesson page: <Lab scenario="…"/> renders the markup (Lab.astro), this drives
 * it. No framework: one controller per lab element.
 *
 * Live: a WebSocket to the sidecar at /api/lab on the page's own origin, opened when the
 * lab scrolls into view or Run is pressed. The sidecar says `hello` first (is a live lab
 * possible here, the scenarios and their parameters, the limits); then `run`, `action` and
 * `stop` from here, `started`, `event`, `sockets`, `wire-status`, `state`, `result`,
 * `stopped` and `error` from there (src/sidecar/protocol.ts).
 *
 * Recorded: where no sidecar answers, or it says no lab can run on this machine, the page
 * plays /recordings/<scenario>.json (a real run, `npm run lab -- record <scenario>`) with
 * its real timing, and says prominently that it is a recording.
 */
import { connectLab, fetchRecording, modeText, type LabConnection, type RecordingStatus } from './connection.ts';
import { fillClaim, formatDate, labText, packetText, seconds, str, terminalLine } from './format.ts';
import { checkParam, stepFor } from './params.ts';
import { RunPicture } from './picture.ts';
import { Replayer, SocketTableModel } from './replay.ts';
import { SocketTableView, type TableRow } from './sockets.ts';
import { isDark, loadXterm, TermPane } from './terminal.ts';
import type { Action, HelloMessage, LabState, Recording, RunResult, ScenarioInfo, ServerMessage, TimelineEvent } from './types.ts';

type Mode = 'connecting' | 'live' | 'replay' | 'none' | 'disconnected';

/** The log and wire lists keep this many items (the oldest go): a chatty run cannot grow the page without end. */
export const MAX_LIST_ITEMS = 400;
const LIVE_HOWTO = 'To run it live: on Linux, get the course and run npm start (see the README).';

const ACTION_BUTTONS: Array<[Action, string]> = [
  ['cut', 'Cut network'],
  ['restore', 'Restore network'],
  ['restore-new-address', 'Restore with new address'],
  ['close-client', 'Close client'],
  ['kill-client', 'Kill client'],
  ['freeze-client', 'Freeze client'],
  ['thaw-client', 'Thaw client'],
  ['send-frame', 'Send frame'],
  ['reconnect', 'Reconnect'],
];

/** When each fault makes sense, from the sidecar's latest state (it checks again). */
function actionAllowed(action: Action, s: LabState): boolean {
  if (!s.running || !s.handsOn) return false;
  switch (action) {
    case 'cut':
      return s.linkUp;
    case 'restore':
    case 'restore-new-address':
      return !s.linkUp;
    case 'close-client':
    case 'freeze-client':
    case 'send-frame':
      return s.client === 'running';
    case 'kill-client':
      return s.client === 'running' || s.client === 'frozen';
    case 'thaw-client':
      return s.client === 'frozen';
    case 'reconnect':
      return s.client === 'exited';
  }
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<Record<string, string>> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

export class LabController {
  readonly root: HTMLElement;
  readonly scenarioId: string;
  readonly #uid: string;
  readonly #base: string;
  #info: ScenarioInfo | null;
  #mode: Mode = 'connecting';
  #hello: HelloMessage | null = null;
  #ws: LabConnection | null = null;
  #connecting: Promise<void> | null = null;
  #state: LabState | null = null;
  #starting = false;
  #stopping = false;
  #pendingAction = false;
  #runQueued = false;
  #runStartedAt = 0;
  #clock = 0;
  #recording: Recording | null = null;
  #recordingStatus: 'unknown' | RecordingStatus = 'unknown';
  #replayer: Replayer | null = null;
  readonly #model = new SocketTableModel();
  readonly #terms: { server: TermPane; client: TermPane };
  readonly #table: SocketTableView;
  readonly #picture: RunPicture;
  readonly #buttons = new Map<string, HTMLButtonElement>();
  readonly #inputs = new Map<string, HTMLInputElement>();
  readonly #q: <T extends HTMLElement = HTMLElement>(name: string) => T;
  #wireSeen = false;
  #verdict: string | null = null;
  /** The run ended in an error (shown in the alert) rather than a result. */
  #runFailed = false;
  #noneRetry = false;

  constructor(root: HTMLElement) {
    this.root = root;
    this.scenarioId = root.dataset.scenario ?? '';
    this.#uid = root.id || `lab-${this.scenarioId}`;
    this.#base = (root.dataset.base ?? '/').replace(/\/?$/, '/');
    this.#info = root.dataset.info ? (JSON.parse(root.dataset.info) as ScenarioInfo) : null;
    this.#q = <T extends HTMLElement = HTMLElement>(name: string) => {
      const node = root.querySelector<T>(`[data-lab="${name}"]`);
      if (!node) throw new Error(`Lab markup lacks [data-lab="${name}"]`);
      return node;
    };
    const pane = (side: 'server' | 'client') => new TermPane(this.#q(`${side}-term`), { region: this.#q(`${side}-region`), mirror: this.#q(`${side}-mirror`) });
    this.#terms = { server: pane('server'), client: pane('client') };
    this.#table = new SocketTableView(this.#q<HTMLTableSectionElement>('sockets'), this.#q('sockets-note'));
    this.#picture = new RunPicture(this.#q('picture'), this.scenarioId);
    for (const b of root.querySelectorAll<HTMLButtonElement>('button[data-action]')) this.#buttons.set(b.dataset.action!, b);
    this.#renderParams();
    this.#bind();
    this.#setBanner('connecting', 'Looking for a lab server…', '');
    this.#updateControls();
    root.dataset.ready = 'true';
  }

  // ── Setup ────────────────────────────────────────────────────────────────────────────

  #bind(): void {
    this.#buttons.get('run')?.addEventListener('click', () => void this.run());
    this.#buttons.get('stop')?.addEventListener('click', () => this.stop());
    for (const [action] of ACTION_BUTTONS) this.#buttons.get(action)?.addEventListener('click', () => this.action(action));
    this.#q('alert-dismiss').addEventListener('click', () => this.#clearAlert());
    this.#q<HTMLFormElement>('params').addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.run();
    });
    this.#q<HTMLFormElement>('frame-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.action('send-frame');
    });
    // Connect (and fetch xterm) when the lab comes near the viewport, not before.
    if ('IntersectionObserver' in window) {
      const io = new IntersectionObserver(
        (entries) => {
          if (entries.some((e) => e.isIntersecting)) {
            io.disconnect();
            this.activate();
          }
        },
        { rootMargin: '300px 0px' },
      );
      io.observe(this.root);
    } else this.activate();
    new MutationObserver(() => {
      const dark = isDark();
      this.#terms.server.setTheme(dark);
      this.#terms.client.setTheme(dark);
    }).observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
    // Leaving the page ends the lab: the sidecar tears it down when the socket closes.
    window.addEventListener('pagehide', () => {
      this.#replayer?.stop(false);
      this.#ws?.close('page closed');
    });
  }

  /** The lab is about to be used: load the terminals and find out whether it can run live. */
  activate(): void {
    void Promise.all([this.#terms.server.load(), this.#terms.client.load()]).catch((err: unknown) => {
      this.#alert(`The terminals could not be loaded: ${err instanceof Error ? err.message : String(err)}`);
    });
    void this.connect();
  }

  #renderParams(): void {
    const fieldset = this.#q('params-fields');
    const specs = this.#info?.params ?? {};
    const previous = new Map([...this.#inputs].map(([k, input]) => [k, input.value]));
    this.#inputs.clear();
    const names = Object.keys(specs);
    this.#q('params').hidden = names.length === 0;
    fieldset.replaceChildren(
      ...names.map((name) => {
        const spec = specs[name]!;
        const id = `${this.#uid}-p-${name}`;
        const input = el('input', {
          id,
          name,
          type: 'number',
          inputmode: spec.type === 'integer' ? 'numeric' : 'decimal',
          min: String(spec.min),
          max: String(spec.max),
          step: stepFor(spec),
          value: previous.get(name) ?? String(spec.default),
          required: '',
          'aria-describedby': `${id}-desc ${id}-err`,
        });
        input.addEventListener('input', () => {
          this.#validateInput(name);
          this.#renderClaim();
        });
        input.addEventListener('change', () => this.#validateInput(name));
        // Enter runs (a form with several fields and no submit button does not submit).
        input.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter' && !ev.isComposing) {
            ev.preventDefault();
            void this.run();
          }
        });
        this.#inputs.set(name, input);
        const range = `${spec.type === 'integer' ? 'whole number, ' : ''}${spec.min} to ${spec.max}${spec.unit ? ` ${spec.unit}` : ''}; default ${spec.default}`;
        return el(
          'div',
          { class: 'lab-param' },
          el('label', { for: id }, el('span', { class: 'lab-param-name', text: name }), spec.unit ? el('span', { class: 'lab-param-unit', text: ` (${spec.unit})` }) : ''),
          input,
          el('p', { class: 'lab-param-desc', id: `${id}-desc` }, spec.description, ' ', el('span', { class: 'lab-param-range', text: `(${range})` })),
          el('p', { class: 'lab-param-error', id: `${id}-err` }),
        );
      }),
    );
    this.#renderClaim();
  }

  #validateInput(name: string): number | null {
    const spec = this.#info?.params[name];
    const input = this.#inputs.get(name);
    if (!spec || !input) return null;
    const r = checkParam(name, spec, input.value);
    const err = this.root.querySelector<HTMLElement>(`#${CSS.escape(`${input.id}-err`)}`);
    input.setAttribute('aria-invalid', r.ok ? 'false' : 'true');
    if (err) err.textContent = r.ok ? '' : r.error;
    return r.ok ? r.value : null;
  }

  /** Every parameter checked; null (with the messages shown) if one is wrong. */
  #collectParams(): Record<string, number> | null {
    const out: Record<string, number> = {};
    let firstBad: HTMLInputElement | null = null;
    for (const name of this.#inputs.keys()) {
      const v = this.#validateInput(name);
      if (v === null) firstBad ??= this.#inputs.get(name)!;
      else out[name] = v;
    }
    if (firstBad) {
      firstBad.focus();
      return null;
    }
    return out;
  }

  #renderClaim(claim?: string): void {
    const text = claim ?? fillClaim(this.#info?.claim ?? '', Object.fromEntries([...this.#inputs].map(([k, i]) => [k, i.value.trim()])));
    this.#q('claim').textContent = text;
  }

  // ── Connection ───────────────────────────────────────────────────────────────────────

  /** Opens the sidecar connection (once); resolves when the mode is known. */
  connect(): Promise<void> {
    if (this.#mode === 'live' || this.#mode === 'replay') return Promise.resolve();
    this.#connecting ??= (async () => {
      this.#mode = 'connecting';
      this.#setBanner('connecting', 'Looking for a lab server…', '');
      this.#updateControls();
      let connection: LabConnection | null = null;
      const outcome = await connectLab({
        message: (msg) => this.#onMessage(msg),
        invalid: () => this.#alert('The lab server sent something that is not JSON.'),
        close: (ev) => {
          if (this.#ws === connection) this.#ws = null;
          if (this.#mode === 'live') this.#onDisconnect(ev);
        },
      });
      try {
        if (outcome.ok) {
          connection = outcome.connection;
          this.#ws = connection;
          await this.#onHello(outcome.hello);
        } else await this.#fallBack(outcome.reason);
      } finally {
        this.#connecting = null;
      }
    })();
    return this.#connecting;
  }

  async #onHello(hello: HelloMessage): Promise<void> {
    this.#hello = hello;
    const known = hello.scenarios.find((s) => s.id === this.scenarioId);
    if (hello.live && !known) {
      this.#ws?.close('unknown scenario');
      return this.#fallBack(`the lab server does not know the scenario '${this.scenarioId}'`);
    }
    if (!hello.live) {
      this.#ws?.close('no live lab');
      return this.#fallBack(hello.reason ?? 'no live lab can run on this machine');
    }
    if (known && JSON.stringify(known.params) !== JSON.stringify(this.#info?.params)) {
      this.#info = known;
      this.#renderParams();
    } else if (known) this.#info = known;
    this.#mode = 'live';
    this.#setBanner(
      'live',
      `Live lab on this machine: Linux ${hello.kernel}${hello.mode ? ` (${modeText(hello.mode)})` : ''}`,
      `Real processes and a real network in two namespaces. A run may last up to ${hello.limits.maxSeconds} s.${hello.tcpdump ? '' : ' tcpdump is not installed: no packets are shown.'}`,
    );
    this.#table.setEmptyText('No sockets yet: press Run.');
    this.#updateControls();
    if (this.#runQueued) {
      this.#runQueued = false;
      await this.run();
    }
  }

  #onDisconnect(ev: CloseEvent): void {
    const wasRunning = this.#state?.running ?? false;
    this.#mode = 'disconnected';
    this.#state = null;
    this.#starting = false;
    this.#stopping = false;
    this.#pendingAction = false;
    this.#stopClock();
    this.#table.freeze();
    this.#setProgress('');
    this.#setBanner('disconnected', 'The connection to the lab server closed', `Press Run to connect again.${ev.reason ? ` (${ev.reason})` : ''}`);
    if (wasRunning) this.#alert('The connection to the lab server closed during the run; the lab was torn down.');
    this.#updateControls();
  }

  /** No live lab: play the recording if there is one, else say there is none. */
  async #fallBack(reason: string): Promise<void> {
    const rec = await this.#loadRecording();
    const shown = reason.replace(/\.$/, '');
    if (rec) {
      this.#mode = 'replay';
      this.#info = this.#info ?? null;
      this.#setBanner(
        'recorded',
        `Recorded run (Linux ${rec.kernel}, ${formatDate(rec.recordedAt)}) — not live`,
        `Why not live: ${shown}. Run replays a real run of this scenario, with its real timing and the parameters it ran with; the fault buttons stay off. ${LIVE_HOWTO}`,
      );
      for (const [name, input] of this.#inputs) {
        if (name in rec.params) input.value = String(rec.params[name]);
        input.readOnly = true;
      }
      this.#renderClaim(rec.claim);
      this.#table.setEmptyText('No sockets yet: press Run to replay the recording.');
    } else {
      this.#mode = 'none';
      this.#setBanner(
        'unavailable',
        'No live lab here, and no recording of this scenario yet',
        `Why not live: ${shown}. ${this.#recordingStatus === 'invalid' ? `The file recordings/${this.scenarioId}.json is not a valid recording. ` : ''}${LIVE_HOWTO} Run looks again.`,
      );
      this.#table.setEmptyText('Nothing to show: no live lab and no recording.');
    }
    this.#updateControls();
    if (this.#runQueued) {
      this.#runQueued = false;
      if (this.#mode === 'replay') this.#startReplay();
      else if (this.#noneRetry) this.#alert('Still no lab server, and no recording of this scenario.');
    }
    this.#noneRetry = false;
  }

  async #loadRecording(): Promise<Recording | null> {
    if (this.#recordingStatus !== 'unknown') return this.#recording;
    const { status, recording } = await fetchRecording(this.#base, this.scenarioId);
    this.#recordingStatus = status;
    this.#recording = recording;
    return recording;
  }

  #send(msg: Parameters<LabConnection['send']>[0]): boolean {
    if (!this.#ws?.send(msg)) {
      this.#alert('Not connected to the lab server.');
      return false;
    }
    return true;
  }

  // ── Commands ─────────────────────────────────────────────────────────────────────────

  async run(): Promise<void> {
    this.#clearAlert();
    switch (this.#mode) {
      case 'connecting':
        this.#runQueued = true;
        this.#setProgress('Waiting for the lab server…');
        return this.connect();
      case 'disconnected':
        this.#runQueued = true;
        return this.connect();
      case 'none':
        // Perhaps a lab server was started (or a recording added) since: look again.
        this.#recordingStatus = 'unknown';
        this.#recording = null;
        this.#runQueued = true;
        this.#noneRetry = true;
        return this.connect();
      case 'replay':
        if (!this.#replayer?.running) this.#startReplay();
        return;
      case 'live': {
        // Run is disabled from here until the lab has been torn down (Stop takes the focus);
        // a second press that gets here anyway (Enter in a parameter) does nothing.
        if (this.#state?.running || this.#starting) return;
        const params = this.#collectParams();
        if (!params) return;
        this.#resetPanes();
        this.#starting = true;
        this.#updateControls();
        this.#setProgress('Starting a lab…');
        if (!this.#send({ type: 'run', scenario: this.scenarioId, params })) {
          this.#starting = false;
          this.#updateControls();
        }
        return;
      }
    }
  }

  stop(): void {
    if (this.#mode === 'replay') {
      this.#replayer?.stop(true, false);
      return;
    }
    // Also while the lab is being made: the sidecar finishes making it, tears it down and
    // answers `stopped`.
    if (this.#mode === 'live' && (this.#state?.running || this.#starting) && !this.#stopping) {
      this.#stopping = true;
      this.#updateControls();
      this.#setProgress(this.#starting ? 'Stopping: the lab is being made, then it is torn down…' : 'Stopping and tearing the lab down…');
      if (!this.#send({ type: 'stop' })) {
        this.#stopping = false;
        this.#updateControls();
      }
    }
  }

  action(action: Action): void {
    if (this.#mode !== 'live' || this.#pendingAction || !this.#state || !actionAllowed(action, this.#state)) return;
    const msg: { type: 'action'; action: Action; payload?: string } = { type: 'action', action };
    if (action === 'send-frame') {
      const input = this.#q<HTMLInputElement>('frame-text');
      const text = input.value.replace(/[\r\n]+/g, ' ').trim();
      if (text.length < 1 || text.length > 1024) {
        this.#alert('The frame text must be 1 to 1024 characters.');
        input.focus();
        return;
      }
      msg.payload = text;
    }
    this.#clearAlert();
    // One action at a time: the sidecar answers each with a fresh `state`.
    this.#pendingAction = true;
    this.root.querySelector('[data-lab="faults"]')?.setAttribute('aria-busy', 'true');
    if (!this.#send(msg)) this.#actionDone();
  }

  #actionDone(): void {
    this.#pendingAction = false;
    this.root.querySelector('[data-lab="faults"]')?.removeAttribute('aria-busy');
  }

  // ── Live messages ────────────────────────────────────────────────────────────────────

  #onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'hello':
        return;
      case 'started':
        this.#startClock();
        this.#picture.theory = msg.theory;
        this.#renderClaim(msg.claim);
        this.#setBanner(
          'live',
          `Live run: Linux ${msg.kernel} (${modeText(msg.mode)})`,
          `Server ${msg.server}, client ${msg.client}; parameters ${Object.entries(msg.params)
            .map(([k, v]) => `${k} = ${v}`)
            .join(', ') || 'none'}.`,
        );
        return;
      case 'event':
        return this.#route(msg.event, false);
      case 'sockets': {
        const now = performance.now();
        const rows: TableRow[] = msg.rows.map((r) => ({
          key: r.key,
          state: r.state,
          local: r.local,
          peer: r.peer,
          sendQ: r.sendQ,
          recvQ: r.recvQ,
          timer: r.timer ? { name: r.timer.name, count: r.timer.count, expiresAt: now + r.timer.expiresMs } : null,
        }));
        this.#table.update(rows);
        return;
      }
      case 'wire-status':
        if (!msg.available) this.#wireNote(msg.note ?? 'No packet capture in this lab.');
        else this.#wireNote('Capturing with tcpdump on the server’s side of the link.');
        return;
      case 'state': {
        const was = this.#state?.running ?? false;
        this.#state = msg.state;
        if (msg.state.running) this.#starting = false;
        if (!msg.state.running) {
          this.#stopping = false;
          if (was) this.#stopClock();
        }
        this.#actionDone();
        this.#updateControls();
        return;
      }
      case 'result':
        this.#picture.finish();
        this.#renderResult(msg.result, null);
        return;
      case 'stopped':
        this.#picture.finish();
        this.#starting = false;
        this.#stopping = false;
        // The lab is gone when this is sent (its `state` follows): no button may act on it meanwhile.
        if (this.#state) this.#state = { ...this.#state, running: false };
        this.#stopClock();
        this.#table.freeze();
        this.#setProgress(
          msg.reason === 'finished'
            ? this.#runFailed && !this.#verdict
              ? 'Run failed (the message is above); the lab was torn down.'
              : `Run finished${this.#verdict ? `: ${this.#verdict.toLowerCase()} (the result is below)` : ''}; the lab was torn down.`
            : `Run ${msg.reason}; the lab was torn down.`,
        );
        this.#updateControls();
        return;
      case 'error':
        if (['bad-params', 'unknown-scenario', 'busy', 'capacity', 'no-lab', 'run-failed', 'time-limit'].includes(msg.code)) this.#starting = false;
        if (['no-lab', 'run-failed', 'time-limit'].includes(msg.code)) this.#runFailed = true;
        if (msg.code === 'not-running' && this.#stopping && !this.#pendingAction) {
          // Stop crossed a refused run (capacity, bad parameters) on its way: nothing to stop.
          this.#stopping = false;
          this.#updateControls();
          return;
        }
        if (msg.code === 'action-failed' || msg.code === 'not-running') this.#actionDone();
        this.#alert(msg.message);
        this.#updateControls();
        return;
    }
  }

  /** Sends a timeline event (live or replayed) to its pane, and to the picture. */
  #route(e: TimelineEvent, replay: boolean): void {
    this.#picture.add(e);
    switch (e.source) {
      case 'server':
        this.#terms.server.writeln(terminalLine(e, 'server'));
        return;
      case 'client':
        this.#terms.client.writeln(terminalLine(e, 'client'));
        return;
      case 'lab':
        this.#logLine(e);
        return;
      case 'wire':
        if (e.event === 'packet' || e.event === 'dropped') this.#wireLine(e);
        else if (e.event === 'unavailable') this.#wireNote(String(e.note ?? 'No packet capture in this lab.'));
        return;
      case 'kernel':
        if (e.event === 'dropped') return; // the next whole table makes up for what was dropped
        // Live, the table comes whole in `sockets` messages; a recording has only the changes.
        if (replay && this.#replayer && this.#model.apply(e, this.#replayer.startedAt)) this.#table.update(this.#model.list());
        return;
    }
  }

  // ── Replay ───────────────────────────────────────────────────────────────────────────

  #startReplay(): void {
    const rec = this.#recording;
    if (!rec) return;
    this.#resetPanes();
    this.#model.clear();
    this.#renderClaim(rec.claim);
    this.#picture.reset({ theory: rec.theory, now: () => (this.#replayer?.running ? (performance.now() - this.#replayer.startedAt) / 1000 : 0) });
    this.#replayer = new Replayer(rec.timeline, {
      event: (e) => this.#route(e, true),
      progress: (t, total) => {
        this.#setProgress(`Replaying the recording: ${t.toFixed(1)} s of ${total.toFixed(1)} s`);
        this.#picture.tick();
      },
      end: (completed) => {
        this.#picture.finish();
        this.#table.freeze();
        if (completed) {
          this.#setProgress(`Replay finished (${this.#replayer!.total.toFixed(1)} s, as recorded).`);
          this.#renderResult(rec, rec);
        } else this.#setProgress('Replay stopped.');
        if (!this.#wireSeen) this.#wireNote('No packets in this recording.');
        this.#updateControls();
      },
    });
    this.#replayer.start();
    this.#updateControls();
  }

  // ── Rendering ────────────────────────────────────────────────────────────────────────

  #resetPanes(): void {
    this.#terms.server.clear();
    this.#terms.client.clear();
    this.#table.clear();
    this.#q('log').replaceChildren();
    this.#q('wire').replaceChildren();
    this.#picture.reset({ now: () => (this.#clock ? (performance.now() - this.#runStartedAt) / 1000 : 0) });
    this.#wireSeen = false;
    this.#verdict = null;
    this.#runFailed = false;
    this.#wireNote('');
    const result = this.#q('result');
    result.hidden = true;
    result.replaceChildren();
    this.#setProgress('');
  }

  /**
   * Every control from the lab's real state. Live, a lab is "busy" from Run until the sidecar
   * says it is torn down: while it is being made (`#starting`), while it runs, while it is
   * torn down (`#stopping`). Run is off all that time, Stop on until it is pressed; faults and
   * the frame text only while it runs and is not being stopped, each when the sidecar's
   * latest state allows it.
   */
  #updateControls(): void {
    const live = this.#mode === 'live';
    const replaying = this.#mode === 'replay' && (this.#replayer?.running ?? false);
    const labRunning = live && (this.#state?.running ?? false);
    const busy = live && (this.#starting || labRunning);
    const running = live ? labRunning : replaying;
    const set = (name: string, enabled: boolean) => {
      const b = this.#buttons.get(name);
      if (b) b.disabled = !enabled;
    };
    set(
      'run',
      (this.#mode === 'connecting' || this.#mode === 'disconnected' || this.#mode === 'none' || (live && !busy) || (this.#mode === 'replay' && !replaying)) &&
        !(this.#mode === 'connecting' && this.#runQueued),
    );
    set('stop', (busy && !this.#stopping) || replaying);
    const acts = labRunning && !this.#stopping ? this.#state : null;
    for (const [action] of ACTION_BUTTONS) set(action, acts !== null && actionAllowed(action, acts));
    this.#q<HTMLInputElement>('frame-text').disabled = !(acts !== null && actionAllowed('send-frame', acts));
    for (const input of this.#inputs.values()) input.disabled = busy || this.#mode === 'none';
    this.root.dataset.mode = this.#mode;
    this.root.dataset.running = String(running);
    this.root.querySelector('[data-lab="link"]')!.textContent = live && this.#state?.running ? (this.#state.linkUp ? 'network up' : 'network cut') : '';
    this.root.querySelector('[data-lab="client-state"]')!.textContent =
      live && this.#state?.running && this.#state.client !== 'none' ? `client ${this.#state.client}${this.#state.clientAddress ? ` (${this.#state.clientAddress})` : ''}` : '';
    this.#rescueFocus();
  }

  /**
   * A control that just got disabled must not take the keyboard focus with it: it goes to
   * the next one of its group that is on (Cut network → Restore network), else to Stop, Run…
   */
  #rescueFocus(): void {
    const active = document.activeElement;
    if (!(active instanceof HTMLButtonElement || active instanceof HTMLInputElement) || !this.root.contains(active) || !active.disabled) return;
    const group = [...(active.closest('.lab-group')?.querySelectorAll<HTMLButtonElement>('button') ?? [])];
    const next = [...group, this.#buttons.get('stop'), this.#buttons.get('run'), ...this.#buttons.values()].find((b) => b && !b.disabled);
    if (next) next.focus();
    else this.root.focus();
  }

  #setBanner(kind: 'connecting' | 'live' | 'recorded' | 'unavailable' | 'disconnected', title: string, detail: string): void {
    const banner = this.#q('banner');
    banner.dataset.kind = kind;
    this.#q('status').textContent = title;
    this.#q('status-detail').textContent = detail;
  }

  #setProgress(text: string): void {
    this.#q('progress').textContent = text;
  }

  #startClock(): void {
    this.#runStartedAt = performance.now();
    clearInterval(this.#clock);
    const tick = () => {
      // A run stopped while its lab was being made still starts: keep saying it is stopping.
      if (!this.#stopping) this.#setProgress(`Running: ${((performance.now() - this.#runStartedAt) / 1000).toFixed(0)} s`);
      this.#picture.tick();
    };
    tick();
    this.#clock = window.setInterval(tick, 1000);
  }

  #stopClock(): void {
    clearInterval(this.#clock);
    this.#clock = 0;
  }

  #alert(message: string): void {
    this.#q('alert-text').textContent = message;
    this.#q('alert').dataset.shown = 'true';
  }

  #clearAlert(): void {
    this.#q('alert-text').textContent = '';
    delete this.#q('alert').dataset.shown;
  }

  #append(list: HTMLElement, item: HTMLElement): void {
    const pane = list.parentElement;
    const atBottom = !pane || pane.scrollHeight - pane.scrollTop - pane.clientHeight < 24;
    list.append(item);
    while (list.childElementCount > MAX_LIST_ITEMS) list.firstElementChild!.remove();
    if (pane && atBottom) pane.scrollTop = pane.scrollHeight;
  }

  #logLine(e: TimelineEvent): void {
    // A recording's "your turn" has no buttons behind it.
    if (e.event === 'hands-on' && this.#mode !== 'live') return;
    const kind = e.event === 'step' || e.event === 'hands-on' ? 'step' : e.event === 'ready' ? 'ready' : 'fault';
    this.#append(this.#q('log'), el('li', { class: `lab-log-${kind}`, 'data-event': e.event }, el('span', { class: 'lab-t', text: `${seconds(e.t, 0)} s` }), ' ', labText(e)));
  }

  #wireLine(e: TimelineEvent): void {
    if (e.event === 'dropped') {
      this.#append(this.#q('wire'), el('li', { class: 'lab-pkt lab-pkt-dropped' }, el('span', { class: 'lab-t', text: seconds(e.t) }), ' ', str(e.line)));
      return;
    }
    if (!this.#wireSeen) {
      this.#wireSeen = true;
      this.#wireNote('');
    }
    const flags = String(e.flags ?? '');
    const kind = flags.includes('R') ? 'rst' : flags.includes('F') ? 'fin' : flags.includes('S') ? 'syn' : Number(e.length) > 0 ? 'data' : 'ack';
    this.#append(this.#q('wire'), el('li', { class: `lab-pkt lab-pkt-${kind}` }, el('span', { class: 'lab-t', text: seconds(e.t) }), ' ', packetText(e)));
  }

  #wireNote(text: string): void {
    const note = this.#q('wire-note');
    note.textContent = text;
    note.hidden = text === '';
  }

  #renderResult(result: RunResult | Recording, recording: Recording | null): void {
    const box = this.#q('result');
    const held = result.claimHeld;
    const verdict = held ? 'The claim held' : 'The claim did not hold';
    const checks = el(
      'ul',
      { class: 'lab-checks' },
      ...result.checks.map((c) =>
        el(
          'li',
          { class: c.held ? 'lab-check-held' : 'lab-check-failed' },
          el('span', { class: 'lab-check-mark', 'aria-hidden': 'true', text: c.held ? '✓' : '✗' }),
          el('span', { class: 'sr-only', text: c.held ? 'Held: ' : 'Did not hold: ' }),
          el('span', { class: 'lab-check-name', text: c.name }),
          el('span', { class: 'lab-check-detail', text: c.detail }),
        ),
      ),
    );
    const params = Object.entries(result.params)
      .map(([k, v]) => `${k} = ${v}`)
      .join(', ');
    const measured = recording
      ? `Recorded on Linux ${recording.kernel} (${recording.mode}) on ${formatDate(recording.recordedAt)}${recording.node ? ` with Node ${recording.node}` : ''}, in ${recording.wallSeconds.toFixed(1)} s. Not a live run.`
      : `Measured on kernel Linux ${result.kernel} (${result.mode}) just now, in ${result.wallSeconds.toFixed(1)} s.`;
    box.replaceChildren(
      el('h4', { class: 'lab-result-title' }, el('span', { 'aria-hidden': 'true', text: held ? '✓ ' : '✗ ' }), `${verdict}${recording ? ' (recorded run)' : ''}`),
      el('p', {}, el('strong', { text: 'Claim: ' }), result.claim),
      el('p', {}, el('strong', { text: 'Theory: ' }), result.theory.summary),
      checks,
      el('p', { class: 'lab-measured' }, measured, params ? ` Parameters: ${params}.` : ''),
      ...interventionNote(result),
      el('details', {}, el('summary', { text: 'Everything measured (observations)' }), el('pre', { text: JSON.stringify(result.observations, null, 2) })),
    );
    box.dataset.held = String(held);
    box.hidden = false;
    this.#verdict = verdict;
    this.#setProgress(`${verdict}. The result is below the picture of the run.`);
  }
}

/** A run the learner changed says so: its claim is about the run as the scenario scripts it. */
function interventionNote(result: RunResult | Recording): HTMLElement[] {
  const done = 'interventions' in result ? result.interventions : [];
  if (!done.length) return [];
  const list = done.map((i) => `${i.action} at ${i.t.toFixed(1)} s`).join(', ');
  return [
    el(
      'p',
      { class: 'lab-interventions' },
      el('strong', { text: 'You changed this run: ' }),
      `${list}. The claim is about the run without your changes; run it again without them to compare.`,
    ),
  ];
}

/** Starts every lab on the page (once each). */
export function initLabs(): void {
  for (const root of document.querySelectorAll<HTMLElement>('[data-lab-root]')) {
    if (root.dataset.ready) continue;
    try {
      new LabController(root);
    } catch (err) {
      console.error(err);
      const alertBox = root.querySelector<HTMLElement>('[data-lab="alert"]');
      if (alertBox) {
        alertBox.dataset.shown = 'true';
        alertBox.textContent = `The lab could not start: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
  }
}

export { loadXterm };
