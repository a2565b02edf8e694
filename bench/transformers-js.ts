/**
 * `npm run bench -- transformers-js [--contexts 1024,2048,4096] [--steps 32] [--out FILE.json]`: our
 * full-attention engine against transformers.js's own generate() on the same weights, in one Chromium
 * page (bench/browser/transformers-js.ts). Installs transformers.js into bench/transformers-js/ on first
 * use (npm, from its package-lock.json; no install scripts, so nothing is downloaded but the npm
 * packages), writes the model folder (bench/transformers-js-folder.ts), and prints the table for
 * BENCHMARKS.md. Headless Chromium here runs WebGPU on SwiftShader, where onnxruntime-web's device is made
 * without `subgroups` (its subgroup kernels give wrong logits there; `--ort-subgroups` keeps them).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBenchPage } from './browser-page.ts';
import { greedyAgreement, tjsMarkdown, type TjsResult } from './transformers-js-core.ts';
import { writeTransformersJsFolder } from './transformers-js-folder.ts';

const pkg = fileURLToPath(new URL('./transformers-js/', import.meta.url));

function installTransformersJs(): void {
  if (existsSync(`${pkg}node_modules/@huggingface/transformers/package.json`)) return;
  console.log('installing transformers.js into bench/transformers-js/ (npm ci, about 470 MB, once)...');
  const r = spawnSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: pkg, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('npm ci in bench/transformers-js/ failed');
}

export async function main(args: string[]): Promise<void> {
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const contexts = (flag('--contexts') ?? '1024,2048,4096').split(',').map(Number);
  if (contexts.some((n) => !Number.isInteger(n) || n < 2)) throw new Error('--contexts: a comma-separated list of integers >= 2');
  const steps = Number(flag('--steps') ?? 32);
  if (!Number.isInteger(steps) || steps < 8) throw new Error('--steps: an integer >= 8');
  const command = `npm run bench -- transformers-js${args.length ? ` ${args.join(' ')}` : ''}`;
  installTransformersJs();
  const { folder, maxPositions } = await writeTransformersJsFolder(`${pkg}models`);
  if (Math.max(...contexts) + steps > maxPositions) throw new Error(`the graph's cos/sin caches hold ${maxPositions} positions`);
  console.log(`model folder: ${folder}`);

  const page = await runBenchPage<TjsResult>('/bench/browser/transformers-js.html', { contexts, steps, command, ortSubgroups: args.includes('--ort-subgroups') },
    { result: 'tjsResult', error: 'tjsError' }, ['onnxruntime-web', '@huggingface/transformers']);
  const result = page.result;
  const withBrowser: TjsResult = { ...result, environment: `${page.browserVersion} (${result.environment})` };
  console.log(`\n${tjsMarkdown(withBrowser)}\n`);
  for (const c of contexts) {
    const mine = result.rows.find((r) => r.contender === 'full-attention' && r.context === c)!;
    const other = result.rows.find((r) => r.contender === 'transformers.js' && r.context === c)!;
    const a = greedyAgreement(mine.tokens, other.tokens);
    if (a.same !== a.compared) console.log(`context ${c}: greedy outputs differ at token ${a.same} (ours ${mine.tokens.slice(0, a.same + 1).join(',')}; transformers.js ${other.tokens.slice(0, a.same + 1).join(',')})`);
  }
  const out = flag('--out') ?? `bench/results/transformers-js-chromium-${result.date.slice(0, 10)}.json`;
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(withBrowser, null, 1)}\n`);
  console.log(`wrote ${out}`);
}
