/**
 * The side-by-side table of <Compare />: rows are faults, columns are strategies, and each
 * measured cell comes from one observation of one scenario's run (live or recorded).
 * Plain data and functions: Compare.astro fills in the theory at build time, the page
 * (./compare.ts) fills in the runs, the tests check the mapping on the recordings.
 */

import { retransmissionTimeoutSeconds } from '../../scenarios/common.ts';

export type FaultId = 'idle' | 'in-flight' | 'frozen';
export type StrategyId = 'none' | 'keepalive' | 'user-timeout' | 'heartbeat';

export const FAULTS: ReadonlyArray<{ id: FaultId; label: string; detail: string }> = [
  { id: 'idle', label: 'Peer cut off, connection idle', detail: 'the network is cut after the last exchange' },
  { id: 'in-flight', label: 'Peer cut off, data in flight', detail: 'the server writes to the client after the cut' },
  { id: 'frozen', label: 'Peer process frozen', detail: 'SIGSTOP: the client’s kernel still answers' },
];

export const STRATEGIES: ReadonlyArray<{ id: StrategyId; label: string }> = [
  { id: 'none', label: 'No keepalive' },
  { id: 'keepalive', label: 'SO_KEEPALIVE' },
  { id: 'user-timeout', label: 'SO_KEEPALIVE + TCP_USER_TIMEOUT' },
  { id: 'heartbeat', label: 'Heartbeat' },
];

/** The scenarios the table runs, in the order it starts them. */
export const COMPARE_SCENARIOS = ['experiment-c', 'keepalive-unacked', 'hung-client', 'keepalive', 'keepalive-user-timeout', 'heartbeat', 'experiment-a'] as const;

export interface CellSpec {
  fault: FaultId;
  strategy: StrategyId;
  scenario: string;
  /** Observation (boolean): did the server notice? */
  detectedFlag: string;
  /** Observation (seconds) from the instant in `since` to the detection. */
  secondsKey?: string;
  /** An observation (seconds) to add to `secondsKey`, to count from `since`. */
  plusKey?: string;
  /** Observation (seconds): how long the run watched, when the server did not notice. */
  watchedKey?: string;
  /** The theory key with the predicted detection time (from the run's theory). */
  theoryKey?: string;
  /** What the theory says where it predicts no detection in the run. */
  theoryText?: string;
  /** What the seconds count from. */
  since: string;
  /** Shown under the figure: how the run differs from a default machine. */
  note?: string;
}

const RETRIES_15 = `${retransmissionTimeoutSeconds(15).toFixed(1)} s`;

/** Cells no scenario measures say why, instead of a number. */
export interface EmptyCell {
  fault: FaultId;
  strategy: StrategyId;
  note: string;
}

export const CELLS: CellSpec[] = [
  { fault: 'idle', strategy: 'none', scenario: 'experiment-a', detectedFlag: 'serverNoticed', watchedKey: 'waitedSeconds', theoryText: 'never', since: 'the cut' },
  { fault: 'idle', strategy: 'keepalive', scenario: 'keepalive', detectedFlag: 'serverError', secondsKey: 'detectedAfterSeconds', plusKey: 'lastTrafficToCutSeconds', theoryKey: 'expectedSeconds', since: 'the last traffic' },
  { fault: 'idle', strategy: 'user-timeout', scenario: 'keepalive-user-timeout', detectedFlag: 'serverError', secondsKey: 'detectedAfterSeconds', theoryKey: 'expectedSeconds', since: 'the last traffic', note: 'the first probe tick past the user timeout: the probe count is ignored' },
  { fault: 'idle', strategy: 'heartbeat', scenario: 'heartbeat', detectedFlag: 'serverError', secondsKey: 'detectedAfterLastReplySeconds', theoryKey: 'expectedSeconds', since: 'the last heartbeat reply' },
  { fault: 'in-flight', strategy: 'none', scenario: 'experiment-c', detectedFlag: 'serverError', secondsKey: 'errorAfterWriteSeconds', theoryKey: 'expectedSeconds', since: 'the write', note: `tcp_retries2 = 5 in this lab; with Linux's 15 at least ${RETRIES_15}` },
  { fault: 'in-flight', strategy: 'keepalive', scenario: 'keepalive-unacked', detectedFlag: 'keepaliveFired', watchedKey: 'keepaliveWatchedAfterWriteSeconds', theoryText: `only the retransmission timeout, at least ${RETRIES_15} with tcp_retries2 = 15`, since: 'the write' },
  { fault: 'in-flight', strategy: 'user-timeout', scenario: 'keepalive-unacked', detectedFlag: 'userTimeoutDetected', secondsKey: 'userTimeoutDetectedAfterWriteSeconds', theoryKey: 'expectedSeconds', since: 'the write' },
  { fault: 'in-flight', strategy: 'heartbeat', scenario: 'keepalive-unacked', detectedFlag: 'heartbeatDetected', secondsKey: 'heartbeatDetectedAfterSeconds', theoryKey: 'heartbeatExpectedSeconds', since: 'the last heartbeat reply' },
  { fault: 'frozen', strategy: 'none', scenario: 'hung-client', detectedFlag: 'noneDetected', watchedKey: 'keepaliveWatchedSeconds', theoryText: 'never: nothing asks the client', since: 'the freeze' },
  { fault: 'frozen', strategy: 'keepalive', scenario: 'hung-client', detectedFlag: 'keepaliveDetected', watchedKey: 'keepaliveWatchedSeconds', theoryText: 'never: the client’s kernel answers the probes', since: 'the freeze' },
  { fault: 'frozen', strategy: 'user-timeout', scenario: 'hung-client', detectedFlag: 'userTimeoutDetected', watchedKey: 'keepaliveWatchedSeconds', theoryText: 'never: the client’s kernel acknowledges everything', since: 'the freeze' },
  { fault: 'frozen', strategy: 'heartbeat', scenario: 'hung-client', detectedFlag: 'heartbeatDetected', secondsKey: 'heartbeatDetectedAfterSeconds', theoryKey: 'expectedSeconds', since: 'the last heartbeat reply' },
];

