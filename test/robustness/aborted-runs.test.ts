/**
 * 200 real runs aborted at random moments, every way a run can be abandoned: the page closes
 * its WebSocket (politely, or the connection just drops), the page sends Stop, or Ctrl+C
 * (SIGINT) reaches `npm run lab -- run <scenario>`. Some land while the lab is being made,
 * some mid-run.
 *
 * Afterwards nothing may be left: no lab process (holders of the namespaces included), no
 * link in the host's namespace, no pinned namespace, no temporary file;
 * and the server's memory and descriptor count are flat between a warm-up and the end.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ServerMessage } from '../../src/sidecar/protocol.ts';
import { capability, skipReason } from '../helpers/lab.ts';
import { hostLinks, labProcessesOf, nsMounts, until } from '../helpers/leftovers.ts';
import { ServerProcess } from '../helpers/server-process.ts';

const CLI = new URL('../../src/cli/lab.ts', import.meta.url).pathname;
const RUNS = 200;
const WARMUP = 30;
// Every run makes a real lab and starts real programs: about 1 s of CPU each, so the 200
// take about two minutes on two cores, more when the machine is busy (hence the timeout).
const CONCURRENCY = 4;
const SCENARIOS = ['experiment-a', 'experiment-b', 'experiment-b-same-address', 'experiment-b-too-late', 'experiment-c', 'keepalive', 'keepalive-unacked', 'hung-client', 'heartbeat', 'fd-exhaustion'];

type Way = 'close' | 'drop' | 'stop' | 'sigint';
interface Abort {
  way: Way;
  scenario: string;
  /**
   * When to abort: `afterMs` after the run was asked for ('making': the lab is being made,
   * or for the CLI, Node may not even have started it), or after the lab was ready ('running').
   */
  phase: 'making' | 'running';
  afterMs: number;
}

/** What happened to one run, for the figures and the checks. */
interface Outcome {
  way: Way;
  /** The lab had started (the page saw 'started', or the CLI printed its first line). */
  started: boolean;
  /** Stop: how long until the page heard 'stopped' (the lab torn down). */
  stopMs?: number;
  /**
   * The run reached its end before the abort did (a short scenario, a busy machine): not a
   * fault, but not an abort either. Its lab must have gone all the same; few may be like it.
   */
  finishedFirst?: boolean;
  problem?: string;
}

const owners = new Set<number>();
let server: ServerProcess | undefined;
let tmp: string | undefined;

afterAll(async () => {
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One run through the sidecar, abandoned by closing, dropping or stopping. */
async function pageRun(port: number, a: Abort): Promise<Outcome> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/lab`, { headers: { origin: `http://127.0.0.1:${port}` } });
  const messages: ServerMessage[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString()) as ServerMessage));
  ws.on('error', () => {});
  const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'run', scenario: a.scenario }));
  if (a.phase === 'running') await until(() => messages.some((m) => m.type === 'started' || m.type === 'error'), 30_000);
  await sleep(a.afterMs);
  const started = messages.some((m) => m.type === 'started');
  const early = messages.find((m) => m.type === 'error' || m.type === 'result' || m.type === 'stopped');
  if (early?.type === 'error') return { way: a.way, started, problem: `the run failed before it was aborted: ${JSON.stringify(early).slice(0, 300)}` };
  if (early) {
    ws.close();
    await closed;
    return { way: a.way, started, finishedFirst: true };
  }
  if (a.way === 'stop') {
    ws.send(JSON.stringify({ type: 'stop' }));
    // Stop answers once the lab is torn down (a lab being made is finished first).
    const sentAt = Date.now();
    const stopped = await until(() => messages.some((m) => m.type === 'stopped'), 60_000);
    const stopMs = Date.now() - sentAt;
    ws.close();
    await closed;
    const s = messages.find((m) => m.type === 'stopped') as Extract<ServerMessage, { type: 'stopped' }> | undefined;
    if (!stopped || s?.reason !== 'stopped') return { way: a.way, started, problem: `no 'stopped' within 60 s of Stop: ${JSON.stringify(messages.slice(-3)).slice(0, 600)}` };
    return { way: a.way, started, stopMs };
  }
  if (a.way === 'close') ws.close();
  else ws.terminate(); // the connection just drops: no close frame
  await closed;
  return { way: a.way, started };
}

