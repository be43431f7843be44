#!/usr/bin/env node
/**
 * npm run bench [-- --json] [--runs 20] [--detection-runs 10] [--labs 50] [--no-build] [--only a,b]
 *
 * Measures what a learner and a trainer feel, on this machine, in one run (a few minutes).
 * It asserts nothing: it measures and prints a table (budgets of issue 6 alongside), or one
 * JSON object with exactly these keys:
 *
 *   runToFirstOutputMs {p50, p95}  'run' sent on the WebSocket → the first output line of the
 *                                  demo server arriving at the client; keepalive, one lab at a
 *                                  time, --runs runs after one warm-up run (stopped at that line).
 *   eventToBrowserMs   {p50, p95}  a demo process stamps a log line (CLOCK_REALTIME, ms) → it
 *                                  arrives at the WebSocket client (same clock, same machine);
 *                                  every timestamped line of the scenarioSeconds runs.
 *   detectionErrorMs   {keepalive, heartbeat: {p50, max}}  |measured − theory| over
 *                                  --detection-runs runs each, all running at once.
 *   lessonPageJsKb                 gzipped JS a built lesson page with a lab loads: up front (its
 *                                  <script>s and modulepreloads, and their static imports) and
 *                                  what its lab imports when it comes into view (xterm); the
 *                                  largest over all such pages. Builds dist/ first if needed.
 *   concurrentLabs     {labs, allClaimsHeld, serverRssMb}  npm run load at --labs (default 50):
 *                                  every claim held?, the server process's peak RSS.
 *   scenarioSeconds    {id: s}     each scenario once, alone, default parameters: 'run' sent →
 *                                  'stopped' received (the lab torn down).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { needsBuild } from '../src/server/main.ts';
import { scenarios } from '../src/scenarios/index.ts';
import { LabClient, type RunRecord } from './lib/lab-client.ts';
import { labPages, pageJs, type PageJs } from './lib/page-js.ts';
import { startServerChild } from './lib/server.ts';
import { p50max, p50p95, round } from './lib/stats.ts';
import { runLoad, type LoadReport } from './load.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const DIST = join(ROOT, 'dist');

export interface BenchResult {
  runToFirstOutputMs: { p50: number | null; p95: number | null };
  eventToBrowserMs: { p50: number | null; p95: number | null };
  detectionErrorMs: { keepalive: { p50: number | null; max: number | null }; heartbeat: { p50: number | null; max: number | null } };
  lessonPageJsKb: number | null;
  concurrentLabs: { labs: number; allClaimsHeld: boolean; serverRssMb: number | null };
  scenarioSeconds: Record<string, number | null>;
}

/** What the table shows besides the figures: where they came from. */
interface BenchNotes {
  machine: string;
  runs: number;
  lines: number;
  failedRuns: string[];
  page: PageJs | null;
  detectionRuns: Record<string, number>;
  load: LoadReport | null;
  detectionLoad: LoadReport | null;
  seconds: number;
}

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

