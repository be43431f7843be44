/**
 * <Fact> — a number or behaviour a lesson states about the kernel or the demos, tied to the
 * scenario that produces it, so the test suite (test/course/facts.test.ts) fails when the
 * scenario stops producing it.
 *
 *   <Fact scenario="experiment-a" observe="serverState" equals="ESTAB">still ESTAB</Fact>
 *   <Fact scenario="keepalive" theory="expectedSeconds" params={{ idle: 7200, interval: 75, count: 9 }} equals={7875}>7875 s</Fact>
 *   <Fact scenario="keepalive" observe="detectedAfterSeconds" near={5} tolerance={0.5}>about 5 s</Fact>
 *   <Fact scenario="experiment-a" check="ESTABLISHED">…</Fact>
 *
 * Build time and tests only (Fact.astro's frontmatter, the test): nothing here reaches the
 * browser. Three parts: reading the attributes from MDX source (the test reads lessons as
 * text, so every attribute must be a literal), turning attributes into a checked spec, and
 * comparing a value with the spec.
 */
import { getScenario, scenarios } from '../../scenarios/index.ts';
import { ParamError, resolveParams } from '../../scenarios/params.ts';
import type { Scenario } from '../../scenarios/types.ts';

export class FactError extends Error {
  override name = 'FactError';
}

export type Comparator =
  | { op: 'equals'; value: string | number | boolean }
  | { op: 'near'; value: number; tolerance: number }
  | { op: 'range'; atLeast?: number; atMost?: number }
  | { op: 'holds'; value: boolean };

export interface FactSpec {
  scenario: string;
  kind: 'observe' | 'theory' | 'check';
  /** The observation key, the theory key or the check name substring. */
  key: string;
  /** Every parameter, defaults filled in. */
  params: Record<string, number>;
  /** Only the parameters the fact gives (for its description). */
  givenParams: Record<string, number>;
  comparator: Comparator;
  /** Seen in the packet capture (`<Fact wire …>`): checked only where the lab can capture the cut's packets. */
  wire: boolean;
}

const ATTRS = new Set(['scenario', 'observe', 'theory', 'check', 'params', 'equals', 'near', 'tolerance', 'atLeast', 'atMost', 'wire']);

