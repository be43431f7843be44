#!/usr/bin/env node
/**
 * npm start [-- --port N] [--host ADDRESS [--token T] [--allow-host NAME]…] [--max-labs N] [--no-build]
 *
 * One process: builds the course if its sources changed since the last build, serves the
 * static site from dist/, and runs the lab sidecar at /api/lab on the same origin.
 *
 * By default it listens on 127.0.0.1 only. `--host 0.0.0.0` (trainer mode) serves other
 * machines, and then only with an access token: see ./access.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Scenario } from '../scenarios/types.ts';
import { DEFAULT_LIMITS, type SidecarLimits } from '../sidecar/session.ts';
import { Sidecar } from '../sidecar/sidecar.ts';
import { guardSocket, isLoopbackAddress, refuseSocket } from '../sidecar/sockets.ts';
import { AccessToken, ServedHosts, generateToken, isLoopbackBind, requestTarget, tokenProblem } from './access.ts';
import { describeSweep, sweepAtStart } from './sweep.ts';
import { serveStatic } from './static.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST = join(ROOT, 'dist');
const SOURCES = ['content', 'src', 'demos', 'public', 'astro.config.mjs', 'package.json'];

function newestMtime(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

/** True when dist/ is missing or older than any source of the site. */
export function needsBuild(): boolean {
  const built = join(DIST, 'index.html');
  if (!existsSync(built)) return true;
  const builtAt = statSync(built).mtimeMs;
  return SOURCES.some((s) => newestMtime(join(ROOT, s)) > builtAt);
}

export function build(): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write('Building the course (astro build)…\n');
    // A production build whoever asks: under Vitest (NODE_ENV=test) Astro and Starlight
    // build another site, without the search UI, and `npm start` after `npm test` would
    // serve that one (dist/ is newer than the sources, so it is not built again).
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/astro/bin/astro.mjs'), 'build'], {
      cwd: ROOT,
      env: { ...process.env, NODE_ENV: 'production' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`astro build failed (exit ${code})`))));
  });
}

export interface StartOptions {
  port: number;
  host: string;
  maxLabs?: number;
  /** The access token; required when `host` is not loopback (trainer mode), refused otherwise. */
  token?: string;
  /** More Host names to answer to in trainer mode (a DNS name of this machine, say). */
  allowHosts?: string[];
  /** Other limits (tests); `maxLabs` above wins. */
  limits?: Partial<SidecarLimits>;
  /** The scenarios pages may run (tests add their own); default: the course's. */
  scenarios?: readonly Scenario[];
  /** The sidecar's ping period in ms (tests). */
  heartbeatMs?: number;
}

