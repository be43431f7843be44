/**
 * The run picture's model (src/components/lab/picture-model.ts) on the recordings of real
 * runs in public/recordings/: the marks, the detection and the packet ladder say what the
 * run did, and a long run stays a bounded drawing.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildPicture, clusterMarks, defaultConnection, ladderRows, type PictureModel } from '../../src/components/lab/picture-model.ts';
import type { Recording, TimelineEvent } from '../../src/components/lab/types.ts';

const recording = (id: string): Recording => JSON.parse(readFileSync(new URL(`../../public/recordings/${id}.json`, import.meta.url), 'utf8')) as Recording;
const picture = (id: string): { rec: Recording; m: PictureModel } => {
  const rec = recording(id);
  return { rec, m: buildPicture({ scenario: id, events: rec.timeline, theory: rec.theory, finished: true }) };
};
const packets = (m: PictureModel) => m.connections.flatMap((c) => c.packets);

describe('the picture of a recorded run', () => {
  it('keepalive: three unanswered probes after the cut, then a RST; detected when the theory says', () => {
    const { rec, m } = picture('keepalive');
    const cut = rec.timeline.find((e) => e.event === 'cut')!.t;
    const probes = packets(m).filter((p) => p.kind === 'probe');
    expect(probes).toHaveLength(rec.params.count!);
    expect(probes.every((p) => p.t > cut && !p.fromClient && p.lost)).toBe(true);
    // Probes come interval seconds apart.
    for (let i = 1; i < probes.length; i++) expect(probes[i]!.t - probes[i - 1]!.t).toBeCloseTo(rec.params.interval!, 0);
    expect(packets(m).filter((p) => p.kind === 'rst')).toHaveLength(1);
    const d = m.detection!;
    expect(d.fault!.t).toBe(cut);
    // The picture counts from the last traffic, as the theory does: the scenario's two numbers add up to it.
    const o = rec.observations as Record<string, number>;
    expect(d.detected!.seconds).toBeCloseTo(o.detectedAfterSeconds! + o.lastTrafficToCutSeconds!, 2);
    expect(d.expected!.seconds).toBe(rec.theory.expectedSeconds);
    expect(d.expected!.t).toBeCloseTo(d.anchor!.t + rec.theory.expectedSeconds!, 6);
    expect(m.bands).toEqual([expect.objectContaining({ kind: 'cut', from: cut })]);
    expect(m.summary.join(' ')).toMatch(/3 keepalive probes .*none answered/);
    expect(m.marks.filter((k) => k.lane === 'kernel' && k.kind === 'probe count')).toHaveLength(3);
  });

  it('experiment-c: the echo is retransmitted with growing gaps, all lost, then ETIMEDOUT', () => {
    const { rec, m } = picture('experiment-c');
    const re = packets(m).filter((p) => p.kind === 'retransmission');
    expect(re.length).toBeGreaterThanOrEqual(rec.params.retries2!);
    expect(re.every((p) => p.lost && !p.fromClient)).toBe(true);
    const gaps = re.slice(1).map((p, i) => p.t - re[i]!.t);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThan(gaps[i - 1]! * 1.5);
    expect(re.map((p) => p.note)).toEqual(re.map((_, i) => `retransmission ${i + 1}`));
    expect(m.detection!.detected!.seconds).toBeCloseTo((rec.observations as Record<string, number>).errorAfterWriteSeconds!, 2);
  });

  it('hung-client: the frozen client’s kernel answers every probe; the heartbeat server notices', () => {
    const { rec, m } = picture('hung-client');
    const all = packets(m);
    const probes = all.filter((p) => p.kind === 'probe');
    expect(probes.length).toBeGreaterThanOrEqual(2);
    expect(all.filter((p) => p.kind === 'probe-ack')).toHaveLength(probes.length);
    expect(m.bands.filter((b) => b.kind === 'frozen')).toHaveLength(1);
    expect(m.detection!.who).toBe('the heartbeat server');
    expect(m.detection!.detected!.seconds).toBeCloseTo((rec.observations as Record<string, number>).heartbeatDetectedAfterSeconds!, 2);
    expect(m.detection!.extra).toHaveLength(1);
    expect(m.summary.join(' ')).toMatch(/answered by the client's kernel/);
  });

  it('keepalive-unacked and heartbeat: detection measured from the same instant as the scenario', () => {
    const ku = picture('keepalive-unacked');
    expect(ku.m.detection!.detected!.seconds).toBeCloseTo((ku.rec.observations as Record<string, number>).userTimeoutDetectedAfterWriteSeconds!, 2);
    const hb = picture('heartbeat');
    expect(hb.m.detection!.detected!.seconds).toBeCloseTo((hb.rec.observations as Record<string, number>).detectedAfterLastReplySeconds!, 2);
    // The heartbeat pings are named from the server's log.
    expect(packets(hb.m).some((p) => p.kind === 'data' && p.note === 'heartbeat ping')).toBe(true);
  });

  it('keepalive-user-timeout: the long user timeout is the detection, keepalive alone and the short one are marked', () => {
    const { rec, m } = picture('keepalive-user-timeout');
    const o = rec.observations as Record<string, number>;
    expect(m.detection!.detected!.seconds).toBeCloseTo(o.detectedAfterSeconds!, 2);
    expect(m.detection!.expected!.seconds).toBe((rec.theory as Record<string, number>).expectedSeconds);
    expect(m.detection!.extra.map((x) => x.label)).toEqual([
      expect.stringMatching(/^keepalive alone would give up here: 5 s$/),
      expect.stringMatching(/^the server with the short user timeout gives up at this tick: 4 s$/),
    ]);
  });

  it('experiment-a: nothing detected, and the summary says for how long', () => {
    const { rec, m } = picture('experiment-a');
    expect(m.detection!.detected).toBeNull();
    expect(packets(m).filter((p) => p.t > m.detection!.fault!.t)).toEqual([]);
    const watched = rec.timeline[rec.timeline.length - 1]!.t - m.detection!.fault!.t;
    expect(m.summary.join(' ')).toContain(`had not noticed ${+watched.toFixed(1)} s after the cut`);
  });

  it("experiment-b-too-late: every copy of the client's FIN on the client's lane, then its kernel gives up, measured from the close", () => {
    const { rec, m } = picture('experiment-b-too-late');
    const o = rec.observations as Record<string, number>;
    const client = m.marks.filter((k) => k.lane === 'client');
    expect(client.filter((k) => k.kind === 'FIN sent')).toHaveLength(1);
    expect(client.filter((k) => k.kind === 'FIN resent').map((k) => k.label)).toEqual([
      'client kernel: FIN resent (tail loss probe)',
      ...Array.from({ length: rec.params.orphanRetries! }, (_, i) => `client kernel: FIN resent (retransmission ${i + 1})`),
    ]);
    expect(client.filter((k) => k.kind === 'gave up')).toHaveLength(1);
    const d = m.detection!;
    expect(d.who).toBe("the client's kernel");
    expect(d.anchor!.label).toBe('the close');
    expect(d.expected!.seconds).toBe(rec.theory.expectedSeconds);
    // The scenario counts from the FIN's first copy, the picture from the close a millisecond or two before it.
    expect(Math.abs(d.detected!.seconds - o.clientGaveUpAfterSeconds!)).toBeLessThan(0.02);
    expect(m.summary.join(' ')).toMatch(/The client's kernel gave up at \S+ s \(the connection forgotten, \S+ s after the close\); theory: 12\.8 s after the close\./);
    // The ladder: every copy of the FIN, from the client's own capture, lost in the cut; none
    // of them on the wire lane (they are the client kernel's marks already).
    const fins = packets(m).filter((p) => p.clientLink);
    expect(fins.map((p) => p.note)).toEqual(['', 'tail loss probe', ...Array.from({ length: rec.params.orphanRetries! }, (_, i) => `retransmission ${i + 1}`)]);
    expect(fins.every((p) => p.fromClient && p.lost && p.flags.includes('F'))).toBe(true);
    expect(m.marks.filter((k) => k.lane === 'wire' && k.t >= fins[0]!.t)).toEqual([]);
    expect(m.summary.join(' ')).toContain(`${fins.length} sent by the client's kernel into the cut (seen on the client's own link), lost`);
  });

  it('experiment-b-same-address: the server notices at the FIN that got through, measured from the close', () => {
    const { rec, m } = picture('experiment-b-same-address');
    const o = rec.observations as Record<string, number>;
    expect(m.detection!.who).toBe('the server');
    expect(Math.abs(m.detection!.detected!.seconds - o.noticedAfterCloseSeconds!)).toBeLessThan(0.02);
    expect(m.detection!.expected!.seconds).toBe(rec.theory.expectedSeconds);
    // The copies lost in the cut (from the client's capture), then the one that got through
    // (on the server's link), numbered on: the fourth retransmission.
    const conn = m.connections[0]!;
    const fins = conn.packets.filter((p) => p.fromClient && p.flags.includes('F'));
    expect(fins.map((p) => [p.note, p.lost, p.clientLink ?? false])).toEqual([
      ['', true, true],
      ['tail loss probe', true, true],
      ['retransmission 1', true, true],
      ['retransmission 2', true, true],
      ['retransmission 3', true, true],
      ['retransmission 4', false, false],
    ]);
  });

  it('fd-exhaustion: five cuts, accept() failing with EMFILE, connections piling up', () => {
    const { rec, m } = picture('fd-exhaustion');
    expect(m.bands.filter((b) => b.kind === 'cut')).toHaveLength(rec.timeline.filter((e) => e.event === 'cut').length);
    expect(m.marks.filter((k) => k.kind === 'accept failed').length).toBeGreaterThan(0);
    expect(Math.max(...m.sockets.map((s) => s.n))).toBeGreaterThanOrEqual((rec.observations as Record<string, number>).halfOpenAtFailure!);
    expect(m.connections.length).toBeGreaterThan(20);
    expect(defaultConnection(m, rec.timeline)).not.toBeNull();
  });

  it('the ladder shows the cut between the last exchange and the lost probes', () => {
    const { rec, m } = picture('keepalive');
    const conn = m.connections.find((c) => c.id === defaultConnection(m, rec.timeline))!;
    const rows = ladderRows(conn, rec.timeline);
    const kinds = rows.map((r) => (r.type === 'packet' ? r.packet.kind : r.type));
    const cutAt = rows.findIndex((r) => r.type === 'fault');
    expect(kinds.slice(0, 3)).toEqual(['syn', 'synack', 'ack']);
    expect(kinds.slice(cutAt + 1).filter((k) => k !== 'gap')).toEqual(['probe', 'probe', 'probe', 'rst']);
  });
});

describe('bounded for long runs', () => {
  // A synthetic flood: a demo that logs without end and a busy wire, 100 000 events in 60 s.
  const flood: TimelineEvent[] = [{ t: 0, source: 'lab', event: 'ready', server: '192.0.2.1', client: '192.0.2.10' }];
  for (let i = 0; i < 50_000; i++) {
    const t = (i / 50_000) * 60;
    flood.push({ t, source: 'server', event: 'frame', name: 'server', fields: { peer: '192.0.2.10:40000' } });
    flood.push({ t, source: 'wire', event: 'packet', src: '192.0.2.10:40000', dst: '192.0.2.1:7000', flags: 'P.', seq: `${i * 7 + 1}:${i * 7 + 8}`, ack: 1, length: 7 });
  }

  it('clusters keep a lane to at most width / gap shapes', () => {
    const m = buildPicture({ scenario: 'experiment-a', events: flood, finished: true });
    const width = 800;
    const x = (t: number) => (t / m.end) * width;
    for (const lane of ['server', 'wire'] as const) {
      const clusters = clusterMarks(m.marks.filter((k) => k.lane === lane), x, 12);
      expect(clusters.length).toBeLessThanOrEqual(width / 12 + 1);
      expect(clusters.reduce((a, c) => a + c.count, 0)).toBe(50_000);
    }
  });

  it('the ladder draws at most its maximum of packets and counts the rest', () => {
    const m = buildPicture({ scenario: 'experiment-a', events: flood, finished: true });
    const rows = ladderRows(m.connections[0]!, flood, 40);
    expect(rows.filter((r) => r.type === 'packet')).toHaveLength(40);
    const elided = rows.find((r) => r.type === 'elided');
    expect(elided && elided.type === 'elided' && elided.count).toBe(50_000 - 40);
  });
});
