/**
 * A read-only xterm.js pane. xterm (about 90 KB gzipped) is loaded on first use, when a lab
 * scrolls into view or Run is pressed; lines written before that are kept and flushed.
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

export class TermPane {
  readonly host: HTMLElement;
  #term: XTerm | null = null;
  #fit: XFitAddon | null = null;
  #pending: string[] = [];
  #loading: Promise<void> | null = null;
  #resize: ResizeObserver | null = null;
  #frame = 0;

  constructor(host: HTMLElement) {
    this.host = host;
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
      // region is focusable instead (see Lab.astro), so keyboard users can still reach it.
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
    if (this.#term) this.#term.write(data);
    else {
      this.#pending.push(data);
      if (this.#pending.length > MAX_PENDING) this.#pending.splice(0, this.#pending.length - MAX_PENDING);
    }
  }

  clear(): void {
    this.#pending = [];
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
    if (!term) return this.#pending.join('').replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '');
    const buf = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n').replace(/\n+$/, '');
  }
}
