/**
 * Splits a byte stream into lines, bounded: a child that prints without end, or one
 * enormous line, cannot grow our memory. Lines longer than `maxLineBytes` are cut and
 * marked; the rest of that line is dropped until the next newline.
 */
export class LineSplitter {
  readonly maxLineBytes: number;
  #partial = '';
  #overflowing = false;

  constructor(maxLineBytes = 8192) {
    this.maxLineBytes = maxLineBytes;
  }

  push(chunk: string): string[] {
    const lines: string[] = [];
    let text = this.#partial + chunk;
    this.#partial = '';
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      const line = text.slice(start, nl).replace(/\r$/, '');
      if (this.#overflowing) this.#overflowing = false;
      else lines.push(line);
      start = nl + 1;
    }
    text = text.slice(start);
    if (text.length > this.maxLineBytes) {
      if (!this.#overflowing) lines.push(text.slice(0, this.maxLineBytes) + ' …[line truncated]');
      this.#overflowing = true;
      text = '';
    }
    this.#partial = text;
    return lines;
  }

  /** The unterminated remainder, if any (call when the stream ends). */
  flush(): string[] {
    const rest = this.#partial;
    this.#partial = '';
    const wasOverflowing = this.#overflowing;
    this.#overflowing = false;
    return rest && !wasOverflowing ? [rest] : [];
  }
}
