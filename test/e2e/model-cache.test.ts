/**
 * The model cache against Chromium's real Cache Storage (the Node tests use a test double): a first load
 * fills it, a second makes no request, clearing empties it, a real quota overrun (set through the
 * DevTools protocol) falls back to the network with a warning, and an abort stops the download.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { createServer, type ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.ts';

const MODEL = 'test/fixtures/tiny-all-on';

/** The page's side, as plain JS (Vitest would rewrite dynamic imports in a function passed to evaluate). */
const PAGE_SCRIPT = `
import { CachedUrlSource, cachedModelBytes, clearModelCache, MODEL_CACHE_NAME } from '/src/model/cache.ts';
import { openModelStream, streamBufferStats } from '/src/model/stream.ts';
window.__clear = () => clearModelCache();
window.__load = async (prefix, abortAfter) => {
  const warnings = [];
  const fromCache = [];
  let doneEvent = null;
  const source = new CachedUrlSource(prefix, { onCacheWarning: (m) => warnings.push(m) });
  const ac = new AbortController();
  let tensors = 0, checksum = 0, error = null, errorName = null, peak = 0, largestTensor = 0, largestChunk = 0;
  try {
    const s = await openModelStream(source, {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.file === 'model.safetensors') fromCache.push(p.fromCache);
        if (p.phase === 'done') doneEvent = p;
      },
    });
    for await (const t of s.tensors) {
      const u = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
      for (let i = 0; i < u.length; i++) checksum = (Math.imul(checksum, 31) + u[i]) | 0;
      if (++tensors === abortAfter) ac.abort();
    }
    ({ peakBufferedBytes: peak, largestTensorBytes: largestTensor, largestChunkBytes: largestChunk } = streamBufferStats(s));
  } catch (e) {
    error = e.message;
    errorName = e.name;
  }
  await source.idle();
  const cache = await caches.open(MODEL_CACHE_NAME);
  const cachedUrls = (await cache.keys()).map((r) => new URL(r.url).pathname);
  return { ok: error === null, error, errorName, warnings, tensors, checksum, fromCache, doneEvent, peak, largestTensor, largestChunk, cachedBytes: await cachedModelBytes(), cachedUrls };
};
window.__ready = true;
`;

interface LoadResult {
  ok: boolean;
  error: string | null;
  errorName: string | null;
  warnings: string[];
  tensors: number;
  checksum: number;
  fromCache: boolean[];
  doneEvent: unknown;
  peak: number;
  largestTensor: number;
  largestChunk: number;
  cachedBytes: number;
  cachedUrls: string[];
}