/** Starts the server; resolves with it once listening. */
export async function startServer(options: StartOptions) {
  const trainer = !isLoopbackBind(options.host);
  if (trainer && !options.token) throw new Error(`serving other machines (--host ${options.host}) needs an access token`);
  if (!trainer && options.token) throw new Error('an access token only applies when serving other machines (--host)');
  // Known once listening (the port may be 0: any free one). No request arrives before.
  let hosts: ServedHosts;
  let access: AccessToken | null = null;
  const sidecar = new Sidecar({
    allowedHosts: (host) => hosts.allows(host),
    authorized: (req) => access === null || access.allowsUpgrade(req),
    limits: { ...options.limits, ...(options.maxLabs ? { maxLabs: options.maxLabs } : {}) },
    scenarios: options.scenarios,
    heartbeatMs: options.heartbeatMs,
    // Without --host it listens on loopback only; should a peer from elsewhere reach it all
    // the same, it is refused (there is no token to stop it).
    loopbackPeersOnly: !trainer,
  });
  const server = createServer((req, res) => {
    try {
      if (!trainer && !isLoopbackAddress(req.socket.remoteAddress)) {
        res.writeHead(403, { 'content-type': 'text/plain' }).end('Forbidden: this server serves this machine only (start it with --host to serve others)\n');
        return;
      }
      // Only a path (origin-form): not `http://host/…`, `*` or `host:port`, which no browser
      // sends to a server that is not a proxy and which nothing below expects.
      if (requestTarget(req.url) === null) {
        res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end('Bad Request: the request target must be a path\n');
        return;
      }
      if (!sidecar.hostAllowed(req)) {
        res.writeHead(403, { 'content-type': 'text/plain' }).end('Forbidden: unknown Host\n');
        return;
      }
      if (access && !access.gate(req, res)) return;
      serveStatic(DIST, req, res);
    } catch (err) {
      // A request must never take the server (and every lab) down.
      process.stderr.write(`request ${JSON.stringify(req.url)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' }).end('Internal Server Error\n');
      else res.destroy();
    }
  });
  server.on('upgrade', (req, socket, head) => {
    guardSocket(socket);
    try {
      if (!sidecar.handleUpgrade(req, socket, head)) refuseSocket(socket, 404, 'Not Found');
    } catch (err) {
      process.stderr.write(`upgrade ${JSON.stringify(req.url)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      socket.destroy();
    }
  });
  // A request Node cannot parse (a bad request line, headers past 16 KiB, a timeout): answer
  // and close. Node's default does much the same; this keeps it so, and quiet about resets.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    guardSocket(socket);
    const inResponse = (socket as Duplex & { _httpMessage?: unknown })._httpMessage != null;
    if (err.code === 'ECONNRESET' || !socket.writable || inResponse) {
      socket.destroy();
      return;
    }
    const [status, body] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout']
          : [400, 'Bad Request'];
    refuseSocket(socket, status, body);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (err) {
    await sidecar.close();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  hosts = new ServedHosts(port, { trainer, extraNames: options.allowHosts });
  if (trainer) access = new AccessToken(options.token!, port);
  const close = async () => {
    await sidecar.close();
    await new Promise<void>((r) => server.close(() => r()));
    server.closeAllConnections();
  };
  const bindsAll = options.host === '0.0.0.0' || options.host === '::';
  return {
    server,
    sidecar,
    close,
    port,
    /** Trainer mode: a join URL per non-loopback address, and one for this machine. */
    joinUrls: trainer ? hosts.joinUrls(options.host, options.token!) : [],
    /** Where to open it on this machine (null when it listens on one network address only). */
    localUrl: !trainer ? `http://${options.host === '::1' ? '[::1]' : options.host}:${port}/` : bindsAll ? `http://127.0.0.1:${port}/?token=${options.token}` : null,
  };
}

const USAGE = `npm start [-- options]
  Serves the course and its lab at http://127.0.0.1:4321/ (this machine only).

  --port N            port (default 4321, or $PORT)
  --max-labs N        labs running at once, 1 to 500 (default ${DEFAULT_LIMITS.maxLabs}); lab
                      connections (open pages) are capped at 4 × N, at least 32
  --no-build          serve dist/ as it is, without rebuilding
  --host ADDRESS      trainer mode: serve other machines too, e.g. --host 0.0.0.0
                      (every address of this machine); every browser then needs the
                      access token, which the join links printed at start carry
  --token T           trainer mode: use this token (or $KEEPALIVE_LAB_TOKEN) instead of
                      a new random one; at least 22 characters of A-Z a-z 0-9 - _
  --allow-host NAME   trainer mode: also answer to this host name (repeatable), e.g.
                      a DNS name of this machine
`;

export interface StartCommand {
  port: number;
  host: string;
  maxLabs?: number;
  build: boolean;
  /** Trainer mode only. */
  token?: string;
  /** Where the token came from: null for a new random one. */
  tokenFrom: '--token' | 'KEEPALIVE_LAB_TOKEN' | null;
  allowHosts: string[];
}

/** Reads `npm start`'s arguments; a string is what is wrong with them. */
export function parseStartArgs(args: string[], env: NodeJS.ProcessEnv): StartCommand | 'help' | string {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        port: { type: 'string', default: env.PORT ?? '4321' },
        host: { type: 'string', default: '127.0.0.1' },
        token: { type: 'string' },
        'allow-host': { type: 'string', multiple: true, default: [] },
        'max-labs': { type: 'string' },
        'no-build': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    return (err as Error).message;
  }
  if (values.help) return 'help';
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `--port must be a whole number from 1 to 65535; got ${values.port}`;
  const maxLabs = values['max-labs'] === undefined ? undefined : Number(values['max-labs']);
  if (maxLabs !== undefined && (!Number.isInteger(maxLabs) || maxLabs < 1 || maxLabs > 500)) return `--max-labs must be a whole number from 1 to 500; got ${values['max-labs']}`;
  const host = values.host;
  const command: StartCommand = { port, host, maxLabs, build: !values['no-build'], tokenFrom: null, allowHosts: values['allow-host'] };
  if (isLoopbackBind(host)) {
    if (values.token !== undefined) return '--token only applies with --host (serving other machines); on 127.0.0.1 no token is needed';
    if (command.allowHosts.length) return '--allow-host only applies with --host (serving other machines)';
    return command;
  }
  if (isIP(host) === 0) return `--host must be an IP address of this machine (0.0.0.0 for all of them, :: for IPv6 too); got ${host}`;
  if (values.token !== undefined) command.tokenFrom = '--token';
  else if (env.KEEPALIVE_LAB_TOKEN) command.tokenFrom = 'KEEPALIVE_LAB_TOKEN';
  command.token = command.tokenFrom === '--token' ? values.token : command.tokenFrom ? env.KEEPALIVE_LAB_TOKEN : generateToken();
  const problem = tokenProblem(command.token!);
  if (problem) return `${command.tokenFrom}: ${problem}`;
  return command;
}

async function main(): Promise<void> {
  const command = parseStartArgs(process.argv.slice(2), process.env);
  if (command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (typeof command === 'string') {
    process.stderr.write(`start: ${command}\n`);
    process.exit(2);
  }
  const { port, host, maxLabs, token, tokenFrom } = command;
  const trainer = token !== undefined;

  // What labs of an earlier server, killed mid-run, left behind goes before anything starts.
  for (const line of describeSweep(await sweepAtStart())) process.stdout.write(line + '\n');
  if (command.build && needsBuild()) await build();
  let started;
  try {
    started = await startServer({ port, host, maxLabs, token, allowHosts: command.allowHosts });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`start: cannot listen on ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use (try --port N)' : e.message}\n`);
    process.exit(1);
  }
  const { close, joinUrls, localUrl } = started;
  const cap = started.sidecar.slots.limits.maxLabs;
  if (!trainer) {
    process.stdout.write(`Keepalive Lab is running at ${localUrl}  (Ctrl+C to stop)\n`);
  } else {
    const lines = [
      `Keepalive Lab is serving other machines on ${host}:${port} (trainer mode), up to ${cap} labs at once (--max-labs N).`,
      `Every browser needs the access token (${tokenFrom ? `from ${tokenFrom}` : 'a new random one: a restart makes a new one'}). Share a join link with the room:`,
      ...(joinUrls.length ? joinUrls.map((u) => `  ${u}`) : ['  (no network address found on this machine: check its interfaces)']),
      ...(localUrl ? [`On this machine: ${localUrl}`] : []),
      `Opening a link once stores the token in that browser (a cookie) and drops it from the address bar.`,
      `Anyone with the link can run labs on this machine until you stop the server (Ctrl+C).`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${sig}: stopping every lab…\n`);
    await close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
