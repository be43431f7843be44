/**
 * The server kernel's socket table (what `ss -tanoi` says), as a real <table>. A row whose
 * state changed is highlighted for a moment; timers count down between updates, from
 * `expiresMs` at the time of the snapshot.
 */
import { formatMs } from './format.ts';

export interface TableRow {
  key: string;
  state: string;
  local: string;
  peer: string;
  sendQ: number;
  recvQ: number;
  /** `expiresAt` is on the performance.now() clock. */
  timer: { name: string; expiresAt: number; count: number } | null;
}

const TIMER_HELP: Record<string, string> = {
  on: 'retransmission timer; the number counts retransmissions so far',
  keepalive: 'keepalive timer; the number counts unanswered probes',
  timewait: 'TIME-WAIT timer',
  persist: 'zero-window probe timer',
};

const STATE_ORDER: Record<string, number> = { LISTEN: 0 };

export class SocketTableView {
  readonly #body: HTMLTableSectionElement;
  readonly #empty: HTMLTableRowElement;
  #rows = new Map<string, { tr: HTMLTableRowElement; row: TableRow; timerCell: HTMLTableCellElement; highlight: number }>();
  #ticker = 0;
  #frozenAt: number | null = null;

  readonly #note: HTMLElement | null;

  constructor(body: HTMLTableSectionElement, note: HTMLElement | null = null) {
    this.#body = body;
    this.#note = note;
    this.#empty = document.createElement('tr');
    this.#empty.setAttribute('role', 'row');
    const td = document.createElement('td');
    td.setAttribute('role', 'cell');
    td.colSpan = 6;
    td.className = 'lab-sockets-empty';
    td.textContent = 'No sockets yet: press Run.';
    this.#empty.append(td);
    this.#body.replaceChildren(this.#empty);
  }

  setEmptyText(text: string): void {
    this.#empty.firstElementChild!.textContent = text;
  }

