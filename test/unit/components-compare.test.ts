/** <Compare />'s table model (src/components/compare/table.ts) on the recordings of real runs. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CELLS, cellResult, cellText, COMPARE_SCENARIOS, EMPTY_CELLS, FAULTS, STRATEGIES } from '../../src/components/compare/table.ts';
import type { Recording } from '../../src/components/lab/types.ts';
import { getScenario } from '../../src/scenarios/index.ts';

const recording = (id: string): Recording => JSON.parse(readFileSync(new URL(`../../public/recordings/${id}.json`, import.meta.url), 'utf8')) as Recording;
const cell = (fault: string, strategy: string) => CELLS.find((c) => c.fault === fault && c.strategy === strategy)!;

describe('the comparison table', () => {
  it('has exactly one cell, measured or explained, for every fault × strategy', () => {
    for (const f of FAULTS)
      for (const s of STRATEGIES) {
        const n = CELLS.filter((c) => c.fault === f.id && c.strategy === s.id).length + EMPTY_CELLS.filter((c) => c.fault === f.id && c.strategy === s.id).length;
        expect(n, `${f.id} × ${s.id}`).toBe(1);
      }
  });

  it('runs only existing scenarios, and every scenario it runs feeds a cell', () => {
    for (const id of COMPARE_SCENARIOS) expect(getScenario(id), id).toBeDefined();
    expect(new Set(CELLS.map((c) => c.scenario))).toEqual(new Set(COMPARE_SCENARIOS));
  });

  it('reads observations every recorded run really has', () => {
    for (const c of CELLS) {
      const o = recording(c.scenario).observations;
      for (const key of [c.detectedFlag, c.secondsKey, c.plusKey, c.watchedKey].filter((k): k is string => k !== undefined)) {
        expect(Object.keys(o), `${c.scenario}.${key}`).toContain(key);
      }
    }
  });

  it('turns the recorded runs into the numbers the scenarios measured', () => {
    const ka = recording('keepalive');
    const kaObs = ka.observations as Record<string, number>;
    const idleKa = cellResult(cell('idle', 'keepalive'), ka.observations, ka.theory);
    expect(idleKa).toEqual({ state: 'detected', seconds: +(kaObs.detectedAfterSeconds! + kaObs.lastTrafficToCutSeconds!).toFixed(3), theorySeconds: 5, since: 'the last traffic' });
    expect(cellText(idleKa)).toEqual({ main: expect.stringMatching(/^detected after 5\.0\d s$/), sub: 'since the last traffic; theory 5 s' });

    const a = recording('experiment-a');
    const none = cellResult(cell('idle', 'none'), a.observations, a.theory);
    expect(none).toMatchObject({ state: 'not-detected', watched: (a.observations as Record<string, number>).waitedSeconds });
    expect(cellText(none).main).toMatch(/^not detected in \d/);

    const ku = recording('keepalive-unacked');
    expect(cellResult(cell('in-flight', 'keepalive'), ku.observations, ku.theory).state).toBe('not-detected');
    expect(cellResult(cell('in-flight', 'user-timeout'), ku.observations, ku.theory)).toMatchObject({ state: 'detected', theorySeconds: ku.params.userTimeout! / 1000 });

    expect(cellResult(cell('in-flight', 'heartbeat'), ku.observations, ku.theory)).toMatchObject({ state: 'detected', theorySeconds: (ku.theory as Record<string, number>).heartbeatExpectedSeconds });

    const c = recording('experiment-c');
    expect(cellResult(cell('in-flight', 'none'), c.observations, c.theory)).toMatchObject({ state: 'detected', seconds: (c.observations as Record<string, number>).errorAfterWriteSeconds });

    const kut = recording('keepalive-user-timeout');
    expect(cellResult(cell('idle', 'user-timeout'), kut.observations, kut.theory)).toMatchObject({ state: 'detected', theorySeconds: (kut.theory as Record<string, number>).expectedSeconds });

    const hc = recording('hung-client');
    expect(cellResult(cell('frozen', 'keepalive'), hc.observations, hc.theory).state).toBe('not-detected');
    expect(cellResult(cell('frozen', 'none'), hc.observations, hc.theory).state).toBe('not-detected');
    expect(cellResult(cell('frozen', 'user-timeout'), hc.observations, hc.theory).state).toBe('not-detected');
    expect(cellResult(cell('frozen', 'heartbeat'), hc.observations, hc.theory)).toMatchObject({ state: 'detected', seconds: (hc.observations as Record<string, number>).heartbeatDetectedAfterSeconds });
  });

  it('a note about a lab setting says what the scenario really sets', () => {
    const retries2 = getScenario('experiment-c')!.params.retries2!.default;
    expect(cell('in-flight', 'none').note).toContain(`tcp_retries2 = ${retries2} in this lab`);
  });

  it('says so when a run lacks what the cell needs', () => {
    const r = cellResult(cell('idle', 'keepalive'), { somethingElse: 1 }, null);
    expect(r).toEqual({ state: 'unknown', why: 'the keepalive run has no observation serverError' });
    expect(cellText(r).main).toBe('no result');
    // A server that noticed nothing: serverError null.
    expect(cellResult(cell('idle', 'keepalive'), { serverError: null, detectedAfterSeconds: null }, { expectedSeconds: 5 }).state).toBe('not-detected');
  });
});
