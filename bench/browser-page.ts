/**
 * Serves the repository with Vite and opens one benchmark page in Debian's Chromium (playwright-core, the
 * flags of test/helpers/browser.ts); the page reports through a window property holding its result or
 * its error. Shared by `npm run bench -- browser` and `npm run bench -- transformers-js`.
 */
import { createServer } from 'vite';
import { launchChromium } from '../test/helpers/browser.ts';

const root = new URL('..', import.meta.url).pathname;

export interface PageRun<T> {
  readonly result: T;
  /** Chromium's version string. */
  readonly browserVersion: string;
}

/** Opens `path` (with `?args=` the JSON of `args`), waits for `window[resultKey]` or `window[errorKey]`. */
export async function runBenchPage<T>(path: string, args: unknown, keys: { result: string; error: string }, optimizeDepsExclude: readonly string[]): Promise<PageRun<T>> {
  const server = await createServer({
    root,
    configFile: false,
    logLevel: 'error',
    appType: 'mpa',
    server: { host: '127.0.0.1', port: 0, hmr: false },
    // The runtimes find their wasm through wasmPaths; pre-bundling them would only move the files.
    optimizeDeps: { exclude: [...optimizeDepsExclude] },
  });
  await server.listen();
  const address = server.httpServer?.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
    const url = `http://127.0.0.1:${port}${path}?args=${encodeURIComponent(JSON.stringify(args))}`;
    console.log(`page: ${url}`);
    await page.goto(url);
    // Runs in the page (serialised): only its arguments cross over.
    const ready = ([r, e]: readonly [string, string]) => {
      const w = window as unknown as Record<string, unknown>;
      return w[r] !== undefined || w[e] !== undefined;
    };
    await page.waitForFunction(ready, [keys.result, keys.error] as const, { timeout: 0, polling: 1000 });
    const error = await page.evaluate((e) => (window as unknown as Record<string, unknown>)[e] as string | undefined, keys.error);
    if (error) throw new Error(`the benchmark page failed: ${error}`);
    const result = (await page.evaluate((r) => (window as unknown as Record<string, unknown>)[r], keys.result)) as T;
    return { result, browserVersion: browser.version() };
  } finally {
    await browser.close();
    await server.close();
  }
}
