/**
 * The page's view of the wire protocol. Types only: src/sidecar/protocol.ts also holds the
 * zod schemas the sidecar validates with, and nothing of zod must reach the browser, so
 * every import from it here is `import type` (erased when the page is bundled).
 */
import type { Action, LabState, ScenarioInfo, ServerMessage, SocketRowMessage } from '../../sidecar/protocol.ts';

export type { Action, LabState, ScenarioInfo, ServerMessage, SocketRowMessage };

export type HelloMessage = Extract<ServerMessage, { type: 'hello' }>;
export type StartedMessage = Extract<ServerMessage, { type: 'started' }>;
export type RunResult = Extract<ServerMessage, { type: 'result' }>['result'];
export type ParamSpecInfo = ScenarioInfo['params'][string];

/** One entry of a run's timeline, as live `event` messages and recordings carry it. */
export interface TimelineEvent {
  t: number;
  source: string;
  event: string;
  [key: string]: unknown;
}

/** public/recordings/<scenario>.json, as `npm run lab -- record <scenario>` writes it. */
export interface Recording {
  scenario: string;
  title?: string;
  kernel: string;
  mode: string;
  params: Record<string, number>;
  claim: string;
  theory: { summary: string; expectedSeconds?: number; [key: string]: unknown };
  observations: Record<string, unknown>;
  checks: Array<{ name: string; held: boolean; detail: string }>;
  claimHeld: boolean;
  wallSeconds: number;
  timeline: TimelineEvent[];
  recordedAt?: string;
  node?: string;
}

/** What Lab.astro knows at build time about its scenario (from src/scenarios). */
export interface BuildInfo {
  scenario: ScenarioInfo | null;
  base: string;
}
