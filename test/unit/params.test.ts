import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ParamError, resolveParams, type ParamSpecs } from '../../src/scenarios/params.ts';
import { scenarios } from '../../src/scenarios/index.ts';

const specs = {
  idle: { type: 'integer', default: 2, min: 1, max: 7200, unit: 'seconds', description: 'idle' },
  interval: { type: 'number', default: 1, min: 0.2, max: 60, unit: 'seconds', description: 'interval' },
} satisfies ParamSpecs;

describe('scenario parameters', () => {
  it('fills defaults and parses strings from the command line', () => {
    expect(resolveParams(specs, {})).toEqual({ idle: 2, interval: 1 });
    expect(resolveParams(specs, { idle: '30', interval: '0.5' })).toEqual({ idle: 30, interval: 0.5 });
  });

  it('names the parameter and its valid range when a value is out of range or malformed', () => {
    expect(() => resolveParams(specs, { idle: '-5' })).toThrow(/--idle must be a whole number from 1 to 7200 \(seconds\); got -5/);
    expect(() => resolveParams(specs, { idle: 'banana' })).toThrow(/--idle must be a whole number from 1 to 7200 \(seconds\); got "banana"/);
    expect(() => resolveParams(specs, { idle: '2.5' })).toThrow(ParamError);
    expect(() => resolveParams(specs, { interval: 'Infinity' })).toThrow(ParamError);
    expect(() => resolveParams(specs, { interval: '0x10' })).toThrow(ParamError);
    expect(() => resolveParams(specs, { interval: true })).toThrow(ParamError);
    // Spellings Number() would take but a person rarely means: typos, reported as such.
    for (const typo of ['1e3', '+5', ' 7', '7 ', '.5', '5.', '']) {
      expect(() => resolveParams(specs, { interval: typo }), JSON.stringify(typo)).toThrow(/--interval must be a number from 0.2 to 60/);
    }
  });

  it('rejects unknown parameters, listing the known ones', () => {
    expect(() => resolveParams(specs, { idel: '3' })).toThrow(/unknown parameter --idel; this scenario takes --idle, --interval/);
  });

  it('accepts exactly the values inside the range (property)', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, min: -1e6, max: 1e6 }), (v) => {
        const inside = v >= 0.2 && v <= 60;
        let ok = true;
        try {
          expect(resolveParams(specs, { interval: v }).interval).toBe(v);
        } catch (e) {
          if (!(e instanceof ParamError)) throw e;
          ok = false;
        }
        return ok === inside;
      }),
    );
  });

  it('every scenario declares a claim, a description and defaults that pass its own validation', () => {
    const ids = new Set<string>();
    for (const s of scenarios) {
      expect(ids.has(s.id)).toBe(false);
      ids.add(s.id);
      expect(s.description.length).toBeGreaterThan(10);
      expect(s.claim.length).toBeGreaterThan(10);
      const p = resolveParams(s.params, {});
      for (const [k, spec] of Object.entries(s.params)) {
        expect(spec.min).toBeLessThanOrEqual(spec.default);
        expect(spec.default).toBeLessThanOrEqual(spec.max);
        expect(p[k]).toBe(spec.default);
      }
      expect(s.expectedDuration(p)).toBeGreaterThan(0);
    }
    expect([...ids]).toEqual(expect.arrayContaining(['experiment-a', 'experiment-b', 'experiment-b-same-address', 'experiment-c', 'keepalive', 'heartbeat', 'hung-client', 'keepalive-unacked', 'fd-exhaustion']));
  });
});
