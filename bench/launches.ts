/**
 * Launches (compute dispatches) and submits per decode step for each family, with each kernel variant:
 * a step that only applies (mid-chunk) and one that also completes a chunk (the chunk update, or
 * TTT-E2E's inner step, recorded in the same pass). Counted by the engine (stats().dispatchesLastBlock,
 * submitsLastFeed), not timed, so the figures are the same on any adapter. Per layer: the step's launches
 * less the three outside the layers (embedding, LM head with the final norm in its loads, sampler), over the layers; the chunk
 * update's: the chunk-completing step's launches less the plain step's, over the layers.
 *
 *   npm run bench -- launches
 */
import { Engine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import type { KernelVariant } from '../src/gpu/kernel-variant.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';
import { BENCH_MODELS, type BenchMode } from './models.ts';

const MODES: BenchMode[] = ['ttt', 'ttt-e2e', 'sliding-window', 'full-attention'];
/** Launches of a step outside the layers: embedding, LM head (the final norm fused into its loads), sampler. */
const OUTSIDE = 3;

function layersAndChunk(mode: BenchMode): { layers: number; chunk: number | null } {
  const c = BENCH_MODELS[mode].config as unknown as Record<string, number | null>;
  if (mode === 'ttt-e2e') return { layers: c.numLayers as number, chunk: c.miniBatchSize as number };
  return { layers: c.numLayers as number, chunk: mode === 'ttt' ? (c.chunkSize as number) : null };
}

export async function main(): Promise<void> {
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  console.log(`device: ${gpu.description}\ncommand: npm run bench -- launches\n`);
  console.log('| family | kernels | layers | decode step: launches | per layer | submits | chunk-completing step: launches | chunk update per layer |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const mode of MODES) {
    const { layers, chunk } = layersAndChunk(mode);
    for (const variant of ['cpu', 'gpu'] as KernelVariant[]) {
      const ctx = new GpuContext(gpu.device, { kernels: variant });
      const e = await Engine.create(ctx, BENCH_MODELS[mode], { weights: 'f16', logprobs: false });
      const C = chunk ?? 64;
      // A decode step mid-chunk (position C + 1); then the step whose block records chunk 1's update:
      // LaCT learns in the block that ends the chunk (position 2C - 1), TTT-E2E in the block that starts
      // the next one (position 2C, once the chunk's last target is known).
      await e.feed(Array.from({ length: C + 1 }, (_, i) => 1 + (i % 200)));
      await e.feed([5], { sample: { temperature: 0 } });
      const mid = e.stats();
      let chunkStep = '';
      if (chunk) {
        const at = mode === 'ttt-e2e' ? 2 * C : 2 * C - 1;
        await e.feed(Array.from({ length: at - (C + 2) }, (_, i) => 1 + (i % 200)));
        await e.feed([5], { sample: { temperature: 0 } });
        const s = e.stats();
        chunkStep = `${s.dispatchesLastBlock} | ${((s.dispatchesLastBlock - mid.dispatchesLastBlock) / layers).toFixed(1)}`;
      }
      console.log(`| ${mode} | ${variant} | ${layers} | ${mid.dispatchesLastBlock} | ${((mid.dispatchesLastBlock - OUTSIDE) / layers).toFixed(1)} | ${mid.submitsLastFeed} | ${chunkStep || 'no chunks | -'} |`);
      await e.destroy();
    }
  }
  gpu.device.destroy();
}