describe('model cache in headless Chromium (real Cache Storage)', () => {
  let vite: ViteDevServer;
  let browser: Browser;
  let page: Page;
  let origin: string;
  const requests: string[] = [];
  let sizes: { config: number; weights: number };

  beforeAll(async () => {
    sizes = {
      config: (await readFile(`${MODEL}/config.json`)).byteLength,
      weights: (await readFile(`${MODEL}/model.safetensors`)).byteLength,
    };
    vite = await createServer({
      configFile: false,
      root: process.cwd(),
      logLevel: 'silent',
      server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false },
      optimizeDeps: { noDiscovery: true, include: [] },
      plugins: [
        {
          name: 'model-files',
          configureServer(server) {
            server.middlewares.use((req: IncomingMessage, res: ServerResponse, next: () => void) => {
              const url = req.url ?? '';
              if (url === '/cache-check.html') {
                res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>cache check</title><script type="module">${PAGE_SCRIPT}</script>`);
                return;
              }
              const m = /^\/(models|slow)\/([a-z._]+)$/.exec(url.split('?')[0]);
              if (!m) return next();
              requests.push(`${req.method} ${url}`);
              void readFile(`${MODEL}/${m[2]}`).then(
                async (body) => {
                  res.writeHead(200, { 'content-type': m[2].endsWith('.json') ? 'application/json' : 'application/octet-stream', 'content-length': body.byteLength });
                  // In pieces, so the browser's body stream yields many chunks; slowly under /slow/.
                  for (let at = 0; at < body.byteLength && !res.destroyed; at += 8192) {
                    await new Promise<void>((r) => res.write(body.subarray(at, at + 8192), () => r()));
                    await new Promise((r) => setTimeout(r, m[1] === 'slow' ? 5 : 0));
                  }
                  if (!res.destroyed) res.end();
                },
                () => res.writeHead(404).end(),
              );
            });
          },
        },
      ],
    });
    await vite.listen();
    const addr = vite.httpServer!.address();
    if (addr === null || typeof addr === 'string') throw new Error('vite has no port');
    origin = `http://127.0.0.1:${addr.port}`;
    browser = await launchChromium();
    page = await browser.newPage();
    await page.goto(`${origin}/cache-check.html`);
    await page.waitForFunction(() => (window as unknown as { __ready?: boolean }).__ready === true, undefined, { timeout: 30_000 });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await vite?.close();
  });

  const load = (prefix: string, abortAfter = 0): Promise<LoadResult> =>
    page.evaluate(([p, a]) => (window as unknown as { __load(p: string, a: number): Promise<LoadResult> }).__load(p, a), [prefix, abortAfter] as const);
  const clear = (): Promise<number> => page.evaluate(() => (window as unknown as { __clear(): Promise<number> }).__clear());

  it('first load fills the cache, second makes no request, clear empties it; quota overrun and abort fall back cleanly', async () => {
    expect(await page.evaluate(() => window.isSecureContext && typeof caches !== 'undefined')).toBe(true);

    const first = await load(`${origin}/models/`);
    expect(first.error).toBeNull();
    expect(first.warnings).toEqual([]);
    expect(first.tensors).toBe(51);
    expect(first.fromCache.every((c) => !c)).toBe(true);
    expect(requests).toEqual(['GET /models/config.json', 'GET /models/model.safetensors']);
    expect(first.cachedUrls.sort()).toEqual(['/models/config.json', '/models/model.safetensors']);
    expect(first.cachedBytes).toBe(sizes.config + sizes.weights);
    // The loader holds at most the tensor being assembled plus one network read. How much one read brings
    // is Chromium's choice (under load it coalesces hundreds of KB), so the bound is in those terms.
    expect(first.peak).toBeLessThanOrEqual(first.largestTensor + first.largestChunk);
    expect(first.peak).toBeLessThan(sizes.weights);

    const second = await load(`${origin}/models/`);
    expect(requests.length).toBe(2);
    expect(second.error).toBeNull();
    expect(second.checksum).toBe(first.checksum);
    expect(second.fromCache.every((c) => c)).toBe(true);
    expect(second.doneEvent).toMatchObject({ phase: 'done', bytesLoaded: sizes.weights, bytesTotal: sizes.weights, tensorsLoaded: 51, fromCache: true });
    process.stderr.write(
      `[model-cache] Chromium: ${sizes.weights} B weights, largest tensor ${first.largestTensor} B; network: largest chunk ${first.largestChunk} B, peak held ${first.peak} B; ` +
        `cache: largest chunk ${second.largestChunk} B, peak held ${second.peak} B\n`,
    );

    expect(await clear()).toBe(2);
    const third = await load(`${origin}/models/`);
    expect(third.checksum).toBe(first.checksum);
    expect(requests.length).toBe(4);

    // A real quota overrun: room for config.json, not for the weights.
    expect(await clear()).toBe(2);
    const cdp = await page.context().newCDPSession(page);
    // Chromium counts what the origin already uses (the emptied cache's database included): allow that
    // plus room for config.json, not for the weights.
    const usage = await page.evaluate(async () => (await navigator.storage.estimate()).usage ?? 0);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: usage + 200_000 });
    const quota = await load(`${origin}/models/`);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    expect(quota.error).toBeNull();
    expect(quota.checksum).toBe(first.checksum);
    expect(quota.warnings).toHaveLength(1);
    expect(quota.warnings[0]).toMatch(/could not store "model\.safetensors" in the cache \(the storage quota is full \(QuotaExceededError/);
    expect(quota.cachedUrls).toEqual(['/models/config.json']);
    process.stderr.write(`[model-cache] Chromium quota warning: ${quota.warnings[0]}\n`);

    // Abort mid-download: AbortError, and no partial weights in the cache.
    const aborted = await load(`${origin}/slow/`, 3);
    expect(aborted.errorName).toBe('AbortError');
    expect(aborted.warnings).toEqual([]);
    expect(aborted.cachedUrls.filter((u) => u.startsWith('/slow/'))).toEqual(['/slow/config.json']);
  }, 60_000);
});
