/**
 * The benchmark suite in a real browser: serves bench/browser/ with Vite, opens it in Debian's Chromium
 * through playwright-core (the flags of test/helpers/browser.ts), and saves what the page measured like
 * `npm run bench` does (JSON under bench/results/, PNG beside it).
 *
 *     npm run bench -- browser [--contexts 1024,2048,4096] [--steps 32] [--ort fused,plain|none] ... [--out FILE]
 *
 * Flags are the suite's (bench/suite-core.ts). Headless Chromium on a machine without a GPU runs WebGPU on
 * SwiftShader, several times slower than lavapipe and without shader-f16, hence the shorter default
 * contexts; on a machine with a GPU Chromium uses it.
 */
import { createServer } from 'vite';
import { launchChromium } from '../test/helpers/browser.ts';
import { parseSuiteArgs, suiteMarkdown, type SuiteResult } from './suite-core.ts';
import { saveSuite } from './suite.ts';

const root = new URL('..', import.meta.url).pathname;

export async function main(args: string[]): Promise<void> {
  const a = parseSuiteArgs(args, { contexts: [1024, 2048, 4096] });
  const server = await createServer({
    root,
    configFile: false,
    logLevel: 'error',
    appType: 'mpa',
    server: { host: '127.0.0.1', port: 0, hmr: false },
    // ORT finds its wasm through env.wasm.wasmPaths (bench/browser/main.ts); pre-bundling it would only move it.
    optimizeDeps: { exclude: ['onnxruntime-web'] },
  });
  await server.listen();
  const address = server.httpServer?.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
    const url = `http://127.0.0.1:${port}/bench/browser/index.html?args=${encodeURIComponent(JSON.stringify(args))}`;
    console.log(`page: ${url}`);
    await page.goto(url);
    await page.waitForFunction(() => window.suiteResult !== undefined || window.suiteError !== undefined, undefined, { timeout: 0, polling: 1000 });
    const error = await page.evaluate(() => window.suiteError);
    if (error) throw new Error(`the benchmark page failed: ${error}`);
    const result = (await page.evaluate(() => window.suiteResult)) as SuiteResult;
    const withBrowser: SuiteResult = { ...result, environment: `${browser.version()} (${result.environment})` };
    console.log(`\n${suiteMarkdown(withBrowser)}\n`);
    await saveSuite(withBrowser, a.out ?? `bench/results/suite-chromium-${result.date.slice(0, 10)}.json`, a.plot);
  } finally {
    await browser.close();
    await server.close();
  }
}
