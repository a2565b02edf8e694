/**
 * Kernel throughput on one device, in GFLOP/s, timed over repeated submits: the engine's matmul at several
 * tile shapes (the best of them is the yardstick every other kernel is compared with), the fast-weight chunk
 * update of the benchmark TTT model, its last launch (momentum, Newton-Schulz, renorm) alone, and full attention over a 4K-token cache
 * (a prefill block and a decode row).
 *
 *     npm run bench -- kernels [--quick] [--attention-context N (default 4096)]
 *
 * `measureKernels` is also run by the benchmark suite (bench/suite.ts), in the same run as its tables.
 */
import { BlockParams } from '../src/gpu/block.ts';
import { GpuContext, type WeightStorage } from '../src/gpu/context.ts';
import { AttentionOp, CPU_ROW_BLOCK } from '../src/gpu/ops/attention.ts';
import { KvCache } from '../src/gpu/ops/kv-cache.ts';
import { FastWeightLayer, projectionRowWidth } from '../src/gpu/ops/fast-weights.ts';
import { CPU_TILES, MatmulOp, type MatmulTiles } from '../src/gpu/ops/matmul.ts';
import { E2EAttentionBackwardOp, E2EAttentionOp } from '../src/gpu/ops/e2e-attention.ts';
import { CrossEntropyOp } from '../src/gpu/ops/e2e-cross-entropy.ts';
import { SwigluBackwardOp } from '../src/gpu/ops/swiglu-backward.ts';
import { referenceWeights } from '../src/reference/weights.ts';
import { BENCH_MODELS } from './models.ts';

const TILES: MatmulTiles[] = [
  { tm: 4, tn: 4, wgx: 8, wgy: 8 },
  { tm: 4, tn: 4, wgx: 16, wgy: 4 },
  { tm: 8, tn: 4, wgx: 8, wgy: 8 },
  { tm: 2, tn: 2, wgx: 16, wgy: 16 },
  { tm: 1, tn: 4, wgx: 64, wgy: 1 },
];

export interface KernelRow {
  readonly kernel: string;
  /** What the kernel computed, in words (shape, tiles, dispatches). */
  readonly shape: string;
  readonly weights: string;
  readonly flops: number;
  readonly seconds: number;
  readonly gflops: number;
  /** GFLOP/s as a fraction of the best matmul measured in the same run. */
  readonly ofBestMatmul: number;
}

export interface KernelReport {
  readonly bestMatmulGflops: number;
  readonly rows: readonly KernelRow[];
}

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

