/**
 * A read-only xterm.js pane. xterm (about 90 KB gzipped) is loaded on first use, when a lab
 * scrolls into view or Run is pressed; lines written before that are kept and flushed.
 *
 * Keyboard and screen readers. xterm's DOM rows are aria-hidden and its hidden textarea (an
 * input nobody types into here) is no tab stop, so the pane's region (Lab.astro) is the tab
 * stop: arrow keys, Page Up/Down, Home and End scroll the terminal through xterm's API.
 * Screen readers read a visually hidden role="log" list that mirrors the last MIRROR_LINES
 * lines as plain text. Not xterm's screenReaderMode: that costs no JavaScript (it is in the
 * bundle anyway), but it fires an event per printed character, keeps an accessibility row
 * per terminal row plus an assertive live region that only clears on a key press or blur, so
 * in a terminal nobody types into it stops announcing after 20 lines, for good. The mirror is
 * a few hundred bytes of script, at most MIRROR_LINES list items, polite, and it holds the
 * text before xterm has even loaded.
 */
import type { Terminal as XTerm, ITheme } from '@xterm/xterm';
import type { FitAddon as XFitAddon } from '@xterm/addon-fit';

type Modules = { Terminal: typeof XTerm; FitAddon: typeof XFitAddon };
let modules: Promise<Modules> | null = null;

/** Loads xterm and its fit addon once for the whole page. */
export function loadXterm(): Promise<Modules> {
  modules ??= Promise.all([import('@xterm/xterm'), import('@xterm/addon-fit')]).then(([x, f]) => ({ Terminal: x.Terminal, FitAddon: f.FitAddon }));
  return modules;
}

const DARK: ITheme = {
  background: '#101218',
  foreground: '#d6dae3',
  cursor: '#101218',
  selectionBackground: '#3b4a6b',
  black: '#101218',
  red: '#ff7b72',
  green: '#7ee787',
  yellow: '#e3b341',
  blue: '#79c0ff',
  magenta: '#d2a8ff',
  cyan: '#76e3ea',
  white: '#d6dae3',
  brightBlack: '#8b949e',
  brightRed: '#ffa198',
  brightGreen: '#aff5b4',
  brightYellow: '#f8e3a1',
  brightBlue: '#a5d6ff',
  brightMagenta: '#e2c5ff',
  brightCyan: '#b3f0ff',
  brightWhite: '#ffffff',
};

const LIGHT: ITheme = {
  background: '#f6f7f9',
  foreground: '#1f2328',
  cursor: '#f6f7f9',
  selectionBackground: '#b6cdf5',
  black: '#1f2328',
  red: '#b42318',
  green: '#116329',
  yellow: '#7d4e00',
  blue: '#0b50c0',
  magenta: '#7c2fb0',
  cyan: '#0a6672',
  white: '#f6f7f9',
  brightBlack: '#5c6370',
  brightRed: '#a40e26',
  brightGreen: '#0f5323',
  brightYellow: '#633c01',
  brightBlue: '#0a3f99',
  brightMagenta: '#6a1f9c',
  brightCyan: '#08525c',
  brightWhite: '#000000',
};

export const isDark = (): boolean => document.documentElement.dataset.theme !== 'light';

const MAX_PENDING = 2000;
/** Lines the screen-reader mirror keeps (the oldest go). */
export const MIRROR_LINES = 100;

const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '');

/** The keys that scroll a focused pane, and how. */
const SCROLL_KEYS: Record<string, (t: XTerm) => void> = {
  ArrowUp: (t) => t.scrollLines(-1),
  ArrowDown: (t) => t.scrollLines(1),
  PageUp: (t) => t.scrollPages(-1),
  PageDown: (t) => t.scrollPages(1),
  Home: (t) => t.scrollToTop(),
  End: (t) => t.scrollToBottom(),
};

export interface TermPaneOptions {
  /** The focusable region around the terminal: it takes the scroll keys. */
  region?: HTMLElement | null;
  /** A visually hidden list (role="log") that mirrors the last lines for screen readers. */
  mirror?: HTMLElement | null;
}

