/**
 * A client for the echo server: connects, sends frames (2-byte big-endian length +
 * payload, see protocol.ts), logs what comes back and answers the server's heartbeats.
 * Run `node demos/client.ts --help`.
 *
 * On SIGTERM or SIGINT it closes every connection gracefully (a FIN) and exits as soon as
 * the FINs are handed to the kernel, without waiting for the server to acknowledge them:
 * if the network is cut, the FIN stays queued in this host's kernel (FIN-WAIT-1), which is
 * what experiment b is about.
 *
 * Copy it freely: it needs only Node 24 and the two files next to it (protocol.ts,
 * options.ts).
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import { numberFlag, parseFlags, UsageError } from './options.ts';
import { FrameDecoder, HEARTBEAT, MAX_FRAME_BYTES, encodeFrame, hostPort, isHeartbeat, log, preview } from './protocol.ts';

const HELP = `Usage: node demos/client.ts [options]

Connects to the echo server, sends frames (2-byte big-endian length + payload), logs each
echo and answers each heartbeat with a heartbeat. Logs one line per event:
<ISO time> <event> key=value ...

  --host <addr>          server address (default 127.0.0.1)
  --port <n>             server port, 1 to 65535 (default 7000)
  --count <n>            frames to send on each connection, 0 to 100000 (default 1)
  --payload <text>       what each frame carries (default "hello")
  --size <bytes>         instead of --payload: a generated payload of this many bytes,
                         1 to 65535
  --every <s>            seconds between frames, 0 to 3600, decimals allowed (default 0)
  --connections <n>      parallel connections, each doing the same, 1 to 1000 (default 1)
  --close-after <s>      close gracefully (FIN) this many seconds after the last echo
                         arrives, 0 to 86400, decimals allowed (default: never; stay
                         connected, answering heartbeats, until SIGINT or SIGTERM)
  --stdin                also send each line read from standard input as a frame, on
                         every connection
  -h, --help             show this text

SIGINT or SIGTERM: close every connection with a FIN and exit without waiting for the
server's answer.
Exit status: 0; 1 if a connection could not be made; 2 for a bad command line.`;

interface Config {
  host: string;
  port: number;
  count: number;
  payload: Buffer;
  everyMs: number;
  connections: number;
  /** null: never close on our own. */
  closeAfterMs: number | null;
  stdin: boolean;
}

