/**
 * <Fact>'s reader, spec and comparator (src/components/lab/fact.ts): how a lesson's number
 * is read from its MDX source and judged against a run. The bad samples here are what
 * test/course/facts.test.ts must catch: a lesson that states a number its scenario no
 * longer produces.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compare, describeFact, FactError, factFailure, factFromProps, parseFacts, parseTags, verdict } from '../../src/components/lab/fact.ts';
import type { Recording } from '../../src/components/lab/types.ts';

const recording = (id: string): Recording => JSON.parse(readFileSync(new URL(`../../public/recordings/${id}.json`, import.meta.url), 'utf8')) as Recording;

const SAMPLE = `---
title: Sample
---
import Fact from '../../src/components/Fact.astro';

Keepalive gives up after <Fact scenario="keepalive" theory="expectedSeconds" params={{ idle: 7200, interval: 75, count: 9 }} equals={7875}>7875 s</Fact>.
The server's connection is <Fact scenario="experiment-a" observe="serverState" equals="ESTAB">still ESTAB</Fact>,
and <Fact
  scenario='keepalive'
  observe="detectedAfterSeconds"
  near={5} tolerance={0.5}
>about 5 s</Fact> after the cut. <Fact scenario="experiment-c" observe="writeSucceeded" equals={true}>write() succeeds</Fact>

\`\`\`mdx
<Fact scenario="nope" observe="x" equals={1}>an example in a code block is not a fact</Fact>
\`\`\`

<Fact scenario="experiment-a" check="ESTABLISHED">still established</Fact> and <Fact scenario="keepalive" theory="expectedSeconds" atLeast={-1} atMost={1e4} />
`;

describe('reading <Fact> from MDX', () => {
  it('finds every Fact with its line and literal attributes, and skips code fences', () => {
    const { facts, errors } = parseFacts(SAMPLE, 'content/sample.mdx');
    expect(errors).toEqual([]);
    expect(facts.map((f) => [f.line, f.props])).toEqual([
      [6, { scenario: 'keepalive', theory: 'expectedSeconds', params: { idle: 7200, interval: 75, count: 9 }, equals: 7875 }],
      [7, { scenario: 'experiment-a', observe: 'serverState', equals: 'ESTAB' }],
      [8, { scenario: 'keepalive', observe: 'detectedAfterSeconds', near: 5, tolerance: 0.5 }],
      [12, { scenario: 'experiment-c', observe: 'writeSucceeded', equals: true }],
      [18, { scenario: 'experiment-a', check: 'ESTABLISHED' }],
      [18, { scenario: 'keepalive', theory: 'expectedSeconds', atLeast: -1, atMost: 10000 }],
    ]);
    expect(facts[2]!.text).toBe('about 5 s');
    for (const f of facts) expect(() => factFromProps(f.props)).not.toThrow();
  });

  it('refuses what is not a literal, with the line', () => {
    const bad = [
      ['<Fact scenario="keepalive" theory="expectedSeconds" equals={2 * 3600}>x</Fact>', /must hold one literal/],
      ['<Fact scenario="keepalive" theory="expectedSeconds" equals={seconds}>x</Fact>', /must be a literal/],
      ['<Fact scenario="keepalive" theory="expectedSeconds" params={{ idle: IDLE }} equals={1}>x</Fact>', /must be a literal/],
      ['<Fact scenario="keepalive" theory="expectedSeconds" equals={1}>no end', /no <\/Fact> closes it/],
      ['<Fact scenario="keepalive" theory=`expectedSeconds` equals={1}>x</Fact>', /needs "…" or \{…\}/],
      ['<Fact scenario="keepalive" scenario="heartbeat">x</Fact>', /given twice/],
    ] as const;
    for (const [src, why] of bad) {
      const { facts, errors } = parseFacts(`line one\n\n${src}\n`, 'content/bad.mdx');
      expect(facts, src).toEqual([]);
      expect(errors, src).toEqual([{ file: 'content/bad.mdx', line: 3, message: expect.stringMatching(why) }]);
    }
  });

  it('reads other components the same way (the site test uses it for <Lab> and <DemoCode>)', () => {
    const { tags, errors } = parseTags('<Lab scenario="keepalive" />\n<DemoCode file="echo-server.ts" region="keepalive" />\n<Labs x="1" />', 'x.mdx', 'Lab');
    expect(errors).toEqual([]);
    expect(tags).toEqual([{ file: 'x.mdx', line: 1, props: { scenario: 'keepalive' }, text: '' }]);
  });
});

describe('a Fact’s attributes', () => {
  it('must name a known scenario, parameters, key and comparator', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ scenario: 'keepalives', observe: 'x', equals: 1 }, /unknown scenario 'keepalives'; known: .*keepalive/],
      [{ scenario: 'keepalive', equals: 1 }, /exactly one of observe/],
      [{ scenario: 'keepalive', observe: 'a', theory: 'b', equals: 1 }, /got observe and theory/],
      [{ scenario: 'keepalive', theory: 'expected', equals: 1 }, /theory key 'expected' is not in keepalive's theory; it has summary, expectedSeconds/],
      [{ scenario: 'keepalive', theory: 'expectedSeconds', params: { idel: 3 }, equals: 1 }, /unknown parameter idel/],
      [{ scenario: 'keepalive', theory: 'expectedSeconds', params: { idle: 0 }, equals: 1 }, /idle must be a whole number from 1 to 7200/],
      [{ scenario: 'keepalive', observe: 'detectedAfterSeconds' }, /give a comparator/],
      [{ scenario: 'keepalive', observe: 'detectedAfterSeconds', near: 5 }, /needs tolerance/],
      [{ scenario: 'keepalive', observe: 'detectedAfterSeconds', equals: 5, atMost: 6 }, /cannot be combined/],
      [{ scenario: 'keepalive', observe: 'detectedAfterSeconds', atLeast: 6, atMost: 5 }, /above atMost/],
      [{ scenario: 'keepalive', observe: 'detectedAfterSeconds', params: { idle: 7200, interval: 75, count: 9 }, near: 7875, tolerance: 1 }, /use theory|state such a number with theory/],
      [{ scenario: 'keepalive', check: 'ETIMEDOUT', equals: 'yes' }, /equals may only be \{true\} or \{false\}/],
      [{ scenario: 'keepalive', observe: 'x', equals: 1, color: 'red' }, /unknown attribute color/],
      [{ scenario: 'keepalive', observe: 'probesOnWire', equals: 3, wire: 'yes' }, /wire takes no value/],
      [{ scenario: 'keepalive', theory: 'expectedSeconds', equals: 5, wire: true }, /wire goes with observe/],
    ];
    for (const [props, why] of cases) expect(() => factFromProps(props), JSON.stringify(props)).toThrow(why);
    expect(() => factFromProps({ scenario: 'nope' })).toThrow(FactError);
    // A fact from the packet capture says so, and the test suite knows to need the capture.
    const w = factFromProps({ scenario: 'keepalive', observe: 'probesOnWire', equals: 3, wire: true });
    expect(w.wire).toBe(true);
    expect(describeFact(w)).toMatch(/probesOnWire, read from the packet capture, to be equal to 3/);
    expect(factFromProps({ scenario: 'keepalive', observe: 'probesInTable', equals: 3 }).wire).toBe(false);
  });

  it('describes what is checked, for the tooltip', () => {
    expect(describeFact(factFromProps({ scenario: 'keepalive', theory: 'expectedSeconds', params: { idle: 7200, interval: 75, count: 9 }, equals: 7875 }))).toBe(
      "Checked: the keepalive scenario's theory with idle 7200, interval 75, count 9 gives expectedSeconds equal to 7875.",
    );
    expect(describeFact(factFromProps({ scenario: 'keepalive', observe: 'detectedAfterSeconds', near: 5, tolerance: 0.5 }))).toBe(
      'Checked against the kernel: the test suite runs the keepalive scenario and requires its observation detectedAfterSeconds to be within 0.5 of 5.',
    );
  });
});

describe('judging a Fact against a run', () => {
  const run = recording('keepalive');

  it('holds when the run produced the stated value', () => {
    expect(verdict(factFromProps({ scenario: 'keepalive', observe: 'detectedAfterSeconds', near: 5, tolerance: 0.5 }), run)).toBeNull();
    expect(verdict(factFromProps({ scenario: 'keepalive', observe: 'serverError', equals: 'ETIMEDOUT' }), run)).toBeNull();
    expect(verdict(factFromProps({ scenario: 'keepalive', check: 'gets ETIMEDOUT' }), run)).toBeNull();
    expect(verdict(factFromProps({ scenario: 'keepalive', theory: 'expectedSeconds', params: { idle: 7200, interval: 75, count: 9 }, equals: 7875 }), run)).toBeNull();
  });

  it('fails, naming the file, the line and the measured value, when a lesson states a number the run does not produce', () => {
    // A lesson that still says 50 s after the scenario changed to measure about 5 s.
    const src = 'intro\n\nThe server gives up after <Fact scenario="keepalive" observe="detectedAfterSeconds" near={50} tolerance={0.5}>50 s</Fact>.\n';
    const [fact] = parseFacts(src, 'content/course/keepalive.mdx').facts;
    const why = verdict(factFromProps(fact!.props), run);
    const measured = (run.observations as Record<string, number>).detectedAfterSeconds!;
    expect(why).toBe(`detectedAfterSeconds was ${measured}, the lesson says within 0.5 of 50`);
    expect(factFailure(fact!, why!)).toBe(
      `content/course/keepalive.mdx:3: <Fact scenario="keepalive" observe="detectedAfterSeconds" near={50} tolerance={0.5}> (“50 s”): detectedAfterSeconds was ${measured}, the lesson says within 0.5 of 50`,
    );
  });

  it('fails for a key the run does not return, a wrong string, a check that did not hold or is ambiguous, a changed theory', () => {
    expect(verdict(factFromProps({ scenario: 'keepalive', observe: 'detectedAfter', near: 5, tolerance: 1 }), run)).toMatch(/returns no observation 'detectedAfter'; it returns (\w+, )*expectedSeconds, detectedAfterSeconds\b/);
    expect(verdict(factFromProps({ scenario: 'keepalive', observe: 'serverError', equals: 'ECONNRESET' }), run)).toBe('serverError was "ETIMEDOUT", the lesson says equal to "ECONNRESET"');
    expect(verdict(factFromProps({ scenario: 'keepalive', check: 'gets ETIMEDOUT', equals: false }), run)).toMatch(/the check “the server gets ETIMEDOUT” held/);
    expect(verdict(factFromProps({ scenario: 'keepalive', check: 'e' }), run)).toMatch(new RegExp(`names ${run.checks.filter((c) => c.name.includes('e')).length} checks`));
    expect(verdict(factFromProps({ scenario: 'keepalive', check: 'RST' }), run)).toMatch(/no check of the keepalive run is named like 'RST'/);
    expect(verdict(factFromProps({ scenario: 'keepalive', theory: 'expectedSeconds', params: { idle: 7200, interval: 75, count: 9 }, equals: 7200 }), run)).toBe(
      'theory expectedSeconds is 7875, the lesson says equal to 7200',
    );
  });

  it('compares strictly: types matter, tolerance and bounds are inclusive', () => {
    expect(compare({ op: 'equals', value: 5 }, '5')).toBe(false);
    expect(compare({ op: 'equals', value: true }, 1)).toBe(false);
    expect(compare({ op: 'near', value: 5, tolerance: 0.5 }, 5.5)).toBe(true);
    expect(compare({ op: 'near', value: 5, tolerance: 0.5 }, 5.51)).toBe(false);
    expect(compare({ op: 'near', value: 5, tolerance: 0.5 }, null)).toBe(false);
    expect(compare({ op: 'range', atLeast: 3 }, 3)).toBe(true);
    expect(compare({ op: 'range', atMost: 1 }, 1.01)).toBe(false);
    expect(compare({ op: 'range', atLeast: 1 }, '2')).toBe(false);
  });
});
