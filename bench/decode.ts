/**
 * Decode latency and GPU memory at growing context, TTT beside sliding-window and full attention, on
 * one device in one run (ratios are what the CPU backends can tell; absolute times only on a real GPU).
 */
import { LactEngine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';
import { BENCH_MODELS } from './models.ts';

const now = () => performance.now();

export async function main(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const contexts = quick ? [256, 1024] : [1024, 4096, 16384];
  const steps = quick ? 8 : 16;
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const ctx = new GpuContext(gpu.device);
  console.log(`device: ${gpu.description}`);
  console.log(`command: npm run bench -- decode ${args.join(' ')}`.trim());
  const rows: string[] = [];
  for (const [mode, model] of Object.entries(BENCH_MODELS)) {
    const engine = await LactEngine.create(ctx, model, { weights: 'f16', maxContext: contexts[contexts.length - 1] + steps + 8, maxRows: 256 });
    let fed = 0;
    const prefillTimes: string[] = [];
    for (const target of contexts) {
      const t0 = now();
      while (fed < target) {
        const n = Math.min(1024, target - fed);
        await engine.prefill(Array.from({ length: n }, (_, i) => (fed + i) % 256));
        fed += n;
      }
      await ctx.device.queue.onSubmittedWorkDone();
      prefillTimes.push(`${((now() - t0) / 1000).toFixed(1)} s`);
      // Decode: feed a token, sample on the GPU, read back the id; the first two steps warm up.
      let tok = 65;
      for (let i = 0; i < 2; i++) tok = await engine.step(tok, { temperature: 0 });
      const t1 = now();
      for (let i = 0; i < steps; i++) tok = await engine.step(tok, { temperature: 0 });
      const ms = (now() - t1) / steps;
      fed = engine.position;
      const mem = engine.memory();
      rows.push(`| ${mode} | ${target} | ${ms.toFixed(2)} | ${engine.lastDispatches} | ${kib(mem.kv)} | ${kib(mem.fastWeights + mem.momentum + mem.pending)} | ${kib(mem.activations)} | ${kib(mem.weights)} | ${kib(mem.total)} |`);
      console.log(rows[rows.length - 1]);
    }
    engine.destroy();
  }
  console.log('\n| mode | context | decode ms/token | dispatches/step | KV KiB | fast state KiB | activations KiB | weights KiB | total KiB |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) console.log(r);
  gpu.device.destroy();
}

function kib(b: number): string {
  return (b / 1024).toFixed(0);
}
