/**
 * End to end: Debian's chromium drives the built course against `npm start` (the real
 * server process, with its sidecar and real labs), and against a static host with no sidecar
 * at all, where the lab must play its recording. The recorded run needs only chromium; the
 * live ones need a lab on this machine too.
 *
 * How the learner's buttons meet a scripted scenario (src/sidecar/session.ts): every scenario
 * injects its own faults (experiment a cuts the network right after the client's frame);
 * the buttons act on the same lab whenever the sidecar's state allows it, and the script does
 * not wait for them. Experiment a watches the server for `wait` seconds after its own cut:
 * that is where a learner can act without breaking it, so the test restores the network,
 * sends a frame and cuts the network itself with the lab's buttons.
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
const liveReason = !capability.ok ? `no lab on this machine: ${capability.reason}` : '';

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

/** A terminal's lines as a screen reader gets them: its log (role="log"), one item a line, unwrapped. */
async function terminalLog(page: Page, label: string): Promise<string[]> {
  return page.getByRole('region', { name: label }).getByRole('log').locator('li').allInnerTexts();
}

/** The socket table's rows as [state, local, peer, send-q, recv-q, timer]. */
async function socketRows(page: Page): Promise<string[][]> {
  const table = page.getByRole('table', { name: 'Server kernel: TCP sockets (ss)' });
  return table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td,th')].map((c) => (c.textContent ?? '').trim())));
}

