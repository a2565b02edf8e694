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
import { maxRelError, openTestGpu, readF32, runPass, zeros } from '../helpers/gpu.ts';

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
  private readonly io: { qkv: GPUBuffer; gates: GPUBuffer; out: GPUBuffer };
  private readonly chunk: ChunkAcc = { fk: [], fv: [], lr: [], beta: [] };

  constructor(private readonly ctx: GpuContext, raw: Record<string, unknown>, readonly maxRows: number, seed = 1) {
    const { config, weights } = randomModel(raw, seed);
    this.c = config;
    this.lw = referenceWeights(config, weights).layers[0];
    const { hiddenSize: D, numFwHeads: Hf, fwHeadDim: df, fwHidden: dh } = config;
    const init = initOf(this.lw);
    this.block = new BlockParams(ctx);
    this.io = { qkv: zeros(ctx, maxRows * 3 * D), gates: zeros(ctx, maxRows * gateColumns(config).total), out: zeros(ctx, maxRows * D) };
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
    q.writeBuffer(this.io.qkv, 0, qkv);
    q.writeBuffer(this.io.gates, 0, gates);
    q.writeBuffer(this.io.out, 0, o0);
    this.block.write(rows, pos0);
    const learn = (opts.learn ?? true) && (pos0 + rows) % C === 0;
    this.ctx.device.pushErrorScope('validation');
    await runPass(this.ctx, (pass) => {
      this.layer.encodeInputs(pass, rows);
      this.layer.encodeApply(pass, rows);
      this.layer.encodePending(pass, rows);
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

  /** Largest relative error of the GPU's W0, W1, W2 (and momentum) against the reference heads. */
  async stateError(): Promise<{ w: number; m: number }> {
    const c = this.c;
    const gpuW = unpackFastWeights(c, await readF32(this.ctx, this.layer.state.weights));
    const gpuM = this.layer.state.momentum ? unpackFastWeights(c, await readF32(this.ctx, this.layer.state.momentum)) : null;
    const cat = (key: 'w0' | 'w1' | 'w2' | 'm0' | 'm1' | 'm2') => {
      const parts = this.heads.map((hd) => hd[key]);
      const out = new Float64Array(parts.reduce((s, p) => s + p.length, 0));
      parts.forEach((p, i) => out.set(p, i * p.length));
      return out;
    };
    const w = Math.max(maxRelError(gpuW.w0, cat('w0')), maxRelError(gpuW.w1, cat('w1')), maxRelError(gpuW.w2, cat('w2')));
    const m = gpuM ? Math.max(maxRelError(gpuM.w0, cat('m0')), maxRelError(gpuM.w1, cat('m1')), maxRelError(gpuM.w2, cat('m2'))) : 0;
    return { w, m };
  }
}

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
    const D = c.hiddenSize, G = gateColumns(c).total, rows = 4;
    const block = new BlockParams(ctx);
    const qkv = zeros(ctx, 16 * 3 * D), gates = zeros(ctx, 16 * G);
    const outs = [zeros(ctx, 16 * D), zeros(ctx, 16 * D)];
    const scratch = new FastWeightScratch(ctx, c, 16);
    const before = ctx.allocator.report();
    const layers = outs.map((out, i) => new FastWeightLayer(ctx, `layer ${i}`, c, initOf(lw), { qkv, gates, out }, block, 16, { scratch }));
    const after = ctx.allocator.report();
    const per = stateBytesPerLayer(c, 4);
    expect(after.fastWeights - before.fastWeights).toBe(2 * per.fastWeights);
    expect(after.momentum - before.momentum).toBe(2 * per.momentum);
    expect(after.pending - before.pending).toBe(2 * per.pending);
    expect(after.activations).toBe(before.activations);

    // Run back to back in one pass, as the engine runs layers: the second must not see the first's leftovers.
    const g = gaussian(rng(21));
    ctx.device.queue.writeBuffer(qkv, 0, Float32Array.from({ length: rows * 3 * D }, () => g()));
    ctx.device.queue.writeBuffer(gates, 0, Float32Array.from({ length: rows * G }, () => g()));
    block.write(rows, 16 - rows);
    await runPass(ctx, (pass) => {
      for (const l of layers) {
        l.encodeInputs(pass, rows);
        l.encodeApply(pass, rows);
        l.encodePending(pass, rows);
        l.encodeLearn(pass);
      }
    });
    const [o0, o1] = await Promise.all(outs.map((o) => readF32(ctx, o, rows * D)));
    expect(o1).toEqual(o0);
    expect(o0.some((v) => v !== 0)).toBe(true);
    const [w0, w1] = await Promise.all(layers.map((l) => readF32(ctx, l.state.weights)));
    expect(w1).toEqual(w0);
  });

  it('encodeInputs: fq, fk, fv, lr, beta, ttt scale as projectRows computes them (1e-5 relative)', async () => {
    for (const raw of [ALL_ON, ALL_OFF]) {
      const hx = new Harness(ctx, raw, 16);
      const c = hx.c, D = c.hiddenSize, Hf = c.numFwHeads, rows = 5, pos0 = 3 * 16 + 9;
      const { pr } = await hx.block_(pos0, rows, 7);
      const fqkv = await readF32(ctx, hx.layer.scratch.fqkv, rows * 3 * D);
      const act = await readF32(ctx, hx.layer.scratch.act, rows * gateColumns(c).total);
      const seg = (s: number) => Float32Array.from({ length: rows * D }, (_, i) => fqkv[Math.floor(i / D) * 3 * D + s * D + (i % D)]);
      const cols = (off: number, n: number) => Float32Array.from({ length: rows * n }, (_, i) => act[Math.floor(i / n) * gateColumns(c).total + off + (i % n)]);
      const errs: Record<string, number> = {
        fq: maxRelError(seg(0), pr.fq!), fk: maxRelError(seg(1), pr.fk!), fv: maxRelError(seg(2), pr.fv!), lr: maxRelError(cols(0, 3 * Hf), pr.lr!),
      };
      const gc = gateColumns(c);
      if (gc.momentum !== null) errs.beta = maxRelError(cols(gc.momentum, Hf), pr.beta!);
      if (gc.scale !== null) errs.scale = maxRelError(cols(gc.scale, Hf), pr.tttScale!);
      console.log(`inputs ${raw === ALL_ON ? 'ALL_ON' : 'ALL_OFF'}:`, JSON.stringify(errs));
      for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(1e-5);
    }
  });

  it('encodeApply adds ttt_norm(f(fq)) * scale into out, for a prefill block and a decode row (3e-6)', async () => {
    const hx = new Harness(ctx, ALL_ON, 16);
    const a = await hx.block_(2, 9, 11);
    const b = await hx.block_(11, 1, 12);
    const errs = [maxRelError(a.got, a.want), maxRelError(b.got, b.want)];
    console.log('apply ALL_ON (9 rows, 1 row):', errs);
    for (const e of errs) expect(e).toBeLessThan(3e-6);
  });

  it('dispatch counts: inputs 2, apply 4, pending 1, learn 27 (ALL_ON) / 6 (ALL_OFF), as recorded', async () => {
    for (const [raw, learn] of [[ALL_ON, 27], [ALL_OFF, 6]] as const) {
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
        for (const kind of ['inputs', 'apply', 'pending', 'learn'] as const) {
          n = 0;
          if (kind === 'learn') hx.layer.encodeLearn(counting);
          else hx.layer[kind === 'inputs' ? 'encodeInputs' : kind === 'apply' ? 'encodeApply' : 'encodePending'](counting, 1);
          counts[kind] = n;
        }
      });
      expect(counts).toEqual({ inputs: 2, apply: 4, pending: 1, learn });
      for (const k of ['inputs', 'apply', 'pending', 'learn'] as const) expect(hx.layer.dispatches(k, 1)).toBe(counts[k]);
      const { chunkSize: C, numFwHeads: Hf, fwHidden: dh, fwHeadDim: df } = hx.c;
      const m = Math.min(dh, df), n = Math.max(dh, df);
      expect(hx.layer.flops('learn')).toBe(12 * C * Hf * dh * df + (hx.c.useMuon ? 5 * 3 * Hf * (4 * m * m * n + 2 * m * m * m) : 0));
    }
  });

  it('one chunk: W after momentum + Muon + renorm matches FastWeightHead.learn (5e-5), momentum too (5e-6)', async () => {
    const hx = new Harness(ctx, ALL_ON, 16);
    for (const [pos0, rows] of THREE_CHUNKS.slice(0, 3)) await hx.block_(pos0, rows, 100 + pos0);
    const { w, m } = await hx.stateError();
    console.log('one chunk ALL_ON: W', w, 'M', m);
    expect(w).toBeLessThan(5e-5);
    expect(m).toBeLessThan(5e-6);
  });

  // inter_multi 2 (dh > df: Muon on transposed blocks), 1 (square), 0.5 (dh < df); and everything off.
  const CASES: [string, Record<string, unknown>, number][] = [
    ['ALL_ON (inter_multi 2)', ALL_ON, 1e-4],
    ['ALL_ON, inter_multi 1', { ...ALL_ON, inter_multi: 1 }, 1e-4],
    ['ALL_ON, inter_multi 0.5 (df > dh)', { ...ALL_ON, inter_multi: 0.5 }, 1e-4],
    ['ALL_OFF', ALL_OFF, 1e-5],
  ];
  for (const [name, raw, tol] of CASES) {
    it(`three chunks (momentum carried), then a new block: every output and the final W match, ${name} (${tol})`, async () => {
      const hx = new Harness(ctx, raw, 16);
      // The initial output of the block that comes after, for the reset and non-vacuity checks.
      const probe = { pos0: 48, rows: 3, seed: 999 };
      const initial = await hx.block_(probe.pos0, probe.rows, probe.seed, { learn: false });
      let outErr = 0;
      for (const [pos0, rows] of THREE_CHUNKS) {
        const r = await hx.block_(pos0, rows, 100 + pos0);
        outErr = Math.max(outErr, maxRelError(r.got, r.want));
      }
      const { w, m } = await hx.stateError();
      const after = await hx.block_(probe.pos0, probe.rows, probe.seed);
      const afterErr = maxRelError(after.got, after.want);
      // Learning moved the output well beyond float noise, on both sides.
      const moved = maxRelError(after.got, initial.got);
      const movedRef = maxRelError(after.want, initial.want);
      console.log(`${name}: block outputs ${outErr.toExponential(2)}, W ${w.toExponential(2)}, M ${m.toExponential(2)}, after ${afterErr.toExponential(2)}, moved ${moved.toExponential(2)} (ref ${movedRef.toExponential(2)})`);
      expect(outErr).toBeLessThan(tol);
      expect(w).toBeLessThan(tol);
      expect(m).toBeLessThan(tol);
      expect(afterErr).toBeLessThan(tol);
      expect(moved).toBeGreaterThan(1e-3);
      expect(Math.abs(moved - movedRef) / movedRef).toBeLessThan(0.05);

      // reset(): the checkpoint's weights again, so the probe block gives the initial output exactly.
      hx.layer.reset();
      const again = await hx.block_(probe.pos0, probe.rows, probe.seed, { learn: false });
      expect(maxRelError(again.got, initial.got)).toBeLessThan(1e-7);
      if (hx.layer.state.momentum) expect((await readF32(ctx, hx.layer.state.momentum)).every((v) => v === 0)).toBe(true);
    });
  }
});
