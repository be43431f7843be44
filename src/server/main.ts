#!/usr/bin/env node
/**
 * npm start [-- --port N] [--no-build]
 *
 * One process: builds the course if its sources changed since the last build, serves the
 * static site from dist/, and runs the lab sidecar at /api/lab on the same origin.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Sidecar, loopbackHosts } from '../sidecar/sidecar.ts';
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
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/astro/bin/astro.mjs'), 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`astro build failed (exit ${code})`))));
  });
}

export interface StartOptions {
  port: number;
  host: string;
  maxLabs?: number;
}

/** Starts the server; resolves with it once listening. */
export async function startServer(options: StartOptions) {
  const sidecar = new Sidecar({ allowedHosts: loopbackHosts(options.port), limits: options.maxLabs ? { maxLabs: options.maxLabs } : {} });
  const server = createServer((req, res) => {
    if (!sidecar.hostAllowed(req)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('Forbidden: unknown Host\n');
      return;
    }
    serveStatic(DIST, req, res);
  });
  server.on('upgrade', (req, socket, head) => {
    if (!sidecar.handleUpgrade(req, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const close = async () => {
    await sidecar.close();
    await new Promise<void>((r) => server.close(() => r()));
    server.closeAllConnections();
  };
  return { server, sidecar, close };
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string', default: process.env.PORT ?? '4321' },
        host: { type: 'string', default: '127.0.0.1' },
        'max-labs': { type: 'string' },
        'no-build': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`start: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write('npm start [-- --port N] [--max-labs N] [--no-build]\n  Serves the course and its lab at http://127.0.0.1:N (default 4321).\n');
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`start: --port must be a whole number from 1 to 65535; got ${values.port}\n`);
    process.exit(2);
  }
  const maxLabs = values['max-labs'] === undefined ? undefined : Number(values['max-labs']);
  if (maxLabs !== undefined && (!Number.isInteger(maxLabs) || maxLabs < 1 || maxLabs > 500)) {
    process.stderr.write(`start: --max-labs must be a whole number from 1 to 500; got ${values['max-labs']}\n`);
    process.exit(2);
  }
  if (!['127.0.0.1', 'localhost', '::1'].includes(values.host)) {
    process.stderr.write(
      `start: serving other machines (--host ${values.host}) is not available yet: the lab starts processes on this machine, so it only listens on 127.0.0.1.\n`,
    );
    process.exit(2);
  }
  if (!values['no-build'] && needsBuild()) await build();
  const { close } = await startServer({ port, host: values.host, maxLabs });
  process.stdout.write(`Keepalive Lab is running at http://127.0.0.1:${port}/  (Ctrl+C to stop)\n`);
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