/** Runs every kernel measurement on `ctx`'s device; `n` is the matmul size (n³), `reps` submits per figure. */
export async function measureKernels(ctx: GpuContext, opts: { n?: number; reps?: number; attentionContext?: number } = {}): Promise<KernelReport> {
  const n = opts.n ?? 512;
  const reps = opts.reps ?? 3;
  const block = new BlockParams(ctx);
  const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const made: GPUBuffer[] = [];
  const buf = (label: string, bytes: number, usage = S) => {
    const b = ctx.allocator.create(label, 'scratch', bytes, usage);
    made.push(b);
    return b;
  };
  const raw: Omit<KernelRow, 'ofBestMatmul'>[] = [];
  const add = (kernel: string, shape: string, weights: string, flops: number, seconds: number) => raw.push({ kernel, shape, weights, flops, seconds, gflops: flops / seconds / 1e9 });

  const a = buf('A', n * n * 4);
  const c = buf('C', n * n * 4);
  for (const storage of ['f32', 'f16'] as WeightStorage[]) {
    if (storage === 'f16' && !ctx.features.shaderF16) continue;
    const b = buf('B', n * n * (storage === 'f32' ? 4 : 2));
    for (const t of TILES) {
      const op = new MatmulOp(ctx, 'bench', { M: n, N: n, K: n, a: { row: n, col: 1 }, b: { row: n, col: 1 }, c: { row: n, col: 1 }, weight: storage }, { a, b, c }, block, { wide: t, narrow: t });
      add('matmul', `${n}³, tiles ${t.tm}×${t.tn}, ${t.wgx}×${t.wgy}`, storage, op.flops(n), await time(ctx, reps, (p) => op.encode(p, n)));
    }
  }

  // The chunk update of one layer of the benchmark TTT model (C tokens), and its last launch alone.
  const model = BENCH_MODELS.ttt;
  const cfg = model.config;
  const f = referenceWeights(cfg, model.weights).layers[0].fast!;
  const init = { w0: Float32Array.from(f.w0), w1: Float32Array.from(f.w1), w2: Float32Array.from(f.w2), qkScale: Float32Array.from(f.qkScale), qkOffset: Float32Array.from(f.qkOffset), tttNorm: Float32Array.from(f.tttNorm) };
  const D = cfg.hiddenSize, C = cfg.chunkSize;
  const act = (floats: number) => buf('act', floats * 4, S | GPUBufferUsage.COPY_SRC);
  // Rows of q | k | v | the raw gates, as the engine's one projection writes them.
  const io = { qkv: act(C * projectionRowWidth(cfg)), out: act(C * D) };
  const fw = new FastWeightLayer(ctx, 'bench fw', cfg, init, io, block, C);
  block.write(C, 0);
  const tiles = `${CPU_TILES.tm}×${CPU_TILES.tn}, ${CPU_TILES.wgx}×${CPU_TILES.wgy}`;
  const what = `C = ${C}, ${cfg.numFwHeads} heads, df = ${cfg.fwHeadDim}, dh = ${cfg.fwHidden}`;
  add('fast-weight chunk update (one layer: gradients, momentum, Muon, renorm)', `${what}; ${fw.dispatches('learn', C)} dispatches, tiles ${tiles}`, 'f32 state', fw.flops('learn'), await time(ctx, reps, (p) => fw.encodeLearn(p)));
  if (cfg.useMuon) {
    add('momentum, Newton-Schulz (Muon, 5 steps) and renorm, one launch', `${3 * cfg.numFwHeads} matrices ${Math.min(cfg.fwHidden, cfg.fwHeadDim)}×${Math.max(cfg.fwHidden, cfg.fwHeadDim)}, a workgroup each; ${fw.dispatches('update')} dispatch`, 'f32 state', fw.flops('update'), await time(ctx, reps, (p) => fw.encodeUpdate(p)));
  }

  // Full attention over a cache of `ctxLen` positions: a prefill block of 256 rows ending there, and one
  // decode row. 4·da flops per (query, head, key): q·k and p·v, 2·da each. The cache's contents do not
  // change the work, so it is left zero.
  const ctxLen = opts.attentionContext ?? 4096;
  const heads = cfg.numAttnHeads;
  // On the CPU-emulator variant the prefill block also runs with 1 (the per-row shape), 4 and 8 query rows
  // per invocation beside the default (16), in this same run.
  const rowBlocks = ctx.kernelVariant === 'cpu' ? [CPU_ROW_BLOCK, 1, 4, 8] : [CPU_ROW_BLOCK];
  for (const [rows, rowBlock] of [...rowBlocks.map((rb) => [256, rb]), [1, CPU_ROW_BLOCK]]) {
    const spec = { D, heads, window: null, maxRows: rows, capacity: ctxLen, rowBlock };
    const kv = new KvCache(ctx, 'bench kv', spec);
    const qkv = buf('qkv', rows * 3 * D * 4);
    const out = buf('out', rows * D * 4);
    const op = new AttentionOp(ctx, 'bench attention', spec, { qkv, out }, kv, block);
    const pos0 = ctxLen - rows;
    block.write(rows, pos0);
    const keys = rows * pos0 + (rows * (rows + 1)) / 2;
    const shape = ctx.kernelVariant === 'cpu' ? (rowBlock === 1 ? ', one row per invocation' : `, ${rowBlock} rows per invocation`) : '';
    const label = rows === 1 ? 'attention, decode (1 query row)' : `attention, prefill block (${rows} query rows${shape})`;
    // A decode row is a millisecond: more submits, or the host's jitter is the figure.
    add(label, `${heads} heads × da = ${D / heads}, keys up to ${ctxLen}; ${op.dispatches(rows, pos0)} dispatches`, 'f32 cache', 4 * D * keys, await time(ctx, rows === 1 ? Math.max(reps, 30) : reps, (p) => op.encode(p, rows, pos0)));
    for (const pg of kv.pages) made.push(pg.k, pg.v);
  }
  // TTT-E2E's inner step at the benchmark TTT-E2E model's shape: a chunk of B rows whose queries see the
  // W - 1 positions before it from a ring, the backward kernels beside the forward attention.
  const e2e = BENCH_MODELS['ttt-e2e'].config;
  {
    const B = e2e.miniBatchSize, d = e2e.hiddenSize, H = e2e.numHeads, hd = e2e.headDim, W = e2e.slidingWindow;
    const ringSlots = W + B - 1, pos0 = 4096;
    const ring = { k: buf('ring k', ringSlots * d * 4), v: buf('ring v', ringSlots * d * 4), ring: ringSlots };
    // o, then dO, in one buffer (the backward reads both through one binding).
    const qkv = act(B * 3 * d), oDo = act(2 * B * d), dqkv = act(B * 3 * d);
    const stats = buf('lse', B * H * 2 * 4, S | GPUBufferUsage.COPY_SRC);
    const view = (buffer: GPUBuffer, stride: number, offset = 0) => ({ buffer, stride, offset });
    const spec = { heads: H, headDim: hd, window: W, maxRows: B };
    const q = view(qkv, 3 * d), k = view(qkv, 3 * d, d), v = view(qkv, 3 * d, 2 * d);
    const fwd = new E2EAttentionOp(ctx, 'bench e2e attention', spec, { q, k, v, ring, o: view(oDo, d), stats }, block);
    const bwd = new E2EAttentionBackwardOp(ctx, 'bench e2e attention backward', spec, { q, k, v, ring, o: view(oDo, d), dO: view(oDo, d, B * d), stats, dq: view(dqkv, 3 * d), dk: view(dqkv, 3 * d, d), dv: view(dqkv, 3 * d, 2 * d) }, block);
    block.write(B, pos0);
    const shape = `B = ${B} rows at ${pos0}, window ${W}, ${H} heads × hd = ${hd}`;
    add('TTT-E2E attention forward with log-sum-exp (inner step)', `${shape}; 1 dispatch`, 'f32', fwd.flops(B, pos0), await time(ctx, reps, (p) => fwd.encode(p, B, pos0)));
    add('TTT-E2E attention backward (flash-style recompute: dq and dk/dv, D where read)', `${shape}; 1 dispatch`, 'f32', bwd.flops(B, pos0), await time(ctx, reps, (p) => bwd.encode(p, B, pos0)));
    const fd = e2e.intermediateSizeDynamicMlp;
    const x = act(B * d), dy = act(B * d), dx = act(B * d), theta = act(3 * fd * d), grad = act(3 * fd * d);
    const sw = new SwigluBackwardOp(ctx, 'bench swiglu backward', { rows: B, d, f: fd }, {
      x, dy, w1: { buffer: theta, off: 0 }, w3: { buffer: theta, off: fd * d }, w2: { buffer: theta, off: 2 * fd * d },
      dx, dw1: { buffer: grad, off: 0 }, dw3: { buffer: grad, off: fd * d }, dw2: { buffer: grad, off: 2 * fd * d },
    }, block);
    add('TTT-E2E dynamic MLP backward (dx, dW1, dW2, dW3)', `B = ${B}, d = ${d}, f = ${fd}; ${sw.dispatches()} dispatches (tiles ${tiles})`, 'f32 θ', sw.flops(), await time(ctx, reps, (p) => sw.encode(p)));
    const V = e2e.vocabSize;
    const logits = act(B * V), targets = buf('targets', B * 4), nll = act(B), loss = act(1 + B);
    const ce = new CrossEntropyOp(ctx, 'bench cross-entropy', { rows: B, vocab: V, bos: e2e.bosTokenId }, { logits, targets, nll, loss }, block);
    add('TTT-E2E cross-entropy and its gradient (memory-bound)', `B = ${B} rows × V = ${V}; ${ce.oneLaunch ? 1 : 3} dispatch${ce.oneLaunch ? '' : 'es'}`, 'f32', ce.flops(), await time(ctx, reps, (p) => ce.encode(p)));
  }
  for (const b of made) b.destroy();
  block.buffer.destroy();

  const best = Math.max(...raw.filter((r) => r.kernel === 'matmul').map((r) => r.gflops));
  return { bestMatmulGflops: best, rows: raw.map((r) => ({ ...r, ofBestMatmul: r.gflops / best })) };
}

