/**
 * Decode latency and GPU memory at growing context, TTT beside sliding-window and full attention, on
 * one device in one run. These CPU backends are noisy, so every (mode, context) pair gets its own engine,
 * all are prefilled first, and then their decode steps are interleaved round-robin: drift and background
 * load hit every pair alike, and the ratios between pairs are what the table is for.
 *
 *   npm run bench -- decode [--quick] [--rounds N] [--modes ttt,...] [--contexts 1024,4096] [--kernels cpu,gpu]
 *
 * --kernels runs each kernel variant (src/gpu/kernel-variant.ts) on the same device, interleaved with the
 * rest; without it the adapter's own choice.
 */
import { Engine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';
import { BENCH_MODELS } from './models.ts';

const now = () => performance.now();

interface Run {
  mode: string;
  kernels: string;
  context: number;
  engine: Engine;
  prefillTokS: number;
  times: number[];
  dispatches: Set<number>;
  token: number;
}

export async function main(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const contexts = flag(args, '--contexts')?.split(',').map(Number) ?? (quick ? [256, 1024] : [1024, 4096, 16384]);
  if (contexts.some((c) => !(Number.isInteger(c) && c > 0))) throw new RangeError(`--contexts: positive integers, got ${flag(args, '--contexts')}`);
  const rounds = Number(flag(args, '--rounds') ?? (quick ? 8 : 64));
  const modes = (flag(args, '--modes') ?? Object.keys(BENCH_MODELS).join(',')).split(',');
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const variants = flag(args, '--kernels')?.split(',') ?? ['auto'];
  for (const v of variants) if (!['auto', 'cpu', 'gpu'].includes(v)) throw new RangeError(`--kernels: auto, cpu or gpu, got ${v}`);
  const gpuContexts = new Map(variants.map((v) => [v, new GpuContext(gpu.device, { kernels: v as 'auto' | 'cpu' | 'gpu' })]));
  console.log(`device: ${gpu.description}`);
  console.log(`command: npm run bench -- decode ${args.join(' ')}`.trim());
  console.log(`model: ${JSON.stringify(BENCH_MODELS.ttt.config)}`);

  const runs: Run[] = [];
  for (const [mode, model] of Object.entries(BENCH_MODELS)) {
    if (!modes.includes(mode)) continue;
    for (const [variant, ctx] of gpuContexts) for (const context of contexts) {
      const engine = await Engine.create(ctx, model, { weights: 'f16', maxContext: context + rounds + 16, maxRows: 256 });
      const t0 = now();
      for (let fed = 0; fed < context; ) {
        const n = Math.min(1024, context - fed);
        await engine.feed(Array.from({ length: n }, (_, i) => (fed + i) % 256));
        fed += n;
      }
      await gpu.device.queue.onSubmittedWorkDone();
      const prefillTokS = context / ((now() - t0) / 1000);
      // Warm-up: the first decode steps compile the one-row pipelines.
      let token = 65;
      for (let i = 0; i < 4; i++) token = await engine.step(token, { temperature: 0 });
      const kernels = `${variant === 'auto' ? 'auto: ' : ''}${ctx.kernelVariant}`;
      runs.push({ mode, kernels, context, engine, prefillTokS, times: [], dispatches: new Set(), token });
      process.stderr.write(`prefilled ${mode} (${kernels} kernels) to ${context} (${prefillTokS.toFixed(0)} tok/s)\n`);
    }
  }
  // Decode: each step feeds one token, samples the next on the GPU and reads back only its id.
  // The order is reshuffled every round: the step after the slowest engine's runs with colder caches, and
  // a fixed order would charge that to whichever engine always comes next.
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let r = 0; r < rounds; r++) {
    const order = [...runs];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (const run of order) {
      const t = now();
      run.token = await run.engine.step(run.token, { temperature: 0 });
      run.times.push(now() - t);
      run.dispatches.add(run.engine.lastDispatches);
    }
  }

  console.log('\n| mode | kernels | context | decode ms/token (min) | (median) | (mean) | vs. same mode and kernels at first context | prefill tok/s | dispatches/step | KV in use KiB | KV allocated KiB | fast-weight state KiB | activations+scratch KiB | weights KiB | total allocated KiB |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const base = new Map<string, number>();
  for (const run of runs) {
    const sorted = [...run.times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    const mean = run.times.reduce((a, b) => a + b, 0) / run.times.length;
    const key = `${run.mode} ${run.kernels}`;
    if (!base.has(key)) base.set(key, median);
    const mem = run.engine.memory();
    console.log(`| ${run.mode} | ${run.kernels} | ${run.context} | ${sorted[0].toFixed(2)} | ${median.toFixed(2)} | ${mean.toFixed(2)} | ${(median / base.get(key)!).toFixed(2)}x | ${run.prefillTokS.toFixed(0)} | ${[...run.dispatches].sort((a, b) => a - b).join(' / ')} | ${kib(run.engine.kvBytesInUse())} | ${kib(mem.kv)} | ${kib(mem.fastWeights + mem.momentum + mem.pending)} | ${kib(mem.activations + mem.scratch)} | ${kib(mem.weights)} | ${kib(mem.total)} |`);
  }
  for (const run of runs) run.engine.destroy();
  gpu.device.destroy();
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function kib(b: number): string {
  return (b / 1024).toFixed(0);
}
