/**
 * Long-context quality, measured by the engine: mean loss in bits per byte by position bucket over the
 * evaluation manuals (data/eval/*.txt, built by train/data/build_data.py), for one model folder.
 *
 *   npm run bench -- quality --model runs/lact-4m/model [--max-tokens 65536] [--docs a,b] [--out F.json]
 *                            [--dump DOC --dump-out F.f32] [--weights f32|f16]
 *                            [--learn [CHUNK,LR,CLIP]] [--no-learn] [--past N] [--ranges A:B,C:]
 *
 * `--learn`: a sliding-window model learns while reading with its top MLP (the engine's
 * learnWhileReading; default 512,1,1). TTT-E2E models learn by default, their inner steps included;
 * `--no-learn` runs them frozen (learn: false). The summary gives the mean over positions >= N too
 * (`--past`, default 2048), and `--ranges` the mean over each half-open range of positions [A, B) (B empty:
 * to the end), for targets stated on ranges that the buckets do not isolate (e.g. 0 to the window).
 *
 * Each document is fed as BOS + its UTF-8 bytes from position 0, in segments; the loss at position p is
 * -log2 P(token p+1 | tokens 0..p), from the engine's per-token log-probabilities (feed's `logprobs`,
 * computed on the GPU; 4 bytes a token read back). TTT and sliding-window models run
 * any length in constant memory; full attention needs --max-tokens (its cache is sized to the document).
 * `--dump` writes one document's per-position losses (float32, bits) for the PyTorch cross-check
 * (train/eval_quality.py --cross-check).
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Engine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import { loadModel } from '../src/model/load.ts';
import { NodeDirectorySource } from '../src/model/source.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';

/** Bucket upper edges (tokens): 0-512, 512-1K, 1-2K, ... doubling as far as the documents go. */
export function bucketOf(position: number): number {
  if (position < 512) return 0;
  return Math.floor(Math.log2(position / 512)) + 1;
}

export function bucketLabel(b: number): string {
  const k = (n: number) => (n >= 1024 ? `${n / 1024}K` : `${n}`);
  const lo = b === 0 ? 0 : 512 * 2 ** (b - 1);
  return `${k(lo)}-${k(512 * 2 ** b)}`;
}

const SEGMENT = 4096;

