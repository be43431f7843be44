/**
 * The article's echo server, in TypeScript: it reads frames (2-byte big-endian length +
 * payload, see protocol.ts) and echoes each one back after a delay.
 * Run `node demos/echo-server.ts --help`.
 *
 * It logs every accept, frame, echo, close and error, with a timestamp and the peer's
 * address, so you can see exactly what the server knows and when it learns it. How it
 * notices a peer that vanished is the subject of the course:
 *   --mode none       what the article's server did: a peer that vanishes without a FIN
 *                     or RST is never noticed, its connection stays ESTABLISHED for ever
 *   --mode keepalive  SO_KEEPALIVE: the kernel probes an idle connection and fails it with
 *                     ETIMEDOUT when the probes go unanswered
 *   --mode heartbeat  the application pings, the peer's application answers; silence for
 *                     interval × misses closes the connection
 *   --user-timeout    TCP_USER_TIMEOUT: bounds how long sent data may stay unacknowledged,
 *                     the case keepalive does not cover (no probes while data is in flight)
 *
 * Copy it freely: it needs only Node 24 and the two files next to it (protocol.ts,
 * options.ts), plus the npm package net-keepalive if you use --user-timeout.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { choiceFlag, numberFlag, parseFlags, UsageError } from './options.ts';
import { FrameDecoder, HEARTBEAT, MAX_FRAME_BYTES, encodeFrame, hostPort, isHeartbeat, log, preview } from './protocol.ts';

const HELP = `Usage: node demos/echo-server.ts [options]

Echoes every frame (2-byte big-endian length + payload) back to its sender after a delay,
and logs one line per event: <ISO time> <event> key=value ...

  --host <addr>                  address to listen on (default 0.0.0.0)
  --port <n>                     port, 1 to 65535 (default 7000)
  --echo-delay <s>               echo each frame this many seconds after it arrives,
                                 0 to 3600, decimals allowed (default 5, as in the article)
  --no-echo                      never echo; only read (experiment a)

  --mode none|keepalive|heartbeat
                                 how a vanished peer is detected (default none: never)

  keepalive (--mode keepalive), detection = idle + interval × count after the last traffic:
  --keepalive-idle <s>           idle time before the first probe, 1 to 32767 (default 2;
                                 the Linux default is 7200)
  --keepalive-interval <s>       time between probes, 1 to 32767 (default 1; Linux: 75)
  --keepalive-count <n>          unanswered probes before ETIMEDOUT, 1 to 127 (default 3;
                                 Linux: 9)

  heartbeat (--mode heartbeat), detection = interval × misses after the last frame received:
  --heartbeat-interval <s>       send a heartbeat every this many seconds, 0.1 to 3600,
                                 decimals allowed (default 1)
  --heartbeat-misses <n>         close after interval × misses without a frame from the
                                 peer, 2 to 100 (default 3; 1 would leave no time for
                                 the round trip of the answer to the last ping)

  --user-timeout <ms>            TCP_USER_TIMEOUT (Linux): fail the connection with ETIMEDOUT
                                 when sent data stays unacknowledged this long,
                                 1 to 2147483647 (default: off; needs the npm package
                                 net-keepalive)
  --max-frame <bytes>            largest frame payload accepted, 0 to 65535 (default 65535);
                                 a peer announcing more is disconnected
  --max-connections <n>          refuse connections beyond this many open ones,
                                 1 to 1000000 (default: no limit)
  -h, --help                     show this text

Exit status: 0 after SIGINT or SIGTERM, 1 if it cannot listen, 2 for a bad command line.`;

const MODES = ['none', 'keepalive', 'heartbeat'] as const;

interface Config {
  host: string;
  port: number;
  /** null: --no-echo. */
  echoDelayMs: number | null;
  mode: (typeof MODES)[number];
  keepalive: { idleS: number; intervalS: number; count: number };
  heartbeat: { intervalMs: number; misses: number };
  userTimeoutMs: number | undefined;
  maxFrame: number;
  maxConnections: number | undefined;
}

