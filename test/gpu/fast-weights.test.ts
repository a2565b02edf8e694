import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import {
  FastWeightLayer, FastWeightScratch, gateColumns, packFastWeights, unpackFastWeights, type FastWeightInit,
} from '../../src/gpu/ops/fast-weights.ts';
import { NS5_COEFFS } from '../../src/gpu/newton-schulz-coefficients.ts';
import type { LactConfig } from '../../src/model/config.ts';
import { stateBytesPerLayer } from '../../src/model/state-size.ts';
import { FastWeightHead, type ChunkRows } from '../../src/reference/fast-weights.ts';
import { addFastOutput, INNER_NORM_EPS, projectRows, type ProjectedRows } from '../../src/reference/layer-math.ts';
import { linear, rmsNormRows } from '../../src/reference/linalg.ts';
import { NS5_COEFFS as REF_NS5 } from '../../src/reference/newton-schulz.ts';
import { referenceWeights, type LayerWeights } from '../../src/reference/weights.ts';
import { ALL_OFF, ALL_ON, gaussian, randomModel, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload, zeros } from '../helpers/gpu.ts';
import { expectClose, expectNotClose, maxAbs, maxAbsDiff } from '../helpers/close.ts';

/** f32 copies of the (f64-expanded) initial weights: GPU and reference start from the same numbers. */
function initOf(lw: LayerWeights): FastWeightInit {
  const f = lw.fast!;
  return {
    w0: Float32Array.from(f.w0), w1: Float32Array.from(f.w1), w2: Float32Array.from(f.w2),
    qkScale: Float32Array.from(f.qkScale), qkOffset: Float32Array.from(f.qkOffset), tttNorm: Float32Array.from(f.tttNorm),
  };
}

/** The chunk being filled, all heads: rows by position in the chunk. */
interface ChunkAcc { fk: number[][]; fv: number[][]; lr: number[][]; beta: number[][] }

/** Rows of q | k | v | raw gates, as the engine's one projection writes them, from separate rows of each. */
function qkvGates(qkv: Float32Array, gates: Float32Array, rows: number, D: number, G: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(rows * (3 * D + G));
  for (let t = 0; t < rows; t++) {
    out.set(qkv.subarray(t * 3 * D, (t + 1) * 3 * D), t * (3 * D + G));
    out.set(gates.subarray(t * G, (t + 1) * G), t * (3 * D + G) + 3 * D);
  }
  return out;
}

/**
 * The engine's sequence for one layer (inputs, apply, pending, learn when a chunk completes) on the GPU,
 * and the same on the CPU reference: projectRows for the inputs, FastWeightHead for apply and learn.
 * The GPU gets qkv and raw gates computed in f64 by the reference's own first steps of projectRows.
 */
class Harness {
  readonly c: LactConfig;
  readonly lw: LayerWeights;
  readonly layer: FastWeightLayer;
  readonly heads: FastWeightHead[];
  private readonly block: BlockParams;
  private readonly io: { qkv: GPUBuffer; out: GPUBuffer };
  private readonly chunk: ChunkAcc = { fk: [], fv: [], lr: [], beta: [] };

  constructor(private readonly ctx: GpuContext, raw: Record<string, unknown>, readonly maxRows: number, seed = 1) {
    const { config, weights } = randomModel(raw, seed);
    this.c = config;
    this.lw = referenceWeights(config, weights).layers[0];
    const { hiddenSize: D, numFwHeads: Hf, fwHeadDim: df, fwHidden: dh } = config;
    const init = initOf(this.lw);
    this.block = new BlockParams(ctx);
    this.io = { qkv: zeros(ctx, maxRows * (3 * D + gateColumns(config).total)), out: zeros(ctx, maxRows * D) };
    this.layer = new FastWeightLayer(ctx, 'layer 0', config, init, this.io, this.block, maxRows);
    const opts = { useMomentum: config.useMomentum, useMuon: config.useMuon };
    const S = dh * df;
    const head = (w: Float32Array, h: number) => Float64Array.from(w.subarray(h * S, (h + 1) * S));
    this.heads = Array.from({ length: Hf }, (_, h) => new FastWeightHead(df, dh, head(init.w0, h), head(init.w1, h), head(init.w2, h), opts));
  }