function machine(): string {
  const cpu = cpus()[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown CPU';
  return `${availableParallelism()} CPUs (${cpu}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} at start`;
}

function astroBuild(): Promise<void> {
  return new Promise((resolve, reject) => {
    // Astro's output goes to stderr: stdout is kept for the figures (--json).
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/astro/bin/astro.mjs'), 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`astro build failed (exit ${code})`))));
  });
}

async function measurePage(build: boolean): Promise<PageJs | null> {
  if (build && needsBuild()) {
    log('building the site (astro build)…');
    await astroBuild();
  }
  if (!existsSync(DIST)) return null;
  const measured = labPages(DIST).map((p) => pageJs(DIST, p));
  return measured.sort((a, b) => b.initialGzBytes + b.lazyGzBytes - (a.initialGzBytes + a.lazyGzBytes))[0] ?? null;
}

function failed(r: RunRecord): string | null {
  if (r.result?.claimHeld) return null;
  return `${r.scenario}: ${r.error ? `${r.error.code}: ${r.error.message}` : r.result ? r.result.checks.filter((c) => !c.held).map((c) => c.name).join('; ') : 'no result'}`;
}

export const PHASES = ['page', 'first-output', 'scenarios', 'detection', 'load'] as const;
export type Phase = (typeof PHASES)[number];

export interface BenchOptions {
  runs: number;
  detectionRuns: number;
  labs: number;
  build: boolean;
  /** Measure only these (the other keys are null). */
  only: readonly Phase[];
}

export async function bench(options: BenchOptions): Promise<{ result: BenchResult; notes: BenchNotes }> {
  const started = performance.now();
  const notes: BenchNotes = { machine: machine(), runs: 0, lines: 0, failedRuns: [], page: null, detectionRuns: {}, load: null, detectionLoad: null, seconds: 0 };
  const doing = (p: Phase) => options.only.includes(p);
  log(notes.machine);
  const result: BenchResult = {
    runToFirstOutputMs: { p50: null, p95: null },
    eventToBrowserMs: { p50: null, p95: null },
    detectionErrorMs: { keepalive: { p50: null, max: null }, heartbeat: { p50: null, max: null } },
    lessonPageJsKb: null,
    concurrentLabs: { labs: options.labs, allClaimsHeld: false, serverRssMb: null },
    scenarioSeconds: {},
  };

  // First, while nothing else runs: the build is the heaviest thing here.
  if (doing('page')) {
    notes.page = await measurePage(options.build);
    // Everything the page loads once its lab is on screen: up front, and what the lab loads when it comes into view (xterm…).
    result.lessonPageJsKb = notes.page ? round((notes.page.initialGzBytes + notes.page.lazyGzBytes) / 1024, 1) : null;
  }

  if (doing('first-output') || doing('scenarios')) {
    const server = await startServerChild({ maxLabs: 4 });
    try {
      const client = new LabClient(server.port);
      const hello = await client.hello;
      if (!hello.live) throw new Error(`no live lab on this machine: ${hello.reason}`);
      if (doing('first-output')) {
        log(`run → first output: 1 warm-up + ${options.runs} runs of keepalive, one at a time…`);
        const firstOutput: number[] = [];
        for (let i = 0; i <= options.runs; i++) {
          const r = await client.run('keepalive', { stopAfterFirstServerLine: true, timeoutMs: 60_000 });
          if (r.firstServerLineMs === null) notes.failedRuns.push(`run → first output #${i}: ${r.error?.message ?? 'no server output'}`);
          else if (i > 0) firstOutput.push(r.firstServerLineMs);
        }
        notes.runs = firstOutput.length;
        result.runToFirstOutputMs = p50p95(firstOutput, 0);
      }
      if (doing('scenarios')) {
        const lineLatencies: number[] = [];
        for (const s of scenarios) {
          log(`scenario ${s.id}…`);
          const r = await client.run(s.id, { timeoutMs: 180_000 });
          result.scenarioSeconds[s.id] = r.wallMs === null ? null : round(r.wallMs / 1000, 1);
          lineLatencies.push(...r.lineLatenciesMs);
          const f = failed(r);
          if (f) notes.failedRuns.push(f);
        }
        notes.lines = lineLatencies.length;
        result.eventToBrowserMs = p50p95(lineLatencies, 1);
      }
      await client.close();
    } finally {
      const stop = await server.stop();
      if (stop.leftBehind.length) notes.failedRuns.push(`left behind: ${stop.leftBehind.map((p) => p.cmd).join(', ')}`);
    }
  }

  if (doing('detection')) {
    log(`detection: ${options.detectionRuns} keepalive + ${options.detectionRuns} heartbeat runs at once…`);
    // Default parameters (what a lesson runs), started as fast as the machine allows.
    const det = await runLoad({ labs: options.detectionRuns * 2, scenarios: ['keepalive', 'heartbeat'], windowSeconds: 0 });
    notes.detectionLoad = det;
    for (const id of ['keepalive', 'heartbeat'] as const) {
      const errors = det.outcomes.filter((o) => o.scenario === id && o.detectionErrorMs !== null).map((o) => Math.abs(o.detectionErrorMs!));
      notes.detectionRuns[id] = errors.length;
      result.detectionErrorMs[id] = p50max(errors, 0);
    }
    for (const o of det.outcomes) if (!o.claimHeld) notes.failedRuns.push(`detection lab ${o.lab + 1} ${o.scenario}: ${o.failure}`);
  }

  if (doing('load')) {
    log(`concurrent labs: npm run load -- --labs ${options.labs}…`);
    const load = await runLoad({ labs: options.labs, log: (l) => log(`  ${l}`) });
    notes.load = load;
    result.concurrentLabs = { labs: load.labs, allClaimsHeld: load.allClaimsHeld, serverRssMb: round(load.serverRssPeakMb, 0) };
  }
  notes.seconds = (performance.now() - started) / 1000;
  return { result, notes };
}

function table(r: BenchResult, n: BenchNotes, only: readonly Phase[]): string {
  const verdict = (met: boolean | null) => (met === null ? '?' : met ? 'ok' : 'MISSED');
  const lt = (v: number | null, limit: number) => (v === null ? null : v < limit);
  const rows: Array<[string, string, string, string]> = [];
  const notes: string[] = [];
  if (only.includes('first-output')) {
    const f = r.runToFirstOutputMs;
    rows.push(['run → first output', `p50 ${f.p50} ms, p95 ${f.p95} ms`, 'p50 < 300, p95 < 600 ms', verdict(f.p50 === null || f.p95 === null ? null : f.p50 < 300 && f.p95 < 600)]);
    notes.push(`run → first output: ${n.runs} runs of keepalive, one lab at a time, after a warm-up run.`);
  }
  if (only.includes('scenarios')) {
    const e = r.eventToBrowserMs;
    rows.push(['event → browser', `p50 ${e.p50} ms, p95 ${e.p95} ms`, 'p95 < 50 ms', verdict(lt(e.p95, 50))]);
    notes.push(`event → browser: ${n.lines} timestamped demo lines of the scenario runs below.`);
  }
  if (only.includes('detection')) {
    for (const id of ['keepalive', 'heartbeat'] as const) {
      const d = r.detectionErrorMs[id];
      rows.push([`detection error, ${id}`, `p50 ${d.p50} ms, max ${d.max} ms`, 'max < 300 ms', verdict(lt(d.max, 300))]);
    }
    const d = n.detectionLoad;
    if (d) notes.push(`detection error: |measured − theory| of ${n.detectionRuns.keepalive} keepalive and ${n.detectionRuns.heartbeat} heartbeat runs with default parameters, up to ${d.peakConcurrentLabs} running at once.`);
  }
  if (only.includes('page')) {
    rows.push(['lesson page JS', `${r.lessonPageJsKb} KB gz`, '< 150 KB gz', verdict(lt(r.lessonPageJsKb, 150))]);
    if (n.page) {
      const lazy = n.page.files.filter((f) => f.lazy).map((f) => `${f.file.replace(/^.*\//, '')} ${round(f.gzBytes / 1024, 1)}`);
      notes.push(
        `lesson page JS: ${n.page.page}, the largest of the pages with a lab, all of it: ${round(n.page.initialGzBytes / 1024, 1)} KB gz up front, then as the lab comes into view ${lazy.join(', ') || 'nothing'} KB gz.`,
      );
    }
  }
  if (only.includes('load')) {
    const c = r.concurrentLabs;
    const l = n.load;
    rows.push(['concurrent labs', `${l?.claimsHeld}/${c.labs} claims held, server ${c.serverRssMb} MB`, '50, every claim holds', verdict(c.labs >= 50 && c.allClaimsHeld)]);
    if (l) {
      notes.push(
        `concurrent labs: ${l.peakConcurrentLabs} running at the same moment (all ${l.labs} for ${l.allRunningSeconds} s), started within ${l.startSeconds} s (${l.start}); ` +
          `labs' processes ${l.labsCpuSeconds} s of CPU; memory ${l.memoryUsedPeakMb} MB more in use at the peak; wall ${l.wallSeconds} s.`,
      );
    }
  }
  for (const [id, s] of Object.entries(r.scenarioSeconds)) rows.push([`scenario ${id}`, `${s} s`, '< 20 s', verdict(lt(s, 20))]);
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((row) => row[i]!.length)));
  const out = [
    `Keepalive Lab bench, ${new Date().toISOString().slice(0, 10)}`,
    n.machine,
    '',
    ...rows.map((row) => `${row[0].padEnd(w[0]!)}  ${row[1].padEnd(w[1]!)}  ${row[2].padEnd(w[2]!)}  ${row[3]}`),
    '',
    ...notes,
  ];
  if (n.failedRuns.length) out.push('', 'Runs whose claim did not hold, or that failed:', ...n.failedRuns.map((x) => `  ${x}`));
  if (n.load && !n.load.allClaimsHeld) out.push('', `Load failures (${n.load.failures.length}):`, ...n.load.failures.slice(0, 10).map((x) => `  lab ${x.lab} ${x.scenario}: ${x.reason}`));
  out.push('', `(${Math.round(n.seconds)} s in all)`);
  return out.join('\n');
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        json: { type: 'boolean', default: false },
        runs: { type: 'string', default: '20' },
        'detection-runs': { type: 'string', default: '10' },
        labs: { type: 'string', default: '50' },
        'no-build': { type: 'boolean', default: false },
        only: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(
      'npm run bench [-- --json] [--runs 20] [--detection-runs 10] [--labs 50] [--no-build] [--only a,b]\n' +
        '  Measures run → first output, event → browser latency, detection error, lesson page JS,\n' +
        '  concurrent labs and each scenario\'s wall time; prints a table, or one JSON object (--json).\n' +
        `  --only  measure only some of: ${PHASES.join(', ')} (the rest are null)\n`,
    );
    return;
  }
  const num = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`bench: --${name} must be a whole number from ${min} to ${max}; got ${v}\n`);
      process.exit(2);
    }
    return n;
  };
  const options = {
    runs: num('runs', values.runs, 1, 1000),
    detectionRuns: num('detection-runs', values['detection-runs'], 1, 100),
    labs: num('labs', values.labs, 1, 500),
    build: !values['no-build'],
    only: PHASES as readonly Phase[],
  };
  if (values.only !== undefined) {
    const only = values.only.split(',').map((x) => x.trim());
    const unknown = only.filter((x) => !(PHASES as readonly string[]).includes(x));
    if (unknown.length || only.length === 0) {
      process.stderr.write(`bench: --only takes some of ${PHASES.join(', ')}; got ${values.only}\n`);
      process.exit(2);
    }
    options.only = only as Phase[];
  }
  const { result, notes } = await bench(options);
  process.stdout.write(values.json ? JSON.stringify(result) + '\n' : table(result, notes, options.only) + '\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
