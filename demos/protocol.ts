/**
 * The article's protocol: a frame is a 2-byte big-endian unsigned length, then that many
 * bytes of payload.
 *
 * TCP delivers a byte stream, not messages: one read may return half a frame, or three
 * frames and the start of a fourth, and the split can fall anywhere, even between the two
 * bytes of a length. A decoder must keep what is left over, and must check a length before
 * trusting it with memory.
 *
 * Heartbeats use the same framing: an empty frame (length 0) is a heartbeat. The server
 * sends one as a ping; the client answers each one it receives with one (the pong). Data
 * frames are never empty, so the two cannot be confused.
 *
 * The second half of this file is the one-line-per-event log both demo programs write.
 *
 * Copy this file freely: it depends only on Node's built-ins.
 */

/** The largest payload a 2-byte length can announce. */
export const MAX_FRAME_BYTES = 65535;
const HEADER_BYTES = 2;

/** A header announced a payload larger than the decoder accepts. */
export class FrameTooLargeError extends Error {
  override name = 'FrameTooLargeError';
  readonly declaredLength: number;
  readonly maxFrameBytes: number;

  constructor(declaredLength: number, maxFrameBytes: number) {
    super(`declared frame length ${declaredLength} exceeds the maximum of ${maxFrameBytes} bytes`);
    this.declaredLength = declaredLength;
    this.maxFrameBytes = maxFrameBytes;
  }
}

// #region encode
/**
 * Length + payload in one buffer. Writing a frame with a single write() means nothing else
 * written to the same socket can land between its header and its payload.
 * Throws RangeError if the payload does not fit in a frame.
 */
export function encodeFrame(payload: Uint8Array | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (body.length > MAX_FRAME_BYTES) {
    throw new RangeError(`payload of ${body.length} bytes does not fit in a frame (at most ${MAX_FRAME_BYTES})`);
  }
  const frame = Buffer.alloc(HEADER_BYTES + body.length);
  frame.writeUInt16BE(body.length, 0); // big-endian ("network byte order") whatever this CPU uses
  frame.set(body, HEADER_BYTES);
  return frame;
}
// #endregion encode

/** The heartbeat: an empty frame, 2 bytes on the wire. */
export const HEARTBEAT: Buffer = encodeFrame(new Uint8Array(0));

/** True for a decoded heartbeat frame (an empty payload). */
export function isHeartbeat(frame: Uint8Array): boolean {
  return frame.length === 0;
}