const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** Attributes (as Astro passes them, or as parseFacts reads them) → a checked spec. Throws FactError. */
export function factFromProps(props: Record<string, unknown>): FactSpec {
  const unknown = Object.keys(props).filter((k) => !ATTRS.has(k) && k !== 'children' && k !== 'class');
  if (unknown.length) throw new FactError(`unknown attribute${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; a Fact takes ${[...ATTRS].join(', ')}`);
  const id = props.scenario;
  if (typeof id !== 'string' || id === '') throw new FactError('scenario="<id>" is required');
  const scenario = getScenario(id) as Scenario | undefined;
  if (!scenario) throw new FactError(`unknown scenario '${id}'; known: ${scenarios.map((s) => s.id).join(', ')}`);

  const kinds = (['observe', 'theory', 'check'] as const).filter((k) => props[k] !== undefined);
  if (kinds.length !== 1) throw new FactError(`give exactly one of observe="<key>", theory="<key>" or check="<check name>" (got ${kinds.length ? kinds.join(' and ') : 'none'})`);
  const kind = kinds[0]!;
  const key = props[kind];
  if (typeof key !== 'string' || key.trim() === '') throw new FactError(`${kind} must be a non-empty string`);

  const raw = props.params ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FactError(`params must be an object like {{ idle: 7200 }}; got ${show(raw)}`);
  for (const [k, v] of Object.entries(raw)) if (typeof v !== 'number') throw new FactError(`params.${k} must be a number; got ${show(v)}`);
  let params: Record<string, number>;
  try {
    params = resolveParams(scenario.params, raw as Record<string, unknown>);
  } catch (err) {
    if (err instanceof ParamError) throw new FactError(`params: ${err.message.replace(/--([a-z-]+)/g, (_, f: string) => f.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase()))}`);
    throw err;
  }

  const has = (k: string) => props[k] !== undefined;
  const comparators = ['equals', 'near', 'atLeast', 'atMost'].filter(has);
  let comparator: Comparator;
  if (has('tolerance') && !has('near')) throw new FactError('tolerance goes with near={…}');
  if (comparators.length === 0) {
    if (kind !== 'check') throw new FactError('give a comparator: equals={…}, near={…} tolerance={…}, atLeast={…} or atMost={…}');
    comparator = { op: 'holds', value: true };
  } else if (has('equals')) {
    if (comparators.length > 1) throw new FactError(`equals cannot be combined with ${comparators.filter((c) => c !== 'equals').join(', ')}`);
    const v = props.equals;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new FactError(`equals must be a string, number or boolean; got ${show(v)}`);
    comparator = kind === 'check' ? { op: 'holds', value: v === true } : { op: 'equals', value: v };
    if (kind === 'check' && typeof v !== 'boolean') throw new FactError('for check=…, equals may only be {true} or {false}');
  } else if (has('near')) {
    if (comparators.length > 1) throw new FactError(`near cannot be combined with ${comparators.filter((c) => c !== 'near').join(', ')}`);
    const v = props.near;
    const tol = props.tolerance;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new FactError(`near must be a number; got ${show(v)}`);
    if (typeof tol !== 'number' || !(tol >= 0)) throw new FactError(`near={${v}} needs tolerance={…}, a number ≥ 0 (got ${show(tol)})`);
    comparator = { op: 'near', value: v, tolerance: tol };
  } else {
    const lo = props.atLeast;
    const hi = props.atMost;
    if (lo !== undefined && (typeof lo !== 'number' || !Number.isFinite(lo))) throw new FactError(`atLeast must be a number; got ${show(lo)}`);
    if (hi !== undefined && (typeof hi !== 'number' || !Number.isFinite(hi))) throw new FactError(`atMost must be a number; got ${show(hi)}`);
    if (typeof lo === 'number' && typeof hi === 'number' && lo > hi) throw new FactError(`atLeast={${lo}} is above atMost={${hi}}`);
    comparator = { op: 'range', ...(lo !== undefined ? { atLeast: lo as number } : {}), ...(hi !== undefined ? { atMost: hi as number } : {}) };
  }
  if (kind === 'check' && comparator.op !== 'holds') throw new FactError('check=… takes no comparator (or equals={true|false}): it states that the named check held');
  if (props.wire !== undefined && props.wire !== true) throw new FactError('wire takes no value: write <Fact wire …>');
  if (props.wire === true && kind === 'theory') throw new FactError('wire goes with observe=… or check=…: a theory needs no capture');

  if (kind === 'theory') {
    const theory = scenario.theory(params);
    if (!Object.hasOwn(theory, key)) throw new FactError(`theory key '${key}' is not in ${id}'s theory; it has ${Object.keys(theory).join(', ')}`);
  } else if (scenario.expectedDuration(params) > MAX_RUN_SECONDS) {
    throw new FactError(
      `with these params a run of ${id} takes about ${Math.round(scenario.expectedDuration(params))} s, more than the ${MAX_RUN_SECONDS} s a checked run may take; state such a number with theory="…" instead`,
    );
  }
  return { scenario: id, kind, key, params, givenParams: raw as Record<string, number>, comparator, wire: props.wire === true };
}

