/**
 * The article's echo server, in TypeScript: frames of 2-byte big-endian length + payload,
 * each echoed back after a delay. Run `node demos/echo-server.ts --help`.
 *
 * It logs every accept, frame, echo, close and error with a timestamp and the peer's
 * address, so you can see exactly what the server knows, and when. Its liveness modes are
 * the course's subject:
 *   none       what the article's server did: a vanished client is never noticed
 *   keepalive  SO_KEEPALIVE: the kernel probes an idle connection and reports ETIMEDOUT
 *   heartbeat  the application pings; silence for interval × misses closes the connection
 * and --user-timeout sets TCP_USER_TIMEOUT, which bounds how long written data may stay
 * unacknowledged (keepalive does not run while it does).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { FrameDecoder, FrameTooLargeError, HEARTBEAT, MAX_FRAME_BYTES, encodeFrame, isHeartbeat, log, preview } from './protocol.ts';

const HELP = `Usage: node demos/echo-server.ts [options]

  --host <addr>                 address to listen on (default 0.0.0.0)
  --port <n>                    port, 1 to 65535 (default 7000)
  --echo-delay <s>              echo each frame after this many seconds, 0 to 3600 (default 5, as in the article)
  --no-echo                     never echo (experiment a: the server only reads)
  --mode none|keepalive|heartbeat
                                how dead peers are detected (default none)
  --keepalive-idle <s>          keepalive: silence before the first probe, 1 to 32767 (default 2; Linux default 7200)
  --keepalive-interval <s>      keepalive: between probes, 1 to 32767 (default 1; Linux default 75)
  --keepalive-count <n>         keepalive: unanswered probes before giving up, 1 to 127 (default 3; Linux default 9)
  --heartbeat-interval <s>      heartbeat: send a ping this often, 0.1 to 3600 (default 1)
  --heartbeat-misses <n>        heartbeat: close after interval × misses of silence, 1 to 100 (default 3)
  --user-timeout <ms>           TCP_USER_TIMEOUT: give up when sent data stays unacknowledged this long,
                                1 to 2147483647 (needs the npm package net-keepalive)
  --max-frame <bytes>           largest frame accepted, 0 to 65535 (default 65535)
  --max-connections <n>         refuse connections beyond this many, 1 to 1000000 (default: no cap)
  -h, --help                    this text

Each log line is: <ISO time> <event> key=value …`;

function fail(message: string): never {
  process.stderr.write(`echo-server: ${message}\n`);
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
      'echo-delay': { type: 'string' },
      'no-echo': { type: 'boolean' },
      mode: { type: 'string' },
      'keepalive-idle': { type: 'string' },
      'keepalive-interval': { type: 'string' },
      'keepalive-count': { type: 'string' },
      'heartbeat-interval': { type: 'string' },
      'heartbeat-misses': { type: 'string' },
      'user-timeout': { type: 'string' },
      'max-frame': { type: 'string' },
      'max-connections': { type: 'string' },
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

const mode = args.mode ?? 'none';
if (mode !== 'none' && mode !== 'keepalive' && mode !== 'heartbeat') fail(`--mode must be none, keepalive or heartbeat; got ${JSON.stringify(mode)}`);
const config = {
  host: args.host ?? '0.0.0.0',
  port: number('port', args.port, 7000, 1, 65535, true)!,
  echoDelayMs: args['no-echo'] ? null : number('echo-delay', args['echo-delay'], 5, 0, 3600)! * 1000,
  mode,
  keepalive: {
    idle: number('keepalive-idle', args['keepalive-idle'], 2, 1, 32767, true)!,
    interval: number('keepalive-interval', args['keepalive-interval'], 1, 1, 32767, true)!,
    count: number('keepalive-count', args['keepalive-count'], 3, 1, 127, true)!,
  },
  heartbeat: {
    intervalMs: number('heartbeat-interval', args['heartbeat-interval'], 1, 0.1, 3600)! * 1000,
    misses: number('heartbeat-misses', args['heartbeat-misses'], 3, 1, 100, true)!,
  },
  userTimeoutMs: number('user-timeout', args['user-timeout'], undefined, 1, 2147483647, true),
  maxFrame: number('max-frame', args['max-frame'], MAX_FRAME_BYTES, 0, MAX_FRAME_BYTES, true)!,
  maxConnections: number('max-connections', args['max-connections'], undefined, 1, 1_000_000, true),
};

// A peer that never reads its echoes must not make us buffer without end.
const MAX_UNSENT_BYTES = 1 << 20;

// #region user-timeout
// Node's net module has no TCP_USER_TIMEOUT. The npm package net-keepalive (maintained,
// setsockopt through ffi-rs) sets it on the socket's descriptor. Loaded only when asked for,
// so the server runs without it otherwise.
type SetUserTimeout = (socket: net.Socket, ms: number) => boolean;
let setUserTimeout: SetUserTimeout | null = null;
if (config.userTimeoutMs !== undefined) {
  try {
    const mod = (await import('net-keepalive')) as { default?: { setUserTimeout: SetUserTimeout }; setUserTimeout?: SetUserTimeout };
    setUserTimeout = mod.setUserTimeout ?? mod.default!.setUserTimeout;
  } catch (err) {
    fail(`--user-timeout needs the npm package net-keepalive (npm install net-keepalive): ${(err as Error).message}`);
  }
}
// #endregion user-timeout

/** The soft RLIMIT_NOFILE: how many descriptors this process may hold (Linux only). */
function descriptorLimit(): string {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    return line?.split(/\s{2,}/)[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const peerOf = (socket: net.Socket) => `${socket.remoteAddress}:${socket.remotePort}`;
const open = new Set<net.Socket>();

function handle(socket: net.Socket): void {
  const peer = peerOf(socket);
  const since = Date.now();
  open.add(socket);
  log('accept', { peer, open: open.size });

  // #region liveness
  if (config.mode === 'keepalive') {
    // Node 24 sets TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT with this 4-argument form.
    // With only (true, idleMs), libuv uses an interval of 1 s and 10 probes.
    const { idle, interval, count } = config.keepalive;
    socket.setKeepAlive(true, idle * 1000, interval * 1000, count);
  }
  let deadline: NodeJS.Timeout | null = null;
  let pinger: NodeJS.Timeout | null = null;
  if (config.mode === 'heartbeat') {
    // Ping every interval. Any frame from the peer proves it is alive and pushes the
    // deadline back; interval × misses of silence and we give up on it.
    const { intervalMs, misses } = config.heartbeat;
    const silence = intervalMs * misses;
    deadline = setTimeout(() => {
      log('timeout', { peer, reason: 'heartbeat', silentFor: `${(silence / 1000).toFixed(3)}s` });
      socket.destroy();
    }, silence);
    pinger = setInterval(() => {
      if (!socket.writable) return;
      socket.write(HEARTBEAT);
      log('ping', { peer });
    }, intervalMs);
  }
  if (setUserTimeout && config.userTimeoutMs !== undefined) setUserTimeout(socket, config.userTimeoutMs);
  // #endregion liveness

  // #region frames
  const decoder = new FrameDecoder({ maxFrameBytes: config.maxFrame });
  const echoes = new Set<NodeJS.Timeout>();
  socket.on('data', (chunk) => {
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof FrameTooLargeError)) throw err;
      log('bad-frame', { peer, reason: err.message });
      socket.destroy();
      return;
    }
    for (const frame of frames) {
      deadline?.refresh(); // heartbeat: the peer is alive
      if (isHeartbeat(frame)) {
        log('pong', { peer });
        continue;
      }
      log('frame', { peer, bytes: frame.length, text: preview(frame) });
      if (config.echoDelayMs === null) continue;
      const timer = setTimeout(() => {
        echoes.delete(timer);
        echo(socket, peer, frame);
      }, config.echoDelayMs);
      echoes.add(timer);
    }
  });
  // #endregion frames

  socket.on('error', (err: NodeJS.ErrnoException) => {
    // ETIMEDOUT (keepalive or retransmissions gave up), ECONNRESET, EPIPE…
    log('error', { peer, code: err.code, message: err.message });
  });
  socket.on('close', (hadError) => {
    open.delete(socket);
    if (deadline) clearTimeout(deadline);
    if (pinger) clearInterval(pinger);
    for (const t of echoes) clearTimeout(t);
    log('close', { peer, open: open.size, after: `${((Date.now() - since) / 1000).toFixed(3)}s`, hadError });
  });
}

