/** The command line's contract: list, help, and clear one-line errors with exit code 2. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { scenarios } from '../../src/scenarios/index.ts';
import { labProcesses } from '../helpers/lab.ts';

const CLI = new URL('../../src/cli/lab.ts', import.meta.url).pathname;
const lab = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, NO_COLOR: '1' } });

describe('npm run lab', () => {
  it('list: one scenario a line, id first, then a description', () => {
    const r = lab('list');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(scenarios.map((s) => s.id));
    for (const l of lines) expect(l.split(/\s+/).length).toBeGreaterThan(4);
  });

  it('help <scenario> shows the claim and every parameter with its range', () => {
    const r = lab('help', 'keepalive');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--idle \(default 2; a whole number from 1 to 7200 \(seconds\)\)/);
    expect(r.stdout).toMatch(/--count/);
  });

  const bad: Array<[string[], RegExp]> = [
    [['run', 'no-such-scenario'], /unknown scenario 'no-such-scenario'; known: .*experiment-a/],
    [['run', 'keepalive', '--idle', '-5'], /--idle must be a whole number from 1 to 7200 \(seconds\); got -5/],
    [['run', 'keepalive', '--idle', 'banana'], /--idle must be a whole number from 1 to 7200 \(seconds\); got "banana"/],
    [['run', 'keepalive', '--idle'], /--idle needs a value/],
    [['run', 'keepalive', '--speed', '3'], /unknown parameter --speed/],
    [['run', 'experiment-c', '--echo-delay', '999'], /--echo-delay must be a number from 0.5 to 60/],
    [['run'], /run needs a scenario id/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [args, message] of bad) {
    it(`rejects '${args.join(' ')}' with one line, exit code 2, and starts nothing`, () => {
      const r = lab(...args);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(labProcesses(r.pid)).toEqual([]);
    });
  }
});
