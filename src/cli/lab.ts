#!/usr/bin/env node
/**
 * npm run lab -- list
 * npm run lab -- run <scenario> [--<param> <value> …] [--json]
 * npm run lab -- doctor
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { styleText } from 'node:util';
import { describeRange, flagName, ParamError } from '../scenarios/params.ts';
import { getScenario, scenarios, UnknownScenarioError } from '../scenarios/index.ts';
import { runScenario, RunAbortedError, type RunContext } from '../scenarios/runner.ts';
import type { ScenarioResult, TimelineEvent } from '../scenarios/types.ts';
import { probeCapability, sweepOrphans, LabUnavailableError } from '../lab/lab.ts';

const RECORDINGS_DIR = fileURLToPath(new URL('../../public/recordings/', import.meta.url));
const EXIT_CLAIM_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_NO_LAB = 3;

const USAGE = `Keepalive Lab: the experiments, from the command line.

  npm run lab -- list                          the scenarios, one a line
  npm run lab -- run <scenario> [options]      run one live, in a fresh network lab
  npm run lab -- record <scenario> [options]   run it live and save the run to public/recordings/<scenario>.json,
                                               which the course replays where no lab can run
  npm run lab -- help <scenario>               its claim and parameters
  npm run lab -- doctor                        can this machine make a lab?

Options for run:
  --<param> <value>   a scenario parameter (see 'help <scenario>'); --echo-delay and --echoDelay both work
  --json              print only one JSON object (scenario, kernel, params, observations, timeline)
`;

class UsageError extends Error {}

type Style = Parameters<typeof styleText>[0];
const paint = (style: Style, text: string, stream: NodeJS.WriteStream = process.stdout) => styleText(style, text, { stream });

const SOURCE_STYLE: Record<TimelineEvent['source'], Style> = {
  lab: 'magenta',
  server: 'green',
  client: 'cyan',
  kernel: 'yellow',
  wire: 'blue',
};

export function parseRunArgs(argv: string[]): { id: string; params: Record<string, string>; json: boolean } {
  const [id, ...rest] = argv;
  if (!id || id.startsWith('-')) throw new UsageError('run needs a scenario id; see `npm run lab -- list`');
  const params: Record<string, string> = {};
  let json = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === '--json') {
      json = true;
      continue;
    }
    const m = /^--([A-Za-z][\w-]*)(?:=(.*))?$/.exec(arg);
    if (!m) throw new UsageError(`unexpected argument '${arg}': parameters look like --name value`);
    const name = m[1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    let value = m[2];
    if (value === undefined) {
      value = rest[i + 1];
      // A negative number is a value, not an option.
      if (value === undefined || (value.startsWith('--') && !/^-[\d.]/.test(value))) throw new UsageError(`--${m[1]} needs a value`);
      i++;
    }
    params[name] = value;
  }
  return { id, params, json };
}

function line(e: TimelineEvent): string | null {
  const t = paint('dim', e.t.toFixed(3).padStart(8));
  const tag = paint(SOURCE_STYLE[e.source], e.source.padEnd(6));
  let text: string;
  switch (e.source) {
    case 'server':
    case 'client': {
      const name = String(e.name ?? e.source);
      const who = name === e.source ? '' : paint('dim', `${name} `);
      if (e.event === 'exit') text = `${who}exited (${e.signal ?? `code ${e.code}`})`;
      else text = `${who}${String(e.line ?? '')}`;
      break;
    }
    case 'kernel': {
      const what = e.event.replace('socket-', '');
      const timer = e.timer ? ` timer ${e.timer}${e.timerCount ? ` #${e.timerCount}` : ''}` : '';
      text = `${what.padEnd(7)} ${String(e.state).padEnd(10)} ${e.local} ⇄ ${e.peer}  send-q ${e.sendQ} recv-q ${e.recvQ}${timer}`;
      if (e.event === 'socket-changed') text += paint('dim', `  (${(e.changed as string[]).join(', ')})`);
      break;
    }
    case 'wire':
      if (e.event === 'unavailable') text = paint('dim', String(e.note));
      else text = `${e.src} > ${e.dst} [${e.flags}]${e.seq ? ` seq ${e.seq}` : ''}${e.ack !== null && e.ack !== undefined ? ` ack ${e.ack}` : ''} len ${e.length}`;
      break;
    case 'lab':
      // The page's buttons open here; a terminal has none.
      if (e.event === 'hands-on') return null;
      if (e.event === 'step') text = paint('bold', String(e.text));
      else if (e.event === 'ready') text = `lab ready (${e.mode}, kernel ${e.kernel}): server ${e.server}, client ${e.client}`;
      else {
        const { t: _t, source: _s, event, ...rest } = e;
        text = `${paint('bold', event)} ${Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(' ')}`;
      }
      break;
  }
  return `${t} ${tag} ${text}`;
}

function summary(r: ScenarioResult): string {
  const out: string[] = [''];
  out.push(paint('bold', `${r.title}`));
  out.push(`  ${paint('bold', 'claim')}    ${r.claim}`);
  out.push(`  ${paint('bold', 'theory')}   ${r.theory.summary}`);
  out.push(`  ${paint('bold', 'measured')} ${Object.entries(r.observations).map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`).join(', ')}`);
  for (const c of r.checks) out.push(`  ${c.held ? paint('green', '✓') : paint('red', '✗')} ${c.name}: ${paint('dim', c.detail)}`);
  out.push(
    `  ${r.claimHeld ? paint(['bold', 'green'], 'The claim held') : paint(['bold', 'red'], 'The claim did NOT hold')} on kernel ${r.kernel} (${r.mode} lab), in ${r.wallSeconds.toFixed(1)} s.`,
  );
  return out.join('\n');
}

async function cmdRun(argv: string[], record = false): Promise<number> {
  const { id, params, json } = parseRunArgs(argv);
  const scenario = getScenario(id);
  if (!scenario) throw new UnknownScenarioError(id);
  const controller = new AbortController();
  let interrupted: string | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted = sig;
    controller.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  sweepOrphans();
  try {
    const result = await runScenario(scenario, params, {
      signal: controller.signal,
      onContext: (ctx: RunContext) => {
        if (json) return;
        ctx.on('timeline', (e) => {
          const l = line(e);
          if (l) process.stdout.write(l + '\n');
        });
      },
    });
    if (record) {
      if (!result.claimHeld) {
        process.stderr.write(`lab: the claim did not hold in this run, so it was not saved as a recording\n`);
        return EXIT_CLAIM_FAILED;
      }
      const file = join(RECORDINGS_DIR, `${result.scenario}.json`);
      mkdirSync(RECORDINGS_DIR, { recursive: true });
      writeFileSync(file, JSON.stringify({ ...result, recordedAt: new Date().toISOString(), node: process.version }) + '\n');
      process.stderr.write(`saved ${relative(process.cwd(), file)} (${result.timeline.length} events)\n`);
    }
    if (json) {
      const { scenario: s, kernel, params: p, observations, timeline, ...rest } = result;
      process.stdout.write(JSON.stringify({ scenario: s, kernel, params: p, observations, timeline, ...rest }) + '\n');
    } else {
      process.stdout.write(summary(result) + '\n');
    }
    return result.claimHeld ? 0 : EXIT_CLAIM_FAILED;
  } catch (err) {
    if (err instanceof RunAbortedError && interrupted) {
      process.stderr.write(`stopped by ${interrupted}; the lab was torn down\n`);
      return interrupted === 'SIGINT' ? 130 : 143;
    }
    throw err;
  }
}

function cmdHelp(id: string | undefined): number {
  if (!id) {
    process.stdout.write(USAGE);
    return 0;
  }
  const s = getScenario(id);
  if (!s) throw new UnknownScenarioError(id);
  const lines = [`${s.id}: ${s.title}`, '', s.claim, '', 'Parameters:'];
  for (const [name, spec] of Object.entries(s.params)) {
    lines.push(`  --${flagName(name)} (default ${spec.default}; ${describeRange(spec)})`);
    lines.push(`      ${spec.description}`);
  }
  if (!Object.keys(s.params).length) lines.push('  none');
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'list':
        for (const s of scenarios) process.stdout.write(`${s.id.padEnd(26)} ${s.description}\n`);
        return 0;
      case 'run':
        return await cmdRun(rest);
      case 'record':
        return await cmdRun(rest, true);
      case 'help':
      case '--help':
      case '-h':
      case undefined:
        return cmdHelp(cmd === 'help' ? rest[0] : undefined);
      case 'doctor': {
        const cap = await probeCapability();
        process.stdout.write(
          cap.ok
            ? `A lab can run here: ${cap.mode === 'root' ? 'as root' : 'as an ordinary user, through user namespaces'}; kernel ${cap.kernel}; tcpdump ${cap.tcpdump ? 'found' : 'not installed (no packet view)'}.\n`
            : `No lab can run here: ${cap.reason}\n`,
        );
        return cap.ok ? 0 : EXIT_NO_LAB;
      }
      default:
        throw new UsageError(`unknown command '${cmd}'; try list, run, help or doctor`);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof ParamError || err instanceof UnknownScenarioError) {
      process.stderr.write(`lab: ${err.message}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof LabUnavailableError) {
      process.stderr.write(`lab: ${err.message}\n`);
      return EXIT_NO_LAB;
    }
    process.stderr.write(`lab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