// #region echo
function echo(socket: net.Socket, peer: string, frame: Buffer): void {
  if (socket.destroyed || !socket.writable) {
    log('echo-skipped', { peer, reason: 'closed' });
    return;
  }
  // write() only hands the bytes to the kernel's send buffer. It succeeds whether or not
  // the peer still exists: that is experiment c.
  const flushed = socket.write(encodeFrame(frame));
  log('echo', { peer, bytes: frame.length, write: 'ok', buffered: !flushed });
  if (socket.writableLength > MAX_UNSENT_BYTES) {
    log('drop', { peer, reason: `more than ${MAX_UNSENT_BYTES} bytes unsent: the peer does not read` });
    socket.destroy();
  }
}
// #endregion echo

const server = net.createServer(handle);
if (config.maxConnections !== undefined) {
  server.maxConnections = config.maxConnections;
  server.on('drop', (info) => log('refused', { peer: `${info?.remoteAddress}:${info?.remotePort}`, reason: 'max-connections', open: open.size }));
}
server.on('error', (err: NodeJS.ErrnoException) => {
  if (err.syscall === 'accept') {
    // EMFILE: out of file descriptors. The process lives, the listening socket is fine, but
    // new clients cannot be served: the incident. libuv accepts and closes the waiting
    // connection so the loop does not spin.
    log('accept-error', { code: err.code, syscall: 'accept', open: open.size, message: err.message });
    return;
  }
  log('server-error', { code: err.code, message: err.message });
  process.exit(1);
});

server.listen(config.port, config.host, () => {
  const liveness =
    config.mode === 'keepalive'
      ? { idle: `${config.keepalive.idle}s`, interval: `${config.keepalive.interval}s`, count: config.keepalive.count }
      : config.mode === 'heartbeat'
        ? { interval: `${config.heartbeat.intervalMs / 1000}s`, misses: config.heartbeat.misses }
        : {};
  log('listen', {
    addr: `${config.host}:${config.port}`,
    mode: config.mode,
    ...liveness,
    userTimeout: config.userTimeoutMs === undefined ? undefined : `${config.userTimeoutMs}ms`,
    echo: config.echoDelayMs === null ? 'off' : `${config.echoDelayMs / 1000}s`,
    fdLimit: descriptorLimit(),
    pid: process.pid,
  });
});

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log('shutdown', { signal: sig, open: open.size });
    for (const s of open) s.destroy();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}