  clear(): void {
    for (const r of this.#rows.values()) clearTimeout(r.highlight);
    this.#rows.clear();
    this.#frozenAt = null;
    if (this.#note) this.#note.textContent = '';
    this.#body.replaceChildren(this.#empty);
    this.#stopTicker();
  }

  /** Replaces the table with these rows. */
  update(rows: TableRow[]): void {
    this.#frozenAt = null;
    if (this.#note) this.#note.textContent = '';
    const seen = new Set<string>();
    const sorted = [...rows].sort((a, b) => (STATE_ORDER[a.state] ?? 1) - (STATE_ORDER[b.state] ?? 1));
    const firstFill = this.#rows.size === 0;
    for (const row of sorted) {
      seen.add(row.key);
      const known = this.#rows.get(row.key);
      if (!known) {
        const tr = document.createElement('tr');
        tr.dataset.key = row.key;
        // Explicit roles, as on the table (Lab.astro): a narrow lab shows rows as cards.
        tr.setAttribute('role', 'row');
        const cells = ['state', 'local', 'peer', 'sendq', 'recvq', 'timer'].map((c) => {
          const td = document.createElement('td');
          td.className = `lab-col-${c}`;
          td.setAttribute('role', 'cell');
          tr.append(td);
          return td;
        });
        const entry = { tr, row, timerCell: cells[5]!, highlight: 0 };
        this.#rows.set(row.key, entry);
        this.#fill(entry, null);
        if (!firstFill) this.#flash(entry);
      } else {
        const before = known.row;
        known.row = row;
        this.#fill(known, before);
        if (before.state !== row.state) this.#flash(known);
      }
    }
    for (const [key, entry] of this.#rows) {
      if (!seen.has(key)) {
        clearTimeout(entry.highlight);
        entry.tr.remove();
        this.#rows.delete(key);
      }
    }
    // Keep the DOM order the sorted order (moves only what is out of place).
    let prev: Element | null = null;
    for (const row of sorted) {
      const tr = this.#rows.get(row.key)!.tr;
      const want: Element | null = prev ? prev.nextElementSibling : this.#body.firstElementChild;
      if (want !== tr) prev ? prev.after(tr) : this.#body.prepend(tr);
      prev = tr;
    }
    if (this.#rows.size === 0) this.#body.replaceChildren(this.#empty);
    else this.#empty.remove();
    if ([...this.#rows.values()].some((r) => r.row.timer)) this.#startTicker();
    else this.#stopTicker();
  }

  /** Stops the countdowns where they are (the run ended: nothing updates them any more). */
  freeze(): void {
    if (this.#frozenAt !== null) return;
    this.#frozenAt = performance.now();
    if (this.#note && this.#rows.size) this.#note.textContent = 'The run is over: the table shows the last snapshot before the lab was torn down.';
    this.#tick();
    this.#stopTicker();
  }

  get size(): number {
    return this.#rows.size;
  }

  #fill(entry: { tr: HTMLTableRowElement; row: TableRow; timerCell: HTMLTableCellElement }, before: TableRow | null): void {
    const { tr, row } = entry;
    const [state, local, peer, sendQ, recvQ] = Array.from(tr.cells);
    state!.textContent = row.state;
    state!.dataset.state = row.state;
    local!.textContent = row.local;
    peer!.textContent = row.peer;
    sendQ!.textContent = String(row.sendQ);
    recvQ!.textContent = String(row.recvQ);
    // For a listening socket ss reports the backlog in Send-Q and the accept queue in Recv-Q.
    const listening = row.state === 'LISTEN';
    sendQ!.title = listening ? 'backlog (the most connections waiting for accept())' : 'bytes sent, not yet acknowledged';
    recvQ!.title = listening ? 'connections waiting for accept()' : 'bytes received, not yet read by the program';
    sendQ!.classList.toggle('lab-nonzero', !listening && row.sendQ > 0);
    recvQ!.classList.toggle('lab-nonzero', row.recvQ > 0);
    if (before && before.sendQ !== row.sendQ) this.#pulse(sendQ!);
    if (before && (before.timer?.count ?? 0) !== (row.timer?.count ?? 0)) this.#pulse(entry.timerCell);
    this.#renderTimer(entry);
  }

  #renderTimer(entry: { row: TableRow; timerCell: HTMLTableCellElement }): void {
    const timer = entry.row.timer;
    const cell = entry.timerCell;
    if (!timer) {
      cell.textContent = '—';
      cell.title = 'no timer';
      cell.classList.remove('lab-has-timer');
      return;
    }
    const now = this.#frozenAt ?? performance.now();
    const left = Math.max(0, timer.expiresAt - now);
    cell.textContent = `${timer.name} ${formatMs(left)}${timer.count ? ` · ${timer.count}` : ''}`;
    cell.title = TIMER_HELP[timer.name] ?? `${timer.name} timer`;
    cell.classList.add('lab-has-timer');
  }

  #flash(entry: { tr: HTMLTableRowElement; highlight: number }): void {
    clearTimeout(entry.highlight);
    entry.tr.classList.remove('lab-row-changed');
    // Restart the animation: a reflow between removing and adding the class.
    void entry.tr.offsetWidth;
    entry.tr.classList.add('lab-row-changed');
    entry.highlight = window.setTimeout(() => entry.tr.classList.remove('lab-row-changed'), 2500);
  }

  #pulse(cell: HTMLElement): void {
    cell.classList.remove('lab-cell-changed');
    void cell.offsetWidth;
    cell.classList.add('lab-cell-changed');
    window.setTimeout(() => cell.classList.remove('lab-cell-changed'), 1500);
  }

  #tick(): void {
    for (const entry of this.#rows.values()) if (entry.row.timer) this.#renderTimer(entry);
  }

  #startTicker(): void {
    if (this.#ticker) return;
    // Ten updates a second: smooth enough for tenths of a second, cheap enough for a tab.
    this.#ticker = window.setInterval(() => this.#tick(), 100);
  }

  #stopTicker(): void {
    clearInterval(this.#ticker);
    this.#ticker = 0;
  }
}
