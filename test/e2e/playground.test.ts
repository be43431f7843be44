/**
 * End to end: Debian's chromium drives the built course against `npm start` (the real
 * server process, with its sidecar and real labs), and against a static host with no sidecar
 * at all, where the lab must play its recording.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveStatic } from '../../src/server/static.ts';
import { probeCapability } from '../../src/lab/lab.ts';
import { chromiumAvailable, CHROMIUM, launch } from '../helpers/browser.ts';
import { freePort } from '../helpers/server.ts';
import { ensureBuilt } from '../helpers/site.ts';

const ROOT = join(import.meta.dirname, '../..');
const capability = await probeCapability();
const reason = !chromiumAvailable ? `no chromium at ${CHROMIUM}` : !capability.ok ? `no lab on this machine: ${capability.reason}` : '';

/** `npm start` without npm in between, so that the test owns the process it stops. */
async function startCourse(port: number): Promise<{ child: ChildProcess; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [join(ROOT, 'src/server/main.ts'), '--port', String(port), '--no-build'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm start printed no URL in 20 s:\n${output}`)), 20_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes(`http://127.0.0.1:${port}/`)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`npm start exited with ${code}:\n${output}`)));
  });
  return {
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** The text an xterm shows (its DOM renderer keeps one element per row; the last rows only). */
async function terminalText(page: Page, label: string): Promise<string> {
  const region = page.getByRole('region', { name: label });
  // Terminals open when they come into view, as a reader scrolls to them.
  await region.scrollIntoViewIfNeeded();
  return region.locator('.xterm-rows').innerText();
}

/** The socket table's rows as [state, local, peer, send-q, recv-q, timer]. */
async function socketRows(page: Page): Promise<string[][]> {
  const table = page.getByRole('table', { name: 'Server kernel: TCP sockets (ss)' });
  return table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td,th')].map((c) => (c.textContent ?? '').trim())));
}

describe.skipIf(reason !== '')(`the playground in a browser${reason ? ` (skipped: ${reason})` : ''}`, () => {
  let context: BrowserContext;
  let closeBrowser: () => Promise<void>;
  let course: Awaited<ReturnType<typeof startCourse>>;
  let port: number;
  let staticHost: Server;
  let staticPort: number;

  beforeAll(async () => {
    await ensureBuilt();
    port = await freePort();
    course = await startCourse(port);
    staticPort = await freePort();
    staticHost = createServer((req, res) => serveStatic(join(ROOT, 'dist'), req, res));
    await new Promise<void>((r) => staticHost.listen(staticPort, '127.0.0.1', () => r()));
    ({ context, close: closeBrowser } = await launch());
  }, 180_000);

  afterAll(async () => {
    await closeBrowser?.();
    await course?.stop();
    await new Promise<void>((r) => (staticHost ? staticHost.close(() => r()) : r()));
  });

  it('experiment a: run it, the cut comes, the server keeps its ESTAB row and logs nothing about it', async () => {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/lab/experiment-a/`);
    await expect.poll(() => page.locator('[data-lab="status"]').innerText(), { timeout: 15_000 }).toMatch(/live/i);

    const wait = page.getByLabel(/^wait/);
    await wait.fill('4');
    await page.getByRole('button', { name: 'Run', exact: true }).click();

    // The server's terminal shows its own log: listening, then the client's accept.
    await expect.poll(() => terminalText(page, 'Server terminal'), { timeout: 20_000 }).toMatch(/accept/);
    // The scenario cuts the client's link; the buttons follow the state.
    const restore = page.getByRole('button', { name: 'Restore network', exact: true });
    await expect.poll(() => restore.isEnabled(), { timeout: 20_000 }).toBe(true);
    expect(await page.getByRole('button', { name: 'Cut network', exact: true }).isEnabled()).toBe(false);
    const serverLogAtCut = await terminalText(page, 'Server terminal');

    // After the cut the row is still ESTAB with no timer, for as long as we watch.
    const estab = async () => (await socketRows(page)).filter((r) => r[0] === 'ESTAB');
    await expect.poll(async () => (await estab()).length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    await page.waitForTimeout(2500);
    const rows = await estab();
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows.some((r) => r[1].includes('192.0.2.1:') && r[5] === '—')).toBe(true);

    // The result: the claim held, measured on this kernel.
    const result = page.getByRole('region', { name: 'Result' });
    await expect.poll(() => result.isVisible(), { timeout: 30_000 }).toBe(true);
    const text = await result.innerText();
    expect(text).toContain('The claim held');
    expect(text).toMatch(/Measured on kernel Linux \S+/);
    // The server logged nothing between the cut and the end: no close, no error.
    const after = (await terminalText(page, 'Server terminal')).slice(serverLogAtCut.length);
    expect(after).not.toMatch(/\b(close|error)\b/);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('keepalive: the server detects the dead client, and the result shows measured against theory', async () => {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${port}/lab/keepalive/`);
    await expect.poll(() => page.locator('[data-lab="status"]').innerText(), { timeout: 15_000 }).toMatch(/live/i);
    await page.getByRole('button', { name: 'Run', exact: true }).click();

    // Probes are counted in the timer column while they go unanswered.
    await expect.poll(async () => (await socketRows(page)).some((r) => r[0] === 'ESTAB' && /keepalive/.test(r[5])), { timeout: 20_000 }).toBe(true);
    const result = page.getByRole('region', { name: 'Result' });
    await expect.poll(() => result.isVisible(), { timeout: 40_000 }).toBe(true);
    const text = await result.innerText();
    expect(text).toContain('The claim held');
    expect(text).toMatch(/measured \d+\.\d+ s, theory 5\.000 s/);
    await expect.poll(() => terminalText(page, 'Server terminal'), { timeout: 5000 }).toMatch(/ETIMEDOUT/);
    await page.close();
  });

  it('with no sidecar (a static host), the lab plays its recording and says it is one', async () => {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${staticPort}/lab/experiment-a/`);
    const status = page.locator('[data-lab="status"]');
    await expect.poll(() => status.innerText(), { timeout: 20_000 }).toMatch(/^Recorded run \(Linux \S+, .+\) — not live$/);
    expect(await page.locator('[data-lab="status-detail"]').innerText()).toMatch(/npm start/);
    // Faults cannot be injected into a recording.
    expect(await page.getByRole('button', { name: 'Cut network', exact: true }).isEnabled()).toBe(false);

    const started = Date.now();
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await expect.poll(() => terminalText(page, 'Server terminal'), { timeout: 10_000 }).toMatch(/accept/);
    await expect.poll(async () => (await socketRows(page)).some((r) => r[0] === 'ESTAB'), { timeout: 10_000 }).toBe(true);
    const result = page.getByRole('region', { name: 'Result' });
    await expect.poll(() => result.isVisible(), { timeout: 40_000 }).toBe(true);
    // Real timing: the recorded run watched the server for 10 s after the cut.
    expect((Date.now() - started) / 1000).toBeGreaterThan(9);
    const text = await result.innerText();
    expect(text).toContain('(recorded run)');
    expect(text).toMatch(/Recorded on Linux \S+ .*Not a live run\./);
    await page.close();
  });
});
