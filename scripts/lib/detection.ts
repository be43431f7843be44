/**
 * Which observation of a scenario is its detection time: the one its claim's check compares
 * with the theory's expectedSeconds. Only scenarios that detect something are listed.
 */
import type { RunResult } from './lab-client.ts';

export const DETECTION_OBSERVATION: Record<string, string> = {
  keepalive: 'detectedAfterLastTrafficSeconds',
  heartbeat: 'detectedAfterLastReplySeconds',
  'hung-client': 'heartbeatDetectedAfterSeconds',
  'keepalive-unacked': 'userTimeoutDetectedAfterWriteSeconds',
  'experiment-c': 'errorAfterWriteSeconds',
};

/** measured − theory in ms, or null when the scenario detects nothing or nothing was measured. */
export function detectionErrorMs(result: RunResult): number | null {
  const key = DETECTION_OBSERVATION[result.scenario];
  const expected = result.theory.expectedSeconds;
  const measured = key ? result.observations[key] : undefined;
  if (typeof measured !== 'number' || typeof expected !== 'number') return null;
  return (measured - expected) * 1000;
}