  /** Normed-like input rows a [rows, D] and what the engine would hand the layer: qkv (q/k normed, un-roped) and raw gates. */
  inputs(pos0: number, rows: number, seed: number): { qkv: Float32Array<ArrayBuffer>; gates: Float32Array<ArrayBuffer>; pr: ProjectedRows } {
    const c = this.c, lw = this.lw, f = lw.fast!, D = c.hiddenSize;
    const g = gaussian(rng(seed));
    const a = Float64Array.from({ length: rows * D }, () => g());
    const qkv = linear(a, rows, D, lw.qkvW, 3 * D, lw.qkvB ?? undefined);
    if (lw.qNorm && lw.kNorm) {
      for (let t = 0; t < rows; t++) {
        qkv.set(rmsNormRows(qkv.subarray(t * 3 * D, t * 3 * D + D), 1, D, lw.qNorm, INNER_NORM_EPS), t * 3 * D);
        qkv.set(rmsNormRows(qkv.subarray(t * 3 * D + D, t * 3 * D + 2 * D), 1, D, lw.kNorm, INNER_NORM_EPS), t * 3 * D + D);
      }
    }
    const gw = [f.lrW, ...(f.momW ? [f.momW] : []), ...(f.scaleW ? [f.scaleW] : [])];
    const gb = [f.lrB, ...(f.momB ? [f.momB] : []), ...(f.scaleB ? [f.scaleB] : [])];
    const cat = (xs: Float64Array[]) => { const o = new Float64Array(xs.reduce((s, x) => s + x.length, 0)); let i = 0; for (const x of xs) { o.set(x, i); i += x.length; } return o; };
    const G = gateColumns(c).total;
    const gates = linear(a, rows, D, cat(gw), G, cat(gb));
    const pr = projectRows(c, lw, a, Array.from({ length: rows }, (_, i) => pos0 + i));
    return { qkv: Float32Array.from(qkv), gates: Float32Array.from(gates), pr };
  }

  /**
   * One block: o0 (a random stand-in for the attention output) + the fast-weight output, on both sides;
   * the chunk update runs when the block completes a chunk. Returns both outputs.
   */
  async block_(pos0: number, rows: number, seed: number, opts: { learn?: boolean } = {}): Promise<{ got: Float32Array; want: Float64Array; pr: ProjectedRows }> {
    const c = this.c, D = c.hiddenSize, C = c.chunkSize;
    expect(Math.floor(pos0 / C)).toBe(Math.floor((pos0 + rows - 1) / C));
    const { qkv, gates, pr } = this.inputs(pos0, rows, seed);
    const g = gaussian(rng(seed + 1000));
    const o0 = Float32Array.from({ length: rows * D }, () => 0.5 * g());
    const q = this.ctx.device.queue;
    q.writeBuffer(this.io.qkv, 0, qkvGates(qkv, gates, rows, D, gateColumns(c).total));
    q.writeBuffer(this.io.out, 0, o0);
    this.block.write(rows, pos0);
    const learn = (opts.learn ?? true) && (pos0 + rows) % C === 0;
    this.ctx.device.pushErrorScope('validation');
    await runPass(this.ctx, (pass) => {
      this.layer.encodeInputs(pass, rows);
      this.layer.encodeApply(pass, rows);
      if (learn) this.layer.encodeLearn(pass);
    });
    const err = await this.ctx.device.popErrorScope();
    expect(err?.message ?? null).toBeNull();
    const got = await readF32(this.ctx, this.io.out, rows * D);

    // Reference: apply with the current weights, then keep the rows, then learn.
    const want = Float64Array.from(o0);
    const df = c.fwHeadDim, Hf = c.numFwHeads;
    this.heads.forEach((head, h) => {
      const x = new Float64Array(rows * df);
      for (let t = 0; t < rows; t++) x.set(pr.fq!.subarray(t * D + h * df, t * D + (h + 1) * df), t * df);
      const y = head.apply(x, rows);
      for (let t = 0; t < rows; t++) addFastOutput(c, this.lw, y.subarray(t * df, (t + 1) * df), t, h, pr.tttScale, want, t * D);
    });
    // Like the GPU's pending rows: by position in the chunk, whatever was there before.
    for (let t = 0; t < rows; t++) {
      const i = (pos0 + t) % C;
      this.chunk.fk[i] = Array.from(pr.fk!.subarray(t * D, (t + 1) * D));
      this.chunk.fv[i] = Array.from(pr.fv!.subarray(t * D, (t + 1) * D));
      this.chunk.lr[i] = Array.from(pr.lr!.subarray(t * 3 * Hf, (t + 1) * 3 * Hf));
      this.chunk.beta[i] = pr.beta ? Array.from(pr.beta.subarray(t * Hf, (t + 1) * Hf)) : new Array<number>(Hf).fill(0);
    }
    if (learn) this.heads.forEach((head, h) => head.learn(this.chunkRows(h)));
    return { got, want, pr };
  }

  private chunkRows(h: number): ChunkRows {
    const df = this.c.fwHeadDim, n = this.chunk.fk.length;
    const rows = (m: number[][]) => Float64Array.from(m.flatMap((r) => r.slice(h * df, (h + 1) * df)));
    const col = (m: number[][], j: number) => Float64Array.from(m, (r) => r[j]);
    return { n, k: rows(this.chunk.fk), v: rows(this.chunk.fv), lr0: col(this.chunk.lr, 3 * h), lr1: col(this.chunk.lr, 3 * h + 1), lr2: col(this.chunk.lr, 3 * h + 2), beta: col(this.chunk.beta, h) };
  }

