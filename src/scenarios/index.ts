/** Every scenario, in the order the course meets them. */
import type { Scenario } from './types.ts';
import experimentA from './experiment-a.ts';
import experimentB from './experiment-b.ts';
import experimentBSame from './experiment-b-same-address.ts';
import experimentBTooLate from './experiment-b-too-late.ts';
import experimentC from './experiment-c.ts';
import keepalive from './keepalive.ts';
import heartbeat from './heartbeat.ts';
import hungClient from './hung-client.ts';
import keepaliveUnacked from './keepalive-unacked.ts';
import keepaliveUserTimeout from './keepalive-user-timeout.ts';
import fdExhaustion from './fd-exhaustion.ts';

export const scenarios: Scenario[] = [
  fdExhaustion,
  experimentA,
  experimentB,
  experimentBSame,
  experimentBTooLate,
  experimentC,
  keepalive,
  keepaliveUnacked,
  keepaliveUserTimeout,
  hungClient,
  heartbeat,
] as unknown as Scenario[];

export function getScenario(id: string): Scenario | undefined {
  return scenarios.find((s) => s.id === id);
}

export class UnknownScenarioError extends Error {
  override name = 'UnknownScenarioError';
  constructor(id: string) {
    super(`unknown scenario '${id}'; known: ${scenarios.map((s) => s.id).join(', ')}`);
  }
}
