import { mkdirSync, rmdirSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { build, needsBuild } from '../../src/server/main.ts';

/**
 * Builds the site into dist/ when a source is newer than it, once even when several test
 * files (in parallel workers) ask at the same time: a lock directory serialises them.
 */
const LOCK = '/tmp/keepalive-lab-build.lock';

export async function ensureBuilt(): Promise<void> {
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      // A lock older than any build is left by a killed run: take it over.
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 120_000) rmdirSync(LOCK);
      } catch {}
      await sleep(200);
    }
  }
  try {
    if (needsBuild()) await build();
  } finally {
    rmdirSync(LOCK);
  }
}
