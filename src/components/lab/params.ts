/**
 * Parameter checks in the page, the same rules the sidecar applies (src/scenarios/params.ts):
 * a plain decimal number, within [min, max], whole where the spec says integer. The sidecar
 * checks again; this only saves a round trip and says what is wrong next to the input.
 */
import type { ParamSpecInfo } from './types.ts';

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** "a whole number from 1 to 10 (seconds)", as the sidecar words it. */
export function describeRange(spec: ParamSpecInfo): string {
  const kind = spec.type === 'integer' ? 'a whole number' : 'a number';
  return `${kind} from ${spec.min} to ${spec.max}${spec.unit ? ` (${spec.unit})` : ''}`;
}

export function checkParam(name: string, spec: ParamSpecInfo, raw: string): { ok: true; value: number } | { ok: false; error: string } {
  const text = raw.trim();
  const value = NUMBER.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value) || value < spec.min || value > spec.max || (spec.type === 'integer' && !Number.isInteger(value))) {
    return { ok: false, error: `${name} must be ${describeRange(spec)}; got ${text === '' ? 'nothing' : JSON.stringify(text)}` };
  }
  return { ok: true, value };
}

/** The step of a number input: 1 for integers, else fine enough for the spec's defaults and bounds. */
export function stepFor(spec: ParamSpecInfo): string {
  if (spec.type === 'integer') return '1';
  const decimals = Math.max(...[spec.default, spec.min, spec.max].map((n) => (String(n).split('.')[1] ?? '').length), 1);
  return String(10 ** -Math.min(decimals, 3));
}
