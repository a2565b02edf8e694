/**
 * Kernel throughput on one device: the engine's matmul at several tile shapes (its best is the yardstick)
 * and the fast-weight chunk update of the benchmark TTT model, in GFLOP/s, timed over repeated submits.
 */
import { BlockParams } from '../src/gpu/block.ts';
import { GpuContext, type WeightStorage } from '../src/gpu/context.ts';
import { MatmulOp, type MatmulTiles } from '../src/gpu/ops/matmul.ts';
import { FastWeightLayer, gateColumns } from '../src/gpu/ops/fast-weights.ts';
import { referenceWeights } from '../src/reference/weights.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';
import { BENCH_MODELS } from './models.ts';

const TILES: MatmulTiles[] = [
  { tm: 4, tn: 4, wgx: 8, wgy: 8 },
  { tm: 4, tn: 4, wgx: 16, wgy: 4 },
  { tm: 8, tn: 4, wgx: 8, wgy: 8 },
  { tm: 2, tn: 2, wgx: 16, wgy: 16 },
  { tm: 1, tn: 4, wgx: 64, wgy: 1 },
];

async function time(ctx: GpuContext, reps: number, record: (pass: GPUComputePassEncoder) => void): Promise<number> {
  const once = async () => {
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    record(pass);
    pass.end();
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
  };
  await once(); // compile and warm up
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await once();
  return (performance.now() - t0) / reps / 1000;
}

export async function main(args: string[]): Promise<void> {
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const ctx = new GpuContext(gpu.device);
  const block = new BlockParams(ctx);
  console.log(`device: ${gpu.description}`);
  console.log(`command: npm run bench -- kernels ${args.join(' ')}`.trim());
  const n = args.includes('--quick') ? 256 : 512;
  const reps = 3;
  const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const a = ctx.allocator.create('A', 'scratch', n * n * 4, S);
  const c = ctx.allocator.create('C', 'scratch', n * n * 4, S);
  console.log(`\n| kernel | weights | tile (TMxTN, WGXxWGY) | shape | GFLOP/s |\n| --- | --- | --- | --- | --- |`);
  let best = 0;
  for (const storage of ['f32', 'f16'] as WeightStorage[]) {
    if (storage === 'f16' && !ctx.features.shaderF16) continue;
    const b = ctx.allocator.create('B', 'scratch', n * n * (storage === 'f32' ? 4 : 2), S);
    for (const t of TILES) {
      const op = new MatmulOp(ctx, 'bench', { M: n, N: n, K: n, a: { row: n, col: 1 }, b: { row: n, col: 1 }, c: { row: n, col: 1 }, weight: storage }, { a, b, c }, block, { wide: t, narrow: t });
      const s = await time(ctx, reps, (p) => op.encode(p, n));
      const gf = op.flops(n) / s / 1e9;
      best = Math.max(best, gf);
      console.log(`| matmul | ${storage} | ${t.tm}x${t.tn}, ${t.wgx}x${t.wgy} | ${n}³ | ${gf.toFixed(2)} |`);
    }
  }

  // The chunk update of one layer of the benchmark TTT model (C tokens): gradients, momentum, Muon, renorm.
  const model = BENCH_MODELS.ttt;
  const cfg = model.config;
  const f = referenceWeights(cfg, model.weights).layers[0].fast!;
  const init = { w0: Float32Array.from(f.w0), w1: Float32Array.from(f.w1), w2: Float32Array.from(f.w2), qkScale: Float32Array.from(f.qkScale), qkOffset: Float32Array.from(f.qkOffset), tttNorm: Float32Array.from(f.tttNorm) };
  const D = cfg.hiddenSize, C = cfg.chunkSize;
  const act = (floats: number) => ctx.allocator.create('act', 'activations', floats * 4, S | GPUBufferUsage.COPY_SRC);
  const io = { qkv: act(C * 3 * D), gates: act(C * gateColumns(cfg).total), out: act(C * D) };
  const fw = new FastWeightLayer(ctx, 'bench fw', cfg, init, io, block, C);
  block.write(C, 0);
  const s = await time(ctx, reps, (p) => fw.encodeLearn(p));
  const flops = fw.flops('learn');
  console.log(`| fast-weight chunk update (C=${C}, ${cfg.numFwHeads} heads, df=${cfg.fwHeadDim}, dh=${cfg.fwHidden}, Muon) | f32 | engine tiles | ${fw.dispatches('learn', C)} dispatches | ${(flops / s / 1e9).toFixed(2)} |`);
  console.log(`\nchunk update: ${(s * 1000).toFixed(1)} ms for ${(flops / 1e6).toFixed(1)} MFLOP = ${(flops / s / 1e9 / best * 100).toFixed(0)}% of the best matmul (${best.toFixed(2)} GFLOP/s)`);
  gpu.device.destroy();
}