  /** The GPU's W0, W1, W2 and momentum M0, M1, M2, unpacked, next to the reference heads' (all heads concatenated). */
  async state(): Promise<{ gpu: Record<StateKey, Float32Array | null>; ref: Record<StateKey, Float64Array | null> }> {
    const c = this.c;
    const gpuW = unpackFastWeights(c, await readF32(this.ctx, this.layer.state.weights));
    const gpuM = this.layer.state.momentum ? unpackFastWeights(c, await readF32(this.ctx, this.layer.state.momentum)) : null;
    const cat = (key: StateKey) => {
      const parts = this.heads.map((hd) => hd[key]);
      const out = new Float64Array(parts.reduce((s, p) => s + p.length, 0));
      parts.forEach((p, i) => out.set(p, i * p.length));
      return out;
    };
    return {
      gpu: { w0: gpuW.w0, w1: gpuW.w1, w2: gpuW.w2, m0: gpuM?.w0 ?? null, m1: gpuM?.w1 ?? null, m2: gpuM?.w2 ?? null },
      ref: { w0: cat('w0'), w1: cat('w1'), w2: cat('w2'), m0: gpuM ? cat('m0') : null, m1: gpuM ? cat('m1') : null, m2: gpuM ? cat('m2') : null },
    };
  }

  /** Every element of W (and of the momentum, where the config has it) within its bound. */
  async expectState(w: Tol, m: Tol, label: string): Promise<void> {
    const { gpu, ref } = await this.state();
    for (const k of ['w0', 'w1', 'w2'] as const) expectClose(gpu[k]!, ref[k]!, { ...w, label: `${label} ${k}` });
    for (const k of ['m0', 'm1', 'm2'] as const) {
      expect(gpu[k] === null, `${k} present on one side only`).toBe(ref[k] === null);
      if (gpu[k]) expectClose(gpu[k], ref[k]!, { ...m, label: `${label} ${k}` });
    }
  }
}

type StateKey = 'w0' | 'w1' | 'w2' | 'm0' | 'm1' | 'm2';
type Tol = { atol: number; rtol: number };

/*
 * Tolerances: element-wise |gpu - ref| <= atol + rtol·|ref| (test/helpers/close.ts), against the float64
 * reference fed the same f32 inputs. u = 2^-24 (f32 unit roundoff). Measured worst elements are ~0.3-0.5
 * of each bound (the test logs print them with CLOSE_LOG=1).
 */
/** fv, lr, beta, ttt scale: a few f32 operations each (affine, softplus/sigmoid, silu, L2 norm over df = 32): ~16u relative; atol 1e-7 (~2u·|x| for |x| <= 1). */
const INPUTS_TOL = { atol: 1e-7, rtol: 1e-6 };
/**
 * fq, fk, in addition, are RoPE'd: the angle comes from the exact turn table (shaders/common/rope-turns.wgsl),
 * so the rotation adds about 10u of the pair's norm (<= 1 after the L2 norm; see test/gpu/rope.test.ts) to
 * the inputs' error, at any position. (The f32 angle pos·freq the kernel once used was off by pos·u rad
 * and needed atol 4e-6 at position 61.)
 */
const ROPED_TOL = { atol: 1e-6, rtol: 1e-6 };
/**
 * out = o0 + ttt_norm(f(fq))·scale: two f32 matmuls (K = 32, 64), silu, an RMS norm over df: errors scale
 * with the output (rtol 1e-5 ≈ 170u); atol 2e-7 is the f32 rounding of the sum o0 + y at |out| ~ 4.
 */