/** How a failing fact is reported: where it is, what it says, why it fails. */
export function factFailure(f: { file: string; line: number; text: string; props: Record<string, unknown> }, why: string): string {
  const attrs = Object.entries(f.props)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : `{${JSON.stringify(v)}}`}`)
    .join(' ');
  return `${f.file}:${f.line}: <Fact ${attrs}>${f.text ? ` (“${f.text.length > 60 ? `${f.text.slice(0, 57)}…` : f.text}”)` : ''}: ${why}`;
}

/** A fact the test suite checks by running its scenario must run in reasonable time. */
export const MAX_RUN_SECONDS = 300;

/** The value a theory fact is about (no run needed). */
export function theoryValue(spec: FactSpec): unknown {
  const scenario = getScenario(spec.scenario)!;
  return scenario.theory(spec.params)[spec.key];
}

/** "within 0.5 of 5", "equal to \"ESTAB\"", "at least 3". */
export function comparatorText(c: Comparator): string {
  switch (c.op) {
    case 'equals':
      return `equal to ${show(c.value)}`;
    case 'near':
      return `within ${c.tolerance} of ${c.value}`;
    case 'range':
      return [c.atLeast !== undefined ? `at least ${c.atLeast}` : '', c.atMost !== undefined ? `at most ${c.atMost}` : ''].filter(Boolean).join(' and ');
    case 'holds':
      return c.value ? 'held' : 'did not hold';
  }
}

/** Does `actual` satisfy the comparator? */
export function compare(c: Comparator, actual: unknown): boolean {
  switch (c.op) {
    case 'equals':
      return actual === c.value;
    case 'near':
      return typeof actual === 'number' && Math.abs(actual - c.value) <= c.tolerance + 1e-9;
    case 'range':
      return typeof actual === 'number' && (c.atLeast === undefined || actual >= c.atLeast) && (c.atMost === undefined || actual <= c.atMost);
    case 'holds':
      return actual === c.value;
  }
}

const paramText = (p: Record<string, number>) =>
  Object.entries(p)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

/** What is checked, in a sentence: the Fact's tooltip. */
export function describeFact(spec: FactSpec): string {
  const params = Object.keys(spec.givenParams).length ? ` with ${paramText(spec.givenParams)}` : '';
  switch (spec.kind) {
    case 'observe':
      return `Checked against the kernel: the test suite runs the ${spec.scenario} scenario${params} and requires its observation ${spec.key}${spec.wire ? ', read from the packet capture,' : ''} to be ${comparatorText(spec.comparator)}.`;
    case 'theory':
      return `Checked: the ${spec.scenario} scenario's theory${params} gives ${spec.key} ${comparatorText(spec.comparator)}.`;
    case 'check':
      return `Checked against the kernel: the test suite runs the ${spec.scenario} scenario${params} and requires its check “${spec.key}” to have ${comparatorText(spec.comparator)}.`;
  }
}

/** The checks of a run whose name contains the fact's key (case-insensitive). */
export function matchingChecks<C extends { name: string }>(spec: FactSpec, checks: C[]): C[] {
  const needle = spec.key.toLowerCase();
  return checks.filter((c) => c.name.toLowerCase().includes(needle));
}

/**
 * Checks a fact against a run's result. Returns null when it holds, else why not (with
 * the measured value).
 */
export function verdict(spec: FactSpec, result: { observations: Record<string, unknown>; checks: Array<{ name: string; held: boolean; detail: string }> }): string | null {
  if (spec.kind === 'observe') {
    if (!Object.hasOwn(result.observations, spec.key)) {
      return `the ${spec.scenario} run returns no observation '${spec.key}'; it returns ${Object.keys(result.observations).join(', ')}`;
    }
    const actual = result.observations[spec.key];
    return compare(spec.comparator, actual) ? null : `${spec.key} was ${show(actual)}, the lesson says ${comparatorText(spec.comparator)}`;
  }
  if (spec.kind === 'check') {
    const found = matchingChecks(spec, result.checks);
    if (found.length === 0) return `no check of the ${spec.scenario} run is named like '${spec.key}'; its checks: ${result.checks.map((c) => `“${c.name}”`).join(', ')}`;
    if (found.length > 1) return `'${spec.key}' names ${found.length} checks (${found.map((c) => `“${c.name}”`).join(', ')}); use words that name one`;
    const c = found[0]!;
    return compare(spec.comparator, c.held) ? null : `the check “${c.name}” ${c.held ? 'held' : 'did not hold'} (${c.detail}), the lesson says it ${comparatorText(spec.comparator)}`;
  }
  const actual = theoryValue(spec);
  return compare(spec.comparator, actual) ? null : `theory ${spec.key} is ${show(actual)}, the lesson says ${comparatorText(spec.comparator)}`;
}

