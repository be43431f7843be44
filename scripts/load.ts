#!/usr/bin/env node
/**
 * npm run load -- [--labs 50] [--scenario keepalive,heartbeat,...] [--pace 2 | --ramp S] [--window S] [--deadline S] [--json]
 *
 * A room's worth of labs at once. Starts the real server (src/server/main.ts, as a child
 * process, so that its memory can be read on its own), opens one WebSocket per lab as a
 * page does, presses Run in each, and reports how many claims held, each scenario's
 * detection error (measured − theory), how many labs ran at the same moment, the server's
 * peak memory, what the labs cost in CPU, and the wall time.
 *
 * Bounded: at --deadline every lab is stopped, then the server (killed if it must be), and
 * whatever a lab left is found, reported and removed. If this process dies, the server dies
 * with it (pdeathsig), and the labs with the server.
 *
 * How the labs start: like a room told "press Run now", but no faster than the machine can
 * start them. Starting a lab (namespaces, tcpdump, two Node processes or four) costs about a
 * second of CPU, so 50 at once on 2 cores would starve every lab's start-up deadlines; at
 * most --pace labs are starting at a time (a lab has started when its client is connected).
 * The scenarios get parameters that make them run about --window seconds past their fault,
 * and the longest start first, so that the first labs still run when the last ones start:
 * "N at once" is measured (peakConcurrentLabs, allRunningSeconds), not assumed.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveParams } from '../src/scenarios/params.ts';
import { getScenario, scenarios as allScenarios } from '../src/scenarios/index.ts';
import { DETECTION_OBSERVATION, detectionErrorMs } from './lib/detection.ts';
import { emptyRecord, LabClient, type RunRecord } from './lib/lab-client.ts';
import { labProcessesOf, startServerChild, type TaggedProcess } from './lib/server.ts';
import { percentile, round } from './lib/stats.ts';

export const DEFAULT_LOAD_SCENARIOS = ['keepalive', 'heartbeat', 'hung-client', 'keepalive-unacked', 'experiment-c'];

/**
 * Parameters (within each one's allowed range) that make a scenario run about `window`
 * seconds after its fault (the cut, the freeze, the unacknowledged write), so that the labs
 * started first are still running when the last ones start. null: the scenario's defaults.
 *
 * Keepalive is the exception: its claim allows 0.5 s, and the kernel's timer wheel fires a
 * timer up to one slot of its level late (HZ=250: 32 ms below 2 s, 256 ms below 16 s, 2 s
 * below 129 s), once for idle and once per probe. idle 14 s + 3 probes 2 s apart add up to
 * at most 352 ms of lateness; a 60 s idle would add up to 2 s and break the claim without
 * any load at all. Its labs are started last instead (see runLoad).
 */
export function roomParams(scenario: string, window: number): Record<string, number> | null {
  const w = Math.min(60, Math.max(10, Math.round(window)));
  switch (scenario) {
    case 'keepalive':
      return { idle: 14, interval: 2, count: 3 };
    case 'heartbeat':
      return { interval: +(w / 8).toFixed(2), misses: 8 };
    case 'hung-client':
      // Watched until the heartbeat verdict: w + 2 s.
      return { hbInterval: +(w / 8).toFixed(2), hbMisses: 8 };
    case 'keepalive-unacked':
      // The cut must come before the delayed echo: a few seconds of room on a busy machine.
      return { echoDelay: 3, userTimeout: w * 1000 };
    case 'experiment-c':
      // The tcp_retries2 whose retransmission timeout (from 0.2 s, doubling) is closest to w.
      return { retries2: Math.min(15, Math.max(3, Math.round(Math.log2(w / 0.2 + 1)) - 1)), echoDelay: 3 };
    default:
      return null;
  }
}