const APPLY_TOL = { atol: 2e-7, rtol: 1e-5 };
const ONE_CHUNK_TOL = {
  /**
   * W after one update: W + Muon(M) (five f32 Newton-Schulz steps with coefficients up to |b| ≈ 6.9, each
   * amplifying the rounding of X by ~|a| + 3|b| + 5|c|), then the row renorm: an absolute error of a few
   * 1e-6 on weights of |W| <= 0.8, spread over the matrix, not proportional to each element.
   */
  w: { atol: 5e-6, rtol: 1e-5 },
  /**
   * M after one chunk is the chunk's gradient: per element a sum over C = 16 tokens, f32 error ~16u·sum|terms|,
   * with sum|terms| <= ~0.03 here: ~3e-8 absolute. The momentum is heavy-tailed (median |M| ~ 1/50 of the
   * largest): the former max|diff| / max|M| < 5e-6 let the median element be off by 2.5e-4 of itself.
   */
  m: { atol: 3e-8, rtol: 1e-6 },
};
const THREE_CHUNK_TOL = {
  /** Blocks before the first update: the apply alone, across the shapes (measured up to 3.5e-6, inter_multi 0.5, where ttt_norm rescales a small f(fq)). */
  before: { atol: 8e-6, rtol: 1e-5 },
  /**
   * Three updates, each through Newton-Schulz in f32: W drifts from the f64 one by ~5e-6 (absolute, as
   * above, three times), the outputs read W through the apply (|out| <= 10): up to ~1e-4 absolute. M
   * carries the momentum of three chunks (|M| <= 0.18): 6e-7 absolute, 1e-5 relative.
   */
  on: { out: { atol: 1.5e-4, rtol: 1e-5 }, w: { atol: 1e-5, rtol: 1e-5 }, m: { atol: 6e-7, rtol: 1e-5 } },
  /**
   * Momentum into a plain update (no Muon): M sums three chunks' gradients (f32, 16 tokens each: ~16u of
   * the terms, |M| <= 0.13): 1e-7 absolute; W and the outputs as ALL_OFF below.
   */
  noMuon: { out: { atol: 5e-6, rtol: 1e-5 }, w: { atol: 2e-7, rtol: 1e-6 }, m: { atol: 1e-7, rtol: 1e-6 } },
  /** No momentum, no Muon: W += the plain gradient, then renorm: f32 sums over 16 tokens only (~16u·|W|). */
  off: { out: { atol: 5e-6, rtol: 1e-5 }, w: { atol: 2e-7, rtol: 1e-6 }, m: { atol: 0, rtol: 0 } },
};

/** Chunk size 16: blocks of 5, 1 and 10, a whole chunk, then 1, 7 and 8 rows; then a block of 3 after. */
const THREE_CHUNKS: readonly [number, number][] = [[0, 5], [5, 1], [6, 10], [16, 16], [32, 1], [33, 7], [40, 8]];

