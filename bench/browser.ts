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
import { runBenchPage } from './browser-page.ts';
import { parseSuiteArgs, suiteMarkdown, type SuiteResult } from './suite-core.ts';
import { saveSuite } from './suite.ts';

export async function main(args: string[]): Promise<void> {
  const a = parseSuiteArgs(args, { contexts: [1024, 2048, 4096] });
  const { result, browserVersion } = await runBenchPage<SuiteResult>('/bench/browser/index.html', args, { result: 'suiteResult', error: 'suiteError' }, ['onnxruntime-web']);
  const withBrowser: SuiteResult = { ...result, environment: `${browserVersion} (${result.environment})` };
  console.log(`\n${suiteMarkdown(withBrowser)}\n`);
  await saveSuite(withBrowser, a.out ?? `bench/results/suite-chromium-${result.date.slice(0, 10)}.json`, a.plot);
}
