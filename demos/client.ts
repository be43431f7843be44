/**
 * A client for the echo server: connects, sends frames, prints what comes back and answers
 * the server's heartbeats. Run `node demos/client.ts --help`.
 *
 * On SIGTERM or SIGINT it closes gracefully (a FIN) and exits at once, without waiting for
 * the FIN to be acknowledged: if the network is cut, that FIN stays queued in the kernel,
 * which is what experiment b is about.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { FrameDecoder, FrameTooLargeError, HEARTBEAT, encodeFrame, isHeartbeat, log, preview } from './protocol.ts';

const HELP = `Usage: node demos/client.ts [options]

  --host <addr>          server address (default 127.0.0.1)
  --port <n>             server port, 1 to 65535 (default 7000)
  --count <n>            frames to send on each connection, 0 to 100000 (default 1)
  --payload <text>       what each frame carries (default "hello")
  --size <bytes>         instead of --payload: a generated payload of this size, 1 to 65535
  --every <s>            seconds between frames, 0 to 3600 (default 0)
  --connections <n>      parallel connections, each doing the same, 1 to 1000 (default 1)
  --close-after <s>      close gracefully this long after the last echo, 0 to 86400
                         (default: stay connected, answering heartbeats, until signalled)
  --stdin                also send each line typed on standard input as a frame
  -h, --help             this text`;

function fail(message: string): never {
  process.stderr.write(`client: ${message}\n`);
  process.exit(2);
}

function number(name: string, raw: string | undefined, fallback: number | undefined, min: number, max: number, integer = false): number | undefined {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    fail(`--${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}; got ${JSON.stringify(raw)}`);
  }
  return value;
}

let args;
try {
  args = parseArgs({
    options: {
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
    },
  }).values;
} catch (err) {
  fail((err as Error).message);
}
if (args.help) {
  process.stdout.write(HELP + '\n');
  process.exit(0);
}
if (args.payload !== undefined && args.size !== undefined) fail('give --payload or --size, not both');
const size = number('size', args.size, undefined, 1, 65535, true);
const payload = size !== undefined ? Buffer.alloc(size, 'x') : Buffer.from(args.payload ?? 'hello', 'utf8');
if (payload.length === 0) fail('--payload must not be empty (an empty frame is a heartbeat)');
if (payload.length > 65535) fail(`--payload is ${payload.length} bytes; a frame holds at most 65535`);
const config = {
  host: args.host ?? '127.0.0.1',
  port: number('port', args.port, 7000, 1, 65535, true)!,
  count: number('count', args.count, 1, 0, 100000, true)!,
  everyMs: number('every', args.every, 0, 0, 3600)! * 1000,
  connections: number('connections', args.connections, 1, 1, 1000, true)!,
  closeAfterMs: args['close-after'] === undefined ? null : number('close-after', args['close-after'], 0, 0, 86400)! * 1000,
};

const sockets = new Set<net.Socket>();
let failed = false;

function connect(index: number): void {
  const socket = net.connect({ host: config.host, port: config.port });
  sockets.add(socket);
  const decoder = new FrameDecoder();
  const sentAt: number[] = []; // send times of frames not yet echoed, oldest first
  let sent = 0;
  let received = 0;

  const send = (body: Buffer) => {
    socket.write(encodeFrame(body));
    sentAt.push(Date.now());
    log('send', { conn: index, bytes: body.length, text: preview(body) });
  };

  socket.on('connect', () => {
    log('connect', { local: `${socket.localAddress}:${socket.localPort}`, peer: `${socket.remoteAddress}:${socket.remotePort}`, conn: index });
    const next = () => {
      if (sent >= config.count || socket.destroyed) return;
      sent++;
      send(payload);
      if (sent < config.count) setTimeout(next, config.everyMs);
    };
    next();
    if (config.count === 0) maybeClose();
  });

  const maybeClose = () => {
    if (config.closeAfterMs === null || received < config.count) return;
    setTimeout(() => {
      log('closing', { conn: index, reason: 'close-after' });
      socket.end();
    }, config.closeAfterMs);
  };

  socket.on('data', (chunk) => {
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof FrameTooLargeError)) throw err;
      log('bad-frame', { conn: index, reason: err.message });
      socket.destroy();
      return;
    }
    for (const frame of frames) {
      if (isHeartbeat(frame)) {
        // The server's ping: answer at once, from the application, which proves it runs.
        log('ping', { conn: index });
        socket.write(HEARTBEAT);
        log('pong', { conn: index });
        continue;
      }
      received++;
      const at = sentAt.shift();
      log('recv', { conn: index, bytes: frame.length, text: preview(frame), rtt: at === undefined ? undefined : `${Date.now() - at}ms` });
      if (received === config.count) maybeClose();
    }
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (!socket.remoteAddress && !socket.localPort) failed = true;
    log('error', { conn: index, code: err.code, message: err.message });
  });
  socket.on('close', (hadError) => {
    sockets.delete(socket);
    log('close', { conn: index, hadError });
    if (sockets.size === 0) {
      log('done', { connections: config.connections });
      process.exit(failed ? 1 : 0);
    }
  });
}

for (let i = 1; i <= config.connections; i++) connect(i);

if (args.stdin) {
  // Each line typed (or sent by the lab's "Send frame" button) goes out as a frame.
  createInterface({ input: process.stdin }).on('line', (line) => {
    const body = Buffer.from(line, 'utf8').subarray(0, 65535);
    if (body.length === 0) return;
    for (const socket of sockets) {
      if (!socket.writable) continue;
      socket.write(encodeFrame(body));
      log('send', { bytes: body.length, text: preview(body) });
    }
  });
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log('closing', { reason: sig });
    for (const socket of sockets) socket.end(); // queue the FIN; the kernel sends it
    // Exit now: the kernel owns the FIN from here, even if the network is gone.
    process.exit(0);
  });
}