// #region decoder
/**
 * Turns the chunks a socket delivers into whole frames.
 *
 * The article's C server read into a fixed buffer at `buf + offset` without checking that
 * the declared length fitted: a client could make it write past the end. Here:
 *   - a length is checked against maxFrameBytes before any memory is set aside for it;
 *   - memory follows the bytes that arrived, not the length announced: a peer that sends
 *     a header announcing 65535 bytes, then nothing, costs a few bytes, not 64 KiB
 *     (thousands of such peers would otherwise pin gigabytes for a few kilobytes sent);
 *   - only the one incomplete frame is kept, so at most 2 + maxFrameBytes bytes are held
 *     per connection, whatever the peer sends;
 *   - the buffer doubles as it fills, so a peer trickling a large frame one byte at a time
 *     costs time in proportion to what it sends, not to what is already buffered;
 *   - nothing is read beyond the chunk given.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  // The 2-byte length. It can itself arrive split across two chunks.
  readonly #header = Buffer.alloc(HEADER_BYTES);
  #headerFilled = 0;
  // The payload being assembled, once its length is known and checked. The buffer starts
  // empty and grows as bytes arrive, up to exactly that length.
  #payloadLength: number | null = null;
  #payload = Buffer.alloc(0);
  #payloadFilled = 0;
  // After a bad length we no longer know where the next frame starts: the stream cannot be
  // trusted again, so every later push() fails the same way.
  #failure: FrameTooLargeError | null = null;

  constructor(options: { maxFrameBytes?: number } = {}) {
    const max = options.maxFrameBytes ?? MAX_FRAME_BYTES;
    if (!Number.isInteger(max) || max < 0 || max > MAX_FRAME_BYTES) {
      throw new RangeError(`maxFrameBytes must be a whole number from 0 to ${MAX_FRAME_BYTES}; got ${max}`);
    }
    this.maxFrameBytes = max;
  }

  /** Bytes held back, waiting for the rest of their frame (never more than 2 + maxFrameBytes). */
  get pending(): number {
    return this.#headerFilled + this.#payloadFilled;
  }

  /**
   * Adds a chunk; returns every frame it completes, in order: none, one or several.
   *
   * Throws FrameTooLargeError as soon as a header declares more than maxFrameBytes. The
   * connection is then beyond repair: close it. Frames completed earlier in the same chunk
   * are dropped with it.
   */
  push(chunk: Uint8Array): Buffer[] {
    if (this.#failure) throw this.#failure;
    const frames: Buffer[] = [];
    let offset = 0;
    for (;;) {
      if (this.#payloadLength === null) {
        // Waiting for (the rest of) a header.
        const take = Math.min(HEADER_BYTES - this.#headerFilled, chunk.length - offset);
        this.#header.set(chunk.subarray(offset, offset + take), this.#headerFilled);
        this.#headerFilled += take;
        offset += take;
        if (this.#headerFilled < HEADER_BYTES) break; // the chunk ended inside the header

        const length = this.#header.readUInt16BE(0);
        if (length > this.maxFrameBytes) {
          this.#failure = new FrameTooLargeError(length, this.maxFrameBytes);
          throw this.#failure;
        }
        this.#payloadLength = length;
      }

      const take = Math.min(this.#payloadLength - this.#payloadFilled, chunk.length - offset);
      this.#reserve(this.#payloadFilled + take, this.#payloadLength);
      this.#payload.set(chunk.subarray(offset, offset + take), this.#payloadFilled);
      this.#payloadFilled += take;
      offset += take;
      if (this.#payloadFilled < this.#payloadLength) break; // the rest comes in a later chunk

      // A whole frame (possibly a zero-length heartbeat): the buffer is exactly its size.
      // Start over with the next header.
      frames.push(this.#payload);
      this.#payloadLength = null;
      this.#payload = Buffer.alloc(0);
      this.#payloadFilled = 0;
      this.#headerFilled = 0;
    }
    return frames;
  }

  /** Makes room for `needed` payload bytes: at least double, never beyond the frame's length. */
  #reserve(needed: number, frameLength: number): void {
    if (needed <= this.#payload.length) return;
    // Zero-filled, so no stale memory could ever be handed on by mistake.
    const grown = Buffer.alloc(Math.min(frameLength, Math.max(needed, this.#payload.length * 2)));
    grown.set(this.#payload.subarray(0, this.#payloadFilled));
    this.#payload = grown;
  }
}
// #endregion decoder

// ---------------------------------------------------------------------------------------
// #region log
// Logging: one line per event, in logfmt:
//
//   2026-11-25T07:00:01.234Z accept peer=10.77.0.2:41234 open=1
//
// an ISO-8601 UTC time with milliseconds, the event name, then key=value fields. A value
// is written bare when it is printable ASCII without spaces, quotes, `=` or backslashes,
// and as a JSON string otherwise (text="hello world"). People read these lines in a
// terminal; the lab parses them with parseLogLine(). The format is a contract: change it
// in both functions or not at all.

export type LogValue = string | number | boolean | undefined;
export type LogFields = Record<string, LogValue>;

/** Event names and keys: letters, digits, `_` and `-`. */
const NAME = /^[A-Za-z0-9_-]+$/;
/** Values that can be written without quotes. */
const BARE_VALUE = /^[\x21-\x7e]+$/;

function formatValue(value: string | number | boolean): string {
  const text = String(value);
  if (BARE_VALUE.test(text) && !/["=\\]/.test(text)) return text;
  // JSON.stringify escapes quotes, backslashes and C0 controls such as \n, so the value
  // stays on its line. It leaves a few invisible characters alone that some tools treat as
  // line breaks (U+0085, U+2028, U+2029) or that reorder text in a terminal (U+202E):
  // escape those too. JSON.parse reads every \uXXXX back.
  return JSON.stringify(text).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, escapeUnicode);
}

function escapeUnicode(char: string): string {
  let escaped = '';
  for (let i = 0; i < char.length; i++) escaped += '\\u' + char.charCodeAt(i).toString(16).padStart(4, '0');
  return escaped;
}

/**
 * One log line, without the newline. Fields whose value is undefined are left out.
 * Throws if the event or a key is not a plain name: that is a bug in the caller.
 */
export function formatLogLine(event: string, fields: LogFields = {}, time: Date = new Date()): string {
  if (!NAME.test(event)) throw new TypeError(`bad log event name ${JSON.stringify(event)}`);
  const parts = [time.toISOString(), event];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (!NAME.test(key)) throw new TypeError(`bad log field name ${JSON.stringify(key)}`);
    parts.push(`${key}=${formatValue(value)}`);
  }
  return parts.join(' ');
}

/** Writes one event as one line on stdout. */
export function log(event: string, fields: LogFields = {}): void {
  process.stdout.write(formatLogLine(event, fields) + '\n');
}

export interface LogLine {
  time: Date;
  event: string;
  /** Every value as a string, quotes removed: `open=1` gives { open: '1' }. */
  fields: Record<string, string>;
}

const LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Za-z0-9_-]+)((?: .*)?)$/;
const FIELD = / ([A-Za-z0-9_-]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)/y;

/**
 * The inverse of formatLogLine(): reads a line back into its time, event and fields.
 * Numbers and booleans come back as strings (`open=1` → '1', `hadError=false` → 'false');
 * the caller converts what it needs. A trailing newline or carriage return is ignored.
 * Returns null for anything that is not such a line (a stack trace, a warning from Node),
 * so a reader can pass every line of a program's output through it.
 */
export function parseLogLine(line: string): LogLine | null {
  const m = LINE.exec(line.replace(/\r?\n$/, ''));
  if (!m) return null;
  const time = new Date(m[1]!);
  if (Number.isNaN(time.getTime())) return null;
  const rest = m[3]!;
  const pairs: Array<[string, string]> = [];
  let pos = 0;
  while (pos < rest.length) {
    FIELD.lastIndex = pos;
    const field = FIELD.exec(rest);
    if (!field) return null;
    const key = field[1]!;
    const raw = field[2]!;
    if (raw.startsWith('"')) {
      try {
        pairs.push([key, JSON.parse(raw) as string]);
      } catch {
        return null;
      }
    } else {
      pairs.push([key, raw]);
    }
    pos = FIELD.lastIndex;
  }
  // fromEntries, not fields[key] = ...: a key such as __proto__ must stay an ordinary field.
  return { time, event: m[2]!, fields: Object.fromEntries(pairs) };
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

/**
 * A short preview of a payload for the log's text= field: its first `maxChars` characters
 * decoded as UTF-8, with anything unprintable (controls, invalid UTF-8) shown as '.'.
 */
export function preview(payload: Uint8Array, maxChars = 60): string {
  // A character is at most 4 bytes of UTF-8: decoding more would not add any we keep.
  const head = Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.length, maxChars * 4));
  const chars = Array.from(head.toString('utf8')).slice(0, maxChars);
  return chars.map((c) => (c !== '\uFFFD' && PRINTABLE.test(c) ? c : '.')).join('');
}

/** `10.77.0.2:41234`, or `[fd00::2]:41234` for IPv6, as the logs write addresses. */
export function hostPort(address: string | undefined, port: number | undefined): string {
  const host = address === undefined ? '?' : address.includes(':') ? `[${address}]` : address;
  return `${host}:${port ?? '?'}`;
}
// #endregion log
