/**
 * Scenario parameters: declared once, validated the same way for the command line,
 * the browser (through the sidecar) and the tests.
 */

export interface ParamSpec {
  type: 'number' | 'integer';
  default: number;
  min: number;
  max: number;
  unit?: string;
  /** One line: what it is and what it changes. */
  description: string;
}

export type ParamSpecs = Record<string, ParamSpec>;
export type ParamValues<S extends ParamSpecs> = { [K in keyof S]: number };

/** The command-line spelling of a parameter: echoDelay → echo-delay. */
export const flagName = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export class ParamError extends Error {
  override name = 'ParamError';
}

/** "a number from 1 to 3600 (seconds)" */
export function describeRange(spec: ParamSpec): string {
  const kind = spec.type === 'integer' ? 'a whole number' : 'a number';
  return `${kind} from ${spec.min} to ${spec.max}${spec.unit ? ` (${spec.unit})` : ''}`;
}

function parseValue(name: string, spec: ParamSpec, raw: unknown): number {
  let value: number;
  if (typeof raw === 'number') value = raw;
  // Plain decimals only, as the demos take them: "1e3", "+5", " 7" or "0x1f" are typos to
  // report, not values to guess at (1e3 would quietly start a 17-minute run).
  else if (typeof raw === 'string' && /^-?\d+(\.\d+)?$/.test(raw)) value = Number(raw);
  else {
    const shown = typeof raw === 'string' ? JSON.stringify(raw) : raw === undefined ? 'nothing' : JSON.stringify(raw);
    throw new ParamError(`--${flagName(name)} must be ${describeRange(spec)}; got ${shown}`);
  }
  if (!Number.isFinite(value) || value < spec.min || value > spec.max || (spec.type === 'integer' && !Number.isInteger(value))) {
    throw new ParamError(`--${flagName(name)} must be ${describeRange(spec)}; got ${raw}`);
  }
  return value;
}

/**
 * Validates raw values (strings from the command line, or JSON values from the page)
 * against the specs; fills defaults. Throws ParamError naming the parameter and its range.
 */
export function resolveParams<S extends ParamSpecs>(specs: S, raw: Record<string, unknown>): ParamValues<S> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(raw)) {
    if (!Object.hasOwn(specs, key)) {
      const known = Object.keys(specs);
      throw new ParamError(
        `unknown parameter --${flagName(key)}; ${known.length ? `this scenario takes ${known.map((k) => `--${flagName(k)}`).join(', ')}` : 'this scenario takes no parameters'}`,
      );
    }
  }
  for (const [name, spec] of Object.entries(specs)) {
    out[name] = Object.hasOwn(raw, name) && raw[name] !== undefined ? parseValue(name, spec, raw[name]) : spec.default;
  }
  return out as ParamValues<S>;
}

export function defaults<S extends ParamSpecs>(specs: S): ParamValues<S> {
  return resolveParams(specs, {});
}