/** One run of the CLI, interrupted by SIGINT as Ctrl+C would. */
async function cliRun(a: Abort, env: NodeJS.ProcessEnv): Promise<Outcome> {
  const child = spawn(process.execPath, [CLI, 'run', a.scenario], { env: { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  owners.add(child.pid!);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  if (a.phase === 'running') await until(() => /lab ready/.test(out) || child.exitCode !== null, 30_000);
  await sleep(a.afterMs);
  const started = /lab ready/.test(out);
  // A run that printed its verdict has finished: SIGINT may still land while it tears down.
  const finished = () => /The claim (held|did NOT hold)/.test(out);
  if (child.exitCode !== null || finished()) {
    const exit = await exited;
    if (exit.code === 0 && finished()) return { way: a.way, started, finishedFirst: true };
    return { way: a.way, started, problem: `the CLI ended before it was interrupted: ${JSON.stringify(exit)}: ${out.slice(-300)}` };
  }
  child.kill('SIGINT');
  const exit = await exited;
  if (exit.code === 0 && finished()) return { way: a.way, started, finishedFirst: true };
  // Before Node has run the CLI's code, SIGINT ends it at once; after, it stops the run,
  // tears the lab down and exits 130.
  const ok = exit.signal === 'SIGINT' || (exit.code === 130 && /stopped by SIGINT; the lab was torn down/.test(out));
  if (!ok) return { way: a.way, started, problem: `unexpected exit ${JSON.stringify(exit)}: ${out.slice(-300)}` };
  // The CLI waits for its teardown before exiting: nothing of its lab may remain now.
  const left = labProcessesOf([child.pid!]);
  if (exit.code === 130 && left.length) return { way: a.way, started, problem: `the CLI exited with lab processes alive: ${JSON.stringify(left)}` };
  return { way: a.way, started };
}

/** "median 420, max 1900" */
function percentiles(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? `median ${sorted[Math.floor(sorted.length / 2)]}, max ${sorted.at(-1)}` : 'n/a';
}

/** Runs the plan with at most `limit` runs at once. */
async function runAll(plan: Abort[], port: number, env: NodeJS.ProcessEnv, limit: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < plan.length) {
        const a = plan[next++]!;
        outcomes.push(a.way === 'sigint' ? await cliRun(a, env) : await pageRun(port, a));
      }
    }),
  );
  return outcomes;
}

