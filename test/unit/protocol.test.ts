/** demos/protocol.ts: the framing codec, the heartbeat frame and the logfmt log lines. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FrameDecoder,
  FrameTooLargeError,
  HEARTBEAT,
  MAX_FRAME_BYTES,
  encodeFrame,
  formatLogLine,
  hostPort,
  isHeartbeat,
  parseLogLine,
  preview,
  type LogFields,
} from '../../demos/protocol.ts';

/** Cuts `data` at the given offsets (taken modulo its length), in order. */
function splitAt(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (data.length ? c % (data.length + 1) : 0)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const p of [...points, data.length]) {
    chunks.push(data.subarray(start, p));
    start = p;
  }
  return chunks;
}

/** Frames as hex strings: compared by content, quickly, and printed readably on failure. */
const bytes = (frames: Uint8Array[]) => frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.length).toString('hex'));

// Mostly small payloads, some empty (heartbeats), now and then a large one.
const payload = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 300 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 0 }) },
  // Built from a length and a seed: generating 60 000 random bytes one by one is slow.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 60_000, max: MAX_FRAME_BYTES }), fc.integer({ min: 0, max: 255 }))
      .map(([length, seed]) => Uint8Array.from({ length }, (_, i) => (seed + i * 7) & 0xff)),
  },
);

describe('encodeFrame', () => {
  it('writes a 2-byte big-endian length, then the payload', () => {
    expect([...encodeFrame('hi')]).toEqual([0, 2, 0x68, 0x69]);
    expect([...encodeFrame(new Uint8Array(258))].slice(0, 2)).toEqual([1, 2]);
    expect(encodeFrame('é').length).toBe(2 + 2); // UTF-8 bytes, not characters
  });

  it('takes a payload of exactly 65535 bytes and rejects one byte more', () => {
    expect(encodeFrame(new Uint8Array(MAX_FRAME_BYTES)).length).toBe(MAX_FRAME_BYTES + 2);
    expect(() => encodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1))).toThrow(RangeError);
    expect(() => encodeFrame('x'.repeat(MAX_FRAME_BYTES + 1))).toThrow(/65536 bytes/);
  });

  it('encodes a view into a larger buffer from its own offset', () => {
    const big = Buffer.from('xxhelloxx');
    expect(encodeFrame(big.subarray(2, 7)).toString('latin1', 2)).toBe('hello');
  });
});

describe('heartbeat', () => {
  it('is an empty frame: two zero bytes on the wire', () => {
    expect([...HEARTBEAT]).toEqual([0, 0]);
    const [frame] = new FrameDecoder().push(HEARTBEAT);
    expect(isHeartbeat(frame!)).toBe(true);
    expect(isHeartbeat(new FrameDecoder().push(encodeFrame('x'))[0]!)).toBe(false);
  });
});

