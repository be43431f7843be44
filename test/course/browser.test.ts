/**
 * The course's components in a real browser (Debian's chromium): the picture of a run
 * under <Lab> drawn from a live run and from a replayed recording, the page's bounds on a
 * long run, <Compare /> live and recorded, and the JavaScript a lesson page loads.
 *
 * Recorded mode needs a site without a lab server: dist/ served as plain files.
 */
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CELLS } from '../../src/components/compare/table.ts';
import { serveStatic } from '../../src/server/static.ts';
import { chromiumAvailable, launch } from '../helpers/browser.ts';
import { capability, labProcesses, skipReason } from '../helpers/lab.ts';
import { freePort, startTestServer } from '../helpers/server.ts';
import { ensureBuilt } from '../helpers/site.ts';

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url));
/** The budget for all the JavaScript of a lesson page with a lab, xterm included, gzipped. */
const JS_BUDGET = 150 * 1024;

let browser: { context: BrowserContext; close: () => Promise<void> } | null = null;
let staticServer: Server | null = null;
let staticPort = 0;

async function page(): Promise<Page> {
  const p = await browser!.context.newPage();
  p.on('pageerror', (e) => {
    throw e;
  });
  return p;
}

/** Waits until the lab knows whether it runs live or replays. */
async function labMode(p: Page): Promise<string> {
  await p.locator('[data-lab-root]').first().scrollIntoViewIfNeeded();
  await p.waitForFunction(() => ['live', 'replay', 'none'].includes((document.querySelector('[data-lab-root]') as HTMLElement).dataset.mode ?? ''), null, { timeout: 20_000 });
  return (await p.locator('[data-lab-root]').first().getAttribute('data-mode'))!;
}

async function runToResult(p: Page, timeout: number): Promise<void> {
  await p.locator('[data-lab-root] button[data-action="run"]').first().click();
  await p.waitForFunction(() => !document.querySelector('[data-lab="result"]')!.hasAttribute('hidden'), null, { timeout });
  // The last render of the picture follows the result.
  await p.waitForTimeout(500);
}