// ── Reading <Fact …> from MDX source ───────────────────────────────────────────────────

export interface ParsedTag {
  file: string;
  line: number;
  props: Record<string, unknown>;
  /** The text between <Tag …> and </Tag> (for messages); '' for a self-closing tag. */
  text: string;
}

export type ParsedFact = ParsedTag;

export interface TagParseError {
  file: string;
  line: number;
  message: string;
}

/** A JSON-like literal: numbers, strings, true/false/null, arrays, objects with bare or quoted keys. */
class LiteralReader {
  readonly src: string;
  pos: number;
  constructor(src: string, pos: number) {
    this.src = src;
    this.pos = pos;
  }
  fail(what: string): never {
    throw new FactError(`${what} at “${this.src.slice(this.pos, this.pos + 24).split('\n')[0]}”`);
  }
  ws(): void {
    for (;;) {
      const m = /^(\s+|\/\/[^\n]*|\/\*[\s\S]*?\*\/)/.exec(this.src.slice(this.pos, this.pos + 4096));
      if (!m) return;
      this.pos += m[0].length;
    }
  }
  value(): unknown {
    this.ws();
    const c = this.src[this.pos];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"' || c === "'") return this.string();
    const rest = this.src.slice(this.pos, this.pos + 64);
    const num = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])/.exec(rest);
    if (num) {
      this.pos += num[0].length;
      return Number(num[0]);
    }
    const word = /^(true|false|null)(?![\w$])/.exec(rest);
    if (word) {
      this.pos += word[0].length;
      return word[1] === 'true' ? true : word[1] === 'false' ? false : null;
    }
    return this.fail('not a literal (a number, string, true/false or {…})');
  }
  string(): string {
    const q = this.src[this.pos]!;
    let out = '';
    this.pos++;
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === '\n') return this.fail('unterminated string');
      this.pos++;
      if (c === q) return out;
      if (c === '\\') {
        const e = this.src[this.pos++];
        out += e === 'n' ? '\n' : e === 't' ? '\t' : (e ?? '');
      } else out += c;
    }
  }
  object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.pos++;
    for (;;) {
      this.ws();
      if (this.src[this.pos] === '}') {
        this.pos++;
        return out;
      }
      let key: string;
      const c = this.src[this.pos];
      if (c === '"' || c === "'") key = this.string();
      else {
        const m = /^[A-Za-z_$][\w$]*/.exec(this.src.slice(this.pos, this.pos + 128));
        if (!m) return this.fail('expected a key');
        key = m[0];
        this.pos += key.length;
      }
      this.ws();
      if (this.src[this.pos] !== ':') return this.fail(`expected ':' after ${key}`);
      this.pos++;
      out[key] = this.value();
      this.ws();
      if (this.src[this.pos] === ',') this.pos++;
      else if (this.src[this.pos] !== '}') return this.fail("expected ',' or '}'");
    }
  }
  array(): unknown[] {
    const out: unknown[] = [];
    this.pos++;
    for (;;) {
      this.ws();
      if (this.src[this.pos] === ']') {
        this.pos++;
        return out;
      }
      out.push(this.value());
      this.ws();
      if (this.src[this.pos] === ',') this.pos++;
      else if (this.src[this.pos] !== ']') return this.fail("expected ',' or ']'");
    }
  }
}