export class TermPane {
  readonly host: HTMLElement;
  #term: XTerm | null = null;
  #fit: XFitAddon | null = null;
  #pending: string[] = [];
  #loading: Promise<void> | null = null;
  #resize: ResizeObserver | null = null;
  #frame = 0;
  readonly #mirror: HTMLElement | null;

  constructor(host: HTMLElement, options: TermPaneOptions = {}) {
    this.host = host;
    this.#mirror = options.mirror ?? null;
    // Capture phase: xterm cancels the key events that reach its textarea (focused after a click).
    options.region?.addEventListener(
      'keydown',
      (ev) => {
        const scroll = SCROLL_KEYS[ev.key];
        if (!scroll || !this.#term || ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
        ev.preventDefault();
        ev.stopPropagation();
        scroll(this.#term);
      },
      true,
    );
  }

  /** Creates the terminal (loading xterm first if needed). Safe to call many times. */
  load(): Promise<void> {
    this.#loading ??= loadXterm().then(({ Terminal, FitAddon }) => {
      const mono = getComputedStyle(this.host).getPropertyValue('--sl-font-mono').trim() || 'ui-monospace, monospace';
      const term = new Terminal({
        disableStdin: true,
        convertEol: true,
        cursorBlink: false,
        cursorStyle: 'bar',
        cursorInactiveStyle: 'none',
        drawBoldTextInBrightColors: false,
        minimumContrastRatio: 4.5,
        fontFamily: mono,
        fontSize: 12,
        lineHeight: 1.15,
        scrollback: 5000,
        theme: isDark() ? DARK : LIGHT,
      });
      const fit = new FitAddon();
      term.loadAddon(fit);
      this.host.replaceChildren();
      term.open(this.host);
      // No cursor: nobody types here.
      term.write('\x1b[?25l');
      // xterm's hidden input would be a tab stop with nothing to type into: the pane's
      // region is the tab stop instead (Lab.astro), and scrolls the terminal (see above).
      term.textarea?.setAttribute('tabindex', '-1');
      term.textarea?.setAttribute('aria-hidden', 'true');
      this.#term = term;
      this.#fit = fit;
      this.fit();
      this.#resize = new ResizeObserver(() => {
        cancelAnimationFrame(this.#frame);
        this.#frame = requestAnimationFrame(() => this.fit());
      });
      this.#resize.observe(this.host);
      if (this.#pending.length) term.write(this.#pending.splice(0).join(''));
    });
    return this.#loading;
  }

  fit(): void {
    if (!this.#term || !this.#fit || this.host.clientWidth === 0) return;
    try {
      this.#fit.fit();
    } catch {
      /* not laid out yet */
    }
  }

  writeln(text: string): void {
    const data = text + '\r\n';
    const mirror = this.#mirror;
    if (mirror) {
      const li = document.createElement('li');
      li.textContent = stripAnsi(text);
      mirror.append(li);
      if (mirror.childElementCount > MIRROR_LINES) mirror.firstElementChild!.remove();
    }
    if (this.#term) this.#term.write(data);
    else {
      this.#pending.push(data);
      if (this.#pending.length > MAX_PENDING) this.#pending.splice(0, this.#pending.length - MAX_PENDING);
    }
  }

  clear(): void {
    this.#pending = [];
    this.#mirror?.replaceChildren();
    // Full reset: scrollback and screen; then hide the cursor again.
    this.#term?.reset();
    this.#term?.write('\x1b[?25l');
  }

  setTheme(dark: boolean): void {
    if (this.#term) this.#term.options.theme = dark ? DARK : LIGHT;
  }

  /** Lines in the terminal, for tests and for copying: the buffer as plain text. */
  text(): string {
    const term = this.#term;
    if (!term) return stripAnsi(this.#pending.join(''));
    const buf = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n').replace(/\n+$/, '');
  }
}
