/**
 * The article's protocol: a frame is a 2-byte big-endian length, then that many bytes of
 * payload. TCP is a byte stream, not a message stream: one read may return half a frame,
 * or three frames and the start of a fourth. A decoder must keep what is left over and
 * never trust a length it has not checked.
 *
 * Heartbeats use the same framing: an empty frame (length 0) is a heartbeat. The server
 * sends one as a ping; the client answers each with one (the pong). Data frames are never
 * empty.
 *
 * Copy this file freely: it depends only on Node's built-ins.
 */

export const MAX_FRAME_BYTES = 65535; // the largest length 2 bytes can say
const HEADER_BYTES = 2;

/** A frame announced a payload larger than this decoder accepts. */
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
/** Length prefix + payload, as one buffer (one write, so it cannot be interleaved). */
export function encodeFrame(payload: Uint8Array | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
  if (body.length > MAX_FRAME_BYTES) {
    throw new RangeError(`payload of ${body.length} bytes does not fit a frame (at most ${MAX_FRAME_BYTES})`);
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  frame.writeUInt16BE(body.length, 0); // network byte order, whatever this CPU uses
  body.copy(frame, HEADER_BYTES);
  return frame;
}
// #endregion encode

/** The heartbeat: an empty frame. */
export const HEARTBEAT: Buffer = encodeFrame(Buffer.alloc(0));

export function isHeartbeat(frame: Uint8Array): boolean {
  return frame.length === 0;
}

// #region decoder
/**
 * Turns chunks of a byte stream into whole frames.
 *
 * The article's C server read into a fixed buffer at `buf + offset` without checking that
 * the declared length fit: a client could write past the buffer. Here the length is checked
 * before anything is kept, at most one incomplete frame is buffered (2 + maxFrameBytes
 * bytes), and nothing is read beyond the chunk we were given.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  #pending: Buffer = Buffer.alloc(0);

  constructor(options: { maxFrameBytes?: number } = {}) {
    const max = options.maxFrameBytes ?? MAX_FRAME_BYTES;
    if (!Number.isInteger(max) || max < 0 || max > MAX_FRAME_BYTES) {
      throw new RangeError(`maxFrameBytes must be a whole number from 0 to ${MAX_FRAME_BYTES}; got ${max}`);
    }
    this.maxFrameBytes = max;
  }

  /** Bytes held back, waiting for the rest of a frame. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * Adds a chunk; returns every frame it completes (possibly none, possibly several).
   * Throws FrameTooLargeError as soon as a header declares too much: drop that peer.
   */
  push(chunk: Uint8Array): Buffer[] {
    let data = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : Buffer.from(chunk);
    const frames: Buffer[] = [];
    for (;;) {
      if (data.length < HEADER_BYTES) break; // not even the length yet
      const length = data.readUInt16BE(0);
      if (length > this.maxFrameBytes) {
        this.#pending = Buffer.alloc(0);
        throw new FrameTooLargeError(length, this.maxFrameBytes);
      }
      if (data.length < HEADER_BYTES + length) break; // the rest comes in a later chunk
      // Copy the payload out, so a caller keeping a frame does not pin the whole chunk.
      frames.push(Buffer.from(data.subarray(HEADER_BYTES, HEADER_BYTES + length)));
      data = data.subarray(HEADER_BYTES + length);
    }
    this.#pending = Buffer.from(data);
    return frames;
  }
}
// #endregion decoder

// ---------------------------------------------------------------------------------------
// Logging. One line per event, `<ISO time> <event> key=value …` (logfmt). People read it in
// a terminal; the lab parses it with parseLogLine() below.

export type LogValue = string | number | boolean | undefined;

function formatValue(value: string | number | boolean): string {
  const s = String(value);
  return s === '' || /[\s"=\\]|[^\x21-\x7e]/.test(s) ? JSON.stringify(s) : s;
}

export function formatLogLine(event: string, fields: Record<string, LogValue> = {}, time = new Date()): string {
  const parts = [time.toISOString(), event];
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) parts.push(`${key}=${formatValue(value)}`);
  }
  return parts.join(' ');
}

/** Writes one log line to stdout. */
export function log(event: string, fields: Record<string, LogValue> = {}): void {
  process.stdout.write(formatLogLine(event, fields) + '\n');
}

/** The inverse of formatLogLine; null for a line that is not one of ours. */
export function parseLogLine(line: string): { time: Date; event: string; fields: Record<string, string> } | null {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([\w-]+)(.*)$/.exec(line);
  if (!m) return null;
  const fields: Record<string, string> = {};
  const rest = m[3]!;
  const field = / ([\w-]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)/y;
  for (let pos = 0; pos < rest.length; pos = field.lastIndex) {
    field.lastIndex = pos;
    const match = field.exec(rest);
    if (!match) return null;
    const raw = match[2]!;
    try {
      fields[match[1]!] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    } catch {
      return null;
    }
  }
  return { time: new Date(m[1]!), event: m[2]!, fields };
}

/** A short, printable preview of a payload for the log. */
export function preview(payload: Uint8Array, max = 60): string {
  const text = Buffer.from(payload.subarray(0, max * 4)).toString('utf8');
  const printable = [...text].map((c) => (/[\p{L}\p{N}\p{P}\p{S} ]/u.test(c) ? c : '.')).join('');
  return printable.length > max ? printable.slice(0, max) + '…' : printable;
}