/** Every cell is measured now; kept for a cell that no scenario can measure. */
export const EMPTY_CELLS: EmptyCell[] = [];

export type CellResult =
  | { state: 'detected'; seconds: number | null; theorySeconds: number | null; since: string; note?: string }
  | { state: 'not-detected'; watched: number | null; theoryText: string | null; since: string; note?: string }
  | { state: 'unknown'; why: string };

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** A cell from a run's observations and theory. */
export function cellResult(spec: CellSpec, observations: Record<string, unknown>, theory: Record<string, unknown> | null): CellResult {
  if (!Object.hasOwn(observations, spec.detectedFlag)) return { state: 'unknown', why: `the ${spec.scenario} run has no observation ${spec.detectedFlag}` };
  const flag = observations[spec.detectedFlag];
  // serverError: a string (the error) when the server noticed, null when not.
  const detected = typeof flag === 'boolean' ? flag : flag !== null && flag !== undefined;
  if (detected) {
    let seconds = spec.secondsKey ? num(observations[spec.secondsKey]) : null;
    if (seconds !== null && spec.plusKey) {
      const plus = num(observations[spec.plusKey]);
      seconds = plus === null ? null : Math.round((seconds + plus) * 1000) / 1000;
    }
    const theorySeconds = spec.theoryKey && theory ? num(theory[spec.theoryKey]) : null;
    return { state: 'detected', seconds, theorySeconds, since: spec.since, ...(spec.note ? { note: spec.note } : {}) };
  }
  return { state: 'not-detected', watched: spec.watchedKey ? num(observations[spec.watchedKey]) : null, theoryText: spec.theoryText ?? null, since: spec.since, ...(spec.note ? { note: spec.note } : {}) };
}

const secs = (s: number) => `${s < 10 ? +s.toFixed(2) : +s.toFixed(1)} s`;

/** "detected after 5.06 s (theory 5 s)", "not detected in 10.2 s". */
export function cellText(r: CellResult): { main: string; sub: string } {
  switch (r.state) {
    case 'detected':
      return {
        main: r.seconds === null ? 'detected' : `detected after ${secs(r.seconds)}`,
        sub: [r.seconds !== null ? `since ${r.since}` : '', r.theorySeconds !== null ? `theory ${secs(r.theorySeconds)}` : '', r.note ?? ''].filter(Boolean).join('; '),
      };
    case 'not-detected':
      return {
        main: r.watched === null ? 'not detected' : `not detected in ${secs(r.watched)}`,
        sub: [r.watched !== null ? `since ${r.since}` : '', r.theoryText ? `theory: ${r.theoryText}` : '', r.note ?? ''].filter(Boolean).join('; '),
      };
    case 'unknown':
      return { main: 'no result', sub: r.why };
  }
}