export interface LoadOptions {
  labs: number;
  /** Scenario ids, assigned to the labs in turn. */
  scenarios?: string[];
  /** At most this many labs starting at a time (default 2). Ignored when rampSeconds is set. */
  pace?: number;
  /** Instead of pacing: press Run in each lab at fixed times, spread evenly over this many seconds. */
  rampSeconds?: number;
  /** Runs last about this many seconds after their fault (default labs × 1.2 s, 20 to 60); 0: scenario defaults. See roomParams. */
  windowSeconds?: number;
  /** Hard limit on the whole load; every lab is stopped when it passes. Default: from the scenarios' durations. */
  deadlineSeconds?: number;
  /** Stops every lab early (Ctrl+C). */
  signal?: AbortSignal;
  /** Progress lines (to stderr in the CLI). */
  log?: (line: string) => void;
}

export interface LabOutcome {
  lab: number;
  scenario: string;
  claimHeld: boolean;
  /** Why the claim did not hold (the failed checks, or the error). */
  failure: string | null;
  detectionErrorMs: number | null;
  record: RunRecord;
}

export interface LoadReport {
  labs: number;
  scenarios: string[];
  /** How the labs were started: 'pace 2' or 'ramp 30 s'. */
  start: string;
  windowSeconds: number;
  /** The parameters each scenario ran with (on top of its defaults). */
  params: Record<string, Record<string, number>>;
  claimsHeld: number;
  allClaimsHeld: boolean;
  /** First Run pressed → last lab started (its client connected), in seconds. */
  startSeconds: number | null;
  /** Most labs running at the same moment, as the pages saw it ('started' … 'stopped'). */
  peakConcurrentLabs: number;
  /** How long all `labs` were running at the same time. */
  allRunningSeconds: number;
  failures: Array<{ lab: number; scenario: string; reason: string }>;
  /** Per detection scenario: measured − theory, in ms. */
  detectionErrorMs: Record<string, { runs: number; min: number | null; p50: number | null; max: number | null }>;
  serverRssPeakMb: number | null;
  serverCpuSeconds: number | null;
  /** CPU all the labs' processes used together (see ServerChild.childrenCpuSeconds). */
  labsCpuSeconds: number | null;
  /** The labs' running times added up: labsCpuSeconds / labSeconds is what a running lab costs. */
  labSeconds: number;
  /** What the labs' processes (namespace holders, demos, ss, tcpdump) held at the peak. */
  labProcessesPeak: number;
  /** The machine's memory in use (MemTotal − MemAvailable) at the peak, above what it was before the load: server and labs together, shared pages counted once. */
  memoryUsedPeakMb: number | null;
  /** Share of the machine's CPUs busy (not idle, not iowait) while the load ran: others' work included. */
  machineCpuBusyPercent: number | null;
  loadAverage1m: number;
  wallSeconds: number;
  deadlineSeconds: number;
  deadlineHit: boolean;
  serverEnded: string;
  serverPid: number;
  /** Lab processes still alive after the server had stopped (they were then killed). */
  leftBehind: string[];
  outcomes: LabOutcome[];
}

function memAvailableKb(): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function cpuTimes(): { busy: number; total: number } | null {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = cpu.reduce((a, b) => a + b, 0);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** The most intervals open at once, and for how long that many were. */
function concurrency(intervals: Array<[number, number]>, target: number): { peak: number; atTargetMs: number } {
  const edges: Array<[number, number]> = [];
  for (const [from, to] of intervals) edges.push([from, 1], [to, -1]);
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let peak = 0;
  let atTargetMs = 0;
  let since = 0;
  for (const [t, d] of edges) {
    if (open >= target) atTargetMs += t - since;
    open += d;
    since = t;
    peak = Math.max(peak, open);
  }
  return { peak, atTargetMs };
}

function describeFailure(r: RunRecord): string | null {
  if (r.result?.claimHeld) return null;
  if (r.result) {
    return r.result.checks
      .filter((c) => !c.held)
      .map((c) => `${c.name}: ${c.detail}`)
      .join('; ');
  }
  if (r.error) return `${r.error.code}: ${r.error.message}`;
  return r.stoppedByUs ? 'stopped at the deadline before a result' : 'no result';
}

export function validateScenarios(ids: string[]): void {
  const unknown = ids.filter((id) => !getScenario(id));
  if (unknown.length || ids.length === 0) {
    throw new Error(`unknown scenario '${unknown.join("', '")}'; known: ${allScenarios.map((s) => s.id).join(', ')}`);
  }
}

/** A counting semaphore: at most `size` holders at a time, served in order. */
class Slots {
  #free: number;
  #queue: Array<() => void> = [];
  constructor(size: number) {
    this.#free = size;
  }
  async take(): Promise<() => void> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#queue.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#queue.shift();
      if (next) next();
      else this.#free++;
    };
  }
}