function readConfig(argv: string[]): Config | 'help' {
  const flags = parseFlags(argv, {
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
  });
  if (flags.help) return 'help';

  const mode = choiceFlag('mode', flags.mode, MODES) ?? 'none';
  // A setting for a mode that is not on would silently do nothing: say so instead.
  for (const [prefix, needs] of [['keepalive-', 'keepalive'], ['heartbeat-', 'heartbeat']] as const) {
    const given = Object.keys(flags).find((name) => name.startsWith(prefix));
    if (given && mode !== needs) throw new UsageError(`--${given} needs --mode ${needs}`);
  }
  if (flags['no-echo'] && flags['echo-delay'] !== undefined) throw new UsageError('--echo-delay and --no-echo contradict each other: give one');

  const echoDelayS = numberFlag('echo-delay', flags['echo-delay'], { min: 0, max: 3600 }) ?? 5;
  return {
    host: flags.host ?? '0.0.0.0',
    port: numberFlag('port', flags.port, { min: 1, max: 65535, integer: true }) ?? 7000,
    echoDelayMs: flags['no-echo'] ? null : Math.round(echoDelayS * 1000),
    mode,
    keepalive: {
      idleS: numberFlag('keepalive-idle', flags['keepalive-idle'], { min: 1, max: 32767, integer: true }) ?? 2,
      intervalS: numberFlag('keepalive-interval', flags['keepalive-interval'], { min: 1, max: 32767, integer: true }) ?? 1,
      count: numberFlag('keepalive-count', flags['keepalive-count'], { min: 1, max: 127, integer: true }) ?? 3,
    },
    heartbeat: {
      intervalMs: Math.round((numberFlag('heartbeat-interval', flags['heartbeat-interval'], { min: 0.1, max: 3600 }) ?? 1) * 1000),
      misses: numberFlag('heartbeat-misses', flags['heartbeat-misses'], { min: 2, max: 100, integer: true }) ?? 3,
    },
    userTimeoutMs: numberFlag('user-timeout', flags['user-timeout'], { min: 1, max: 2147483647, integer: true }),
    maxFrame: numberFlag('max-frame', flags['max-frame'], { min: 0, max: MAX_FRAME_BYTES, integer: true }) ?? MAX_FRAME_BYTES,
    maxConnections: numberFlag('max-connections', flags['max-connections'], { min: 1, max: 1_000_000, integer: true }),
  };
}

let parsed: Config | 'help';
try {
  parsed = readConfig(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`echo-server: ${err.message}\n`);
  process.exit(2);
}
if (parsed === 'help') {
  process.stdout.write(HELP + '\n');
  process.exit(0);
}
const config: Config = parsed;

// Per-connection memory must stay bounded whatever a peer does. The decoder holds at most
// one frame (2 + --max-frame bytes). These two bound the rest:
// - echoes Node holds because the kernel's send buffer is full: the peer is not reading
//   (or is gone and the kernel is retransmitting). Beyond this we drop the connection.
const MAX_UNSENT_BYTES = 1024 * 1024;
// - frames received and waiting for their echo delay. Beyond this we stop reading from the
//   peer until the echoes have gone out: its data then waits in the kernels' buffers and
//   TCP flow control slows the sender down, which is what flow control is for.
const MAX_WAITING_ECHO_BYTES = 1024 * 1024;

// #region user-timeout
// Node's net module has no way to set TCP_USER_TIMEOUT. The npm package net-keepalive (a
// maintained package that calls setsockopt through ffi-rs) sets it on the socket's file
// descriptor. It is imported only when --user-timeout is given, so the server runs without
// the package otherwise.
type SetUserTimeout = (socket: net.Socket, ms: number) => boolean;
let setUserTimeout: SetUserTimeout | null = null;
if (config.userTimeoutMs !== undefined) {
  try {
    const { default: netKeepAlive } = await import('net-keepalive');
    setUserTimeout = netKeepAlive.setUserTimeout;
  } catch (err) {
    process.stderr.write(`echo-server: --user-timeout needs the npm package net-keepalive (npm install net-keepalive): ${(err as Error).message}\n`);
    process.exit(1);
  }
}
// #endregion user-timeout

