/**
 * Build time only (Lab.astro's frontmatter): a scenario's title, claim and parameters from
 * src/scenarios, so a lesson page shows them before any lab server answers, and a lesson
 * that names an unknown scenario fails the build. The page gets plain JSON; none of this
 * module reaches the browser.
 */
import { scenarios } from '../../scenarios/index.ts';
import { resolveParams } from '../../scenarios/params.ts';
import type { ScenarioInfo } from './types.ts';

export function scenarioInfo(id: string): ScenarioInfo {
  const s = scenarios.find((x) => x.id === id);
  if (!s) throw new Error(`<Lab scenario="${id}">: unknown scenario; known: ${scenarios.map((x) => x.id).join(', ')}`);
  const defaults = resolveParams(s.params, {});
  return { id: s.id, title: s.title, description: s.description, claim: s.claim, params: s.params, expectedSeconds: s.expectedDuration(defaults) };
}
