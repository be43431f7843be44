/**
 * `npm run lab -- run <scenario> --json`: stdout is one JSON object and nothing else, with
 * the keys a program reading it relies on, measured by a real run.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';

const CLI = new URL('../../src/cli/lab.ts', import.meta.url).pathname;

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr, pid: child.pid! }));
  });
}

describe.skipIf(!capability.ok)(`lab run --json${skipReason}`, () => {
  it('prints exactly one JSON object: scenario, kernel, params, observations and a timeline in seconds', async () => {
    const r = await runCli(['run', 'heartbeat', '--interval', '0.5', '--misses', '2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(Object.keys(out).slice(0, 5)).toEqual(['scenario', 'kernel', 'params', 'observations', 'timeline']);
    expect(out.scenario).toBe('heartbeat');
    expect(out.kernel).toBe(capability.kernel);
    expect(out.params).toEqual({ interval: 0.5, misses: 2 });

    const o = out.observations as Record<string, unknown>;
    expect(o.expectedSeconds).toBe(1);
    expect(typeof o.detectedAfterSeconds).toBe('number');
    expect(Math.abs((o.detectedAfterSeconds as number) - 1)).toBeLessThan(0.5);
    expect(o.serverError).toBeDefined();

    const timeline = out.timeline as Array<{ t: number; source: string; event: string }>;
    expect(timeline.length).toBeGreaterThan(5);
    for (const e of timeline) {
      expect(typeof e.t).toBe('number');
      expect(['server', 'client', 'kernel', 'wire', 'lab']).toContain(e.source);
      expect(typeof e.event).toBe('string');
    }
    // In order, from the lab's start, and the run's own events are in it.
    expect(timeline[0]!.t).toBe(0);
    expect(timeline.every((e, i) => i === 0 || e.t >= timeline[i - 1]!.t - 0.05)).toBe(true);
    expect(timeline.some((e) => e.source === 'lab' && e.event === 'cut')).toBe(true);
    expect(timeline.some((e) => e.source === 'server')).toBe(true);
    expect(labProcesses(r.pid)).toEqual([]);
  });
});