describe.skipIf(!chromiumAvailable)(`the playground in a browser${chromiumAvailable ? '' : ` (skipped: no chromium at ${CHROMIUM})`}`, () => {
  let context: BrowserContext;
  let closeBrowser: () => Promise<void>;
  let staticHost: Server;
  let staticPort: number;

  beforeAll(async () => {
    await ensureBuilt();
    staticPort = await freePort();
    staticHost = createServer((req, res) => serveStatic(join(ROOT, 'dist'), req, res));
    await new Promise<void>((r) => staticHost.listen(staticPort, '127.0.0.1', () => r()));
    const browser = await launch();
    context = browser.context;
    let closing: Promise<void> | null = null;
    closeBrowser = () => (closing ??= browser.close());
  }, 180_000);

  afterAll(async () => {
    await closeBrowser?.();
    await new Promise<void>((r) => (staticHost ? staticHost.close(() => r()) : r()));
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
    // Replaying: Stop on, Run and every fault off, no frame to send.
    expect(await page.getByRole('button', { name: 'Run', exact: true }).isEnabled()).toBe(false);
    expect(await page.getByRole('button', { name: 'Stop', exact: true }).isEnabled()).toBe(true);
    expect(await page.getByRole('textbox', { name: 'Frame text' }).isEnabled()).toBe(false);
    await expect.poll(() => terminalText(page, 'Server terminal'), { timeout: 10_000 }).toMatch(/accept/);
    expect((await terminalLog(page, 'Server terminal')).some((l) => /^\d+\.\d+ accept peer=192\.0\.2\.10:\d+/.test(l))).toBe(true);
    await expect.poll(async () => (await socketRows(page)).some((r) => r[0] === 'ESTAB'), { timeout: 10_000 }).toBe(true);
    const result = page.getByRole('region', { name: 'Result' });
    await expect.poll(() => result.isVisible(), { timeout: 40_000 }).toBe(true);
    // Real timing: the recorded run watched the server for 10 s after the cut.
    expect((Date.now() - started) / 1000).toBeGreaterThan(9);
    const text = await result.innerText();
    expect(text).toContain('(recorded run)');
    expect(text).toMatch(/Recorded on Linux \S+ .*Not a live run\./);
    expect(await page.getByRole('button', { name: 'Run', exact: true }).isEnabled()).toBe(true);
    expect(await page.getByRole('button', { name: 'Stop', exact: true }).isEnabled()).toBe(false);
    await page.close();
  });

  describe.skipIf(liveReason !== '')(`live, with npm start${liveReason ? ` (skipped: ${liveReason})` : ''}`, () => {
    let course: Awaited<ReturnType<typeof startCourse>>;
    let port: number;

    beforeAll(async () => {
      port = await freePort();
      course = await startCourse(port);
    }, 60_000);

    afterAll(async () => {
      // The browser keeps its HTTP connections to the server open: close it first, or the
      // server waits for them (these are the last tests of the file).
      await closeBrowser?.();
      await course?.stop();
    });

    it('experiment a, as a learner: run it, the script cuts; restore, send a frame, cut with the buttons; the row stays ESTAB and the server logs only the frame', async () => {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${port}/course/experiment-a/`);
      await page.locator('[data-lab-root]').scrollIntoViewIfNeeded();
      await expect.poll(() => page.locator('[data-lab="status"]').innerText(), { timeout: 15_000 }).toMatch(/live/i);

      const button = (name: string) => page.getByRole('button', { name, exact: true });
      const frameText = page.getByRole('textbox', { name: 'Frame text' });
      // Long enough after the script's cut for the learner's restore, frame and cut.
      await page.getByLabel(/^wait/).fill('15');
      expect(await frameText.isEnabled()).toBe(false);
      await button('Run').click();
      // While the lab is being made: Run cannot be pressed again, Stop can.
      expect(await button('Run').isEnabled()).toBe(false);
      expect(await button('Stop').isEnabled()).toBe(true);

      // The server's terminal shows its own log: listening, then the client's accept.
      await expect.poll(() => terminalText(page, 'Server terminal'), { timeout: 20_000 }).toMatch(/accept/);
      // The scenario cuts the client's link itself; the buttons follow the lab's state.
      await expect.poll(() => button('Restore network').isEnabled(), { timeout: 20_000 }).toBe(true);
      expect(await button('Cut network').isEnabled()).toBe(false);
      expect(await button('Run').isEnabled()).toBe(false);

      // The learner brings the client back, and sends a frame: the server's terminal logs it.
      await button('Restore network').click();
      await expect.poll(() => button('Cut network').isEnabled(), { timeout: 5000 }).toBe(true);
      expect(await page.locator('[data-lab="link"]').innerText()).toBe('network up');
      expect(await frameText.isEnabled()).toBe(true);
      await frameText.fill('are-you-there');
      await button('Send frame').click();
      await expect.poll(async () => (await terminalLog(page, 'Server terminal')).some((l) => /\bframe peer=192\.0\.2\.10:\d+ bytes=13 text=are-you-there$/.test(l)), { timeout: 5000 }).toBe(true);
      // The terminal shows it too (xterm wraps long lines at its width).
      await expect.poll(async () => (await terminalText(page, 'Server terminal')).replace(/\n/g, ''), { timeout: 5000 }).toContain('text=are-you-there');

      // The learner cuts the network.
      await button('Cut network').click();
      await expect.poll(() => button('Restore network').isEnabled(), { timeout: 5000 }).toBe(true);
      expect(await button('Cut network').isEnabled()).toBe(false);
      expect(await page.locator('[data-lab="link"]').innerText()).toBe('network cut');
      const linesAtCut = (await terminalLog(page, 'Server terminal')).length;

      // After the cut the row is still ESTAB with no timer, for as long as we watch.
      const estab = async () => (await socketRows(page)).filter((r) => r[0] === 'ESTAB' && r[1].includes('192.0.2.1:'));
      await expect.poll(async () => (await estab()).length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
      await page.waitForTimeout(2500);
      const rows = await estab();
      expect(rows.length).toBe(1);
      expect(rows[0]![5]).toBe('—');

      // The result: the claim held, measured on this kernel.
      const result = page.getByRole('region', { name: 'Result' });
      await expect.poll(() => result.isVisible(), { timeout: 30_000 }).toBe(true);
      const text = await result.innerText();
      expect(text).toContain('The claim held');
      expect(text).toMatch(/Measured on kernel Linux \S+/);
      // Between the learner's cut and the end the server logged nothing about the client: no close, no error.
      const after = (await terminalLog(page, 'Server terminal')).slice(linesAtCut).join('\n');
      expect(after).not.toMatch(/\b(close|error|timeout)\b/);
      // The lab log has both cuts: the script's and the learner's.
      expect(await page.locator('[data-lab="log"] li[data-event="cut"]').count()).toBe(2);
      // Torn down: Run again, nothing else.
      await expect.poll(() => button('Run').isEnabled(), { timeout: 10_000 }).toBe(true);
      for (const name of ['Stop', 'Cut network', 'Restore network', 'Send frame', 'Kill client']) expect(await button(name).isEnabled(), name).toBe(false);
      expect(await frameText.isEnabled()).toBe(false);
      expect(errors).toEqual([]);
      await page.close();
    });

    it('Stop while the lab is being made: the sidecar makes it, tears it down and says stopped', async () => {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${port}/lab/experiment-a/`);
      await expect.poll(() => page.locator('[data-lab="status"]').innerText(), { timeout: 15_000 }).toMatch(/live/i);
      // Every change of Run, Stop and the progress line, as the page saw it: the sidecar may make
      // and tear down a lab faster than a check from here could look at the buttons between.
      await page.evaluate(() => {
        const root = document.querySelector('[data-lab-root]')!;
        const run = root.querySelector<HTMLButtonElement>('[data-action="run"]')!;
        const stop = root.querySelector<HTMLButtonElement>('[data-action="stop"]')!;
        const progress = root.querySelector('[data-lab="progress"]')!;
        const seen: { run: boolean; stop: boolean; progress: string }[] = [];
        (window as unknown as { labSeen: typeof seen }).labSeen = seen;
        const note = () => {
          const now = { run: !run.disabled, stop: !stop.disabled, progress: progress.textContent ?? '' };
          const last = seen.at(-1);
          if (!last || last.run !== now.run || last.stop !== now.stop || last.progress !== now.progress) seen.push(now);
        };
        new MutationObserver(note).observe(root, { subtree: true, attributes: true, attributeFilter: ['disabled'], childList: true, characterData: true });
        // Run and at once Stop, in one task: the Stop reaches the sidecar while it makes the lab.
        run.click();
        note();
        stop.click();
        note();
      });
      await expect.poll(() => page.locator('[data-lab="progress"]').innerText(), { timeout: 20_000 }).toBe('Run stopped; the lab was torn down.');
      const seen = await page.evaluate(() => (window as unknown as { labSeen: { run: boolean; stop: boolean; progress: string }[] }).labSeen);
      // Run pressed: Run off, Stop on; Stop pressed while the lab is being made: both off, and it says so.
      expect(seen[0]).toEqual({ run: false, stop: true, progress: 'Starting a lab…' });
      expect(seen[1]).toEqual({ run: false, stop: false, progress: 'Stopping: the lab is being made, then it is torn down…' });
      // Run stays off, Stop too, until the sidecar says the lab is gone.
      const gone = seen.findIndex((s) => s.progress === 'Run stopped; the lab was torn down.');
      expect(gone, JSON.stringify(seen)).toBeGreaterThan(1);
      for (const s of seen.slice(1, gone)) expect(s, JSON.stringify(seen)).toMatchObject({ run: false, stop: false });
      expect(seen.slice(1, gone).every((s) => !/^Running/.test(s.progress)), JSON.stringify(seen)).toBe(true);
      await expect.poll(() => page.getByRole('button', { name: 'Run', exact: true }).isEnabled(), { timeout: 5000 }).toBe(true);
      expect(await page.getByRole('button', { name: 'Cut network', exact: true }).isEnabled()).toBe(false);
      expect(await page.locator('[data-lab="alert"]').isVisible()).toBe(false);
      expect(await page.getByRole('region', { name: 'Result' }).isVisible()).toBe(false);
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
  });
});