describe('FrameDecoder', () => {
  it('round trip: decodes what encodeFrame wrote, one chunk per frame', () => {
    fc.assert(
      fc.property(fc.array(payload, { maxLength: 20 }), (payloads) => {
        const decoder = new FrameDecoder();
        const decoded = payloads.flatMap((p) => decoder.push(encodeFrame(p)));
        expect(bytes(decoded)).toEqual(bytes(payloads));
        expect(decoder.pending).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it('any frames, concatenated and split anywhere into chunks, decode to the same frames', () => {
    fc.assert(
      fc.property(fc.array(payload, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 40 }), (payloads, cuts) => {
        const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
        const decoder = new FrameDecoder();
        const decoded = splitAt(stream, cuts).flatMap((chunk) => decoder.push(chunk));
        expect(bytes(decoded)).toEqual(bytes(payloads));
        expect(decoder.pending).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('decodes a stream fed one byte at a time', () => {
    const payloads = [Buffer.from('first'), Buffer.alloc(0), Buffer.from('third frame')];
    const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
    const decoder = new FrameDecoder();
    const decoded: Buffer[] = [];
    for (const byte of stream) decoded.push(...decoder.push(Buffer.from([byte])));
    expect(bytes(decoded)).toEqual(bytes(payloads));
  });

  it('handles a header split between two chunks', () => {
    const decoder = new FrameDecoder();
    const frame = encodeFrame('x'.repeat(300)); // length 300 = 0x01 0x2c: both bytes matter
    expect(decoder.push(frame.subarray(0, 1))).toEqual([]);
    expect(decoder.pending).toBe(1);
    expect(decoder.push(frame.subarray(1, 2))).toEqual([]);
    expect(decoder.pending).toBe(2);
    const [decoded] = decoder.push(frame.subarray(2));
    expect(decoded!.toString()).toBe('x'.repeat(300));
    expect(decoder.pending).toBe(0);
  });

  it('returns several frames from one chunk and keeps the incomplete rest', () => {
    const decoder = new FrameDecoder();
    const stream = Buffer.concat([encodeFrame('a'), encodeFrame('bb'), HEARTBEAT, encodeFrame('cccc')]);
    const frames = decoder.push(stream.subarray(0, stream.length - 2));
    expect(frames.map(String)).toEqual(['a', 'bb', '']);
    expect(decoder.pending).toBe(4); // the header of 'cccc' and 2 of its bytes
    expect(decoder.push(stream.subarray(stream.length - 2)).map(String)).toEqual(['cccc']);
  });

  it('returns frames that do not change when the chunk they came from is reused', () => {
    const chunk = encodeFrame('stable');
    const [frame] = new FrameDecoder().push(chunk);
    chunk.fill(0);
    expect(frame!.toString()).toBe('stable');
  });

  it('rejects a declared length above maxFrameBytes, wherever it falls in the stream', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_FRAME_BYTES - 1 }).chain((max) => fc.tuple(fc.constant(max), fc.integer({ min: max + 1, max: MAX_FRAME_BYTES }))),
        fc.array(fc.uint8Array({ maxLength: 50 }), { maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        ([max, declared], before, cuts) => {
          const good = before.filter((p) => p.length <= max).map((p) => encodeFrame(p));
          const header = Buffer.alloc(2);
          header.writeUInt16BE(declared);
          // The bad header followed by a few bytes of its "payload".
          const stream = Buffer.concat([...good, header, Buffer.alloc(3)]);
          const decoder = new FrameDecoder({ maxFrameBytes: max });
          let error: unknown;
          try {
            for (const chunk of splitAt(stream, cuts)) decoder.push(chunk);
          } catch (err) {
            error = err;
          }
          expect(error).toBeInstanceOf(FrameTooLargeError);
          const e = error as FrameTooLargeError;
          expect(e.declaredLength).toBe(declared);
          expect(e.maxFrameBytes).toBe(max);
          expect(e.message).toBe(`declared frame length ${declared} exceeds the maximum of ${max} bytes`);
          // It never set memory aside for the announced length.
          expect(decoder.pending).toBeLessThanOrEqual(2 + max);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('after a bad length, keeps refusing: the stream cannot be resynchronised', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1024 });
    const bad = Buffer.from([0x11, 0x70]); // 4464
    expect(() => decoder.push(bad)).toThrow('declared frame length 4464 exceeds the maximum of 1024 bytes');
    expect(() => decoder.push(encodeFrame('fine'))).toThrow(FrameTooLargeError);
  });

  it('accepts exactly maxFrameBytes, and a maximum of 0 accepts heartbeats only', () => {
    expect(new FrameDecoder({ maxFrameBytes: 5 }).push(encodeFrame('12345')).map(String)).toEqual(['12345']);
    const zero = new FrameDecoder({ maxFrameBytes: 0 });
    expect(zero.push(HEARTBEAT)).toHaveLength(1);
    expect(() => zero.push(encodeFrame('x'))).toThrow(FrameTooLargeError);
  });

  it('never buffers more than 2 + maxFrameBytes, whatever bytes arrive', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2000 }), fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 30 }), (max, chunks) => {
        const decoder = new FrameDecoder({ maxFrameBytes: max });
        for (const chunk of chunks) {
          try {
            decoder.push(chunk);
          } catch (err) {
            expect(err).toBeInstanceOf(FrameTooLargeError);
            break;
          }
          expect(decoder.pending).toBeLessThanOrEqual(2 + max);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('rejects a maximum outside 0..65535', () => {
    for (const max of [-1, 65536, 1.5, Number.NaN]) expect(() => new FrameDecoder({ maxFrameBytes: max })).toThrow(RangeError);
    expect(new FrameDecoder().maxFrameBytes).toBe(MAX_FRAME_BYTES);
  });
});

describe('log lines', () => {
  const time = new Date('2026-11-25T07:00:01.234Z');

  it('writes `<ISO time> <event> key=value ...`, leaving out undefined fields', () => {
    expect(formatLogLine('accept', { peer: '10.77.0.2:41234', open: 1, skipped: undefined }, time)).toBe(
      '2026-11-25T07:00:01.234Z accept peer=10.77.0.2:41234 open=1',
    );
    expect(formatLogLine('shutdown', {}, time)).toBe('2026-11-25T07:00:01.234Z shutdown');
  });

  it('JSON-quotes values with spaces, quotes, =, backslashes, non-ASCII or controls, and empty values', () => {
    const line = formatLogLine('x', { a: 'two words', b: 'say "hi"', c: 'k=v', d: 'a\\b', e: 'é', f: 'line\nbreak', g: '', h: true, i: 1.5 }, time);
    expect(line).toBe(
      String.raw`2026-11-25T07:00:01.234Z x a="two words" b="say \"hi\"" c="k=v" d="a\\b" e="é" f="line\nbreak" g="" h=true i=1.5`,
    );
  });

  it('keeps every line on one line, even with Unicode line and paragraph separators', () => {
    const line = formatLogLine('x', { text: 'a\u2028b\u2029c\u0085d\re\u202Ef' }, time);
    expect(line).not.toMatch(/[\n\r\u2028\u2029\u0085\u202E]/);
    expect(parseLogLine(line)!.fields.text).toBe('a\u2028b\u2029c\u0085d\re\u202Ef');
  });

  it('refuses event and key names the parser could not read back', () => {
    expect(() => formatLogLine('two words', {}, time)).toThrow(TypeError);
    expect(() => formatLogLine('ok', { 'a=b': 1 }, time)).toThrow(TypeError);
  });

  const name = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
  // Any UTF-16 code unit, lone surrogates included, plus the characters that matter most.
  const anyChar = fc.oneof(
    fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
    fc.constantFrom(' ', '"', '=', '\\', '\n', '\r', '\t', 'é', '😀', '\u2028', '\u0000', '\u007f'),
  );
  const value = fc.oneof(
    fc.string({ unit: anyChar, maxLength: 20 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.string({ unit: 'grapheme-ascii', maxLength: 20 }),
    fc.integer(),
    fc.double({ noNaN: true }),
    fc.boolean(),
    fc.constant(undefined),
  );

  it('parseLogLine reads back exactly what formatLogLine wrote', () => {
    fc.assert(
      fc.property(
        name,
        fc.dictionary(name, value, { maxKeys: 8 }),
        fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59Z'), noInvalidDate: true }),
        (event, fields: LogFields, when) => {
          const line = formatLogLine(event, fields, when);
          expect(line).not.toMatch(/[\n\r\u2028\u2029]/);
          const parsed = parseLogLine(line);
          expect(parsed).not.toBeNull();
          expect(parsed!.time.getTime()).toBe(when.getTime());
          expect(parsed!.event).toBe(event);
          const expected = Object.fromEntries(Object.entries(fields).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]])));
          expect(parsed!.fields).toEqual(expected);
          // The harness's reading: event = 2nd token.
          expect(line.split(' ')[1]).toBe(event);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('parseLogLine returns null for lines that are not log lines', () => {
    for (const line of [
      '',
      'hello',
      'Error: boom',
      '    at foo (file.ts:1:1)',
      '2026-11-25T07:00:01Z accept', // no milliseconds
      '2026-11-25T07:00:01.234Z',
      '2026-11-25T07:00:01.234Z accept peer',
      '2026-11-25T07:00:01.234Z accept a="unterminated',
      '2026-11-25T07:00:01.234Z accept a="x"y',
      '2026-11-25T07:00:01.234Z accept  a=1',
      '2026-11-25T07:00:01.234Z accept a=1 ',
    ]) {
      expect(parseLogLine(line), line).toBeNull();
    }
  });

  it('parseLogLine ignores a trailing newline', () => {
    expect(parseLogLine('2026-11-25T07:00:01.234Z close hadError=false\r\n')).toEqual({
      time: new Date('2026-11-25T07:00:01.234Z'),
      event: 'close',
      fields: { hadError: 'false' },
    });
  });
});

describe('preview', () => {
  it('shows at most 60 characters of UTF-8, unprintable ones as "."', () => {
    expect(preview(Buffer.from('hello'))).toBe('hello');
    expect(preview(Buffer.from('x'.repeat(100)))).toBe('x'.repeat(60));
    expect(preview(Buffer.from('tab\there\u0000\u001b[31m'))).toBe('tab.here..[31m');
    expect(preview(Buffer.from([0xff, 0xfe, 0x41]))).toBe('..A'); // invalid UTF-8
    expect(preview(Buffer.from('€'.repeat(80)))).toBe('€'.repeat(60));
    expect(preview(Buffer.from('😀'.repeat(70)))).toBe('😀'.repeat(60));
  });

  it('never exceeds 60 characters, for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), (data) => {
        expect(Array.from(preview(data)).length).toBeLessThanOrEqual(60);
        expect(preview(data)).not.toMatch(/[\p{Cc}\p{Cf}\u2028\u2029]/u);
      }),
    );
  });
});

describe('hostPort', () => {
  it('brackets IPv6 addresses', () => {
    expect(hostPort('10.77.0.2', 41234)).toBe('10.77.0.2:41234');
    expect(hostPort('fd00::2', 7000)).toBe('[fd00::2]:7000');
    expect(hostPort(undefined, undefined)).toBe('?:?');
  });
});
