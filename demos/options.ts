/**
 * Command-line parsing shared by the demo programs: node:util's parseArgs, plus numbers that
 * are checked against a range. Every mistake becomes a UsageError whose message names the
 * flag and what it accepts; the programs print it on one line and exit with status 2.
 *
 * Copy this file freely: it depends only on Node's built-ins.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/** A bad command line. The message is one line that names the flag. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * parseArgs in strict mode (unknown flags and stray arguments are errors), with its errors
 * turned into UsageErrors.
 */
export function parseFlags<const O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(`${describe(err as NodeJS.ErrnoException)} (see --help)`);
  }
}

/** parseArgs's error, shortened to what the user needs to fix. */
function describe(err: NodeJS.ErrnoException): string {
  // The flag it is about: the long name if the message has one ("'-h, --help'").
  const flag = /--[\w-]+/.exec(err.message)?.[0] ?? /'(-\w)/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument ${/'[^']*'/.exec(err.message)?.[0] ?? ''}: only options are accepted`;
  if (flag && err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${flag}`;
  if (flag && err.message.includes('argument missing')) return `${flag} needs a value`;
  // `--echo-delay -1`: parseArgs will not guess whether -1 is a value or a flag.
  if (flag && err.message.includes('ambiguous')) return `${flag}: write a value starting with "-" as ${flag}=<value>`;
  if (flag && err.message.includes('does not take an argument')) return `${flag} takes no value`;
  return err.message.replace(/\s*\n\s*/g, ' ');
}

export interface NumberSpec {
  min: number;
  max: number;
  /** Whole numbers only (a count, a port). Otherwise decimals such as 0.5 are accepted. */
  integer?: boolean;
}

const WHOLE = /^\d+$/;
const DECIMAL = /^(\d+(\.\d*)?|\.\d+)$/;

/**
 * Reads a number given to `--<flag>`; `undefined` (flag not given) stays undefined.
 *
 * Only plain digits are accepted: Number() alone would also take "0x1f", "1e3", " 7" or ""
 * (which is 0), and a typo should be an error rather than a surprising value.
 */
export function numberFlag(flag: string, raw: string | undefined, spec: NumberSpec): number | undefined {
  if (raw === undefined) return undefined;
  const kind = spec.integer ? 'a whole number' : 'a number';
  const value = Number(raw);
  if (!(spec.integer ? WHOLE : DECIMAL).test(raw) || value < spec.min || value > spec.max) {
    throw new UsageError(`--${flag} must be ${kind} from ${spec.min} to ${spec.max}; got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Reads a flag that takes one of a few words. */
export function choiceFlag<const C extends string>(flag: string, raw: string | undefined, choices: readonly C[]): C | undefined {
  if (raw === undefined) return undefined;
  if (!(choices as readonly string[]).includes(raw)) {
    throw new UsageError(`--${flag} must be one of ${choices.join(', ')}; got ${JSON.stringify(raw)}`);
  }
  return raw as C;
}