export async function main(args: string[]): Promise<void> {
  const modelDir = flag(args, '--model') ?? 'public/models/ttt-lact/';
  const dataDir = flag(args, '--data') ?? 'data/eval';
  const maxTokens = Number(flag(args, '--max-tokens') ?? 0);
  const weights = (flag(args, '--weights') ?? 'f32') as 'f32' | 'f16';
  const only = flag(args, '--docs')?.split(',');
  const dump = flag(args, '--dump');
  const out = flag(args, '--out');
  const learnArg = args.includes('--learn') ? (flag(args, '--learn') ?? '') : null;
  const learnWhileReading = learnArg === null ? undefined : learnArg === '' || learnArg.startsWith('--') ? true : (() => {
    const [chunk, lr, clip] = learnArg.split(',').map(Number);
    return { chunk, lr, clip };
  })();
  const learn = !args.includes('--no-learn');
  const past = Number(flag(args, '--past') ?? 2048);
  const ranges = parseRanges(flag(args, '--ranges'));

  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const model = await loadModel(new NodeDirectorySource(modelDir));
  const docs = readdirSync(dataDir).filter((f) => f.endsWith('.txt')).map((f) => basename(f, '.txt')).filter((d) => !only || only.includes(d)).sort();
  const bos = model.tokenizer.bosId;
  const texts = docs.map((d) => {
    const bytes = readFileSync(join(dataDir, `${d}.txt`));
    const ids = bos === null ? Array.from(bytes) : [bos, ...bytes];
    return maxTokens > 0 ? ids.slice(0, maxTokens + 1) : ids;
  });
  const longest = Math.max(...texts.map((t) => t.length));
  const engine = await Engine.create(new GpuContext(gpu.device), model, { weights, logprobs: true, maxContext: model.config.family === 'lact' && model.config.windowSize === null ? longest : undefined, learnWhileReading, learn });
  console.log(`device: ${gpu.description}`);
  console.log(`command: npm run bench -- quality ${args.join(' ')}`);
  const learning = engine.stats().learning !== null ? (learnWhileReading ? `learning while reading: ${JSON.stringify(learnWhileReading)}` : 'learning (its inner steps)') : 'not learning';
  console.log(`model: ${modelDir} (${engine.info.mode}, ${engine.info.weights} weights, ${learning})`);

  const sums: number[] = [];
  const counts: number[] = [];
  let pastSum = 0, pastCount = 0;
  const perDoc: Record<string, { tokens: number; bits: number[]; counts: number[]; seconds: number }> = {};
  const t0 = performance.now();
  let total = 0;
  for (const [di, doc] of docs.entries()) {
    const ids = texts[di];
    const dsum: number[] = [];
    const dcnt: number[] = [];
    const dumped = doc === dump ? new Float32Array(ids.length - 1) : null;
    await engine.reset();
    const td = performance.now();
    // The engine's per-token log-probabilities (computed on the GPU): token k's is position k-1's loss.
    for (let s = 0; s < ids.length; s += SEGMENT) {
      const seg = ids.slice(s, Math.min(s + SEGMENT, ids.length));
      const { logprobs } = await engine.feed(seg, { logprobs: true });
      for (let r = 0; r < seg.length; r++) {
        const p = s + r - 1;
        if (p < 0) continue;
        const bits = -logprobs![r] / Math.LN2;
        const b = bucketOf(p);
        dsum[b] = (dsum[b] ?? 0) + bits;
        dcnt[b] = (dcnt[b] ?? 0) + 1;
        if (p >= past) { pastSum += bits; pastCount++; }
        for (const r of ranges) if (p >= r.from && p < r.to) { r.sum += bits; r.tokens++; }
        if (dumped) dumped[p] = bits;
      }
    }
    const seconds = (performance.now() - td) / 1000;
    total += ids.length - 1;
    dsum.forEach((v, b) => {
      sums[b] = (sums[b] ?? 0) + v;
      counts[b] = (counts[b] ?? 0) + dcnt[b];
    });
    perDoc[doc] = { tokens: ids.length - 1, bits: dsum.map((v, b) => v / dcnt[b]), counts: dcnt, seconds };
    const mean = dsum.reduce((a, v) => a + v, 0) / (ids.length - 1);
    console.log(`${doc}: ${ids.length - 1} tokens, ${mean.toFixed(4)} bits/byte, ${((ids.length - 1) / seconds).toFixed(0)} tokens/s`);
    if (dumped) writeFileSync(flag(args, '--dump-out') ?? `${doc}.nll.f32`, new Uint8Array(dumped.buffer));
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(`\n| position | tokens | bits/byte |\n| --- | ---: | ---: |`);
  for (let b = 0; b < sums.length; b++) if (counts[b]) console.log(`| ${bucketLabel(b)} | ${counts[b]} | ${(sums[b] / counts[b]).toFixed(4)} |`);
  if (pastCount) console.log(`\npositions >= ${past}: ${pastCount} tokens, ${(pastSum / pastCount).toFixed(4)} bits/byte`);
  for (const r of ranges) if (r.tokens) console.log(`positions ${r.from}-${Number.isFinite(r.to) ? r.to : 'end'}: ${r.tokens} tokens, ${(r.sum / r.tokens).toFixed(4)} bits/byte`);
  console.log(`\n${total} tokens in ${seconds.toFixed(0)} s (${(total / seconds).toFixed(0)} tokens/s)`);
  if (out) {
    const buckets = sums.map((s, b) => ({ bucket: bucketLabel(b), tokens: counts[b], bits: s / counts[b] }));
    writeFileSync(out, JSON.stringify({ model: modelDir, family: engine.info.family, mode: engine.info.mode, weights: engine.info.weights, learning, device: gpu.description, maxTokens, buckets, past: pastCount ? { from: past, tokens: pastCount, bits: pastSum / pastCount } : null, ranges: ranges.map((r) => ({ from: r.from, to: Number.isFinite(r.to) ? r.to : null, tokens: r.tokens, bits: r.tokens ? r.sum / r.tokens : null })), perDoc, seconds, source: 'engine' }, null, 1));
  }
  await engine.destroy();
  gpu.device.destroy();
}

/** `0:256,1024:` -> [0, 256) and [1024, end). */
export function parseRanges(arg: string | undefined): { from: number; to: number; sum: number; tokens: number }[] {
  if (!arg) return [];
  return arg.split(',').map((part) => {
    const m = /^(\d+):(\d*)$/.exec(part.trim());
    if (!m) throw new Error(`--ranges: expected A:B or A:, got "${part}"`);
    const from = Number(m[1]);
    const to = m[2] === '' ? Infinity : Number(m[2]);
    if (!(to > from)) throw new Error(`--ranges: empty range "${part}"`);
    return { from, to, sum: 0, tokens: 0 };
  });
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
