/**
 * What `logprobs` (on by default in the public API) costs in GPU memory: each bundled trained model's
 * engine with and without it, as its allocator reports (f16 weights, the engine's default rows).
 *
 *   npm run bench -- logprobs-memory
 */
import { Engine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import { loadModel } from '../src/model/load.ts';
import { NodeDirectorySource } from '../src/model/source.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';

const MODELS = ['docs-lact', 'docs-swa', 'docs-full', 'docs-e2e'];

export async function main(): Promise<void> {
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const ctx = new GpuContext(gpu.device);
  console.log(`device: ${gpu.description}\ncommand: npm run bench -- logprobs-memory\n`);
  console.log('| model | rows per block | GPU bytes without | with logprobs | more |\n| --- | ---: | ---: | ---: | ---: |');
  for (const name of MODELS) {
    const model = await loadModel(new NodeDirectorySource(`public/models/${name}`));
    const sizes: number[] = [];
    let rows = 0;
    for (const logprobs of [false, true]) {
      const e = await Engine.create(ctx, model, { weights: 'f16', logprobs });
      sizes.push(e.memory().total);
      rows = e.info.maxRows;
      await e.destroy();
    }
    console.log(`| ${name} | ${rows} | ${sizes[0].toLocaleString('en')} | ${sizes[1].toLocaleString('en')} | ${(sizes[1] - sizes[0]).toLocaleString('en')} (${((100 * (sizes[1] - sizes[0])) / sizes[0]).toFixed(1)}%) |`);
  }
  gpu.device.destroy();
}