/** Runs `labs` labs at once through a fresh server and reports what happened. */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const log = options.log ?? (() => {});
  const ids = options.scenarios ?? DEFAULT_LOAD_SCENARIOS;
  validateScenarios(ids);
  const pace = options.pace ?? 2;
  const windowSeconds = options.windowSeconds ?? Math.min(60, Math.max(20, Math.round(options.labs * 1.2)));
  const paramsOf = (id: string) => (windowSeconds > 0 ? (roomParams(id, windowSeconds) ?? {}) : {});
  const longest = Math.max(...ids.map((id) => getScenario(id)!.expectedDuration(resolveParams(getScenario(id)!.params, paramsOf(id)))));
  // Room for the start-up (about a second of CPU per lab, on 2 cores) and twice the longest run.
  const deadlineSeconds = options.deadlineSeconds ?? Math.ceil((options.rampSeconds ?? options.labs) + longest * 2 + 60);

  const started = performance.now();
  const server = await startServerChild({ maxLabs: options.labs });
  log(`server pid ${server.pid} on 127.0.0.1:${server.port}, room for ${options.labs} labs; deadline ${deadlineSeconds} s`);
  const deadline = new AbortController();
  const clients: LabClient[] = [];
  const deadlineTimer = setTimeout(() => deadline.abort(), deadlineSeconds * 1000);
  const interrupt = () => deadline.abort();
  options.signal?.addEventListener('abort', interrupt, { once: true });
  // At the deadline every lab is asked to stop; a page still hanging 15 s later (no hello, no
  // answer to Stop) has its socket closed, which stops its lab too.
  let forceTimer: NodeJS.Timeout | undefined;
  deadline.signal.addEventListener('abort', () => {
    forceTimer = setTimeout(() => clients.forEach((c) => void c.close()), 15_000);
  });
  const cpuBefore = cpuTimes();
  let labPeak = 0;
  const availableBefore = memAvailableKb();
  let minAvailableKb = Number.POSITIVE_INFINITY;
  const sampler = setInterval(() => {
    const procs: TaggedProcess[] = labProcessesOf(server.pid);
    labPeak = Math.max(labPeak, procs.length);
    const avail = memAvailableKb();
    if (avail !== null) minAvailableKb = Math.min(minAvailableKb, avail);
  }, 2000);
  const starting = new Slots(pace);
  let outcomes: LabOutcome[] = [];
  let stop: Awaited<ReturnType<typeof server.stop>>;
  // Read before the server stops: /proc forgets a process once it has exited.
  let serverRssPeakMb: number | null = null;
  let serverCpuSeconds: number | null = null;
  let labsCpuSeconds: number | null = null;
  // The longest runs start first and the shortest last, so that all can be running at once.
  const expected = (id: string) => getScenario(id)!.expectedDuration(resolveParams(getScenario(id)!.params, paramsOf(id)));
  const order = Array.from({ length: options.labs }, (_, lab) => lab).sort((a, b) => expected(ids[b % ids.length]!) - expected(ids[a % ids.length]!) || a - b);
  const turn = new Map(order.map((lab, i) => [lab, i]));
  const queued = order.map(() => Promise.withResolvers<void>());
  queued[0]?.resolve();
  try {
    const runs = Array.from({ length: options.labs }, async (_, lab): Promise<LabOutcome> => {
      const scenario = ids[lab % ids.length]!;
      const place = turn.get(lab)!;
      let release = () => {};
      if (options.rampSeconds !== undefined) await new Promise((r) => setTimeout(r, (place * options.rampSeconds! * 1000) / options.labs));
      else {
        // In turn, and no more than `pace` starting at once.
        await queued[place]!.promise;
        release = await starting.take();
        queued[place + 1]?.resolve();
      }
      const client = new LabClient(server.port);
      clients.push(client);
      let record: RunRecord;
      try {
        record = await client.run(scenario, { params: paramsOf(scenario), signal: deadline.signal, onClientUp: release });
      } catch (err) {
        record = emptyRecord(scenario, { code: 'connect', message: (err as Error).message });
      } finally {
        release();
      }
      void client.close();
      const failure = describeFailure(record);
      const outcome: LabOutcome = {
        lab,
        scenario,
        claimHeld: record.result?.claimHeld === true,
        failure,
        detectionErrorMs: record.result ? detectionErrorMs(record.result) : null,
        record,
      };
      const err = outcome.detectionErrorMs === null ? '' : `, error ${outcome.detectionErrorMs >= 0 ? '+' : ''}${Math.round(outcome.detectionErrorMs)} ms`;
      const upAfter = record.firstClientLineMs === null ? '' : `up after ${(record.firstClientLineMs / 1000).toFixed(1)} s, `;
      log(`lab ${String(lab + 1).padStart(3)} ${scenario.padEnd(18)} ${outcome.claimHeld ? 'claim held' : `FAILED: ${failure}`}${err} (${upAfter}${((record.wallMs ?? 0) / 1000).toFixed(1)} s in all)`);
      return outcome;
    });
    outcomes = await Promise.all(runs);
  } finally {
    clearTimeout(deadlineTimer);
    clearTimeout(forceTimer);
    options.signal?.removeEventListener('abort', interrupt);
    clearInterval(sampler);
    await Promise.all(clients.map((c) => c.close()));
    serverRssPeakMb = server.peakRssMb();
    serverCpuSeconds = server.cpuSeconds();
    labsCpuSeconds = server.childrenCpuSeconds();
    stop = await server.stop();
  }
  const cpuAfter = cpuTimes();
  const byScenario: LoadReport['detectionErrorMs'] = {};
  for (const id of ids.filter((id) => id in DETECTION_OBSERVATION)) {
    const errors = outcomes.filter((o) => o.scenario === id && o.detectionErrorMs !== null).map((o) => o.detectionErrorMs!);
    byScenario[id] = {
      runs: errors.length,
      min: round(errors.length ? Math.min(...errors) : null, 0),
      p50: round(percentile(errors, 50), 0),
      max: round(errors.length ? Math.max(...errors) : null, 0),
    };
  }
  const records = outcomes.map((o) => o.record);
  const running = records.filter((r) => r.startedAt !== null).map((r): [number, number] => [r.startedAt!, r.stoppedAt ?? performance.now()]);
  const { peak, atTargetMs } = concurrency(running, options.labs);
  const firstSent = Math.min(...records.map((r) => r.sentAt ?? Number.POSITIVE_INFINITY));
  const up = records.map((r) => (r.sentAt !== null && r.firstClientLineMs !== null ? r.sentAt + r.firstClientLineMs : null));
  const claimsHeld = outcomes.filter((o) => o.claimHeld).length;
  return {
    labs: options.labs,
    scenarios: ids,
    start: options.rampSeconds !== undefined ? `ramp ${options.rampSeconds} s` : `pace ${pace}`,
    windowSeconds,
    params: Object.fromEntries(ids.map((id) => [id, paramsOf(id)])),
    claimsHeld,
    allClaimsHeld: claimsHeld === options.labs,
    startSeconds: up.every((t) => t !== null) ? round((Math.max(...(up as number[])) - firstSent) / 1000, 1) : null,
    peakConcurrentLabs: peak,
    allRunningSeconds: round(atTargetMs / 1000, 1)!,
    failures: outcomes.filter((o) => !o.claimHeld).map((o) => ({ lab: o.lab + 1, scenario: o.scenario, reason: o.failure ?? 'no result' })),
    detectionErrorMs: byScenario,
    serverRssPeakMb: round(serverRssPeakMb, 1),
    serverCpuSeconds: round(serverCpuSeconds, 1),
    labsCpuSeconds: round(labsCpuSeconds, 1),
    labSeconds: round(running.reduce((a, [from, to]) => a + (to - from) / 1000, 0), 1)!,
    labProcessesPeak: labPeak,
    memoryUsedPeakMb: availableBefore !== null && Number.isFinite(minAvailableKb) ? round(Math.max(0, availableBefore - minAvailableKb) / 1024, 0) : null,
    machineCpuBusyPercent: cpuBefore && cpuAfter ? round((100 * (cpuAfter.busy - cpuBefore.busy)) / (cpuAfter.total - cpuBefore.total), 0) : null,
    loadAverage1m: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
    wallSeconds: round((performance.now() - started) / 1000, 1)!,
    deadlineSeconds,
    deadlineHit: deadline.signal.aborted,
    serverEnded: stop.ended,
    serverPid: server.pid,
    leftBehind: stop.leftBehind.map((p) => `${p.pid} ${p.cmd}`),
    outcomes,
  };
}