export function kernelMarkdown(report: KernelReport): string {
  const lines = ['| kernel | what | storage | MFLOP | ms | GFLOP/s | of best matmul |', '| --- | --- | --- | ---: | ---: | ---: | ---: |'];
  for (const r of report.rows) {
    lines.push(`| ${r.kernel} | ${r.shape} | ${r.weights} | ${(r.flops / 1e6).toFixed(1)} | ${(r.seconds * 1000).toFixed(2)} | ${r.gflops.toFixed(2)} | ${(r.ofBestMatmul * 100).toFixed(0)}% |`);
  }
  return lines.join('\n');
}

export async function main(args: string[]): Promise<void> {
  const { openNodeGpu } = await import('../src/node/webgpu.ts');
  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const ctx = new GpuContext(gpu.device);
  console.log(`device: ${gpu.description}`);
  console.log(`command: npm run bench -- kernels ${args.join(' ')}`.trim());
  const at = args.indexOf('--attention-context');
  const attentionContext = at >= 0 ? Number(args[at + 1]) : undefined;
  if (attentionContext !== undefined && !(Number.isInteger(attentionContext) && attentionContext >= 256)) throw new RangeError(`--attention-context: an integer >= 256, got ${args[at + 1]}`);
  const report = await measureKernels(ctx, { n: args.includes('--quick') ? 256 : 512, attentionContext });
  console.log(`\n${kernelMarkdown(report)}\n\nbest matmul: ${report.bestMatmulGflops.toFixed(2)} GFLOP/s`);
  gpu.device.destroy();
}
