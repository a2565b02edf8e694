/**
 * Soak: stream a long text through one TTT model and watch that nothing drifts, leaks or blows up.
 *
 *   npm run bench -- soak [--model public/models/tiny-random-lact] [--tokens 1000000] [--minutes 30]
 *                         [--every 16384] [--weights f16|f32]
 *
 * Feeds the text (the project's own sources, cycled) in prefill calls of 4096 tokens until --tokens or
 * --minutes, whichever comes first. Every --every tokens it records: GPU bytes allocated (must not change
 * after creation), 8 decode steps' median latency (must stay flat), the last logits (must be finite),
 * and from the saved memory the fast weights (finite, and every row norm at its renormalisation target).
 */
import { configOfFamily } from '../src/model/model-config.ts';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../src/engine/engine.ts';
import { decodeMemory } from '../src/engine/memory-blob.ts';
import { GpuContext } from '../src/gpu/context.ts';
import { loadModel } from '../src/model/load.ts';
import { NodeDirectorySource } from '../src/model/source.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';

/** The text: every .ts and .wgsl file under src/ and shaders/, concatenated (about 0.5 MB). */
function corpus(): Uint8Array {
  const parts: Buffer[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ts|wgsl)$/.test(f)) parts.push(readFileSync(p));
    }
  };
  walk('src');
  walk('shaders');
  return new Uint8Array(Buffer.concat(parts));
}

/** Row norms, per head: W0 and W2 rows over df, W1 rows over dh (columns of the stored W1^T). */
function rowNorms(w: Float32Array, Hf: number, dh: number, df: number): Float64Array {
  const S = dh * df, out = new Float64Array(Hf * (2 * dh + df));
  let n = 0;
  for (let h = 0; h < Hf; h++) {
    const o = 3 * h * S;
    for (let t = 0; t < 2 * dh; t++) {
      let ss = 0;
      for (let k = 0; k < df; k++) ss += w[o + t * df + k] ** 2;
      out[n++] = Math.sqrt(ss);
    }
    for (let r = 0; r < df; r++) {
      let ss = 0;
      for (let j = 0; j < dh; j++) ss += w[o + 2 * S + j * df + r] ** 2;
      out[n++] = Math.sqrt(ss);
    }
  }
  return out;
}

export async function main(args: string[]): Promise<void> {
  const modelDir = flag(args, '--model') ?? 'public/models/tiny-random-lact';
  const maxTokens = Number(flag(args, '--tokens') ?? 1_000_000);
  const minutes = Number(flag(args, '--minutes') ?? 30);
  const every = Number(flag(args, '--every') ?? 16384);
  const weights = (flag(args, '--weights') ?? 'f16') as 'f16' | 'f32';
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const model = await loadModel(new NodeDirectorySource(modelDir));
  const c = configOfFamily(model.config, 'lact');
  if (!c.useFastWeights) throw new Error('soak needs a TTT model');
  const engine = await Engine.create(new GpuContext(gpu.device), model, { weights });
  const text = corpus();
  console.log(`device: ${gpu.description}`);
  console.log(`command: npm run bench -- soak ${args.join(' ')}`.trim());
  console.log(`model: ${modelDir} (${engine.info.weights}); text: src/ + shaders/, ${text.length} bytes, cycled`);

  const fastWeights = async (): Promise<Float32Array[]> => {
    const { sections } = decodeMemory(await engine.saveMemory());
    return Array.from({ length: c.numLayers }, (_, l) => {
      const b = sections.get(`layer${l}.fastWeights`)!;
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    });
  };
  const targets = (await fastWeights()).map((w) => rowNorms(w, c.numFwHeads, c.fwHidden, c.fwHeadDim));
  const bytes0 = engine.memory().total;

  console.log('\n| tokens | minutes | prefill tok/s | decode ms (median of 8) | GPU bytes | logits finite | fast weights finite | max row-norm deviation |');
  console.log('| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |');
  const t0 = performance.now();
  let fed = 0, at = 0, next = 0, worstNorm = 0, bytesChanged = false, nonFinite = false;
  const decodeMedians: number[] = [];
  while (fed < maxTokens && performance.now() - t0 < minutes * 60_000) {
    const n = Math.min(4096, maxTokens - fed);
    const seg = Array.from({ length: n }, (_, i) => text[(at + i) % text.length]);
    at = (at + n) % text.length;
    const ts = performance.now();
    const { logits } = await engine.feed(seg, { logits: 'last' });
    const prefillTokS = n / ((performance.now() - ts) / 1000);
    fed += n;
    if (fed < next && fed < maxTokens) continue;
    next = fed + every;
    const times: number[] = [];
    let tok = seg[seg.length - 1];
    for (let i = 0; i < 8; i++) {
      const s = performance.now();
      tok = await engine.step(tok, { temperature: 0 });
      times.push(performance.now() - s);
    }
    fed += 8;
    times.sort((a, b) => a - b);
    const median = (times[3] + times[4]) / 2;
    decodeMedians.push(median);
    const fw = await fastWeights();
    let finite = true, dev = 0;
    fw.forEach((w, l) => {
      if (!w.every(Number.isFinite)) finite = false;
      rowNorms(w, c.numFwHeads, c.fwHidden, c.fwHeadDim).forEach((v, i) => (dev = Math.max(dev, Math.abs(v - targets[l][i]) / targets[l][i])));
    });
    const logitsFinite = logits!.every(Number.isFinite);
    const bytes = engine.memory().total;
    bytesChanged ||= bytes !== bytes0;
    nonFinite ||= !finite || !logitsFinite;
    worstNorm = Math.max(worstNorm, dev);
    console.log(`| ${fed} | ${((performance.now() - t0) / 60_000).toFixed(1)} | ${prefillTokS.toFixed(0)} | ${median.toFixed(2)} | ${bytes} | ${logitsFinite ? 'yes' : 'NO'} | ${finite ? 'yes' : 'NO'} | ${dev.toExponential(2)} |`);
  }
  const q = Math.max(1, Math.floor(decodeMedians.length / 4));
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const first = mean(decodeMedians.slice(0, q)), last = mean(decodeMedians.slice(-q));
  console.log(`\n${fed} tokens in ${((performance.now() - t0) / 60_000).toFixed(1)} min (${fed >= maxTokens ? 'all asked for' : `stopped at the ${minutes}-minute limit`}).`);
  console.log(`GPU bytes: ${bytes0} at creation, ${bytesChanged ? 'CHANGED' : 'never changed'}; non-finite values: ${nonFinite ? 'SEEN' : 'none'}; worst row-norm deviation ${worstNorm.toExponential(2)}; decode median, last quarter / first quarter of the run: ${(last / first).toFixed(2)}x`);
  engine.destroy();
  gpu.device.destroy();
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
