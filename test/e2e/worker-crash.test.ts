/**
 * The engine's Web Worker dying, in headless Chromium (SwiftShader), with the library as it ships (built
 * into a temporary folder, served by a static server): every call pending on the page rejects within a
 * bounded time with WorkerCrashedError (an EngineDestroyedError) saying that the worker died and why, later
 * calls on that engine reject with it too, the worker is gone, and a new engine in the same page works.
 *
 * The worker is killed by real means, none of them in the shipped code: terminate() on the Worker object
 * (the page's `Worker` constructor is wrapped by an init script to keep it), and, through Playwright's
 * handle on the worker, self.close(), an uncaught error and an unhandled rejection inside it; a
 * `messageerror` is dispatched on the Worker object (no real message fails to clone between a page and
 * its worker).
 */
import type { Browser, Page, Worker as PwWorker } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.ts';
import { serveLibraryPages } from '../helpers/build-lib.ts';
import type { StaticServer } from '../helpers/static-server.ts';

/** A pending call must reject within this long of the kill (it would otherwise never settle). */
const PROMPT_MS = 2_000;
const LONG = 'All work and no play makes Jack a dull boy. '.repeat(400);

const PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>worker crash</title></head>
<body><script type="module" src="/page.js"></script></body></html>
`;
const WIDGET_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>worker crash: widget</title></head>
<body><ttt-chat model="/models/tiny-random-lact/" no-cache temperature="0" max-tokens="100000"></ttt-chat>
<script type="module" src="/lib/widget.js"></script></body></html>
`;
const PAGE_JS = `import * as ttt from '/lib/index.js';
window.ttt = ttt;
window.pageReady = true;
`;

/** Runs first in the page: keeps every Worker the page makes, so the test can terminate() it. */
function keepWorkers(): void {
  const w = window as unknown as { __workers: Worker[]; Worker: typeof Worker };
  w.__workers = [];
  const Original = w.Worker;
  w.Worker = class extends Original {
    constructor(url: string | URL, options?: WorkerOptions) {
      super(url, options);
      w.__workers.push(this);
    }
  };
}

type Kill = 'terminate' | 'close' | 'throw' | 'reject' | 'messageerror';

interface Settled {
  what: string;
  ok: boolean;
  name?: string;
  message?: string;
  crashed?: boolean;
  destroyed?: boolean;
  /** ms after the kill (page clock). */
  at: number;
}