function signed(ms: number | null): string {
  if (ms === null) return '–';
  return `${ms >= 0 ? '+' : ''}${ms}`;
}

export function formatLoad(r: LoadReport): string {
  const mix = r.scenarios.map((s) => `${s} ×${r.outcomes.filter((o) => o.scenario === s).length}`).join(', ');
  const params = Object.entries(r.params)
    .filter(([, p]) => Object.keys(p).length)
    .map(([id, p]) => `${id} ${Object.entries(p).map(([k, v]) => `${k}=${v}`).join(' ')}`)
    .join('; ');
  const perLab = r.labsCpuSeconds !== null && r.labSeconds > 0 ? ` (${Math.round((100 * r.labsCpuSeconds) / r.labSeconds)}% of a core per running lab)` : '';
  return [
    `labs                 ${r.labs}: ${mix}`,
    `parameters           ${r.windowSeconds > 0 ? `about ${r.windowSeconds} s past the fault: ${params}` : 'each scenario\'s defaults'}`,
    `start                ${r.start}: all ${r.labs} started ${r.startSeconds === null ? '(not all started)' : `within ${r.startSeconds} s`}`,
    `at once              peak ${r.peakConcurrentLabs} labs running at the same moment; all ${r.labs} for ${r.allRunningSeconds} s`,
    `claims held          ${r.claimsHeld}/${r.labs}${r.allClaimsHeld ? '' : '  ← NOT ALL'}`,
    ...r.failures.map((f) => `  lab ${f.lab} ${f.scenario}: ${f.reason}`),
    'detection error      measured − theory, ms',
    ...Object.entries(r.detectionErrorMs).map(([id, e]) => `  ${id.padEnd(19)}${String(e.runs).padStart(3)} runs   p50 ${signed(e.p50).padStart(6)}   min ${signed(e.min).padStart(6)}   max ${signed(e.max).padStart(6)}`),
    `server               RSS peak ${r.serverRssPeakMb} MB, ${r.serverCpuSeconds} s of CPU`,
    `labs' processes      peak ${r.labProcessesPeak} processes; ${r.labsCpuSeconds} s of CPU over ${r.labSeconds} lab-seconds${perLab}`,
    `memory               ${r.memoryUsedPeakMb} MB more in use at the peak than before (server and labs, shared pages once)`,
    `machine              ${r.machineCpuBusyPercent}% of the CPUs busy meanwhile (other work included); load average ${r.loadAverage1m}`,
    `wall time            ${r.wallSeconds} s (deadline ${r.deadlineSeconds} s${r.deadlineHit ? ', HIT' : ''})`,
    `teardown             server ${r.serverEnded}; left behind: ${r.leftBehind.length ? r.leftBehind.join(', ') : 'nothing'}`,
  ].join('\n');
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        labs: { type: 'string', default: '50' },
        scenario: { type: 'string' },
        pace: { type: 'string' },
        ramp: { type: 'string' },
        window: { type: 'string' },
        deadline: { type: 'string' },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`load: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(
      `npm run load -- [--labs N] [--scenario a,b,...] [--pace N | --ramp S] [--window S] [--deadline S] [--json] [--quiet]\n` +
        `  Runs N labs at once (default 50) through a fresh server and prints how many claims held,\n` +
        `  each scenario's detection error, how many labs ran at once, the server's peak memory,\n` +
        `  the labs' CPU and the wall time.\n` +
        `  --scenario  scenarios assigned in turn (default ${DEFAULT_LOAD_SCENARIOS.join(',')})\n` +
        `  --pace      at most N labs starting at a time (default 2)\n` +
        `  --ramp      instead: press Run at fixed times spread over S seconds\n` +
        `  --window    scenarios run about S seconds past their fault, so that every lab still\n` +
        `              runs when the last starts (default labs × 1.2, 20 to 60; 0: their defaults)\n` +
        `  --deadline  hard limit in seconds; every lab is stopped when it passes\n` +
        `Exit code 0 when every claim held and nothing was left behind, 1 otherwise, 2 for bad input.\n`,
    );
    return;
  }
  const bad = (msg: string): never => {
    process.stderr.write(`load: ${msg}\n`);
    process.exit(2);
  };
  const labs = Number(values.labs);
  const pace = values.pace === undefined ? undefined : Number(values.pace);
  const ramp = values.ramp === undefined ? undefined : Number(values.ramp);
  const window = values.window === undefined ? undefined : Number(values.window);
  const deadline = values.deadline === undefined ? undefined : Number(values.deadline);
  const scenarios = values.scenario?.split(',').map((s) => s.trim()).filter(Boolean);
  if (!Number.isInteger(labs) || labs < 1 || labs > 500) bad(`--labs must be a whole number from 1 to 500; got ${values.labs}`);
  if (pace !== undefined && (!Number.isInteger(pace) || pace < 1 || pace > 500)) bad(`--pace must be a whole number from 1 to 500; got ${values.pace}`);
  if (ramp !== undefined && !(ramp >= 0 && ramp <= 600)) bad(`--ramp must be from 0 to 600 seconds; got ${values.ramp}`);
  if (window !== undefined && !(window === 0 || (window >= 10 && window <= 60))) bad(`--window must be 0 or from 10 to 60 seconds; got ${values.window}`);
  if (deadline !== undefined && !(deadline >= 10 && deadline <= 3600)) bad(`--deadline must be from 10 to 3600 seconds; got ${values.deadline}`);
  if (scenarios) {
    try {
      validateScenarios(scenarios);
    } catch (err) {
      bad((err as Error).message);
    }
  }
  if (process.platform !== 'linux') bad('the load needs the live lab, which needs Linux');

  // Ctrl+C stops every lab cleanly; a second one exits at once (the server dies with us, by
  // pdeathsig, and its labs with it).
  const interrupted = new AbortController();
  process.on('SIGINT', () => {
    if (interrupted.signal.aborted) process.exit(130);
    process.stderr.write('\nload: stopping every lab…\n');
    interrupted.abort();
  });
  const log = values.quiet ? undefined : (line: string) => process.stderr.write(line + '\n');
  const report = await runLoad({ labs, scenarios, pace, rampSeconds: ramp, windowSeconds: window, deadlineSeconds: deadline, signal: interrupted.signal, log });
  if (values.json) {
    const { outcomes, ...rest } = report;
    process.stdout.write(JSON.stringify({ ...rest, wallSecondsPerLab: outcomes.map((o) => round((o.record.wallMs ?? 0) / 1000, 1)) }) + '\n');
  } else {
    process.stdout.write(formatLoad(report) + '\n');
  }
  process.exitCode = report.allClaimsHeld && report.leftBehind.length === 0 ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
