/**
 * A strict Content-Security-Policy: `<ttt-chat>` from the library as it ships and the demo as built for
 * visitors, served with the header below, load and generate in headless Chromium (SwiftShader) with no
 * violation. Violations are looked for three ways: `securitypolicyviolation` events in the page, console
 * errors of the page and of its workers, and the reports the browser POSTs to the policy's `report-uri`
 * (the only way a violation inside a worker reaches the server). A violation provoked on purpose, in the
 * page and in the engine's worker, shows that each way sees one.
 *
 * The policy has no 'unsafe-eval', no 'wasm-unsafe-eval' (nothing here runs WebAssembly) and no
 * 'unsafe-inline' for styles either: the widget's shadow DOM styles are a constructed stylesheet, which CSP
 * does not govern. The one allowance beyond 'self' is `worker-src blob:`: the library's engine worker is
 * inlined into the bundle and started from a Blob URL (docs/widget.md); under a policy without it the
 * widget says, by name, that the engine worker could not be started and why.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page, Worker as PwWorker } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.ts';
import { buildLibraryTo } from '../helpers/build-lib.ts';
import { buildDemoTo } from '../helpers/preview-demo.ts';
import { serveStatic, type StaticServer } from '../helpers/static-server.ts';

const STRICT_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "worker-src 'self' blob:",
  "connect-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  'report-uri /csp-report',
].join('; ');

const WIDGET_HTML = `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><link rel="icon" href="/widget/icon.svg"><title>ttt-chat under a strict CSP</title></head>
  <body>
    <ttt-chat model="/models/tiny-random-lact/" max-tokens="8" temperature="0" no-cache></ttt-chat>
    <script type="module" src="/lib/widget.js"></script>
  </body>
</html>
`;

interface Violation {
  directive: string;
  blocked: string;
  source: string;
  sample: string;
}

/** Runs first in every page: keeps every securitypolicyviolation event. */
function recordViolations(): void {
  const w = window as unknown as { __csp: Violation[] };
  w.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    w.__csp.push({ directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile, sample: e.sample });
  });
}

interface Watch {
  console: string[];
  workers: PwWorker[];
  violations(): Promise<Violation[]>;
}