/** Code fences (``` or ~~~) are examples, not facts: blank them out, keeping the line numbers. */
function blankFences(source: string): string {
  const lines = source.split('\n');
  let fence: string | null = null;
  return lines
    .map((l) => {
      const m = /^\s*(`{3,}|~{3,})/.exec(l);
      if (fence) {
        if (m && m[1]!.startsWith(fence)) fence = null;
        return '';
      }
      if (m) {
        fence = m[1]!;
        return '';
      }
      return l;
    })
    .join('\n');
}

export type FactParseError = TagParseError;

/** Every <Fact …> in an MDX source, with its line; anything unreadable is an error with its line. */
export function parseFacts(source: string, file: string): { facts: ParsedFact[]; errors: FactParseError[] } {
  const { tags, errors } = parseTags(source, file, 'Fact');
  return { facts: tags, errors };
}

/**
 * Every <Tag …> (a component used in MDX) with its literal attributes and line, outside
 * code fences. An attribute that is not a literal, an unclosed tag, a tag inside itself:
 * an error with its line.
 */
export function parseTags(source: string, file: string, tag: string): { tags: ParsedTag[]; errors: TagParseError[] } {
  const text = blankFences(source);
  const facts: ParsedTag[] = [];
  const errors: TagParseError[] = [];
  const lineAt = (pos: number) => text.slice(0, pos).split('\n').length;
  const open = new RegExp(`<${tag}(?=[\\s/>])`, 'g');
  const closeTag = `</${tag}>`;
  for (let m = open.exec(text); m; m = open.exec(text)) {
    const start = m.index;
    const line = lineAt(start);
    const props: Record<string, unknown> = {};
    let pos = start + m[0].length;
    try {
      let selfClosing = false;
      for (;;) {
        const ws = /^\s*/.exec(text.slice(pos))![0];
        pos += ws.length;
        if (text.startsWith('/>', pos)) {
          pos += 2;
          selfClosing = true;
          break;
        }
        if (text[pos] === '>') {
          pos++;
          break;
        }
        const name = /^[A-Za-z_][\w-]*/.exec(text.slice(pos, pos + 64));
        if (!name) throw new FactError(`unexpected “${text.slice(pos, pos + 20).split('\n')[0]}” in the tag (line ${lineAt(pos)})`);
        pos += name[0].length;
        if (Object.hasOwn(props, name[0])) throw new FactError(`attribute ${name[0]} is given twice`);
        const afterName = /^\s*=\s*/.exec(text.slice(pos));
        if (!afterName) {
          props[name[0]] = true;
          continue;
        }
        pos += afterName[0].length;
        const c = text[pos];
        if (c === '"' || c === "'") {
          const end = text.indexOf(c, pos + 1);
          if (end === -1) throw new FactError(`unterminated value of ${name[0]}`);
          props[name[0]] = text.slice(pos + 1, end);
          pos = end + 1;
        } else if (c === '{') {
          const r = new LiteralReader(text, pos + 1);
          let value: unknown;
          try {
            value = r.value();
            r.ws();
          } catch (err) {
            throw new FactError(`${name[0]}={…} must be a literal (number, string, true/false, {…}): ${(err as Error).message} (line ${lineAt(r.pos)})`);
          }
          if (text[r.pos] !== '}') throw new FactError(`${name[0]}={…} must hold one literal, not an expression (line ${lineAt(r.pos)})`);
          props[name[0]] = value;
          pos = r.pos + 1;
        } else throw new FactError(`${name[0]}= needs "…" or {…}`);
      }
      let inner = '';
      if (!selfClosing) {
        const close = text.indexOf(closeTag, pos);
        if (close === -1) throw new FactError(`no ${closeTag} closes it`);
        inner = text.slice(pos, close);
        if (new RegExp(`<${tag}[\\s/>]`).test(inner)) throw new FactError(`a ${tag} inside a ${tag}`);
        open.lastIndex = close + closeTag.length;
      } else open.lastIndex = pos;
      facts.push({ file, line, props, text: inner.replace(/\s+/g, ' ').trim() });
    } catch (err) {
      errors.push({ file, line, message: err instanceof Error ? err.message : String(err) });
    }
  }
  return { tags: facts, errors };
}
