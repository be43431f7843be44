/**
 * Output in the browser is bounded: a demo that prints without end cannot grow the page's
 * memory without limit. The terminal keeps what arrives before xterm loads in a bounded
 * buffer (after that, xterm's scrollback bounds it). The lists' and the picture's bounds are
 * checked in a browser, on a run with more packets than the lists keep (test/course/browser.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { TermPane } from '../../src/components/lab/terminal.ts';

describe('bounded output', () => {
  it('a terminal not yet loaded keeps only the latest 2000 lines', () => {
    const pane = new TermPane({} as HTMLElement);
    for (let i = 0; i < 50_000; i++) pane.writeln(`line ${i}`);
    const lines = pane.text().split('\r\n').filter(Boolean);
    expect(lines).toHaveLength(2000);
    expect(lines[0]).toBe('line 48000');
    expect(lines[lines.length - 1]).toBe('line 49999');
  });

});
