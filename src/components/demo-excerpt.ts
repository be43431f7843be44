/**
 * Build-time helper of <DemoCode>: reads an excerpt of a program in demos/.
 * Any problem throws, so `astro build` fails with a message that names the lesson's
 * mistake (a renamed region, a range past the end of a file that got shorter).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, resolve, sep } from 'node:path';

export interface DemoExcerpt {
  /** The path inside demos/, e.g. "echo-server.ts". */
  file: string;
  code: string;
  lang: string;
  /** First and last line of the excerpt in the file (1-based), markers excluded. */
  start: number;
  end: number;
}

export class DemoCodeError extends Error {
  override name = 'DemoCodeError';
}

const MARKER = /^\s*\/\/\s*#(end)?region\b\s*(\S*)/;
const LANGS: Record<string, string> = { '.ts': 'ts', '.mts': 'ts', '.js': 'js', '.mjs': 'js', '.json': 'json', '.sh': 'sh' };

/** demos/ of the project being built (Astro runs with the project root as its cwd). */
export function demosDir(root: string = process.cwd()): string {
  const dir = resolve(root, 'demos');
  if (!existsSync(dir)) throw new DemoCodeError(`<DemoCode>: no demos/ folder in ${root}; run the build from the project root`);
  return dir;
}

/** Leaves out the indentation every non-blank line shares. */
function dedent(lines: string[]): string[] {
  const indents = lines.filter((l) => l.trim() !== '').map((l) => /^[ \t]*/.exec(l)![0].length);
  const cut = indents.length ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(Math.min(cut, /^[ \t]*/.exec(l)![0].length)));
}

/** Blank lines at either end are left out too. */
function trimBlank(lines: Array<{ n: number; text: string }>): Array<{ n: number; text: string }> {
  let a = 0;
  let b = lines.length;
  while (a < b && lines[a]!.text.trim() === '') a++;
  while (b > a && lines[b - 1]!.text.trim() === '') b--;
  return lines.slice(a, b);
}

export function regionNames(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => MARKER.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && !m[1] && m[2] !== '')
    .map((m) => m[2]!);
}

export function extractDemoExcerpt(options: { file: string; region?: string; lines?: string; root?: string }): DemoExcerpt {
  const { file, region, lines } = options;
  const where = `<DemoCode file="${file}"${region !== undefined ? ` region="${region}"` : ''}${lines !== undefined ? ` lines="${lines}"` : ''}>`;
  const fail = (why: string): never => {
    throw new DemoCodeError(`${where}: ${why}`);
  };
  if (typeof file !== 'string' || file.trim() === '') fail('`file` is required, e.g. file="echo-server.ts"');
  if ((region === undefined) === (lines === undefined)) fail('give exactly one of `region` or `lines`');

  const dir = demosDir(options.root);
  const path = resolve(dir, file.replace(/^demos\//, ''));
  if (!path.startsWith(dir + sep)) fail('the file must be inside demos/');
  if (!existsSync(path)) {
    const known = readdirSync(dir).filter((f) => !f.startsWith('.'));
    fail(`demos/${relative(dir, path)} does not exist; demos/ has ${known.join(', ')}`);
  }
  const all = readFileSync(path, 'utf8').split(/\r?\n/);
  if (all.length && all[all.length - 1] === '') all.pop();
  const rel = relative(dir, path).split(sep).join('/');

  let picked: Array<{ n: number; text: string }>;
  if (region !== undefined) {
    const opens = all.flatMap((text, i) => {
      const m = MARKER.exec(text);
      return m && !m[1] && m[2] === region ? [i] : [];
    });
    if (opens.length === 0) {
      const names = regionNames(all.join('\n'));
      fail(`no "// #region ${region}" in demos/${rel}; ${names.length ? `its regions are ${names.join(', ')}` : 'it has no regions'}`);
    }
    if (opens.length > 1) fail(`"// #region ${region}" appears ${opens.length} times in demos/${rel}`);
    const open = opens[0]!;
    const close = all.findIndex((text, i) => {
      if (i <= open) return false;
      const m = MARKER.exec(text);
      return m !== null && m[1] === 'end' && (m[2] === region || m[2] === '');
    });
    if (close === -1) fail(`"// #region ${region}" in demos/${rel} (line ${open + 1}) has no "// #endregion ${region}"`);
    picked = all
      .slice(open + 1, close)
      .map((text, i) => ({ n: open + 2 + i, text }))
      .filter((l) => !MARKER.test(l.text));
  } else {
    const m = /^\s*(\d+)\s*(?:[-–]\s*(\d+)\s*)?$/.exec(lines!);
    if (!m) fail('`lines` must look like "12-40" or "12"');
    const from = Number(m![1]);
    const to = m![2] === undefined ? from : Number(m![2]);
    if (from < 1 || to < from) fail(`"${lines}" is not a range of lines (first ≥ 1, last ≥ first)`);
    if (to > all.length) fail(`demos/${rel} has ${all.length} lines; "${lines}" goes past its end`);
    picked = all
      .slice(from - 1, to)
      .map((text, i) => ({ n: from + i, text }))
      .filter((l) => !MARKER.test(l.text));
  }
  picked = trimBlank(picked);
  if (picked.length === 0) fail(`the excerpt of demos/${rel} is empty`);
  return {
    file: rel,
    code: dedent(picked.map((l) => l.text)).join('\n'),
    lang: LANGS[extname(path)] ?? 'text',
    start: picked[0]!.n,
    end: picked[picked.length - 1]!.n,
  };
}

/** For tests and tools: every demo file with its regions. */
export function demoRegions(root?: string): Record<string, string[]> {
  const dir = demosDir(root);
  const out: Record<string, string[]> = {};
  for (const f of readdirSync(dir)) if (/\.(m?ts|m?js)$/.test(f)) out[f] = regionNames(readFileSync(join(dir, f), 'utf8'));
  return out;
}
