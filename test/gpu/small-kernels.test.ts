import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext, WeightStorage } from '../../src/gpu/context.ts';
import { EmbedOp } from '../../src/gpu/ops/embed.ts';
import { RmsNormOp } from '../../src/gpu/ops/rmsnorm.ts';
import { SwigluOp } from '../../src/gpu/ops/swiglu.ts';
import { toHalf, uploadMatrix } from '../../src/gpu/weights.ts';
import { f16BitsToFloat32 } from '../../src/model/safetensors.ts';
import { rmsNormRows, silu } from '../../src/reference/linalg.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { hasFeature, openTestGpu, readF32, runPass, upload, zeros } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';

function randn(n: number, seed: number): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => g());
}

describe('RMSNorm, embedding gather and SwiGLU kernels against the reference', () => {
  let ctx: GpuContext;
  let block: BlockParams;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
    block = new BlockParams(ctx);
  });
  afterAll(() => ctx?.device.destroy());

  it('RMSNorm of q and k segments, in place and not, with and without subgroups (relative (D/2 + 12)·2^-24)', async () => {
    for (const [subgroups, inPlace] of [[false, true], [true, true], [false, false], [true, false]]) {
      if (subgroups && !hasFeature(ctx, 'subgroups', `subgroup reduction, in place ${inPlace}`)) continue;
      const [rows, D] = [5, 100]; // 100: not a multiple of the 64-wide workgroup
      const x = randn(rows * 3 * D, 1), w = randn(2 * D, 2);
      const buf = upload(ctx, x);
      const out = inPlace ? buf : upload(ctx, x);
      const op = new RmsNormOp(ctx, 'qk', { n: D, eps: 1e-5, segments: 2, segStride: D, inStride: 3 * D, outStride: 3 * D }, { weight: upload(ctx, w), x: buf, y: out }, block, subgroups);
      block.write(rows, 0);
      await runPass(ctx, (p) => op.encode(p, rows));
      const got = await readF32(ctx, out);
      const want = Float64Array.from(x);
      for (let r = 0; r < rows; r++) {
        for (let s = 0; s < 2; s++) {
          const o = r * 3 * D + s * D;
          want.set(rmsNormRows(Float64Array.from(x.subarray(o, o + D)), 1, D, Float64Array.from(w.subarray(s * D, s * D + D)), 1e-5), o);
        }
      }
      // The sum of D squares has only positive terms: f32 rounding puts it within (D - 1)·u of itself,
      // whatever the order (subgroup or tree reduction); sqrt/inverseSqrt, the division and the two
      // products add a few ulps (Vulkan allows up to 3 ulp for inverseSqrt). The error of every output is
      // relative to itself: rtol (D/2 + 12)·u, u = 2^-24, with no absolute floor needed.
      expectClose(got, want, { atol: 0, rtol: (D / 2 + 12) * 2 ** -24, label: `subgroups ${subgroups}, in place ${inPlace}` });
    }
  });

  it('RMSNorm added into the stream after a sublayer: y += norm(x)·w and y = r + norm(x)·w (the sandwich norms; relative (D/2 + 12)·2^-24 of the norm, plus the add)', async () => {
    const [rows, D] = [6, 100];
    const x = randn(rows * D, 11), w = randn(D, 12), r = randn(rows * D, 13);
    const norm = rmsNormRows(Float64Array.from(x), rows, D, Float64Array.from(w), 1e-6);
    const want = Float64Array.from(norm, (v, i) => v + r[i]);
    // The norm's own error (as above) plus one rounding of the sum: |norm|·(D/2 + 12)u + |want|·u.
    const atolOf = Float64Array.from(norm, (v, i) => Math.abs(v) * (D / 2 + 12) * 2 ** -24 + Math.abs(want[i]) * 2 ** -24);
    for (const mode of ['accumulate', 'residual'] as const) {
      const y = upload(ctx, mode === 'accumulate' ? r : new Float32Array(rows * D).fill(123));
      const spec = { n: D, eps: 1e-6, inStride: D, outStride: D, accumulate: mode === 'accumulate' };
      const op = new RmsNormOp(ctx, mode, spec, { weight: upload(ctx, w), x: upload(ctx, x), y, residual: mode === 'residual' ? upload(ctx, r) : undefined }, block);
      block.write(rows, 0);
      await runPass(ctx, (p) => op.encode(p, rows));
      const got = await readF32(ctx, y);
      for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - want[i]), `${mode} [${i}]`).toBeLessThanOrEqual(atolOf[i]);
      // Planted: the plain store (the stream's value lost) is far outside.
      expectNotClose(got, norm, { atol: 1e-3, rtol: 0 });
    }
    expect(() => new RmsNormOp(ctx, 'bad', { n: D, eps: 1e-6, inStride: D, outStride: D, accumulate: true }, { weight: upload(ctx, w), x: upload(ctx, x), y: upload(ctx, x), residual: upload(ctx, r) }, block)).toThrow(/exclude/);
  });

  it('the post-norm, the residual add and the next pre-norm in one launch: y = r + norm(x)·w, y2 = norm(y)·w2 (with and without subgroups)', async () => {
    const [rows, D] = [5, 100];
    const x = randn(rows * D, 21), w = randn(D, 22), r = randn(rows * D, 23), w2 = randn(D, 24);
    const norm = rmsNormRows(Float64Array.from(x), rows, D, Float64Array.from(w), 1e-6);
    const wantY = Float64Array.from(norm, (v, i) => v + r[i]);
    const atolY = Float64Array.from(norm, (v, i) => Math.abs(v) * (D / 2 + 12) * 2 ** -24 + Math.abs(wantY[i]) * 2 ** -24);
    for (const subgroups of [false, ...(hasFeature(ctx, 'subgroups', 'RMSNorm with the next norm, subgroup reduction') ? [true] : [])]) {
      const y = upload(ctx, new Float32Array(rows * D).fill(123)), y2 = upload(ctx, new Float32Array(rows * D).fill(456));
      const op = new RmsNormOp(ctx, 'post + next', { n: D, eps: 1e-6, inStride: D, outStride: D }, { weight: upload(ctx, w), x: upload(ctx, x), y, residual: upload(ctx, r), next: { weight: upload(ctx, w2), y: y2 } }, block, subgroups);
      block.write(rows, 0);
      await runPass(ctx, (p) => op.encode(p, rows));
      const gotY = await readF32(ctx, y), gotY2 = await readF32(ctx, y2);
      for (let i = 0; i < gotY.length; i++) expect(Math.abs(gotY[i] - wantY[i]), `y [${i}]`).toBeLessThanOrEqual(atolY[i]);
      // y2 from the y the kernel stored (f32), as a separate norm launch would see it: the norm's own error.
      const wantY2 = rmsNormRows(Float64Array.from(gotY), rows, D, Float64Array.from(w2), 1e-6);
      expectClose(gotY2, wantY2, { atol: 0, rtol: (D / 2 + 12) * 2 ** -24, label: `y2, subgroups ${subgroups}` });
      // Planted: y2 normed from x instead of the new stream is far outside.
      expectNotClose(gotY2, rmsNormRows(Float64Array.from(x), rows, D, Float64Array.from(w2), 1e-6), { atol: 1e-3, rtol: 0 });
    }
    const io = { weight: upload(ctx, w), x: upload(ctx, x), y: upload(ctx, r) };
    expect(() => new RmsNormOp(ctx, 'no residual', { n: D, eps: 1e-6, inStride: D, outStride: D }, { ...io, next: { weight: io.weight, y: upload(ctx, r) } }, block)).toThrow(/needs a residual/);
  });

  it('embedding gather from a table split into parts, every weight storage (exact)', async () => {
    const [V, D, rows] = [37, 6, 9];
    const table = randn(V * D, 3);
    const tokens = [0, 36, 5, 17, 18, 5, 1, 35, 20];
    for (const storage of ['f32', 'f16', 'f16-packed'] as WeightStorage[]) {
      if (storage === 'f16' && !hasFeature(ctx, 'shaderF16', 'native f16 table')) continue;
      // 10 rows per part at f32 (4 parts), 20 at f16: the gather must pick the right part for each token.
      const parts = uploadMatrix(ctx, 'E', table, V, D, storage, 10 * D * 4);
      expect(parts.parts.length).toBeGreaterThan(1);
      const tok = ctx.allocator.upload('tokens', 'scratch', Uint32Array.from(tokens));
      const x = zeros(ctx, rows * D);
      const op = new EmbedOp(ctx, 'embed', D, parts, { tokens: tok, x }, block);
      block.write(rows, 0);
      await runPass(ctx, (p) => op.encode(p, rows));
      const got = await readF32(ctx, x);
      const half = storage === 'f32' ? null : Array.from(toHalf(table), f16BitsToFloat32);
      const want = tokens.flatMap((t) => Array.from({ length: D }, (_, i) => (half ? half[t * D + i] : table[t * D + i])));
      expect(Array.from(got), storage).toEqual(want);
    }
  });

  it('SwiGLU gate: silu(g) * u on the side-by-side projection (relative (8 + 2 max|g|)·2^-24)', async () => {
    const [rows, I] = [3, 70];
    const gu = randn(rows * 2 * I, 4);
    const s = zeros(ctx, rows * I);
    const op = new SwigluOp(ctx, 'swiglu', I, { gu: upload(ctx, gu), s }, block);
    block.write(rows, 0);
    await runPass(ctx, (p) => op.encode(p, rows));
    const want = Array.from({ length: rows * I }, (_, id) => {
      const r = Math.floor(id / I), i = id % I;
      return silu(gu[r * 2 * I + i]) * gu[r * 2 * I + I + i];
    });
    // silu(g)·u = g·u / (1 + exp(-g)): exp within 3 + 2|g| ulp (Vulkan), then an add, a division and two
    // products: relative to the output, up to (8 + 2|g|)·u, u = 2^-24.
    const maxG = Math.max(...Array.from({ length: rows * I }, (_, id) => Math.abs(gu[Math.floor(id / I) * 2 * I + (id % I)])));
    expectClose(await readF32(ctx, s), want, { atol: 0, rtol: (8 + 2 * maxG) * 2 ** -24, label: 'swiglu' });
  });
});