async function watch(page: Page): Promise<Watch> {
  await page.addInitScript(recordViolations);
  const consoleErrors: string[] = [];
  const workers: PwWorker[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) consoleErrors.push(`page: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on('worker', (w) => {
    workers.push(w);
    w.on('console', (m) => {
      if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) consoleErrors.push(`worker: ${m.text()}`);
    });
  });
  return { console: consoleErrors, workers, violations: () => page.evaluate(() => (window as unknown as { __csp: Violation[] }).__csp) };
}

/** Reports are sent asynchronously: wait a moment for any still on the way. */
async function settleReports(): Promise<void> {
  await new Promise((r) => setTimeout(r, 1_500));
}

describe('a strict Content-Security-Policy, in headless Chromium', () => {
  let work: string;
  let server: StaticServer;
  /** The same files under a policy that does not allow blob: workers. */
  let noBlob: StaticServer;
  let browser: Browser;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'ttt-csp-'));
    await buildLibraryTo(join(work, 'lib'));
    await buildDemoTo(join(work, 'demo'));
    mkdirSync(join(work, 'widget'));
    writeFileSync(join(work, 'widget', 'index.html'), WIDGET_HTML);
    writeFileSync(join(work, 'widget', 'icon.svg'), '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/>');
    server = await serveStatic(
      { '/': join(work, 'demo'), '/lib/': join(work, 'lib'), '/widget/': join(work, 'widget'), '/models/': resolve('public/models') },
      { headers: { 'content-security-policy': STRICT_CSP } },
    );
    noBlob = await serveStatic(
      { '/': join(work, 'widget'), '/lib/': join(work, 'lib'), '/widget/': join(work, 'widget'), '/models/': resolve('public/models') },
      { headers: { 'content-security-policy': STRICT_CSP.replace("worker-src 'self' blob:", "worker-src 'self'") } },
    );
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await noBlob?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('<ttt-chat> from the built library loads, is styled, and generates, with no violation', async () => {
    const page = await browser.newPage();
    const seen = await watch(page);
    const reportsBefore = server.reports.length;
    try {
      const response = await page.goto(new URL('widget/', server.url).href);
      expect(response?.headers()['content-security-policy']).toBe(STRICT_CSP);
      await page.waitForFunction(() => ['ready', 'error', 'unsupported'].includes(document.querySelector('ttt-chat')?.getAttribute('state') ?? ''), undefined, { timeout: 90_000 });
      const status = await page.locator('ttt-chat [part="status"]').textContent();
      expect(await page.locator('ttt-chat').getAttribute('state'), `widget did not load: ${status}`).toBe('ready');

      // The worker really runs from a blob: URL (what worker-src blob: is for).
      expect(seen.workers.map((w) => w.url().split(':')[0])).toEqual(['blob']);

      // The shadow DOM's styles apply: the Generate button has the accent background (a blocked <style>
      // would leave the browser's default button).
      const look = await page.evaluate(() => {
        const chat = document.querySelector('ttt-chat')!;
        const button = chat.shadowRoot!.querySelector('[part~="generate"]')!;
        return { background: getComputedStyle(button).backgroundColor, host: getComputedStyle(chat).display, styleElements: chat.shadowRoot!.querySelectorAll('style').length };
      });
      expect(look).toEqual({ background: 'rgb(59, 111, 216)', host: 'block', styleElements: 0 });

      await page.locator('ttt-chat [part="prompt"]').fill('Once upon a time');
      await page.locator('ttt-chat [part~="generate"]').click();
      await page.waitForFunction(() => document.querySelector('ttt-chat')?.getAttribute('state') === 'ready' && (document.querySelector('ttt-chat')!.output.length > 'Once upon a time'.length), undefined, { timeout: 60_000 });
      const output = await page.evaluate(() => document.querySelector('ttt-chat')!.output);
      expect(output.startsWith('Once upon a time')).toBe(true);
      process.stderr.write(`[csp] widget generated ${JSON.stringify(output.slice('Once upon a time'.length))} under ${STRICT_CSP}\n`);

      await settleReports();
      expect(await seen.violations()).toEqual([]);
      expect(seen.console).toEqual([]);
      expect(server.reports.slice(reportsBefore)).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('the built demo loads, reads text and generates, with no violation', async () => {
    const page = await browser.newPage();
    const seen = await watch(page);
    const reportsBefore = server.reports.length;
    try {
      await page.goto(server.url);
      await page.waitForFunction(() => document.body.dataset.phase === 'idle', undefined, { timeout: 90_000 });
      expect(await page.getAttribute('#status', 'data-state')).toBe('ready');
      for (const box of await page.$$('input[name="compare"]:checked')) await box.uncheck();
      await page.check('input[name="source"][value="paste"]');
      await page.fill('#paste', 'To be, or not to be: that is the question. ');
      await page.check('input[name="length"][value="n"]');
      await page.fill('#tokens', '60');
      await page.fill('#max-tokens', '8');
      await page.fill('#temperature', '0');
      await page.click('#start');
      await page.waitForFunction(() => document.body.dataset.phase === 'idle', undefined, { timeout: 120_000 });
      expect(await page.getAttribute('#status', 'data-state')).toBe('done');
      const generated = await page.$eval('.run .generated', (el) => el.textContent ?? '');
      expect(generated.length).toBeGreaterThan(0);
      expect(await page.$$eval('#charts canvas', (cs) => cs.length)).toBeGreaterThanOrEqual(2);
      expect(seen.workers.map((w) => w.url().split(':')[0])).toEqual(['blob']);
      process.stderr.write(`[csp] demo generated ${JSON.stringify(generated)}\n`);

      await settleReports();
      expect(await seen.violations()).toEqual([]);
      expect(seen.console).toEqual([]);
      expect(server.reports.slice(reportsBefore)).toEqual([]);
    } finally {
      await page.close();
    }
  }, 180_000);

  it('the checks see a violation: an inline <style> in the page and a fetch to another origin in the engine worker', async () => {
    const page = await browser.newPage();
    const seen = await watch(page);
    const reportsBefore = server.reports.length;
    try {
      await page.goto(new URL('widget/', server.url).href);
      await page.waitForFunction(() => document.querySelector('ttt-chat')?.getAttribute('state') === 'ready', undefined, { timeout: 90_000 });
      await page.evaluate(() => {
        const style = document.createElement('style');
        style.textContent = 'body { color: red; }';
        document.head.append(style);
      });
      const fetched = await seen.workers[0].evaluate(() => fetch('http://127.0.0.2:9/forbidden').then(() => 'fetched', (e: Error) => e.name));
      expect(fetched).toBe('TypeError');
      await settleReports();
      expect((await seen.violations()).map((v) => v.directive)).toEqual(['style-src-elem']);
      expect(seen.console.some((m) => m.startsWith('page:') && /style-src/.test(m))).toBe(true);
      const reported = server.reports.slice(reportsBefore).map((r) => (r as { 'csp-report'?: { 'effective-directive'?: string } })['csp-report']?.['effective-directive']);
      expect(reported.sort()).toEqual(['connect-src', 'style-src-elem']);
    } finally {
      await page.close();
    }
  });
  it('a policy without blob: for workers: the widget says the engine worker could not be started and why', async () => {
    const page = await browser.newPage();
    const seen = await watch(page);
    try {
      await page.goto(new URL('widget/', noBlob.url).href);
      await page.waitForFunction(() => ['ready', 'error', 'unsupported'].includes(document.querySelector('ttt-chat')?.getAttribute('state') ?? ''), undefined, { timeout: 60_000 });
      expect(await page.locator('ttt-chat').getAttribute('state')).toBe('error');
      expect(await page.locator('ttt-chat [part="status"]').textContent()).toMatch(/^WorkerCrashedError: .*the engine worker could not be started: .*worker-src needs blob:/);
      expect((await seen.violations()).map((v) => v.directive)).toEqual(['worker-src']);
    } finally {
      await page.close();
    }
  });
});
