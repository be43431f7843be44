/**
 * SIGKILL of the server mid-run, then a restart: what the dead labs left is found and
 * removed at start, and nothing remains (no process, namespace, bridge, veth or
 * temporary file). `npm start` itself runs as a child process here.
 *
 * A lab's own processes die with the server (pdeathsig), so to see the sweep remove
 * something, the test adds what pdeathsig cannot catch: a tagged process in a namespace of
 * its own that is not the server's child, as a lab process that lost its pdeathsig is.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';
import { describeSweep, sweepAtStart } from '../../src/server/sweep.ts';
import { startServerChild } from '../helpers/server.ts';
import { CheckedClient, expectValidMessages } from './checked-client.ts';

// Every message the sidecar sent in a test must fit its schema (src/sidecar/protocol.ts).
afterEach(() => expectValidMessages());

/** Every process holding network namespace `ns` (as /proc/<pid>/ns/net or an open descriptor). */
function holdersOf(ns: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/ns/net`) === ns) {
        pids.push(Number(d));
        continue;
      }
      for (const fd of readdirSync(`/proc/${d}/fd`)) {
        if (readlinkSync(`/proc/${d}/fd/${fd}`) === ns) {
          pids.push(Number(d));
          break;
        }
      }
    } catch {
      /* gone, or not ours to read */
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(test: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!test() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return test();
}

describe.skipIf(!capability.ok)(`the start-up sweep${skipReason}`, () => {
  it('after SIGKILL mid-run, the start-up sweep removes what the dead labs left and reports it; nothing remains', async () => {
    // The server and its labs write temporary files (if any) here, so that we can see them.
    const tmp = mkdtempSync(join(tmpdir(), 'keepalive-lab-sweep-'));
    const env = { ...process.env, TMPDIR: tmp };
    const first = await startServerChild('main', [], env);
    const c = new CheckedClient(first.port);
    let escaped: ReturnType<typeof spawn> | null = null;
    let second: Awaited<ReturnType<typeof startServerChild>> | null = null;
    try {
      await c.next('hello');
      c.send({ type: 'run', scenario: 'experiment-a', params: { wait: 60 } });
      await c.next('started');
      // Mid-run, with the client cut off (the bridge's port toward the client disabled, where the lab has a bridge).
      await c.next('event', (m) => m.event.source === 'lab' && m.event.event === 'cut');
      const procs = labProcesses(first.pid);
      expect(procs.length).toBeGreaterThanOrEqual(5); // three namespace holders, the demos, ss
      const namespaces = [...new Set(procs.map((p) => readlinkSync(`/proc/${p.pid}/ns/net`)))];
      expect(namespaces.length).toBe(3); // the anchor, the server host, the client host
      if (capability.bridge && capability.mode === 'root') {
        const ports = procs
          .filter((p) => p.cmd.startsWith('sleep'))
          .map((p) => spawnSync('nsenter', ['--target', String(p.pid), '--net', '--', 'bridge', 'link', 'show'], { encoding: 'utf8' }).stdout)
          .join('');
        expect(ports).toMatch(/path0@\S+: .* master srv0 state disabled/);
      }

      // A lab process that escaped its owner's death (its pdeathsig lost): tagged like the
      // others, in a network namespace of its own, and not a child of the server.
      const tag = procs[0]!.tag;
      escaped = spawn('unshare', ['--net', '--', 'sleep', '600'], { env: { ...env, KEEPALIVE_LAB: `${tag}-escaped` }, stdio: 'ignore' });
      await until(() => escaped!.pid !== undefined && readlinkSync(`/proc/${escaped!.pid}/ns/net`) !== readlinkSync('/proc/self/ns/net'), 3000);
      const escapedNs = readlinkSync(`/proc/${escaped.pid}/ns/net`);

      first.child.kill('SIGKILL');
      await first.exited;
      // The kernel kills the lab's own processes (pdeathsig); the escaped one stays.
      expect(await until(() => procs.every((p) => !alive(p.pid)), 5000)).toBe(true);
      expect(alive(escaped.pid!)).toBe(true);
      expect(labProcesses(first.pid).map((p) => p.pid)).toEqual([escaped.pid]);

      // The sweep npm start runs first thing, called here at once: any process on this
      // machine that starts a server or a CLI run sweeps too (other tests may), and would
      // take the escaped process first if we waited for a new server's start-up.
      const report = await sweepAtStart();
      expect(report.remaining).toEqual([]);
      expect(report.removed.map((p) => p.pid)).toContain(escaped.pid);
      const lines = describeSweep(report).join('\n');
      expect(lines).toMatch(/^Start-up sweep: removed \d+ process(es)? of \d+ labs? an earlier run left behind, holding \d+ network namespaces?/);
      expect(lines).toContain(`pid ${escaped.pid} (lab ${tag.split(':').slice(2).join(':')}-escaped, ${escapedNs}): sleep 600`);
      expect(alive(escaped.pid!)).toBe(false);

      // npm start again: it sweeps (and says so), and nothing is left of the dead labs.
      second = await startServerChild('main', [], env);
      expect(second.output()).toMatch(/^Start-up sweep: /m);
      expect(labProcesses(first.pid)).toEqual([]);
      for (const ns of [...namespaces, escapedNs]) expect(await until(() => holdersOf(ns).length === 0, 3000)).toBe(true);
      // Nothing in the host's own namespace, either: no veth or bridge of ours.
      expect(spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout).not.toMatch(/\b(srv0|cli0|path0|hold0p?)\b/);
      expect(readdirSync(tmp)).toEqual([]);

      // The restarted server works: a new lab runs.
      const c2 = new CheckedClient(second.port);
      await c2.next('hello');
      c2.send({ type: 'run', scenario: 'experiment-a', params: { wait: 2 } });
      expect((await c2.next('result', () => true, 60_000)).result.claimHeld).toBe(true);
      c2.close();
    } finally {
      c.close();
      if (escaped?.pid && alive(escaped.pid)) escaped.kill('SIGKILL');
      first.child.kill('SIGKILL');
      if (second) {
        second.child.kill('SIGTERM');
        expect((await second.exited).code).toBe(0);
        expect(labProcesses(second.pid)).toEqual([]);
      }
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('npm start prints what its start-up sweep found: nothing, after a clean stop', async () => {
    const child = await startServerChild('main', []);
    try {
      expect(child.output()).toMatch(/Start-up sweep: nothing left behind by earlier runs\./);
    } finally {
      child.child.kill('SIGTERM');
      await child.exited;
    }
  });
});