describe('fast-weight kernels against the CPU reference', () => {
  let ctx: GpuContext;
  beforeAll(async () => { ctx = (await openTestGpu()).ctx; });
  afterAll(() => ctx?.device.destroy());

  it('packs W1 transposed and unpacks exactly; gate columns match the reference, which uses the shipped NS5 constants', () => {
    const { config: c } = randomModel(ALL_ON);
    const n = c.numFwHeads * c.fwHeadDim * c.fwHidden;
    const g = gaussian(rng(3));
    const [w0, w1, w2] = [0, 1, 2].map(() => Float32Array.from({ length: n }, () => g()));
    const back = unpackFastWeights(c, packFastWeights(c, w0, w1, w2));
    expect(back.w0).toEqual(w0);
    expect(back.w1).toEqual(w1);
    expect(back.w2).toEqual(w2);
    expect(gateColumns(c)).toEqual({ lr: 0, momentum: 6, scale: 8, total: 10 });
    expect(gateColumns(randomModel(ALL_OFF).config)).toEqual({ lr: 0, momentum: null, scale: null, total: 6 });
    // One source: the reference re-exports the shipped table rather than keeping a copy.
    expect(REF_NS5).toBe(NS5_COEFFS);
    expect(NS5_COEFFS).toHaveLength(5);
  });

  it('memory: fast weights, momentum and pending as state-size.ts counts them; two layers share one scratch', async () => {
    const { config: c, weights } = randomModel(ALL_ON);
    const lw = referenceWeights(c, weights).layers[0];
    const D = c.hiddenSize;
    const block = new BlockParams(ctx);
    const qkv = zeros(ctx, 16 * (3 * D + gateColumns(c).total));
    const outs = [zeros(ctx, 16 * D), zeros(ctx, 16 * D)];
    const scratch = new FastWeightScratch(ctx, c, 16);
    const before = ctx.allocator.report();
    outs.forEach((out, i) => new FastWeightLayer(ctx, `layer ${i}`, c, initOf(lw), { qkv, out }, block, 16, { scratch }));
    const after = ctx.allocator.report();
    // Rows without room for the gates after q|k|v: a named error, not a kernel reading past the buffer.
    expect(() => new FastWeightLayer(ctx, 'short', c, initOf(lw), { qkv: zeros(ctx, 16 * 3 * D), out: outs[0] }, block, 16, { scratch })).toThrow(/less than 16 rows of q\|k\|v\|gates/);
    const per = stateBytesPerLayer(c, 4);
    expect(after.fastWeights - before.fastWeights).toBe(2 * per.fastWeights);
    expect(after.momentum - before.momentum).toBe(2 * per.momentum);
    expect(after.pending - before.pending).toBe(2 * per.pending);
    expect(after.activations).toBe(before.activations);
  });

  it('two layers sharing one scratch, one pass per block as the engine runs them, each compute exactly what they compute alone', async () => {
    // Different weights (layers 0 and 1 of one random model) and different inputs per layer: with the same
    // ones, a layer that read the other's leftovers (scratch, pending rows, state) would read its own
    // numbers and nothing could show. Blocks of 5, 7 and 4 rows complete a chunk (so the pending rows of
    // both layers are filled over several blocks, then learned from), then 3 rows apply the learned weights.
    // Each layer has its own qkv|gates and out buffers here, so that both layers' inputs can sit on the GPU
    // for one pass; the engine fills one shared set before each layer with its own kernels.
    const { config: c, weights } = randomModel(ALL_ON, 5);
    const lws = referenceWeights(c, weights).layers;
    const D = c.hiddenSize, G = gateColumns(c).total;
    const BLOCKS: readonly [number, number][] = [[0, 5], [5, 7], [12, 4], [16, 3]];
    const g = gaussian(rng(21));
    // inputs[layer][block]: qkv, raw gates and the attention stand-in the branch adds into.
    const inputs = [0, 1].map(() => BLOCKS.map(([, rows]) => ({
      qkv: Float32Array.from({ length: rows * 3 * D }, () => g()),
      gates: Float32Array.from({ length: rows * G }, () => g()),
      o0: Float32Array.from({ length: rows * D }, () => 0.5 * g()),
    })));
    expect(lws[1].fast!.w0).not.toEqual(lws[0].fast!.w0);

    /** Runs layers `which` (indices into lws) over BLOCKS, every layer of a block in one pass (as the engine records a block), sharing `scratch` if given. */
    const run = async (which: number[], scratch?: FastWeightScratch) => {
      const block = new BlockParams(ctx);
      const q = ctx.device.queue;
      const ios = which.map(() => ({ qkv: zeros(ctx, 16 * (3 * D + G)), out: zeros(ctx, 16 * D) }));
      const layers = which.map((l, i) => new FastWeightLayer(ctx, `layer ${l}`, c, initOf(lws[l]), ios[i], block, 16, scratch ? { scratch } : {}));
      const outs: Float32Array[][] = which.map(() => []);
      for (const [b, [pos0, rows]] of BLOCKS.entries()) {
        which.forEach((l, i) => {
          q.writeBuffer(ios[i].qkv, 0, qkvGates(inputs[l][b].qkv, inputs[l][b].gates, BLOCKS[b][1], D, G));
          q.writeBuffer(ios[i].out, 0, inputs[l][b].o0);
        });
        block.write(rows, pos0);
        await runPass(ctx, (pass) => {
          for (const layer of layers) {
            layer.encodeInputs(pass, rows);
            layer.encodeApply(pass, rows);
            if ((pos0 + rows) % c.chunkSize === 0) layer.encodeLearn(pass);
          }
        });
        for (const [i, io] of ios.entries()) outs[i].push(await readF32(ctx, io.out, rows * D));
      }
      const state = await Promise.all(layers.map(async (l) => ({
        weights: await readF32(ctx, l.state.weights), momentum: await readF32(ctx, l.state.momentum!), pending: await readF32(ctx, l.pending),
      })));
      return { outs, state };
    };

    const shared = await run([0, 1], new FastWeightScratch(ctx, c, 16));
    for (const l of [0, 1]) {
      const alone = await run([l]);
      const exact = (label: string) => ({ atol: 0, rtol: 0, label: `layer ${l} (shared scratch vs alone): ${label}` });
      for (const b of BLOCKS.keys()) expectClose(shared.outs[l][b], alone.outs[0][b], exact(`output of block ${b}`));
      expectClose(shared.state[l].weights, alone.state[0].weights, exact('fast weights'));
      expectClose(shared.state[l].momentum, alone.state[0].momentum, exact('momentum'));
      expectClose(shared.state[l].pending, alone.state[0].pending, exact('pending rows'));
    }
    // Not vacuous: the two layers' outputs and states differ, and learning moved the weights.
    for (const b of BLOCKS.keys()) expect(maxAbsDiff(shared.outs[0][b], shared.outs[1][b])).toBeGreaterThan(0.1);
    expect(maxAbsDiff(shared.state[0].momentum, shared.state[1].momentum)).toBeGreaterThan(1e-3 * maxAbs(shared.state[0].momentum));
    for (const l of [0, 1]) {
      const init = packFastWeights(c, initOf(lws[l]).w0, initOf(lws[l]).w1, initOf(lws[l]).w2);
      expect(maxAbsDiff(shared.state[l].weights, init)).toBeGreaterThan(1e-3);
    }
  });

  it('encodeInputs: fq, fk, fv, lr, beta, ttt scale as projectRows computes them', async () => {
    for (const raw of [ALL_ON, ALL_OFF]) {
      const hx = new Harness(ctx, raw, 16);
      const c = hx.c, D = c.hiddenSize, Hf = c.numFwHeads, rows = 5, pos0 = 3 * 16 + 9;
      const { pr } = await hx.block_(pos0, rows, 7);
      const fqkv = await readF32(ctx, hx.layer.scratch.fqkv, rows * 3 * D);
      const act = await readF32(ctx, hx.layer.scratch.act, rows * gateColumns(c).total);
      const seg = (s: number) => Float32Array.from({ length: rows * D }, (_, i) => fqkv[Math.floor(i / D) * 3 * D + s * D + (i % D)]);
      const cols = (off: number, n: number) => Float32Array.from({ length: rows * n }, (_, i) => act[Math.floor(i / n) * gateColumns(c).total + off + (i % n)]);
      const gc = gateColumns(c);
      const label = raw === ALL_ON ? 'ALL_ON' : 'ALL_OFF';
      const pairs: [string, Float32Array, Float64Array][] = [['fq', seg(0), pr.fq!], ['fk', seg(1), pr.fk!], ['fv', seg(2), pr.fv!], ['lr', cols(0, 3 * Hf), pr.lr!]];
      if (gc.momentum !== null) pairs.push(['beta', cols(gc.momentum, Hf), pr.beta!]);
      if (gc.scale !== null) pairs.push(['scale', cols(gc.scale, Hf), pr.tttScale!]);
      for (const [k, got, want] of pairs) expectClose(got, want, { ...(k === 'fq' || k === 'fk' ? ROPED_TOL : INPUTS_TOL), label: `inputs ${label} ${k}` });
    }
  });

  it('with attention: the same launch norms and ropes attention q, k in place (v untouched), the fast inputs and pending rows from the normed q, k', async () => {
    // One attention head of 64 over two fast heads of 32: a RoPE pair spans both fast heads' L2 norms.
    const cases: [string, Record<string, unknown>][] = [['ALL_ON', ALL_ON], ['ALL_OFF', ALL_OFF], ['ALL_ON, 1 attention head', { ...ALL_ON, num_attn_heads: 1 }]];
    for (const [label, raw] of cases) {
      const { config: c, weights } = randomModel(raw, 3);
      const lw = referenceWeights(c, weights).layers[0];
      const f = lw.fast!;
      const D = c.hiddenSize, Hf = c.numFwHeads, C = c.chunkSize, G = gateColumns(c).total, rows = 6, pos0 = C + 4;
      expect(lw.qNorm !== null, `${label}: q/k norm as the config says`).toBe(c.attnQkNorm);
      const g = gaussian(rng(9));
      const a = Float64Array.from({ length: rows * D }, () => g());
      // f32 inputs on both sides: the reference projects the rows the GPU is handed.
      const qkv32 = Float32Array.from(linear(a, rows, D, lw.qkvW, 3 * D, lw.qkvB ?? undefined));
      const cat = (xs: (Float64Array | null)[]) => Float64Array.from(xs.flatMap((x) => (x ? Array.from(x) : [])));
      const gates32 = Float32Array.from(linear(a, rows, D, cat([f.lrW, f.momW, f.scaleW]), G, cat([f.lrB, f.momB, f.scaleB])));
      const positions = Array.from({ length: rows }, (_, i) => pos0 + i);
      const pr = projectRows(c, lw, a, positions);
      const block = new BlockParams(ctx);
      const rowsIn = qkvGates(qkv32, gates32, rows, D, G);
      const wide = new Float32Array(16 * (3 * D + G));
      wide.set(rowsIn);
      const io = { qkv: upload(ctx, wide), out: zeros(ctx, 16 * D) };
      const qkNorm = lw.qNorm && lw.kNorm ? upload(ctx, Float32Array.from(cat([lw.qNorm, lw.kNorm]))) : null;
      const layer = new FastWeightLayer(ctx, 'layer 0', c, initOf(lw), io, block, 16, { attention: { qkNorm, eps: INNER_NORM_EPS } });
      block.write(rows, pos0);
      await runPass(ctx, (pass) => layer.encodeInputs(pass, rows));
      const qkv = await readF32(ctx, io.qkv, rows * (3 * D + G));
      const fqkv = await readF32(ctx, layer.scratch.fqkv, rows * 3 * D);
      const pending = await readF32(ctx, layer.pending);
      const P = pending.length / C;
      const seg = (x: Float32Array, s: number, stride = 3 * D) => Float32Array.from({ length: rows * D }, (_, i) => x[Math.floor(i / D) * stride + s * D + (i % D)]);
      const W = 3 * D + G;
      expectClose(seg(qkv, 0, W), pr.qa, { ...ROPED_TOL, label: `${label} attention q` });
      expectClose(seg(qkv, 1, W), pr.ka, { ...ROPED_TOL, label: `${label} attention k` });
      expect(seg(qkv, 2, W)).toEqual(seg(qkv32, 2));
      // The raw gates after v are only read.
      for (let t = 0; t < rows; t++) expect(qkv.subarray(t * W + 3 * D, (t + 1) * W)).toEqual(gates32.subarray(t * G, (t + 1) * G));
      expectClose(seg(fqkv, 0), pr.fq!, { ...ROPED_TOL, label: `${label} fq` });
      expectClose(seg(fqkv, 1), pr.fk!, { ...ROPED_TOL, label: `${label} fk` });
      expectClose(seg(fqkv, 2), pr.fv!, { ...INPUTS_TOL, label: `${label} fv` });
      // Pending rows at pos0 % C + t: fk | fv | lr | beta (zero without momentum).
      const prow = (t: number, off: number, n: number) => pending.subarray(((pos0 % C) + t) * P + off, ((pos0 % C) + t) * P + off + n);
      const stack = (n: number, off: number) => Float32Array.from({ length: rows * n }, (_, i) => prow(Math.floor(i / n), off, n)[i % n]);
      expectClose(stack(D, 0), pr.fk!, { ...ROPED_TOL, label: `${label} pending fk` });
      expectClose(stack(D, D), pr.fv!, { ...INPUTS_TOL, label: `${label} pending fv` });
      expectClose(stack(3 * Hf, 2 * D), pr.lr!, { ...INPUTS_TOL, label: `${label} pending lr` });
      expectClose(stack(Hf, 2 * D + 3 * Hf), pr.beta ?? new Float64Array(rows * Hf), { ...INPUTS_TOL, label: `${label} pending beta` });
      // The rows before pos0 % C were not touched (a block fills only its own rows).
      expect(maxAbs(pending.subarray(0, (pos0 % C) * P))).toBe(0);
      // Not vacuous: RoPE at these positions and the norm moved q, k away from the projection's output.
      expect(maxAbsDiff(seg(qkv, 0, W), seg(qkv32, 0))).toBeGreaterThan(0.05);
    }
  });

  it('encodeApply adds ttt_norm(f(fq)) * scale into out, for a prefill block and a decode row', async () => {
    const hx = new Harness(ctx, ALL_ON, 16);
    const a = await hx.block_(2, 9, 11);
    const b = await hx.block_(11, 1, 12);
    expectClose(a.got, a.want, { ...APPLY_TOL, label: 'apply ALL_ON, 9 rows' });
    expectClose(b.got, b.want, { ...APPLY_TOL, label: 'apply ALL_ON, 1 row' });
  });

  it('dispatch counts: inputs 1 (the pending row in it), apply 1 (a decode row; 4 for a prefill block), learn 6 (gradient products, then momentum + Muon + renorm in one launch), as recorded', async () => {
    for (const [raw, learn] of [[ALL_ON, 6], [ALL_OFF, 6]] as const) {
      const hx = new Harness(ctx, raw, 16);
      const counts: Record<string, number> = {};
      await runPass(ctx, (pass) => {
        let n = 0;
        const counting = new Proxy(pass, {
          get(target, prop) {
            const v = Reflect.get(target, prop) as unknown;
            if (prop === 'dispatchWorkgroups') return (...args: number[]) => { n++; (v as (...a: number[]) => void).apply(target, args); };
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
        for (const kind of ['inputs', 'apply', 'learn'] as const) {
          n = 0;
          if (kind === 'learn') hx.layer.encodeLearn(counting);
          else hx.layer[kind === 'inputs' ? 'encodeInputs' : 'encodeApply'](counting, 1);
          counts[kind] = n;
        }
        n = 0;
        hx.layer.encodeApply(counting, 8);
        counts.applyPrefill = n;
      });
      expect(counts).toEqual({ inputs: 1, apply: 1, learn, applyPrefill: 4 });
      for (const k of ['inputs', 'apply', 'learn'] as const) expect(hx.layer.dispatches(k, 1)).toBe(counts[k]);
      expect(hx.layer.dispatches('apply', 8)).toBe(4);
      const { chunkSize: C, numFwHeads: Hf, fwHidden: dh, fwHeadDim: df } = hx.c;
      const m = Math.min(dh, df), n = Math.max(dh, df);
      expect(hx.layer.flops('learn')).toBe(12 * C * Hf * dh * df + (hx.c.useMuon ? 5 * 3 * Hf * (4 * m * m * n + 2 * m * m * m) : 0));
    }
  });

  it('one chunk: W after momentum + Muon + renorm matches FastWeightHead.learn, and the momentum', async () => {
    const hx = new Harness(ctx, ALL_ON, 16);
    for (const [pos0, rows] of THREE_CHUNKS.slice(0, 3)) await hx.block_(pos0, rows, 100 + pos0);
    await hx.expectState(ONE_CHUNK_TOL.w, ONE_CHUNK_TOL.m, 'one chunk ALL_ON');
  });

  it('the momentum check catches an error in the small elements that max|diff| / max|M| < 1e-4 (the former check) let through', async () => {
    const hx = new Harness(ctx, ALL_ON, 16);
    for (const [pos0, rows] of THREE_CHUNKS) await hx.block_(pos0, rows, 100 + pos0);
    const { gpu, ref } = await hx.state();
    const m0 = gpu.m0!, want = ref.m0!;
    expectClose(m0, want, { ...THREE_CHUNK_TOL.on.m, label: 'three chunks m0, as computed' });
    // Planted: every element below 1% of the largest |M| off by 0.5% of itself (over a quarter of them:
    // the momentum is heavy-tailed). The former metric sees at most 0.5% x 1% = 5e-5 of max|M|.
    const top = maxAbs(want);
    const planted = m0.map((v, i) => (Math.abs(want[i]) < 0.01 * top ? v * 1.005 : v));
    const small = want.filter((v) => Math.abs(v) < 0.01 * top).length;
    expect(small).toBeGreaterThan(want.length / 4);
    expect(maxAbsDiff(planted, want) / top).toBeLessThan(1e-4);
    expectNotClose(planted, want, { ...THREE_CHUNK_TOL.on.m, label: 'three chunks m0, planted' });
  });

  // inter_multi 2 (dh > df: Muon on transposed blocks), 1 (square), 0.5 (dh < df); momentum without Muon
  // (its error reaches W only as itself, not through Newton-Schulz); and everything off.
  const CASES: [string, Record<string, unknown>, { out: Tol; w: Tol; m: Tol }][] = [
    ['ALL_ON (inter_multi 2)', ALL_ON, THREE_CHUNK_TOL.on],
    ['ALL_ON, inter_multi 1', { ...ALL_ON, inter_multi: 1 }, THREE_CHUNK_TOL.on],
    ['ALL_ON, inter_multi 0.5 (df > dh)', { ...ALL_ON, inter_multi: 0.5 }, THREE_CHUNK_TOL.on],
    // One head of df = 74, dh = 111: Newton-Schulz on 74×111 (transposed), 19×28 register tiles, more
    // than one per invocation of the update's workgroup, and edge tiles on both sides.
    // One head of df = dh = 72: the whole-vec4 Newton-Schulz with 18×18 tiles a product, more than one per invocation.
    ['ALL_ON, one 72×72 head (vec4 products)', { ...ALL_ON, hidden_size: 72, num_lact_heads: 1, num_attn_heads: 1, inter_multi: 1 }, THREE_CHUNK_TOL.on],
    ['ALL_ON, one 74×111 head (tiles off the grid)', { ...ALL_ON, hidden_size: 74, num_lact_heads: 1, num_attn_heads: 1, inter_multi: 1.5 }, THREE_CHUNK_TOL.on],
    ['ALL_ON without Muon (momentum into a plain update)', { ...ALL_ON, use_muon: false }, THREE_CHUNK_TOL.noMuon],
    ['ALL_OFF', ALL_OFF, THREE_CHUNK_TOL.off],
  ];
  for (const [name, raw, tol] of CASES) {
    it(`three chunks (momentum carried), then a new block: every output and the final W match, ${name}`, async () => {
      const hx = new Harness(ctx, raw, 16);
      // The initial output of the block that comes after, for the reset and non-vacuity checks.
      const probe = { pos0: 48, rows: 3, seed: 999 };
      const initial = await hx.block_(probe.pos0, probe.rows, probe.seed, { learn: false });
      for (const [pos0, rows] of THREE_CHUNKS) {
        const r = await hx.block_(pos0, rows, 100 + pos0);
        expectClose(r.got, r.want, { ...(pos0 < 16 ? THREE_CHUNK_TOL.before : tol.out), label: `${name}: block @${pos0} x${rows}` });
      }
      await hx.expectState(tol.w, tol.m, name);
      const after = await hx.block_(probe.pos0, probe.rows, probe.seed);
      expectClose(after.got, after.want, { ...tol.out, label: `${name}: the block after` });
      // Learning moved the output well beyond float noise, on both sides, by about the same.
      const moved = maxAbsDiff(after.got, initial.got);
      const movedRef = maxAbsDiff(after.want, initial.want);
      console.log(`${name}: moved ${moved.toExponential(2)} (ref ${movedRef.toExponential(2)})`);
      expect(moved).toBeGreaterThan(1e-3 * maxAbs(initial.want));
      expect(Math.abs(moved - movedRef) / movedRef).toBeLessThan(0.05);

      // reset(): the checkpoint's weights again, so the probe block gives the initial output exactly.
      hx.layer.reset();
      const again = await hx.block_(probe.pos0, probe.rows, probe.seed, { learn: false });
      expect(again.got).toEqual(initial.got);
      if (hx.layer.state.momentum) expect((await readF32(ctx, hx.layer.state.momentum)).every((v) => v === 0)).toBe(true);
    });
  }
});
