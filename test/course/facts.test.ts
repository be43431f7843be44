/**
 * Every <Fact> in the lessons, checked: read from the MDX source of content/**, each fact
 * names a scenario, parameters, a key and a comparator (file:line for anything wrong);
 * theory facts are computed; observe and check facts are grouped by (scenario, parameters),
 * each group is run once against the kernel (at most MAX_PARALLEL labs at a time) and every
 * fact of the group is compared with what the run measured. A lesson that states a number
 * its scenario no longer produces fails here, with the file, the line and the measured value.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { factFailure, factFromProps, parseFacts, verdict, type FactSpec, type ParsedFact } from '../../src/components/lab/fact.ts';
import { getScenario } from '../../src/scenarios/index.ts';
import { runScenario } from '../../src/scenarios/runner.ts';
import type { ScenarioResult } from '../../src/scenarios/types.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONTENT = join(ROOT, 'content');
const MAX_PARALLEL = 4;

function mdxFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const path = join(dir, d.name);
    if (d.isDirectory()) return mdxFiles(path);
    return /\.mdx?$/.test(d.name) && !d.name.startsWith('_') ? [path] : [];
  });
}

const problems: string[] = [];
const facts: Array<ParsedFact & { spec: FactSpec }> = [];
for (const path of mdxFiles(CONTENT)) {
  const file = relative(ROOT, path);
  const { facts: found, errors } = parseFacts(readFileSync(path, 'utf8'), file);
  for (const e of errors) problems.push(`${e.file}:${e.line}: ${e.message}`);
  for (const f of found) {
    try {
      facts.push({ ...f, spec: factFromProps(f.props) });
    } catch (err) {
      problems.push(factFailure(f, err instanceof Error ? err.message : String(err)));
    }
  }
}

const sortedParams = (p: Record<string, number>) => JSON.stringify(Object.fromEntries(Object.entries(p).sort(([a], [b]) => a.localeCompare(b))));
const groups = new Map<string, { scenario: string; params: Record<string, number>; facts: typeof facts }>();
// The packets of a cut show on the wire only with tcpdump (which needs root) and a cut that breaks the path beyond the server's bridge.
const wire = capability.ok && capability.tcpdump && capability.bridge && capability.mode === 'root';
const wireFacts = facts.filter((f) => f.spec.wire);
for (const f of facts) {
  if (f.spec.kind === 'theory' || (f.spec.wire && !wire)) continue;
  const key = `${f.spec.scenario} ${sortedParams(f.spec.params)}`;
  const g = groups.get(key) ?? { scenario: f.spec.scenario, params: f.spec.params, facts: [] };
  g.facts.push(f);
  groups.set(key, g);
}

/** At most MAX_PARALLEL labs at once: labs do not collide, but the machine has few cores. */
let running = 0;
const waiting: Array<() => void> = [];
async function slot<T>(fn: () => Promise<T>): Promise<T> {
  while (running >= MAX_PARALLEL) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

describe('the facts the lessons state', () => {
  it('every <Fact> is readable and names a scenario, valid parameters, a key and a comparator', () => {
    expect(problems).toEqual([]);
  });

  it('the lessons state facts', () => {
    expect(facts.length).toBeGreaterThan(0);
  });

  it('theory facts match the scenarios’ theory', () => {
    const failures = facts.filter((f) => f.spec.kind === 'theory').flatMap((f) => {
      const why = verdict(f.spec, { observations: {}, checks: [] });
      return why ? [factFailure(f, why)] : [];
    });
    expect(failures).toEqual([]);
  });
});

// Where the cut's packets cannot be captured, the facts about them are reported as skipped, with why.
if (capability.ok && !wire && wireFacts.length) {
  describe.skip('the facts seen in the packet capture [skipped: no capture of the cut here: needs root, tcpdump and a bridge]', () => {
    it(`${wireFacts.length} facts: ${wireFacts.map((f) => `${f.file}:${f.line}`).join(', ')}`, () => {});
  });
}

describe.skipIf(!capability.ok)(`the facts against the kernel${skipReason}`, () => {
  afterAll(() => expect(labProcesses(process.pid)).toEqual([]));

  it('the lessons have facts measured by a run', () => {
    expect(groups.size).toBeGreaterThan(0);
  });

  for (const g of groups.values()) {
    const scenario = getScenario(g.scenario)!;
    const given = Object.entries(g.params)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const where = [...new Set(g.facts.map((f) => f.file))].join(', ');
    it.concurrent(
      `${g.scenario} (${given || 'no parameters'}): ${g.facts.length} fact${g.facts.length === 1 ? '' : 's'} in ${where}`,
      async () => {
        const result: ScenarioResult = await slot(() => runScenario(scenario, g.params));
        const failures = g.facts.flatMap((f) => {
          const why = verdict(f.spec, result);
          return why ? [factFailure(f, why)] : [];
        });
        // Where a number is off, the run's own checks help to tell a changed kernel from a changed lesson.
        if (failures.length) failures.push(`(the run: ${result.checks.map((c) => `${c.held ? '✓' : '✗'} ${c.name}: ${c.detail}`).join('; ')})`);
        expect(failures).toEqual([]);
      },
      // Waiting for a slot counts too: room for every group ahead of this one.
      (scenario.expectedDuration(g.params) * 2 + 60) * 1000 * Math.max(1, Math.ceil(groups.size / MAX_PARALLEL)),
    );
  }
});