/** The soft RLIMIT_NOFILE, how many file descriptors this process may open (Linux only). */
function descriptorLimit(): string {
  try {
    // "Max open files            1024                 1048576              files"
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    return line?.split(/\s{2,}/)[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(3)}s`;

/** Open connections, each with the function that stops its timers. */
const connections = new Map<net.Socket, () => void>();

function serve(socket: net.Socket): void {
  const peer = hostPort(socket.remoteAddress, socket.remotePort);
  const connectedAt = Date.now();
  let lastHeardAt = connectedAt; // when the last whole frame arrived from the peer
  const echoTimers = new Set<NodeJS.Timeout>();
  let waitingEchoBytes = 0;
  let readingPaused = false;
  let pinger: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;

  const stopTimers = () => {
    clearInterval(pinger);
    clearTimeout(deadline);
    for (const timer of echoTimers) clearTimeout(timer);
    echoTimers.clear();
  };
  connections.set(socket, stopTimers);
  log('accept', { peer, open: connections.size });

  // #region keepalive
  if (config.mode === 'keepalive') {
    // SO_KEEPALIVE: once nothing has been received for `idle` seconds, the kernel sends an
    // empty probe every `interval` seconds; after `count` unanswered probes it gives up and
    // the socket fails with ETIMEDOUT: detection at idle + interval × count after the last
    // traffic. Node 24 sets all three (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) with this
    // 4-argument form. With only (true, idleMs), libuv uses an interval of 1 s and 10 probes.
    // Keepalive only tests the peer's kernel, not its application, and the kernel sends no
    // probe while sent data is unacknowledged (then --user-timeout is the bound).
    const { idleS, intervalS, count } = config.keepalive;
    socket.setKeepAlive(true, idleS * 1000, intervalS * 1000, count);
  }
  // #endregion keepalive

  // #region heartbeat
  if (config.mode === 'heartbeat') {
    const { intervalMs, misses } = config.heartbeat;
    // Ping every interval, whether or not the peer is talking, so that a live peer always
    // has something to answer.
    pinger = setInterval(() => {
      if (!socket.writable) return;
      socket.write(HEARTBEAT);
      log('ping', { peer });
    }, intervalMs);
    // Any frame from the peer (data or heartbeat) proves its application is alive and
    // restarts this timer (deadline.refresh() in onFrame). So a dead, unreachable or frozen
    // peer is detected interval × misses after the last frame received from it.
    deadline = setTimeout(() => {
      if (readingPaused) {
        // We stopped reading (see onFrame): the silence is ours, not the peer's.
        deadline?.refresh();
        return;
      }
      log('timeout', { peer, reason: 'heartbeat', silentFor: seconds(Date.now() - lastHeardAt) });
      socket.destroy();
    }, intervalMs * misses);
  }
  // #endregion heartbeat

  // #region set-user-timeout
  if (setUserTimeout && config.userTimeoutMs !== undefined) {
    // TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the kernel gives
    // up on the connection (ETIMEDOUT). It covers what keepalive cannot: no probe is sent
    // while data is in flight, so without it a write to a vanished peer is retransmitted
    // for ~15 minutes (tcp_retries2). With keepalive on as well, Linux applies it to the
    // probes too: the connection is dropped once probes have gone unanswered this long,
    // whatever --keepalive-count says.
    try {
      setUserTimeout(socket, config.userTimeoutMs);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      log('setsockopt-error', { peer, option: 'TCP_USER_TIMEOUT', code: e.code, message: e.message });
    }
  }
  // #endregion set-user-timeout

  // #region frames
  const decoder = new FrameDecoder({ maxFrameBytes: config.maxFrame });
  socket.on('data', (chunk: Buffer) => {
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      // FrameTooLargeError: the peer announced more than --max-frame. We cannot find the next
      // frame boundary without reading what it announced, so the connection is dropped.
      log('bad-frame', { peer, reason: (err as Error).message });
      socket.destroy();
      return;
    }
    for (const frame of frames) onFrame(frame);
  });

  function onFrame(frame: Buffer): void {
    lastHeardAt = Date.now();
    deadline?.refresh();
    if (isHeartbeat(frame)) {
      log('pong', { peer });
      return;
    }
    log('frame', { peer, bytes: frame.length, text: preview(frame) });
    if (config.echoDelayMs === null) return;

    const timer = setTimeout(() => {
      echoTimers.delete(timer);
      waitingEchoBytes -= frame.length;
      echo(frame);
      if (readingPaused && waitingEchoBytes === 0 && !socket.destroyed) {
        readingPaused = false;
        socket.resume();
        log('resume', { peer });
      }
    }, config.echoDelayMs);
    echoTimers.add(timer);
    waitingEchoBytes += frame.length;
    if (!readingPaused && waitingEchoBytes > MAX_WAITING_ECHO_BYTES) {
      readingPaused = true;
      socket.pause();
      log('pause', { peer, reason: 'echoes-waiting', waitingBytes: waitingEchoBytes });
    }
  }
  // #endregion frames

  // #region echo
  function echo(frame: Buffer): void {
    if (socket.destroyed || !socket.writable) {
      log('echo-skipped', { peer, reason: 'closed' });
      return;
    }
    // write() hands the bytes to the kernel's send buffer (or, when that is full, keeps
    // them in Node until it has room). Its callback runs once the kernel has taken them:
    // with no error even when the peer vanished minutes ago (experiment c), because the
    // kernel then retransmits for up to ~15 minutes. Success means "in the send buffer",
    // never "delivered". The return value only tells whether Node had to keep the bytes.
    const handedToKernel = socket.write(encodeFrame(frame), (err?: Error | null) => {
      const code = err ? ((err as NodeJS.ErrnoException).code ?? err.message) : 'ok';
      log('echo', { peer, bytes: frame.length, write: code, buffered: !handedToKernel });
    });
    if (socket.writableLength > MAX_UNSENT_BYTES) {
      log('drop', { peer, reason: 'not-reading', unsentBytes: socket.writableLength });
      stopTimers();
      socket.destroy();
    }
  }
  // #endregion echo

  // #region lifecycle
  socket.on('end', () => {
    // The peer sent a FIN: it will send nothing more. Node then ends our side too (the
    // default allowHalfOpen: false), so echoes still waiting are skipped.
    log('end', { peer });
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    // ETIMEDOUT (keepalive or TCP_USER_TIMEOUT gave up, or retransmissions ran out),
    // ECONNRESET (the peer's kernel answered with RST), EPIPE... Always followed by 'close'.
    log('error', { peer, code: err.code, message: err.message });
  });
  socket.on('close', (hadError) => {
    stopTimers();
    connections.delete(socket);
    log('close', { peer, open: connections.size, after: seconds(Date.now() - connectedAt), hadError });
  });
  // #endregion lifecycle
}

// #region accept-error
const server = net.createServer(serve);
if (config.maxConnections !== undefined) server.maxConnections = config.maxConnections;

// Beyond maxConnections Node closes each new connection at once and logs nothing: its
// 'drop' event is the only trace.
server.on('drop', (info) => {
  log('refused', { peer: hostPort(info?.remoteAddress, info?.remotePort), reason: 'max-connections', open: connections.size });
});

server.on('error', (err: NodeJS.ErrnoException) => {
  if (err.syscall === 'accept') {
    // accept() failed. EMFILE/ENFILE: the process (or the whole system) is out of file
    // descriptors, the incident's symptom: the server is up, the kernel still completes
    // TCP handshakes on the port, but no new client gets served.
    // Do not count on seeing this line. libuv keeps one descriptor in reserve; on EMFILE it
    // frees it, accepts every waiting connection and closes it at once, takes the reserve
    // back and reports nothing. Node emits this event only when that reserve itself could
    // not be had. Either way the client sees its connection closed unserved, and the
    // server keeps running.
    log('accept-error', { code: err.code, syscall: 'accept', open: connections.size, message: err.message });
    return;
  }
  // EADDRINUSE, EACCES...: we cannot listen at all.
  log('server-error', { code: err.code, syscall: err.syscall, message: err.message });
  process.exit(1);
});
// #endregion accept-error

server.listen(config.port, config.host, () => {
  const address = server.address() as net.AddressInfo;
  const { idleS, intervalS, count } = config.keepalive;
  const { intervalMs, misses } = config.heartbeat;
  const liveness =
    config.mode === 'keepalive'
      ? { idle: `${idleS}s`, interval: `${intervalS}s`, count, detectAfter: `${idleS + intervalS * count}s` }
      : config.mode === 'heartbeat'
        ? { interval: `${intervalMs / 1000}s`, misses, detectAfter: `${(intervalMs * misses) / 1000}s` }
        : {};
  log('listen', {
    addr: hostPort(address.address, address.port),
    mode: config.mode,
    ...liveness,
    userTimeout: config.userTimeoutMs === undefined ? undefined : `${config.userTimeoutMs}ms`,
    echo: config.echoDelayMs === null ? 'off' : `${config.echoDelayMs / 1000}s`,
    maxFrame: config.maxFrame,
    maxConnections: config.maxConnections,
    fdLimit: descriptorLimit(),
    pid: process.pid,
  });
});

// #region shutdown
function shutdown(signal: NodeJS.Signals): void {
  log('shutdown', { signal, open: connections.size });
  // Stop accepting; exit once every connection is closed...
  server.close(() => process.exit(0));
  for (const [socket, stopTimers] of connections) {
    stopTimers();
    socket.end(); // a FIN, after whatever is already written
  }
  // ...or after a second at most: a vanished peer never answers our FIN, and the kernel
  // keeps trying to deliver it after we exit anyway.
  setTimeout(() => process.exit(0), 1000).unref();
}
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
// #endregion shutdown