describe.skipIf(!capability.ok)(`${RUNS} runs aborted at random moments${skipReason}`, () => {
  it('leave no process, namespace, link or temporary file, and the server stays flat', async () => {
    const seed = Date.now() ^ (Math.random() * 0x7fffffff);
    const ways = fc.constantFrom<Way>('close', 'drop', 'stop', 'sigint');
    const scenario = fc.constantFrom(...SCENARIOS);
    const plan = fc.sample(
      fc.oneof(
        fc.record({ way: ways, scenario, phase: fc.constant('making' as const), afterMs: fc.integer({ min: 0, max: 1200 }) }),
        fc.record({ way: ways, scenario, phase: fc.constant('running' as const), afterMs: fc.integer({ min: 0, max: 1500 }) }),
      ),
      { seed, numRuns: RUNS },
    );
    const hostBefore = { links: hostLinks(), nsMounts: nsMounts() };
    // Our own temporary directory for the server and every CLI: whatever they leave in it is theirs.
    tmp = mkdtempSync(join(tmpdir(), 'kl-aborted-'));
    const env = { ...process.env, TMPDIR: tmp };
    server = await ServerProcess.start({ maxLabs: 2 * CONCURRENCY + 4, env: { TMPDIR: tmp } });
    owners.add(server.pid);
    const idle = async () => {
      expect(await until(() => labProcessesOf(owners).length === 0, 10_000), JSON.stringify(labProcessesOf(owners))).toBe(true);
      return server!.measure();
    };

    const started = Date.now();
    const half = WARMUP + Math.floor((RUNS - WARMUP) / 2);
    const warmup = await runAll(plan.slice(0, WARMUP), server.port, env, CONCURRENCY);
    const afterWarmup = await idle();
    const first = await runAll(plan.slice(WARMUP, half), server.port, env, CONCURRENCY);
    const atHalf = await idle();
    const second = await runAll(plan.slice(half), server.port, env, CONCURRENCY);
    const atEnd = await idle();
    const outcomes = [...warmup, ...first, ...second];
    const seconds = (Date.now() - started) / 1000;

    const count = (f: (o: Outcome) => boolean) => outcomes.filter(f).length;
    const figures =
      `seed ${seed}; ${outcomes.length} runs in ${seconds.toFixed(0)} s: ` +
      (['close', 'drop', 'stop', 'sigint'] as const).map((w) => `${w} ${count((o) => o.way === w)} (${count((o) => o.way === w && o.started)} mid-run)`).join(', ') +
      `; ${count((o) => o.finishedFirst === true)} finished before their abort` +
      `; Stop answered in ${percentiles(outcomes.flatMap((o) => (o.stopMs === undefined ? [] : [o.stopMs])))} ms` +
      `; server after warm-up ${JSON.stringify(afterWarmup)}, half-way ${JSON.stringify(atHalf)}, at the end ${JSON.stringify(atEnd)}`;
    console.info(figures);
    expect(outcomes.filter((o) => o.problem).map((o) => `${o.way}: ${o.problem}`), figures).toEqual([]);
    expect(outcomes).toHaveLength(RUNS);
    // Almost every run was really aborted: the plan's moments fall well inside the scenarios.
    expect(count((o) => o.finishedFirst === true), figures).toBeLessThan(RUNS / 20);
    // The moments were spread: both aborted while the lab was being made and mid-run, every way.
    for (const way of ['close', 'drop', 'stop', 'sigint'] as const) {
      expect(count((o) => o.way === way && o.started && !o.finishedFirst), `${way} mid-run; ${figures}`).toBeGreaterThan(5);
      expect(count((o) => o.way === way && !o.started), `${way} early; ${figures}`).toBeGreaterThan(0);
    }

    // Nothing left: processes (namespace holders are lab processes too), then the host's namespace.
    expect(labProcessesOf(owners)).toEqual([]);
    expect(hostLinks(), 'links in the host namespace').toEqual(hostBefore.links);
    expect(nsMounts(), 'namespaces pinned by a mount').toEqual(hostBefore.nsMounts);
    expect(readdirSync(tmp), 'temporary files').toEqual([]);

    // The server: every session and slot released, and flat from the warm-up to the end.
    expect(atEnd.sessions, figures).toBe(0);
    expect(atEnd.labs, figures).toBe(0);
    expect(atEnd.fds, figures).toBe(afterWarmup.fds);
    // What the server's objects hold after a full collection, in its heap and outside it: flat.
    expect(atEnd.heapUsedKiB - afterWarmup.heapUsedKiB, figures).toBeLessThan(4 * 1024);
    expect(atEnd.externalKiB - afterWarmup.externalKiB, figures).toBeLessThan(4 * 1024);
    // Its RSS rises to the high-water mark of the busiest moments (the allocator keeps what it
    // got) and then stays: a leak would grow it again in the second half as in the first.
    expect(atEnd.rssKiB - atHalf.rssKiB, figures).toBeLessThan(32 * 1024);
    expect(atEnd.rssKiB - afterWarmup.rssKiB, figures).toBeLessThan(128 * 1024);
    expect(server.alive).toBe(true);
  }, 600_000);
});