describe.skipIf(!chromiumAvailable)('the course in a browser', () => {
  beforeAll(async () => {
    await ensureBuilt();
    staticPort = await freePort();
    staticServer = createServer((req, res) => serveStatic(DIST, req, res));
    await new Promise<void>((r) => staticServer!.listen(staticPort, '127.0.0.1', r));
    browser = await launch();
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => staticServer?.close(r));
  });

  it('a lesson page with a lab loads less than 150 KB of JavaScript (gzipped), the lazy terminals included', async () => {
    const p = await page();
    const sizes = new Map<string, number>();
    p.on('response', async (res) => {
      if (!/\.m?js(\?|$)/.test(new URL(res.url()).pathname)) return;
      try {
        sizes.set(res.url(), gzipSync(await res.body(), { level: 9 }).length);
      } catch {
        /* a response without a body */
      }
    });
    await p.goto(`http://127.0.0.1:${staticPort}/course/keepalive/`);
    await labMode(p);
    // xterm is loaded when the lab comes into view; the search UI when the page is idle. A reader scrolls through it all.
    await p.waitForSelector('[data-lab-root] .xterm', { timeout: 20_000 });
    await p.evaluate(async () => {
      for (let y = 0; y < document.body.scrollHeight; y += 600) {
        window.scrollTo(0, y);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
    await p.waitForTimeout(2000);
    await p.waitForLoadState('networkidle');
    const total = [...sizes.values()].reduce((a, b) => a + b, 0);
    expect(sizes.size).toBeGreaterThan(1);
    expect(total, [...sizes].map(([u, n]) => `${new URL(u).pathname} ${n}`).join(', ')).toBeLessThan(JS_BUDGET);
    await p.close();
  });

  it('replays the incident and draws it, within bounds', async () => {
    const p = await page();
    await p.goto(`http://127.0.0.1:${staticPort}/lab/fd-exhaustion/`);
    expect(await labMode(p)).toBe('replay');
    await runToResult(p, 120_000);
    const pic = p.locator('[data-lab-root] .lab-picture');
    const summary = await pic.locator('.lab-pic-summary').innerText();
    expect(summary).toMatch(/cut 5 times/);
    expect(summary).toMatch(/accept\(\) failed \d+ times?, first at/);
    // The timeline is an image labelled by the summary; the ladder is labelled too.
    const timeline = pic.locator('svg.lab-pic-timeline');
    expect(await timeline.getAttribute('role')).toBe('img');
    const labelledBy = (await timeline.getAttribute('aria-labelledby'))!;
    expect(await p.locator(`#${labelledBy}`).innerText()).toBe(summary);
    expect(await pic.locator('svg.lab-pic-ladder').getAttribute('aria-label')).toMatch(/^Packet ladder of the connection from 192\.0\.2\.\d+:\d+ to 192\.0\.2\.1:7000: \d+ packets/);
    // 31 connections, one ladder at a time: the rest are a choice away.
    expect(await pic.locator('select option').count()).toBeGreaterThan(20);
    // Bounded: 453 events drawn with a bounded number of shapes; the lists keep at most 400 items.
    expect(await pic.locator('svg *').count()).toBeLessThan(1500);
    expect(await p.locator('[data-lab="wire"] li').count()).toBeLessThanOrEqual(400);
    expect(await p.locator('[data-lab="log"] li').count()).toBeLessThanOrEqual(400);
    await pic.locator('details.lab-pic-details summary').first().click();
    const rows = await pic.locator('details.lab-pic-details').first().locator('tbody tr').count();
    expect(rows).toBeGreaterThan(10);
    expect(rows).toBeLessThanOrEqual(153);

    // The terminals without a mouse, and without eyes: the region is a tab stop whose keys
    // scroll the terminal (not the page), with a visible focus ring; a screen reader reads
    // the lines from its log (xterm's own rows are aria-hidden).
    const server = p.getByRole('region', { name: 'Server terminal' });
    const lines = await server.getByRole('log', { name: 'Server output' }).locator('li').allInnerTexts();
    expect(lines.length).toBeGreaterThan(40);
    expect(lines.length).toBeLessThanOrEqual(100);
    expect(lines[0]).toMatch(/^\d+\.\d+ listen addr=0\.0\.0\.0:7000/);
    expect(lines.join('\n')).not.toMatch(/\x1b/);
    await p.locator('[data-lab-root] button[data-action="run"]').focus();
    const focused = () => server.evaluate((el) => el === document.activeElement);
    for (let i = 0; i < 30 && !(await focused()); i++) await p.keyboard.press('Tab');
    expect(await focused()).toBe(true);
    expect(await server.locator('.lab-term-host').evaluate((el) => getComputedStyle(el).outlineStyle)).toBe('solid');
    const squash = (t: string) => t.replace(/\s+/g, '');
    const shown = async () => squash(await server.locator('.xterm-rows').innerText());
    const pageY = await p.evaluate(() => window.scrollY);
    await p.keyboard.press('End');
    await expect.poll(shown).toContain(squash(lines.at(-1)!));
    await p.keyboard.press('Home');
    await expect.poll(shown).toContain(squash(lines[0]!));
    const top = await shown();
    expect(top).not.toContain(squash(lines.at(-1)!));
    await p.keyboard.press('PageDown');
    await expect.poll(shown).not.toBe(top);
    await p.keyboard.press('ArrowUp');
    await p.keyboard.press('PageUp');
    await expect.poll(shown).toBe(top);
    expect(await p.evaluate(() => window.scrollY)).toBe(pageY);
    await p.close();
  }, 180_000);

  it('<Compare /> without a lab server shows the recordings, marked as recorded', async () => {
    const p = await page();
    await p.goto(`http://127.0.0.1:${staticPort}/course/side-by-side/`);
    const root = p.locator('[data-compare-root]');
    await root.scrollIntoViewIfNeeded();
    await p.waitForFunction(() => (document.querySelector('[data-compare-root]') as HTMLElement | null)?.dataset.mode === 'replay', null, { timeout: 20_000 });
    expect(await root.locator('caption').innerText()).toMatch(/Recorded runs, not live: Linux \S+/);
    const cells = root.locator('td[data-cell]');
    // Every cell of the table is measured (src/components/compare/table.ts), each from its recording.
    expect(await cells.count()).toBe(CELLS.length);
    for (const td of await cells.all()) {
      expect(await td.getAttribute('data-state')).toMatch(/^(detected|not-detected)$/);
      expect(await td.locator('.cmp-recorded').innerText()).toBe('recorded');
    }
    expect(await root.locator('td[data-cell="idle:keepalive"] .cmp-main').innerText()).toMatch(/^detected after \d+(\.\d+)? s$/);
    expect(await root.locator('td[data-cell="frozen:keepalive"] .cmp-main').innerText()).toMatch(/^not detected in \d+(\.\d+)? s$/);
    await p.close();
  });

  describe.skipIf(!capability.ok)(`live${skipReason}`, () => {
    let server: Awaited<ReturnType<typeof startTestServer>> | null = null;
    beforeAll(async () => {
      server = await startTestServer();
    });
    afterAll(async () => {
      // The browser keeps its HTTP connections to the server open: close it first, or the server waits for them.
      await browser?.close();
      browser = null;
      await server?.close();
      expect(labProcesses(process.pid)).toEqual([]);
    }, 120_000);

    it('draws a live keepalive run from its events: probes, the cut, detection next to the theory', async () => {
      const p = await page();
      await p.goto(`http://127.0.0.1:${server!.port}/lab/keepalive/`);
      expect(await labMode(p)).toBe('live');
      await runToResult(p, 120_000);
      const pic = p.locator('[data-lab-root] .lab-picture');
      const summary = await pic.locator('.lab-pic-summary').innerText();
      expect(summary).toMatch(/3 keepalive probes \([\d.]+ s, [\d.]+ s, [\d.]+ s\), none answered/);
      const m = /noticed at [\d.]+ s \(error ETIMEDOUT, ([\d.]+) s after the last traffic\); theory: 5 s after the last traffic/.exec(summary);
      expect(m, summary).not.toBeNull();
      expect(Math.abs(Number(m![1]) - 5)).toBeLessThanOrEqual(0.6);
      // The ladder: three probes and the RST, all lost in the cut, below the cut line.
      const ladder = pic.locator('svg.lab-pic-ladder');
      expect(await ladder.locator('.lab-pic-pkt.lab-pic-tone-probe.lab-pic-lost').count()).toBe(3);
      expect(await ladder.locator('.lab-pic-pkt.lab-pic-tone-bad.lab-pic-lost').count()).toBe(1);
      expect(await ladder.locator('.lab-pic-fault-label').first().textContent()).toMatch(/network cut/);
      // The timeline marks the theory and the detection.
      expect(await pic.locator('svg.lab-pic-timeline .lab-pic-expected').count()).toBe(1);
      expect(await pic.locator('svg.lab-pic-timeline .lab-pic-detected').count()).toBe(1);
      // Both themes colour it from Starlight's variables: the probe colour changes with the theme.
      const probeStroke = () => ladder.locator('.lab-pic-tone-probe line').first().evaluate((el) => getComputedStyle(el).stroke);
      await p.evaluate(() => (document.documentElement.dataset.theme = 'dark'));
      const dark = await probeStroke();
      await p.evaluate(() => (document.documentElement.dataset.theme = 'light'));
      const light = await probeStroke();
      expect(dark).toMatch(/^rgb/);
      expect(light).toMatch(/^rgb/);
      expect(light).not.toBe(dark);
      await p.close();
    }, 180_000);

    it('a run with more packets than the page keeps: the lists stay at their bound, the picture bounded', async () => {
      const p = await page();
      await p.goto(`http://127.0.0.1:${server!.port}/lab/fd-exhaustion/`);
      expect(await labMode(p)).toBe('live');
      // 20 connections a round until 160 descriptors run out: well over a thousand packets.
      await p.locator('input[name="fdLimit"]').fill('160');
      await p.locator('input[name="perRound"]').fill('20');
      await runToResult(p, 150_000);
      const wire = await p.locator('[data-lab="wire"] li').count();
      expect(wire).toBe(400);
      const pic = p.locator('[data-lab-root] .lab-picture');
      const summary = await pic.locator('.lab-pic-summary').innerText();
      const packets = Number(/On the wire: (\d+) packets/.exec(summary)?.[1]);
      // Well over the 400 the list keeps (a run makes about 800, give or take the last round's).
      expect(packets).toBeGreaterThan(600);
      expect(await pic.locator('svg *').count()).toBeLessThan(1500);
      await p.close();
    }, 240_000);

    it('<Compare /> runs the scenarios live and fills the table', async () => {
      const p = await page();
      await p.goto(`http://127.0.0.1:${server!.port}/course/side-by-side/`);
      const root = p.locator('[data-compare-root]');
      await root.scrollIntoViewIfNeeded();
      await p.waitForFunction(() => (document.querySelector('[data-compare-root]') as HTMLElement | null)?.dataset.mode === 'live', null, { timeout: 20_000 });
      await root.locator('button[data-action="run"]').click();
      await p.waitForFunction(() => (document.querySelector('[data-compare-root]') as HTMLElement).dataset.running === 'true', null, { timeout: 10_000 });
      await p.waitForFunction(() => (document.querySelector('[data-compare-root]') as HTMLElement).dataset.running === 'false', null, { timeout: 300_000 });
      expect(await root.locator('caption').innerText()).toMatch(/Live on this machine: Linux \S+/);
      const state = (cell: string) => root.locator(`td[data-cell="${cell}"]`).getAttribute('data-state');
      const seconds = async (cell: string) => Number(/([\d.]+) s$/.exec(await root.locator(`td[data-cell="${cell}"] .cmp-main`).innerText())![1]);
      expect(await state('idle:none')).toBe('not-detected');
      expect(await state('idle:keepalive')).toBe('detected');
      expect(Math.abs((await seconds('idle:keepalive')) - 5)).toBeLessThanOrEqual(0.6);
      expect(await state('idle:heartbeat')).toBe('detected');
      expect(Math.abs((await seconds('idle:heartbeat')) - 3)).toBeLessThanOrEqual(0.6);
      expect(await state('in-flight:keepalive')).toBe('not-detected');
      expect(await state('in-flight:user-timeout')).toBe('detected');
      expect(await seconds('in-flight:user-timeout')).toBeGreaterThanOrEqual(6 - 0.05);
      expect(await state('frozen:keepalive')).toBe('not-detected');
      expect(await state('frozen:heartbeat')).toBe('detected');
      expect(await root.locator('.cmp-recorded').count()).toBe(0);
      await p.close();
    }, 360_000);
  });
});