function readConfig(argv: string[]): Config | 'help' {
  const flags = parseFlags(argv, {
    host: { type: 'string' },
    port: { type: 'string' },
    count: { type: 'string' },
    payload: { type: 'string' },
    size: { type: 'string' },
    every: { type: 'string' },
    connections: { type: 'string' },
    'close-after': { type: 'string' },
    stdin: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (flags.help) return 'help';

  if (flags.payload !== undefined && flags.size !== undefined) throw new UsageError('--payload and --size contradict each other: give one');
  const size = numberFlag('size', flags.size, { min: 1, max: MAX_FRAME_BYTES, integer: true });
  const payload = size === undefined ? Buffer.from(flags.payload ?? 'hello', 'utf8') : generatedPayload(size);
  // An empty frame is a heartbeat, so a data frame must carry at least one byte.
  if (payload.length < 1 || payload.length > MAX_FRAME_BYTES) {
    throw new UsageError(`--payload must be 1 to ${MAX_FRAME_BYTES} bytes of UTF-8; got ${payload.length}`);
  }
  const closeAfterS = numberFlag('close-after', flags['close-after'], { min: 0, max: 86400 });
  return {
    host: flags.host ?? '127.0.0.1',
    port: numberFlag('port', flags.port, { min: 1, max: 65535, integer: true }) ?? 7000,
    count: numberFlag('count', flags.count, { min: 0, max: 100000, integer: true }) ?? 1,
    payload,
    everyMs: Math.round((numberFlag('every', flags.every, { min: 0, max: 3600 }) ?? 0) * 1000),
    connections: numberFlag('connections', flags.connections, { min: 1, max: 1000, integer: true }) ?? 1,
    closeAfterMs: closeAfterS === undefined ? null : Math.round(closeAfterS * 1000),
    stdin: flags.stdin ?? false,
  };
}

/** Printable filler, so that the log's text= preview stays readable: "0123456789012...". */
function generatedPayload(size: number): Buffer {
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = 0x30 + (i % 10);
  return payload;
}

let parsed: Config | 'help';
try {
  parsed = readConfig(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`client: ${err.message}\n`);
  process.exit(2);
}
if (parsed === 'help') {
  process.stdout.write(HELP + '\n');
  process.exit(0);
}
const config: Config = parsed;

interface Connection {
  socket: net.Socket;
  /** Sends one data frame; false when the kernel's send buffer is full (wait for 'drain'). */
  send(body: Buffer): boolean;
}

const open = new Set<Connection>();
let failedToConnect = 0;

function connect(index: number): void {
  const socket = net.connect({ host: config.host, port: config.port });
  const decoder = new FrameDecoder();
  // The server echoes frames in the order it received them, so the oldest send time is the
  // one the next echo answers.
  const sentAt: number[] = [];
  let connected = false;
  let sent = 0;
  let received = 0;
  let nextSend: NodeJS.Timeout | undefined;
  let closeTimer: NodeJS.Timeout | undefined;

  const connection: Connection = {
    socket,
    send(body) {
      const handedToKernel = socket.write(encodeFrame(body));
      sentAt.push(Date.now());
      log('send', { conn: index, bytes: body.length, text: preview(body) });
      return handedToKernel;
    },
  };
  open.add(connection);

  function sendFrames(): void {
    while (sent < config.count && socket.writable) {
      sent++;
      const handedToKernel = connection.send(config.payload);
      if (sent === config.count) return;
      if (config.everyMs > 0) {
        nextSend = setTimeout(sendFrames, config.everyMs);
        return;
      }
      // As fast as possible, but no faster than the network takes them: when the kernel's
      // send buffer is full, wait for room instead of queueing everything in memory.
      if (!handedToKernel) {
        socket.once('drain', sendFrames);
        return;
      }
    }
  }

  function closeLaterIfAsked(): void {
    if (config.closeAfterMs === null) return;
    closeTimer = setTimeout(() => {
      log('closing', { conn: index, reason: 'close-after' });
      socket.end(); // FIN: we are done sending; the server closes its side in turn
    }, config.closeAfterMs);
  }

  socket.on('connect', () => {
    connected = true;
    log('connect', { local: hostPort(socket.localAddress, socket.localPort), peer: hostPort(socket.remoteAddress, socket.remotePort), conn: index });
    sendFrames();
    if (config.count === 0) closeLaterIfAsked();
  });

  socket.on('data', (chunk: Buffer) => {
    // The default maximum (65535) is the largest length 2 bytes can say, so push() cannot
    // reject a frame here.
    for (const frame of decoder.push(chunk)) {
      // #region heartbeat-reply
      if (isHeartbeat(frame)) {
        // The server's ping. Answer it from the application, at once: the answer proves that
        // this program runs, not just that its kernel does (which is all keepalive can tell).
        log('ping', { conn: index });
        socket.write(HEARTBEAT);
        log('pong', { conn: index });
        continue;
      }
      // #endregion heartbeat-reply
      received++;
      const at = sentAt.shift();
      log('recv', { conn: index, bytes: frame.length, text: preview(frame), rtt: at === undefined ? undefined : `${Date.now() - at}ms` });
      if (received === config.count) closeLaterIfAsked();
    }
  });

  socket.on('end', () => {
    // The server sent a FIN. Node answers with ours (allowHalfOpen is false by default).
    log('end', { conn: index });
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (!connected) failedToConnect++;
    log('error', { conn: index, code: err.code, message: err.message });
  });
  socket.on('close', (hadError) => {
    clearTimeout(nextSend);
    clearTimeout(closeTimer);
    open.delete(connection);
    log('close', { conn: index, hadError });
    if (open.size === 0) finish();
  });
}

function finish(reason?: string): never {
  log('done', { connections: config.connections, failed: failedToConnect, reason });
  process.exit(failedToConnect > 0 ? 1 : 0);
}

for (let i = 1; i <= config.connections; i++) connect(i);

if (config.stdin) {
  // Each line typed (or sent by the lab's "send a frame" button) goes out as a frame.
  createInterface({ input: process.stdin }).on('line', (line) => {
    const body = truncateUtf8(Buffer.from(line, 'utf8'), MAX_FRAME_BYTES);
    if (body.length === 0) return; // an empty frame would be a heartbeat
    for (const connection of open) {
      if (connection.socket.writable) connection.send(body);
    }
  });
}

/** At most `max` bytes, never ending in the middle of a UTF-8 character. */
function truncateUtf8(bytes: Buffer, max: number): Buffer {
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // a continuation byte: back up
  return bytes.subarray(0, end);
}

// #region signals
function closeGracefully(signal: NodeJS.Signals): void {
  log('closing', { reason: signal });
  let finishing = open.size;
  if (finishing === 0) finish(signal);
  for (const { socket } of open) {
    // end() sends a FIN once what is already written has gone to the kernel. Its callback
    // runs when the FIN has been handed to the kernel, not when the server acknowledged it:
    // if the network is cut, the kernel keeps retransmitting the FIN after we exit.
    socket.end(() => {
      finishing--;
      if (finishing === 0) finish(signal);
    });
  }
  // A connection still being set up, or one whose data Node could not hand to a full
  // kernel buffer, would hold us up: do not wait more than half a second.
  setTimeout(() => finish(signal), 500).unref();
}
process.once('SIGINT', closeGracefully);
process.once('SIGTERM', closeGracefully);
// #endregion signals