describe('the engine worker dying, in headless Chromium', () => {
  let site: { server: StaticServer; close(): Promise<void> };
  let server: StaticServer;
  let browser: Browser;

  beforeAll(async () => {
    site = await serveLibraryPages('ttt-worker-crash-', { 'index.html': PAGE_HTML, 'page.js': PAGE_JS, 'widget.html': WIDGET_HTML });
    server = site.server;
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  async function openPage(): Promise<{ page: Page; errors: string[]; workers: PwWorker[] }> {
    const page = await browser.newPage();
    await page.addInitScript(keepWorkers);
    const errors: string[] = [];
    const workers: PwWorker[] = [];
    page.on('worker', (w) => workers.push(w));
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    await page.goto(server.url);
    await page.waitForFunction(() => (window as unknown as { pageReady?: boolean }).pageReady === true);
    return { page, errors, workers };
  }

  /** Creates an engine (window.engine) and its greedy continuation of 'Hello' from a fresh state. */
  async function createEngine(page: Page): Promise<number[]> {
    return page.evaluate(async () => {
      const w = window as unknown as { ttt: typeof import('../../src/api/index.ts'); engine: import('../../src/api/index.ts').TttEngine };
      w.engine = await w.ttt.createEngine({ model: '/models/tiny-random-lact/', cache: false });
      const ids: number[] = [];
      for await (const t of w.engine.generate('Hello', { maxTokens: 6, temperature: 0, ignoreEos: true })) ids.push(t.id);
      await w.engine.reset();
      return ids;
    });
  }

  async function crashDuringPrefill(kill: Kill) {
    const { page, errors, workers } = await openPage();
    try {
      const baseline = await createEngine(page);
      expect(baseline).toHaveLength(6);
      expect(workers).toHaveLength(1);
      const engineWorker = workers[0];
      let workerClosed = false;
      engineWorker.once('close', () => (workerClosed = true));

      // A long prefill, with a save and a generation queued behind it and a stats call: all pending.
      await page.evaluate((long) => {
        const w = window as unknown as {
          ttt: typeof import('../../src/api/index.ts');
          engine: import('../../src/api/index.ts').TttEngine;
          crash: { killedAt: number; progress: number[]; total: number; settled: Settled[] };
        };
        const { engine, ttt } = w;
        const crash = (w.crash = { killedAt: NaN, progress: [] as number[], total: 0, settled: [] as Settled[] });
        const track = (what: string, p: Promise<unknown>) =>
          p.then(
            () => crash.settled.push({ what, ok: true, at: performance.now() - crash.killedAt }),
            (e: Error) =>
              crash.settled.push({
                what,
                ok: false,
                name: e.name,
                message: e.message,
                crashed: e instanceof ttt.WorkerCrashedError,
                destroyed: e instanceof ttt.EngineDestroyedError,
                at: performance.now() - crash.killedAt,
              }),
          );
        track('prefill', engine.prefill(long, { onProgress: (p) => { crash.progress.push(p.processed); crash.total = p.total; } }));
        track('saveMemory', engine.saveMemory());
        const stream = engine.generate(' and', { maxTokens: 4, temperature: 0 });
        track('generate iterator', (async () => { for await (const _ of stream) { /* nothing comes */ } })());
        track('generate result', stream.result);
      }, LONG);
      await page.waitForFunction(() => ((window as unknown as { crash: { progress: number[] } }).crash.progress.at(-1) ?? 0) >= 64, undefined, { timeout: 60_000 });

      await page.evaluate(() => ((window as unknown as { crash: { killedAt: number } }).crash.killedAt = performance.now()));
      if (kill === 'terminate') await page.evaluate(() => (window as unknown as { __workers: Worker[] }).__workers.at(-1)!.terminate());
      else if (kill === 'messageerror') await page.evaluate(() => (window as unknown as { __workers: Worker[] }).__workers.at(-1)!.dispatchEvent(new MessageEvent('messageerror')));
      else if (kill === 'close') await engineWorker.evaluate(() => setTimeout(() => self.close(), 0));
      else if (kill === 'throw') await engineWorker.evaluate(() => setTimeout(() => { throw new Error('boom from the test'); }, 0));
      else await engineWorker.evaluate(() => { void Promise.reject(new Error('a promise the test dropped')); });

      // Every pending call settles, promptly (without the fix they never do: this wait times out).
      await page.waitForFunction(() => (window as unknown as { crash: { settled: unknown[] } }).crash.settled.length === 4, undefined, { timeout: 15_000 });
      const crash = await page.evaluate(() => (window as unknown as { crash: { progress: number[]; total: number; settled: Settled[] } }).crash);
      // It was killed mid-way.
      expect(crash.progress.at(-1)!).toBeLessThan(crash.total);

      // Later calls on the dead engine reject with the same class; dispose() still resolves.
      const later = await page.evaluate(async () => {
        const w = window as unknown as { ttt: typeof import('../../src/api/index.ts'); engine: import('../../src/api/index.ts').TttEngine };
        const { engine, ttt } = w;
        const seen = async (what: string, f: () => Promise<unknown>) => {
          try {
            await f();
            return { what, ok: true };
          } catch (e) {
            const err = e as Error;
            return { what, ok: false, name: err.name, message: err.message, crashed: e instanceof ttt.WorkerCrashedError };
          }
        };
        const out = [
          await seen('stats', () => engine.stats()),
          await seen('prefill', () => engine.prefill('more')),
          await seen('generate', async () => { for await (const _ of engine.generate('x', { maxTokens: 2 })) { /* none */ } }),
          await seen('encode', () => engine.encode('x')),
          await seen('reset', () => engine.reset()),
          await seen('onStats', async () => engine.onStats(() => undefined)),
        ];
        return out;
      });

      // The worker is gone without dispose() (an uncaught error alone would leave it running and holding
      // its GPU memory); dispose() of the dead engine then still resolves.
      const deadline = Date.now() + 5_000;
      while (!workerClosed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const closedWithoutDispose = workerClosed;
      await page.evaluate(() => (window as unknown as { engine: { dispose(): Promise<void> } }).engine.dispose());

      // A new engine in the same page works, and continues 'Hello' as the first one did.
      const again = await createEngine(page);
      await page.evaluate(() => (window as unknown as { engine: { dispose(): Promise<void> } }).engine.dispose());
      return { crash, later, closedWithoutDispose, baseline, again, errors };
    } finally {
      await page.close();
    }
  }

  const WHY: Record<Kill, RegExp> = {
    terminate: /terminated or closed by something other than dispose\(\)/,
    close: /terminated or closed by something other than dispose\(\)/,
    throw: /an uncaught error in the engine worker: .*boom from the test/,
    reject: /an unhandled rejection in the engine worker: Error: a promise the test dropped/,
    messageerror: /could not read a message from the engine worker \(messageerror\)/,
  };

  it.each(['terminate', 'close', 'throw', 'reject', 'messageerror'] as const)('worker killed by %s mid-prefill: pending calls reject promptly with WorkerCrashedError, later calls too, a new engine works', async (kill) => {
    const r = await crashDuringPrefill(kill);
    const slowest = Math.max(...r.crash.settled.map((s) => s.at));
    process.stderr.write(`[worker-crash] ${kill}: killed at ${r.crash.progress.at(-1)}/${r.crash.total} tokens; pending calls rejected ${r.crash.settled.map((s) => `${s.what} +${s.at.toFixed(0)} ms`).join(', ')}\n`);
    for (const s of r.crash.settled) {
      expect(s, s.what).toMatchObject({ ok: false, name: 'WorkerCrashedError', crashed: true, destroyed: true });
      expect(s.message, s.what).toMatch(/^the engine is no longer usable: the engine's Web Worker died \(/);
      expect(s.message, s.what).toMatch(WHY[kill]);
    }
    expect(slowest).toBeLessThan(PROMPT_MS);
    for (const l of r.later) {
      expect(l, l.what).toMatchObject({ ok: false, name: 'WorkerCrashedError', crashed: true });
      expect(l.message, l.what).toMatch(WHY[kill]);
    }
    expect(r.closedWithoutDispose, 'the dead engine\'s worker was terminated (before dispose())').toBe(true);
    expect(r.again).toEqual(r.baseline);
    // The page itself reports nothing: a worker's own uncaught error shows in the worker's console only.
    expect(r.errors.filter((e) => !/boom from the test|a promise the test dropped/.test(e))).toEqual([]);
  }, 180_000);
  it('<ttt-chat> whose worker dies mid-generation reports WorkerCrashedError, lets the engine go, and the next generation loads a new one', async () => {
    const page = await browser.newPage();
    await page.addInitScript(keepWorkers);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(new URL('widget.html', server.url).href);
      await page.waitForFunction(() => ['ready', 'error', 'unsupported'].includes(document.querySelector('ttt-chat')?.getAttribute('state') ?? ''), undefined, { timeout: 90_000 });
      expect(await page.locator('ttt-chat').getAttribute('state')).toBe('ready');
      await page.evaluate(() => {
        const chat = document.querySelector('ttt-chat')!;
        const w = window as unknown as { chatRun: { tokens: number; outcome: Record<string, unknown> | null; errorEvents: string[] } };
        w.chatRun = { tokens: 0, outcome: null, errorEvents: [] };
        chat.addEventListener('token', () => w.chatRun.tokens++);
        chat.addEventListener('error', (e) => w.chatRun.errorEvents.push((e as CustomEvent<{ error: Error }>).detail.error.name));
        chat.generate('Once upon a time').then(
          (d) => (w.chatRun.outcome = { ok: true, reason: d.reason }),
          (e: Error) => (w.chatRun.outcome = { ok: false, name: e.name, message: e.message, at: performance.now() }),
        );
      });
      await page.waitForFunction(() => (window as unknown as { chatRun: { tokens: number } }).chatRun.tokens >= 2, undefined, { timeout: 60_000 });
      const killedAt = await page.evaluate(() => {
        (window as unknown as { __workers: Worker[] }).__workers.at(-1)!.terminate();
        return performance.now();
      });
      await page.waitForFunction(() => (window as unknown as { chatRun: { outcome: unknown } }).chatRun.outcome !== null, undefined, { timeout: 15_000 });
      const run = await page.evaluate(() => (window as unknown as { chatRun: { outcome: Record<string, unknown>; errorEvents: string[] } }).chatRun);
      expect(run.outcome).toMatchObject({ ok: false, name: 'WorkerCrashedError' });
      expect(run.outcome.message).toMatch(/Web Worker died \(the engine worker ended/);
      expect((run.outcome.at as number) - killedAt).toBeLessThan(PROMPT_MS);
      expect(run.errorEvents).toEqual(['WorkerCrashedError']);
      expect(await page.locator('ttt-chat').getAttribute('state')).toBe('error');
      expect(await page.locator('ttt-chat [part="status"]').textContent()).toMatch(/^WorkerCrashedError: .*Web Worker died/);
      expect(await page.evaluate(() => document.querySelector('ttt-chat')!.engine)).toBeNull();

      // The next generation loads a new engine (a new worker) and runs.
      const done = await page.evaluate(async () => {
        const chat = document.querySelector('ttt-chat')!;
        chat.maxTokens = 5;
        const d = await chat.generate('Again');
        return { reason: d.reason, generatedTokens: d.generatedTokens, state: chat.state, workers: (window as unknown as { __workers: Worker[] }).__workers.length };
      });
      expect(done).toMatchObject({ generatedTokens: 5, state: 'ready', workers: 2 });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 180_000);
});
