/**
 * Output in the browser is bounded: a demo that prints without end cannot grow the page's
 * memory without limit. The terminal keeps what arrives before xterm loads in a bounded
 * buffer (after that, xterm's scrollback bounds it). The lists' and the picture's bounds are
 * checked in a browser, on a run with more packets than the lists keep (test/course/browser.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { MIRROR_LINES, TermPane } from '../../src/components/lab/terminal.ts';

/** Just enough of a list element for the terminal's screen-reader mirror. */
function fakeList() {
  const items: Array<{ textContent: string }> = [];
  return {
    items,
    append: (li: { textContent: string }) => void items.push(li),
    get childElementCount() {
      return items.length;
    },
    get firstElementChild() {
      return items.length ? { remove: () => void items.shift() } : null;
    },
    replaceChildren: () => void items.splice(0),
  };
}

describe('bounded output', () => {
  it('a terminal not yet loaded keeps only the latest 2000 lines', () => {
    const pane = new TermPane({} as HTMLElement);
    for (let i = 0; i < 50_000; i++) pane.writeln(`line ${i}`);
    const lines = pane.text().split('\r\n').filter(Boolean);
    expect(lines).toHaveLength(2000);
    expect(lines[0]).toBe('line 48000');
    expect(lines[lines.length - 1]).toBe('line 49999');
  });

  it("a terminal's screen-reader mirror keeps the latest lines as plain text, no more than its bound", () => {
    const g = globalThis as { document?: unknown };
    const saved = g.document;
    g.document = { createElement: () => ({ textContent: '' }) };
    try {
      const mirror = fakeList();
      const pane = new TermPane({} as HTMLElement, { mirror: mirror as unknown as HTMLElement });
      for (let i = 0; i < 5000; i++) pane.writeln(`\x1b[2m${i}.000\x1b[0m \x1b[1maccept\x1b[0m peer=192.0.2.10:${40000 + i}`);
      expect(mirror.items).toHaveLength(MIRROR_LINES);
      expect(mirror.items[0]!.textContent).toBe(`${5000 - MIRROR_LINES}.000 accept peer=192.0.2.10:${45000 - MIRROR_LINES}`);
      expect(mirror.items.at(-1)!.textContent).toBe('4999.000 accept peer=192.0.2.10:44999');
      pane.clear();
      expect(mirror.items).toHaveLength(0);
    } finally {
      g.document = saved;
    }
  });

});
