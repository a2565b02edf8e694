import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { RopeOp } from '../../src/gpu/ops/rope.ts';
import { ropeInPlace } from '../../src/reference/rope.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/close.ts';

/**
 * Per element: the GPU turns each pair (x1, x2) by an f32 angle pos·invFreq, invFreq = exp2(e),
 * e = -2i/hd · log2(theta) (|e| <= 13.3). In f32 (u = 2^-24): e carries ~3 roundings (3u·|e| absolute, so
 * 2.1u·|e| relative in exp2(e)), exp2 itself is within 3 + 2|e| ulp (Vulkan's bound), the product one
 * more: |angle error| <= (4.1·|e| + 4)·u·angle. A wrong angle moves both outputs by at most that times the
 * pair's norm; cos/sin, the two products and the sum add a few ulp of the pair's norm: 8u (Vulkan's
 * absolute 2^-11 for sin/cos is far looser than drivers are: lavapipe stays within 4u).
 * Bound per element: |pair|·((4.1·|e| + 4)·u·angle + 8u).
 */
function ropeBound(x: Float32Array, rows: number, D: number, hd: number, pos0: number): Float64Array {
  const u = 2 ** -24, half = hd / 2;
  const bound = new Float64Array(x.length); // v, the third segment, stays exact: bound 0
  for (let r = 0; r < rows; r++) {
    for (let seg = 0; seg < 2; seg++) {
      for (let h = 0; h < D / hd; h++) {
        for (let i = 0; i < half; i++) {
          const b = r * 3 * D + seg * D + h * hd + i;
          const norm = Math.hypot(x[b], x[b + half]);
          const e = ((-2 * i) / hd) * Math.log2(10000);
          const angle = (pos0 + r) * 2 ** e;
          bound[b] = bound[b + half] = norm * ((4.1 * Math.abs(e) + 4) * u * angle + 8 * u);
        }
      }
    }
  }
  return bound;
}

describe('rope.wgsl against the reference RoPE', () => {
  let ctx: GpuContext;
  beforeAll(async () => { ctx = (await openTestGpu()).ctx; });
  afterAll(() => ctx?.device.destroy());

  it('ropes q and k segments of a qkv block at absolute positions (per pair: the error bound of the f32 angle, plus 8 ulp)', async () => {
    const [rows, D, hd] = [7, 24, 8];
    const g = gaussian(rng(5));
    for (const pos0 of [0, 93, 20_000]) {
      const x = Float32Array.from({ length: rows * 3 * D }, () => g());
      const buf = upload(ctx, x);
      const block = new BlockParams(ctx);
      const op = new RopeOp(ctx, 'rope', { dim: D, headDim: hd, theta: 10000, rowStride: 3 * D, segments: 2, segStride: D }, buf, block);
      block.write(rows, pos0);
      await runPass(ctx, (pass) => op.encode(pass, rows));
      const got = await readF32(ctx, buf);
      const want = Float64Array.from(x);
      for (let r = 0; r < rows; r++) {
        ropeInPlace(want, r * 3 * D, D, hd, pos0 + r, 10000);
        ropeInPlace(want, r * 3 * D + D, D, hd, pos0 + r, 10000);
      }
      expectClose(got, want, { atol: ropeBound(x, rows, D, hd, pos0), rtol: 0, label: `pos0 ${pos0}` });
      // v (third segment) is untouched.
      for (let r = 0; r < rows; r++) for (let i = 2 * D; i < 3 * D; i++) expect(got[r * 3 * D + i]).toBe(x[r * 3 * D + i]);
    }
  });
});
