import type { ParamSpecs, ParamValues } from './params.ts';
import type { RunContext } from './runner.ts';

/** One entry of a run's timeline. `t` is seconds since the lab started. */
export interface TimelineEvent {
  t: number;
  source: 'lab' | 'server' | 'client' | 'kernel' | 'wire';
  event: string;
  [key: string]: unknown;
}

export type Observations = Record<string, string | number | boolean | null | Array<unknown> | Record<string, unknown>>;

export interface Check {
  /** What is checked, in the lesson's words. */
  name: string;
  held: boolean;
  /** The numbers behind the verdict. */
  detail: string;
}

export interface Theory {
  /** One or two sentences: what theory predicts with these parameters. */
  summary: string;
  /** The predicted detection time, in seconds, where the scenario has one. */
  expectedSeconds?: number;
  [key: string]: unknown;
}

export interface Scenario<S extends ParamSpecs = ParamSpecs> {
  id: string;
  title: string;
  /** One line, for `npm run lab -- list`. */
  description: string;
  /** The claim a lesson makes; `{param}` placeholders are filled with the run's values. */
  claim: string;
  params: S;
  /** Per-namespace sysctls the lab needs (both hosts). */
  sysctls?: (p: ParamValues<S>) => Record<string, number>;
  theory: (p: ParamValues<S>) => Theory;
  run: (ctx: RunContext, p: ParamValues<S>) => Promise<Observations>;
  check: (o: Observations, p: ParamValues<S>, theory: Theory) => Check[];
  /** Rough upper bound of the run's wall time, in seconds (for caps and progress). */
  expectedDuration: (p: ParamValues<S>) => number;
}

export interface ScenarioResult {
  scenario: string;
  title: string;
  kernel: string;
  mode: string;
  params: Record<string, number>;
  claim: string;
  theory: Theory;
  observations: Observations;
  checks: Check[];
  claimHeld: boolean;
  wallSeconds: number;
  timeline: TimelineEvent[];
}

/** Helper so each scenario file keeps its parameter types. */
export function defineScenario<S extends ParamSpecs>(s: Scenario<S>): Scenario<S> {
  return s;
}

export function fillClaim(claim: string, params: Record<string, number>): string {
  return claim.replace(/\{(\w+)\}/g, (m, k: string) => (k in params ? String(params[k]) : m));
}

/** |measured − expected| ≤ tolerance, as a Check. */
export function within(name: string, measured: unknown, expected: number, tolerance: number): Check {
  const ok = typeof measured === 'number' && Math.abs(measured - expected) <= tolerance;
  return {
    name,
    held: ok,
    detail:
      typeof measured === 'number'
        ? `measured ${measured.toFixed(3)} s, theory ${expected.toFixed(3)} s, difference ${(measured - expected).toFixed(3)} s (tolerance ±${tolerance} s)`
        : `nothing measured (${String(measured)}); theory ${expected.toFixed(3)} s`,
  };
}

export function is(name: string, actual: unknown, expected: unknown): Check {
  return { name, held: actual === expected, detail: `observed ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}` };
}

/**
 * For limits the kernel checks only when a timer fires (tcp_retries2, TCP_USER_TIMEOUT): the
 * event comes no earlier than the limit, and a little after it.
 */
export function atLeastThenSoon(name: string, measured: unknown, limit: number, lateBy: number): Check {
  const ok = typeof measured === 'number' && measured >= limit - 0.05 && measured <= limit + lateBy;
  return {
    name,
    held: ok,
    detail:
      typeof measured === 'number'
        ? `measured ${measured.toFixed(3)} s; limit ${limit.toFixed(3)} s (expected from ${limit.toFixed(1)} to ${(limit + lateBy).toFixed(1)} s)`
        : `nothing measured; limit ${limit.toFixed(3)} s`,
  };
}
