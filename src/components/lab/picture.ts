/**
 * The picture of a run under a lab: a timeline of everything that happened and a ladder
 * of one connection's packets, drawn as SVG in the page from the run's own events (live
 * or replayed). ./picture-model.ts computes what to draw; this draws it.
 *
 * Bounded whatever the run: the events kept are capped (MAX_EVENTS; the faults and what
 * the server logs about connections ending are always kept), marks closer than a few
 * pixels are drawn as one cluster with a count, the ladder shows at most LADDER_MAX
 * packets of one connection, the text tables at most TABLE_MAX rows.
 *
 * Accessible: each SVG is role="img" labelled by sentences that say what it shows (the
 * summary, visible); the marks carry <title>s; a <details> holds the same as a table.
 * Colours come from Starlight's variables (Lab.astro's styles), so both themes work.
 */
import { at, buildPicture, clusterMarks, defaultConnection, duration, ladderRows, LANES, participle, type Cluster, type Lane, type LadderRow, type PictureModel, type Tone, type WirePacket } from './picture-model.ts';
import type { TimelineEvent } from './types.ts';

export const MAX_EVENTS = 20_000;
const LADDER_MAX = 40;
const TABLE_MAX = 150;
const RENDER_EVERY_MS = 250;

const NS = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, ...children: Array<Node | string>): SVGElementTagNameMap[K] {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

function html<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

const title = (text: string) => svg('title', {}, text);

/** The faults and the ends of connections: never dropped, however busy the run. */
function important(e: TimelineEvent): boolean {
  return e.source === 'lab' || (e.source === 'server' && ['error', 'close', 'timeout', 'end', 'accept-error', 'listen'].includes(e.event));
}

/** Tick step for an axis of `span` seconds with room for about `count` ticks. */
export function tickStep(span: number, count: number): number {
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
  return steps.find((s) => span / s <= count) ?? Math.ceil(span / count / 3600) * 3600;
}

/** A shape for a tone: not colour alone tells a probe from a retransmission or an error. */
function shape(tone: Tone, x: number, y: number): SVGElement {
  switch (tone) {
    case 'bad':
      return svg('rect', { x: x - 4.5, y: y - 4.5, width: 9, height: 9, rx: 1 });
    case 'retrans':
      return svg('path', { d: `M${x} ${y - 5.5}L${x + 5.5} ${y + 4.5}H${x - 5.5}Z` });
    case 'probe':
      return svg('path', { d: `M${x} ${y - 5.5}L${x + 5.5} ${y}L${x} ${y + 5.5}L${x - 5.5} ${y}Z` });
    case 'fault':
      return svg('rect', { x: x - 1.5, y: y - 8, width: 3, height: 16, rx: 1 });
    case 'fin':
      return svg('circle', { cx: x, cy: y, r: 4, 'stroke-width': 2, 'fill-opacity': 0.15 });
    case 'quiet':
      return svg('circle', { cx: x, cy: y, r: 2.5 });
    default:
      return svg('circle', { cx: x, cy: y, r: 4 });
  }
}

export class RunPicture {
  readonly root: HTMLElement;
  readonly scenario: string;
  readonly #uid: string;
  #events: TimelineEvent[] = [];
  #dropped = 0;
  #theory: { expectedSeconds?: number; [key: string]: unknown } | null = null;
  #finished = false;
  #now: (() => number) | null = null;
  #timer = 0;
  #lastRender = 0;
  #renderCost = 0;
  #width = 0;
  #selected: string | null = null;
  #userSelected = false;
  #model: PictureModel | null = null;
  readonly #parts: {
    empty: HTMLElement;
    body: HTMLElement;
    summary: HTMLElement;
    timeline: HTMLElement;
    timelineTable: HTMLDetailsElement;
    ladderFig: HTMLElement;
    ladderHead: HTMLElement;
    select: HTMLSelectElement;
    ladder: HTMLElement;
    ladderTable: HTMLDetailsElement;
  };

  constructor(root: HTMLElement, scenario: string) {
    this.root = root;
    this.scenario = scenario;
    this.#uid = `${root.closest('[id]')?.id ?? 'lab'}-pic`;
    const summaryId = `${this.#uid}-summary`;
    const selectId = `${this.#uid}-conn`;
    const select = html('select', { id: selectId, class: 'lab-pic-select' });
    select.addEventListener('change', () => {
      this.#selected = select.value;
      this.#userSelected = true;
      this.#render();
    });
    const timelineTable = html('details', { class: 'lab-pic-details' }, html('summary', {}, 'The timeline as a table'));
    const ladderTable = html('details', { class: 'lab-pic-details' }, html('summary', {}, 'The packets as a table'));
    for (const d of [timelineTable, ladderTable]) d.addEventListener('toggle', () => d.open && this.#render());
    this.#parts = {
      empty: html('p', { class: 'lab-pic-empty' }, 'Run the lab: a timeline of the run and a ladder of its packets are drawn here from its events as they happen.'),
      body: html('div', { class: 'lab-pic-body' }),
      summary: html('div', { class: 'lab-pic-summary', id: summaryId }),
      timeline: html('div', { class: 'lab-pic-svg' }),
      timelineTable,
      ladderFig: html('figure', { class: 'lab-pic-fig' }),
      ladderHead: html('div', { class: 'lab-pic-ladder-head' }),
      select,
      ladder: html('div', { class: 'lab-pic-svg lab-pic-ladder-scroll' }),
      ladderTable,
    };
    const p = this.#parts;
    p.body.hidden = true;
    p.ladderHead.append(html('label', { for: selectId }, 'Connection '), select);
    p.ladderFig.append(
      html('figcaption', {}, html('strong', {}, 'Packet ladder'), ' — one connection, client on the left, server on the right, time downwards (long silences shortened)'),
      p.ladderHead,
      p.ladder,
      p.ladderTable,
    );
    p.body.append(
      html(
        'figure',
        { class: 'lab-pic-fig' },
        html('figcaption', {}, html('strong', {}, 'Timeline'), ' — seconds since the lab started'),
        p.timeline,
        legend(),
        p.summary,
        p.timelineTable,
      ),
      p.ladderFig,
    );
    root.replaceChildren(p.empty, p.body);
    new ResizeObserver(() => {
      const w = Math.floor(this.root.clientWidth) - 2;
      if (w > 0 && w !== this.#width && this.#events.length) this.#schedule(true);
    }).observe(root);
  }

  /** A new run: forget the last one. `now` gives the live clock (seconds since the lab started). */
  reset(options: { theory?: RunPicture['theory']; now?: (() => number) | null } = {}): void {
    this.#events = [];
    this.#dropped = 0;
    this.#theory = options.theory ?? null;
    this.#now = options.now ?? null;
    this.#finished = false;
    this.#selected = null;
    this.#userSelected = false;
    this.#model = null;
    clearTimeout(this.#timer);
    this.#timer = 0;
    this.#parts.empty.hidden = false;
    this.#parts.body.hidden = true;
  }

  get theory(): { expectedSeconds?: number; [key: string]: unknown } | null {
    return this.#theory;
  }

  set theory(t: { expectedSeconds?: number; [key: string]: unknown } | null) {
    this.#theory = t;
    this.#schedule();
  }

  get eventCount(): number {
    return this.#events.length;
  }

  add(e: TimelineEvent): void {
    if (typeof e.t !== 'number' || !Number.isFinite(e.t)) return;
    if (this.#events.length >= MAX_EVENTS && !(important(e) && this.#events.length < MAX_EVENTS + 2000)) {
      this.#dropped++;
      return;
    }
    this.#events.push(e);
    this.#schedule();
  }

  /** The run ended: open bands close at its last event, the clock stops. */
  finish(): void {
    this.#finished = true;
    this.#now = null;
    this.#schedule(true);
  }

  /** Live: move the axis with the clock even when nothing happens. */
  tick(): void {
    if (this.#now && this.#events.length) this.#schedule();
  }

  #schedule(now = false): void {
    if (this.#timer) {
      if (!now) return;
      clearTimeout(this.#timer);
    }
    // A big run costs more to draw: draw it less often (the page stays responsive).
    const every = Math.max(RENDER_EVERY_MS, this.#renderCost * 5);
    const wait = now ? 0 : Math.max(0, this.#lastRender + every - performance.now());
    this.#timer = window.setTimeout(() => {
      this.#timer = 0;
      this.#render();
    }, wait);
  }

  #render(): void {
    const started = performance.now();
    this.#lastRender = started;
    if (!this.#events.length) return;
    try {
      this.#draw();
    } finally {
      this.#renderCost = performance.now() - started;
    }
  }

  #draw(): void {
    const p = this.#parts;
    p.empty.hidden = true;
    p.body.hidden = false;
    // The SVGs sit in bordered boxes: 2 px less than the pane, so nothing scrolls sideways.
    this.#width = Math.max(0, Math.floor(this.root.clientWidth) - 2) || 640;
    const model = buildPicture({
      scenario: this.scenario,
      events: this.#events,
      theory: this.#theory,
      finished: this.#finished,
      now: this.#now ? this.#now() : undefined,
      dropped: this.#dropped,
    });
    this.#model = model;
    p.summary.replaceChildren(...model.summary.map((s) => html('p', {}, s)));
    p.timeline.replaceChildren(this.#timeline(model));
    if (p.timelineTable.open) fillTable(p.timelineTable, ['Time', 'Where', 'What'], timelineRows(model));
    this.#renderLadder(model);
  }

  // ── Timeline ─────────────────────────────────────────────────────────────────────────

  #timeline(m: PictureModel): SVGSVGElement {
    const W = Math.max(300, this.#width);
    const narrow = W < 560;
    const L = narrow ? 64 : 100;
    const R = 14;
    const laneH = 28;
    const showSockets = m.sockets.some((s) => s.n >= 3);
    const lanes: Array<{ id: Lane | 'sockets'; label: string }> = [...LANES];
    if (showSockets) lanes.splice(4, 0, { id: 'sockets', label: 'Connections' });
    const d = m.detection;
    const notes: Array<{ from: number; to: number; label: string; kind: 'theory' | 'measured' | 'extra'; open?: boolean }> = [];
    const x = (t: number) => L + (Math.min(t, m.end) / m.end) * (W - L - R);
    if (d?.expected) {
      const from = d.anchor?.t ?? d.fault?.t ?? 0;
      const beyond = d.expected.t > m.end;
      notes.push({ from, to: Math.min(d.expected.t, m.end), label: beyond ? `theory: ${duration(d.expected.seconds)} (at ${at(d.expected.t)}) →` : `theory ${duration(d.expected.seconds)}`, kind: 'theory', open: beyond });
    }
    if (d?.fault) {
      const from = d.anchor?.t ?? d.fault.t;
      if (d.detected) notes.push({ from, to: d.detected.t, label: `measured ${duration(d.detected.seconds)}`, kind: 'measured' });
      else if (m.now > from) notes.push({ from, to: m.now, label: `${d.verb === 'noticed' ? (this.#finished ? 'not detected in' : 'not detected yet:') : this.#finished ? `not ${participle(d.verb)} in` : `not ${participle(d.verb)} yet:`} ${duration(m.now - from)}`, kind: 'measured', open: true });
    }
    for (const e of d?.extra ?? []) if (e.t <= m.end) notes.push({ from: e.t, to: e.t, label: e.label.replace(/:.*$/, ''), kind: 'extra' });
    const noteH = 18;
    const top = 6 + notes.length * noteH;
    const lanesH = lanes.length * laneH;
    const axisY = top + lanesH;
    const H = axisY + 30;
    const root = svg('svg', { class: 'lab-pic-timeline', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': this.#parts.summary.id });

    // Lanes and their labels.
    lanes.forEach((lane, i) => {
      const y = top + i * laneH;
      root.append(svg('rect', { class: i % 2 ? 'lab-pic-lane lab-pic-lane-alt' : 'lab-pic-lane', x: L, y, width: W - L - R, height: laneH }));
      root.append(svg('text', { class: 'lab-pic-lane-label', x: L - 6, y: y + laneH / 2 + 4, 'text-anchor': 'end' }, narrow ? lane.label.replace('Server kernel', 'Kernel').replace('Connections', 'Conns') : lane.label));
    });

    // Cut and frozen bands across every lane.
    for (const b of m.bands) {
      const x0 = x(b.from);
      const x1 = x(b.to ?? m.end);
      root.append(svg('rect', { class: `lab-pic-band lab-pic-band-${b.kind}`, x: x0, y: top, width: Math.max(2, x1 - x0), height: lanesH }, title(`${b.label}: ${at(b.from)} to ${b.to === null ? 'now' : at(b.to)}`)));
      if (x1 - x0 > 60) root.append(svg('text', { class: `lab-pic-band-label lab-pic-band-label-${b.kind}`, x: x0 + 4, y: top + laneH - 6 }, b.label));
    }

    // Axis.
    const step = tickStep(m.end, Math.max(2, Math.floor((W - L - R) / 70)));
    root.append(svg('line', { class: 'lab-pic-axis', x1: L, x2: W - R, y1: axisY, y2: axisY }));
    for (let t = 0; t <= m.end + 1e-9; t += step) {
      const tx = x(t);
      root.append(svg('line', { class: 'lab-pic-grid', x1: tx, x2: tx, y1: top, y2: axisY + 4 }));
      root.append(svg('text', { class: 'lab-pic-tick', x: tx, y: axisY + 16, 'text-anchor': 'middle' }, step < 1 ? t.toFixed(1) : String(Math.round(t))));
    }
    root.append(svg('text', { class: 'lab-pic-tick', x: W - R, y: axisY + 28, 'text-anchor': 'end' }, 's'));

    // The theory's deadline and the measured detection, across the lanes and annotated above.
    if (d?.expected && d.expected.t <= m.end) root.append(svg('line', { class: 'lab-pic-expected', x1: x(d.expected.t), x2: x(d.expected.t), y1: 4, y2: axisY }, title(`${d.expected.label} (at ${at(d.expected.t)})`)));
    if (d?.detected) root.append(svg('line', { class: 'lab-pic-detected', x1: x(d.detected.t), x2: x(d.detected.t), y1: 4, y2: axisY }, title(`${d.who}: ${d.detected.label} (at ${at(d.detected.t)})`)));
    for (const e of d?.extra ?? []) if (e.t <= m.end) root.append(svg('line', { class: 'lab-pic-extra', x1: x(e.t), x2: x(e.t), y1: 4, y2: axisY }, title(`${e.label} (at ${at(e.t)})`)));
    notes.forEach((n, i) => {
      const y = 6 + i * noteH + noteH / 2;
      const x0 = x(n.from);
      const x1 = x(n.to);
      const g = svg('g', { class: `lab-pic-note lab-pic-note-${n.kind}` });
      if (n.kind !== 'extra') {
        g.append(svg('line', { x1: x0, x2: x1, y1: y, y2: y, ...(n.open ? { 'stroke-dasharray': '4 3' } : {}) }));
        g.append(svg('line', { x1: x0, x2: x0, y1: y - 4, y2: y + 4 }));
        if (!n.open) g.append(svg('line', { x1: x1, x2: x1, y1: y - 4, y2: y + 4 }));
      }
      // The label goes where there is room: right of the bracket, else left of it, else (a
      // bracket across most of the width) over its start, with a halo (Lab.astro's CSS).
      const w = n.label.length * 6.2;
      const right = x1 + 6;
      const place = right + w < W - R ? { x: right, anchor: 'start' } : x0 - 6 - w > 2 ? { x: x0 - 6, anchor: 'end' } : { x: Math.max(2, Math.min(x0 + 6, W - R - w)), anchor: 'start' };
      g.append(svg('text', { x: place.x, y: y + 4, 'text-anchor': place.anchor }, n.label));
      root.append(g);
    });

    // Marks, clustered so that a long run stays a bounded number of shapes.
    lanes.forEach((lane, i) => {
      const y = top + i * laneH + laneH / 2;
      if (lane.id === 'sockets') {
        root.append(this.#sockets(m, x, top + i * laneH, laneH));
        return;
      }
      const marks = m.marks.filter((k) => k.lane === lane.id);
      for (const c of clusterMarks(marks, x, 12)) root.append(clusterShape(c, y));
    });
    return root;
  }

  #sockets(m: PictureModel, x: (t: number) => number, y0: number, h: number): SVGGElement {
    const max = Math.max(1, ...m.sockets.map((s) => s.n));
    const yOf = (n: number) => y0 + h - 3 - (n / max) * (h - 8);
    let d = `M${x(0)} ${yOf(0)}`;
    let last = 0;
    for (const s of m.sockets) {
      d += `H${x(s.t)}V${yOf(s.n)}`;
      last = s.n;
    }
    d += `H${x(m.end)}`;
    const g = svg('g', { class: 'lab-pic-sockets' }, title(`Connections on the server (not the listener), from its socket table: at most ${max}, ${last} at the end`));
    g.append(svg('path', { d: `${d}V${yOf(0)}H${x(0)}Z`, class: 'lab-pic-sockets-area' }), svg('path', { d, class: 'lab-pic-sockets-line' }));
    g.append(svg('text', { class: 'lab-pic-tick', x: x(0) + 4, y: y0 + 11 }, `up to ${max}`));
    return g;
  }

  // ── Ladder ───────────────────────────────────────────────────────────────────────────

  #renderLadder(m: PictureModel): void {
    const p = this.#parts;
    if (!m.connections.length) {
      const none = this.#events.some((e) => e.source === 'wire' && e.event === 'unavailable');
      p.ladderHead.hidden = true;
      p.ladderTable.hidden = true;
      p.ladder.replaceChildren(html('p', { class: 'lab-pic-empty' }, none ? 'No packet ladder: this lab has no packet capture (see the wire pane).' : 'No packets yet.'));
      return;
    }
    const conns = m.connections.slice(0, 100);
    if (!this.#userSelected || !conns.some((c) => c.id === this.#selected)) this.#selected = defaultConnection(m, this.#events);
    const options = conns.map((c) => {
      const extra = [c.probes ? `${c.probes} probes` : '', c.retransmissions ? `${c.retransmissions} retransmissions` : '', c.resets ? 'RST' : ''].filter(Boolean).join(', ');
      return html('option', { value: c.id }, `${c.id} ↔ ${c.server} (${c.packets.length} packets${extra ? `; ${extra}` : ''})`);
    });
    const sig = options.map((o) => o.textContent).join('|');
    if (p.select.dataset.sig !== sig) {
      p.select.replaceChildren(...options);
      p.select.dataset.sig = sig;
    }
    p.select.value = this.#selected ?? '';
    p.ladderHead.hidden = conns.length < 2;
    p.ladderTable.hidden = false;
    const conn = m.connections.find((c) => c.id === this.#selected) ?? m.connections[0]!;
    const rows = ladderRows(conn, this.#events.filter((e) => e.source === 'lab'), LADDER_MAX);
    p.ladder.replaceChildren(this.#ladder(conn.id, conn.server, rows, conn.packets.length));
    if (p.ladderTable.open) {
      fillTable(
        p.ladderTable,
        ['Time', 'Direction', 'Flags', 'Seq', 'Ack', 'Length', 'What'],
        rows.map((r) =>
          r.type === 'packet'
            ? [`${r.packet.t.toFixed(3)} s`, r.packet.fromClient ? 'client → server' : 'server → client', r.packet.flags, r.packet.seq ?? '', r.packet.ack === null ? '' : String(r.packet.ack), String(r.packet.length), packetWhat(r.packet)]
            : r.type === 'fault'
              ? [`${r.t.toFixed(3)} s`, '', '', '', '', '', r.label]
              : r.type === 'gap'
                ? ['', '', '', '', '', '', `${duration(r.seconds)} pass`]
                : ['', '', '', '', '', '', `${r.count} packets not shown (${at(r.from)} to ${at(r.to)})`],
        ),
      );
    }
  }

  #ladder(client: string, server: string, rows: LadderRow[], total: number): SVGSVGElement {
    const W = Math.max(300, this.#width);
    const narrow = W < 560;
    const T = narrow ? 46 : 62;
    const xc = T + (narrow ? 18 : 40);
    const xs = W - (narrow ? 26 : 60);
    const head = 34;
    const heights = rows.map((r) => (r.type === 'packet' ? 26 : r.type === 'gap' ? 20 : 24));
    const H = head + heights.reduce((a, b) => a + b, 0) + 12;
    const counts = { probe: 0, retransmission: 0, lost: 0 };
    for (const r of rows) if (r.type === 'packet') {
      if (r.packet.kind === 'probe') counts.probe++;
      if (r.packet.kind === 'retransmission') counts.retransmission++;
      if (r.packet.lost) counts.lost++;
    }
    const label = `Packet ladder of the connection from ${client} to ${server}: ${total} packets${total > LADDER_MAX ? ` (${LADDER_MAX} shown)` : ''}${counts.probe ? `, ${counts.probe} keepalive probes` : ''}${counts.retransmission ? `, ${counts.retransmission} retransmissions` : ''}${counts.lost ? `, ${counts.lost} lost in the cut` : ''}. The table below lists them.`;
    const root = svg('svg', { class: 'lab-pic-ladder', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
    root.append(
      svg('text', { class: 'lab-pic-host', x: xc, y: 14, 'text-anchor': 'middle' }, 'Client'),
      svg('text', { class: 'lab-pic-host-sub', x: xc, y: 27, 'text-anchor': narrow ? 'start' : 'middle' }, client),
      svg('text', { class: 'lab-pic-host', x: narrow ? W - 4 : xs, y: 14, 'text-anchor': narrow ? 'end' : 'middle' }, 'Server'),
      svg('text', { class: 'lab-pic-host-sub', x: narrow ? W - 4 : xs, y: 27, 'text-anchor': narrow ? 'end' : 'middle' }, server),
      svg('line', { class: 'lab-pic-rail', x1: xc, x2: xc, y1: head, y2: H - 6 }),
      svg('line', { class: 'lab-pic-rail', x1: xs, x2: xs, y1: head, y2: H - 6 }),
    );
    let y = head;
    rows.forEach((r, i) => {
      const h = heights[i]!;
      if (r.type === 'packet') root.append(arrow(r.packet, xc, xs, y, h, T, narrow));
      else if (r.type === 'fault') {
        root.append(
          svg('line', { class: 'lab-pic-fault-line', x1: T - 4, x2: W - 4, y1: y + h / 2, y2: y + h / 2 }),
          svg('text', { class: 'lab-pic-time', x: T - 8, y: y + h / 2 + 4, 'text-anchor': 'end' }, r.t.toFixed(2)),
          svg('text', { class: 'lab-pic-fault-label', x: (xc + xs) / 2, y: y + h / 2 - 4, 'text-anchor': 'middle' }, r.label),
        );
      } else if (r.type === 'gap') {
        root.append(svg('text', { class: 'lab-pic-gap', x: (xc + xs) / 2, y: y + h / 2 + 4, 'text-anchor': 'middle' }, `⋮ ${duration(r.seconds)} pass ⋮`));
      } else {
        root.append(svg('text', { class: 'lab-pic-gap', x: (xc + xs) / 2, y: y + h / 2 + 4, 'text-anchor': 'middle' }, `⋯ ${r.count} packets not drawn (${at(r.from)} to ${at(r.to)}) ⋯`));
      }
      y += h;
    });
    return root;
  }
}

function packetWhat(p: WirePacket): string {
  const base: Record<WirePacket['kind'], string> = {
    syn: 'SYN: opens the connection',
    synack: 'SYN-ACK',
    data: 'data',
    ack: 'ACK',
    fin: 'FIN: no more data from this side',
    rst: 'RST: the connection is dropped',
    probe: 'keepalive probe',
    'probe-ack': 'ACK: the kernel answers the probe',
    retransmission: 'retransmission',
  };
  return [p.note && !base[p.kind].startsWith(p.note) ? `${base[p.kind]} (${p.note})` : base[p.kind], p.lost ? 'lost: the client is cut off' : ''].filter(Boolean).join('; ');
}

const PACKET_CLASS: Record<WirePacket['kind'], string> = {
  syn: 'good',
  synack: 'good',
  data: 'data',
  ack: 'quiet',
  fin: 'fin',
  rst: 'bad',
  probe: 'probe',
  'probe-ack': 'quiet',
  retransmission: 'retrans',
};

function arrow(p: WirePacket, xc: number, xs: number, y: number, h: number, T: number, narrow: boolean): SVGGElement {
  const from = p.fromClient ? xc : xs;
  const to = p.fromClient ? xs : xc;
  const y0 = y + 8;
  const y1 = y + h - 4;
  // A lost packet stops halfway, where the cut is.
  const end = p.lost ? (from + to) / 2 : to;
  const dir = Math.sign(end - from);
  const yEnd = p.lost ? (y0 + y1) / 2 : y1;
  const g = svg('g', { class: `lab-pic-pkt lab-pic-tone-${PACKET_CLASS[p.kind]}${p.lost ? ' lab-pic-lost' : ''}` }, title(`${p.t.toFixed(3)} s: ${p.fromClient ? 'client → server' : 'server → client'} [${p.flags}]${p.seq ? ` seq ${p.seq}` : ''}${p.ack !== null ? ` ack ${p.ack}` : ''} len ${p.length} — ${packetWhat(p)}`));
  g.append(svg('text', { class: 'lab-pic-time', x: T - 8, y: y0 + 4, 'text-anchor': 'end' }, p.t.toFixed(narrow ? 2 : 3)));
  g.append(svg('line', { x1: from, y1: y0, x2: end - dir * 6, y2: yEnd - (yEnd - y0) * (6 / Math.abs(end - from)) }));
  if (p.lost) {
    g.append(svg('path', { class: 'lab-pic-x', d: `M${end - 4} ${yEnd - 4}L${end + 4} ${yEnd + 4}M${end - 4} ${yEnd + 4}L${end + 4} ${yEnd - 4}` }));
  } else {
    g.append(svg('path', { class: 'lab-pic-head', d: `M${end} ${yEnd}L${end - dir * 8} ${yEnd - 4}L${end - dir * 8} ${yEnd + 3}Z` }));
  }
  const flags = `[${p.flags}]${p.length ? ` len ${p.length}` : ''}`;
  const name: Partial<Record<WirePacket['kind'], string>> = { syn: 'SYN', synack: 'SYN-ACK', ack: 'ACK', 'probe-ack': 'ACK', fin: 'FIN', rst: 'RST' };
  const note = [name[p.kind], p.note].filter(Boolean).join(' · ');
  const text = `${flags}${note ? ` · ${note}` : ''}${p.lost ? ' · lost' : ''}`;
  g.append(svg('text', { class: 'lab-pic-pkt-label', x: (xc + xs) / 2, y: y + 7, 'text-anchor': 'middle' }, text));
  return g;
}

function clusterShape(c: Cluster, y: number): SVGGElement {
  const g = svg('g', { class: `lab-pic-mark lab-pic-tone-${c.tone}` }, title(c.label));
  if (c.count === 1) g.append(shape(c.tone, c.x, y));
  else {
    const text = c.count > 999 ? '999+' : String(c.count);
    const w = Math.max(14, text.length * 6 + 6);
    g.append(svg('rect', { class: 'lab-pic-cluster', x: c.x - w / 2, y: y - 7, width: w, height: 14, rx: 7 }));
    g.append(svg('text', { class: 'lab-pic-count', x: c.x, y: y + 3.5, 'text-anchor': 'middle' }, text));
  }
  return g;
}

function legend(): HTMLElement {
  const item = (tone: Tone, text: string) => {
    const icon = svg('svg', { width: 14, height: 14, viewBox: '0 0 14 14', 'aria-hidden': 'true', class: `lab-pic-mark lab-pic-tone-${tone}` }, shape(tone, 7, 7));
    return html('li', {}, icon, ` ${text}`);
  };
  const line = (cls: string, text: string) =>
    html('li', {}, svg('svg', { width: 18, height: 14, viewBox: '0 0 18 14', 'aria-hidden': 'true' }, svg('line', { class: cls, x1: 9, x2: 9, y1: 0, y2: 14 })), ` ${text}`);
  return html(
    'ul',
    { class: 'lab-pic-legend', 'aria-label': 'Legend' },
    item('fault', 'fault'),
    item('data', 'data, frames'),
    item('good', 'connect, handshake'),
    item('probe', 'keepalive probe'),
    item('retrans', 'retransmission, lost data'),
    item('fin', 'FIN, orderly close'),
    item('bad', 'error, RST, timeout'),
    html('li', {}, html('span', { class: 'lab-pic-legend-count' }, '12'), ' several events'),
    line('lab-pic-expected', 'theory'),
    line('lab-pic-detected', 'detected'),
  );
}

function timelineRows(m: PictureModel): string[][] {
  const laneName = new Map(LANES.map((l) => [l.id, l.label]));
  const marks = m.marks.filter((k) => k.tone !== 'quiet').sort((a, b) => a.t - b.t);
  const rows = marks.slice(0, TABLE_MAX).map((k) => [`${k.t.toFixed(3)} s`, laneName.get(k.lane) ?? k.lane, k.label]);
  if (marks.length > TABLE_MAX) rows.push(['', '', `… ${marks.length - TABLE_MAX} more events not listed`]);
  const d = m.detection;
  if (d?.expected) rows.push([`${d.expected.t.toFixed(3)} s`, 'Theory', d.expected.label]);
  if (d?.detected) rows.push([`${d.detected.t.toFixed(3)} s`, 'Detected', d.detected.label]);
  return rows;
}

function fillTable(details: HTMLDetailsElement, head: string[], rows: string[][]): void {
  const table = html(
    'table',
    { class: 'lab-pic-table' },
    html('thead', {}, html('tr', {}, ...head.map((h) => html('th', { scope: 'col' }, h)))),
    html('tbody', {}, ...rows.map((r) => html('tr', {}, ...r.map((c) => html('td', {}, c))))),
  );
  const wrap = html('div', { class: 'lab-pic-table-wrap' }, table);
  const old = details.querySelector('.lab-pic-table-wrap');
  if (old) old.replaceWith(wrap);
  else details.append(wrap);
}
