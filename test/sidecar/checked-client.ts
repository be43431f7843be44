/**
 * The tests' WebSocket client, holding the sidecar to its protocol: every message it
 * receives is parsed with the `ServerMessage` schema (src/sidecar/protocol.ts). A message
 * that does not fit is recorded, and `expectValidMessages()` (in each file's afterEach)
 * fails the test that received it, saying which message and what was wrong.
 */
import { expect } from 'vitest';
import { ServerMessage } from '../../src/sidecar/protocol.ts';
import { TestClient } from '../helpers/server.ts';

const problems: string[] = [];
let checked = 0;

/** Checks one raw message against the schema; returns what is wrong, or null. */
export function serverMessageProblem(text: string): string | null {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return `not JSON: ${text.slice(0, 200)}`;
  }
  const r = ServerMessage.safeParse(data);
  if (r.success) return null;
  const issues = r.error.issues.map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`).join('; ');
  return `${issues} in ${text.slice(0, 300)}`;
}

export class CheckedClient extends TestClient {
  constructor(...args: ConstructorParameters<typeof TestClient>) {
    super(...args);
    this.ws.on('message', (data, isBinary) => {
      checked++;
      const problem = isBinary ? 'a binary message' : serverMessageProblem(data.toString());
      if (problem) problems.push(problem);
    });
  }
}

/** Fails if any message received so far broke the schema (and forgets them). */
export function expectValidMessages(): void {
  const found = problems.splice(0);
  expect(found, 'messages from the sidecar that do not fit ServerMessage').toEqual([]);
}

/** How many messages were checked (so a test can tell the check ran at all). */
export function checkedMessages(): number {
  return checked;
}
