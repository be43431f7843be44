/**
 * The article's experiments and the incident, against the real kernel. Each test runs the
 * scenario exactly as `npm run lab -- run <id>` does and asserts what the kernel did.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { getScenario } from '../../src/scenarios/index.ts';
import { runScenario } from '../../src/scenarios/runner.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';

const hostOrphanRetries = readFileSync('/proc/sys/net/ipv4/tcp_orphan_retries', 'utf8').trim();
const run = (id: string, params: Record<string, unknown> = {}) => runScenario(getScenario(id)!, params);

describe.skipIf(!capability.ok)(`network experiments against the kernel${skipReason}`, () => {
  afterEach(() => {
    // Whatever the outcome, the lab left nothing running.
    expect(labProcesses(process.pid)).toEqual([]);
  });

  it('experiment a: the server keeps an ESTAB connection with no timer and notices nothing', async () => {
    const r = await run('experiment-a');
    expect(r.observations.serverState).toBe('ESTAB');
    expect(r.observations.serverTimer).toBe('none');
    expect(r.observations.serverNoticed).toBe(false);
    expect(r.observations.waitedSeconds).toBeGreaterThanOrEqual(10);
    expect(r.claimHeld).toBe(true);
  });

  it('experiment b: after reconnecting from new addresses, every old connection is still ESTAB', async () => {
    const r = await run('experiment-b', { reconnects: 2 });
    expect(r.observations.reconnects).toBe(2);
    expect(r.observations.oldConnectionsStillEstablished).toBe(true);
    expect(r.observations.oldConnectionsEstablished).toBe(2);
    expect(r.observations.newConnectionState).toBe('ESTAB');
    expect(r.claimHeld).toBe(true);
  });

  it("experiment b, same address: the client's pending FIN arrives after the restore", async () => {
    const r = await run('experiment-b-same-address');
    expect(r.observations.serverNoticed).toBe(true);
    expect(r.observations.noticedBeforeRestore).toBe(false);
    expect(r.observations.noticedAfterRestoreSeconds).toBeGreaterThanOrEqual(0);
    // At the first retransmission after the 2 s cut: 3.2 s after the close, a little late.
    expect(r.observations.noticedAfterCloseSeconds).toBeGreaterThan(3.1);
    expect(r.observations.noticedAfterCloseSeconds).toBeLessThan(3.65);
    // The client's kernel acknowledged: out of FIN-WAIT-1 at the same moment.
    expect(Math.abs((r.observations.finAcknowledgedAfterCloseSeconds as number) - (r.observations.noticedAfterCloseSeconds as number))).toBeLessThan(0.05);
    expect(r.observations.retransmissionsLost).toBe(3);
    if (capability.tcpdump && capability.mode === 'root' && capability.bridge) expect(r.observations.finCopiesLost).toBe(5);
    expect(r.claimHeld).toBe(true);
  });

  it("experiment b, back too late: the client's kernel retransmits the FIN, gives up, and the server never learns", async () => {
    const r = await run('experiment-b-too-late');
    const o = r.observations;
    // 0.4, 0.8, 1.6, 3.2 and 6.4 s after the close, each a little late.
    const times = o.finRetransmissionsSeconds as number[];
    expect(times).toHaveLength(5);
    [0.4, 0.8, 1.6, 3.2, 6.4].forEach((t, i) => {
      expect(times[i]! - t, `retransmission ${i + 1} at ${times[i]} s`).toBeGreaterThanOrEqual(-0.01);
      expect(times[i]! - t, `retransmission ${i + 1} at ${times[i]} s`).toBeLessThan(0.05 + t / 8);
    });
    // Gone at the sixth timeout: 12.6 s (tcp_orphan_retries 5 as a time) after the first retransmission had passed.
    expect(o.clientGaveUp).toBe(true);
    expect((o.clientGaveUpAfterSeconds as number) - times[0]!).toBeGreaterThanOrEqual(12.6 - 0.01);
    expect(o.clientGaveUpAfterSeconds).toBeLessThan(12.8 * 1.125 + 0.05);
    if (capability.tcpdump && capability.mode === 'root' && capability.bridge) {
      expect(o.finCopiesSent).toBe(7);
      expect(o.tailLossProbeSeconds).toBeGreaterThan(0.19);
      expect(o.tailLossProbeSeconds).toBeLessThan(0.3);
    }
    expect(o.serverState).toBe('ESTAB');
    expect(o.serverNoticed).toBe(false);
    expect(r.claimHeld).toBe(true);
    // The orphan retries were the lab's alone: the host's setting is untouched.
    expect(readFileSync('/proc/sys/net/ipv4/tcp_orphan_retries', 'utf8').trim()).toBe(hostOrphanRetries);
  });

  // Node never reports a failed accept(): only strace shows the EMFILE (CI installs it).
  it.skipIf(!capability.strace)(`fd-exhaustion: half-open connections pile up until accept fails with EMFILE${capability.strace ? '' : ' [skipped: strace is not installed]'}`, async () => {
    const r = await run('fd-exhaustion');
    expect(r.observations.fdLimit).toBe(48);
    expect(r.observations.acceptError).toBe('EMFILE');
    expect(r.observations.halfOpenAtFailure).toBeGreaterThan(16);
    expect(r.observations.newClientServed).toBe(false);
    expect(r.claimHeld).toBe(true);
  });
});
