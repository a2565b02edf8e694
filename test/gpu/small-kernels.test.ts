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
import { maxRelError, openTestGpu, readF32, runPass, upload, zeros } from '../helpers/gpu.ts';

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

  it('RMSNorm of q and k segments, in place and not, with and without subgroups (1e-5)', async () => {
    for (const [subgroups, inPlace] of [[false, true], [true, true], [false, false], [true, false]]) {
      if (subgroups && !ctx.features.subgroups) continue;
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
      expect(maxRelError(got, want), `subgroups ${subgroups}, in place ${inPlace}`).toBeLessThan(1e-5);
    }
  });

  it('embedding gather from a table split into parts, every weight storage (exact)', async () => {
    const [V, D, rows] = [37, 6, 9];
    const table = randn(V * D, 3);
    const tokens = [0, 36, 5, 17, 18, 5, 1, 35, 20];
    for (const storage of ['f32', 'f16', 'f16-packed'] as WeightStorage[]) {
      if (storage === 'f16' && !ctx.features.shaderF16) continue;
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

  it('SwiGLU gate: silu(g) * u on the side-by-side projection (1e-6)', async () => {
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
    expect(maxRelError(await readF32(ctx, s), want)).toBeLessThan(1e-6);
  });
});
