import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { RopeOp } from '../../src/gpu/ops/rope.ts';
import { ropeInPlace } from '../../src/reference/rope.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { maxRelError, openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';

describe('rope.wgsl against the reference RoPE', () => {
  let ctx: GpuContext;
  beforeAll(async () => { ctx = (await openTestGpu()).ctx; });
  afterAll(() => ctx?.device.destroy());

  it('ropes q and k segments of a qkv block at absolute positions (f32 angles: 2e-5 at positions < 100, 2e-3 near 20000)', async () => {
    const [rows, D, hd] = [7, 24, 8];
    const g = gaussian(rng(5));
    for (const [pos0, tol] of [[0, 2e-5], [93, 2e-5], [20_000, 2e-3]] as const) {
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
      expect(maxRelError(got, want), `pos0 ${pos0}`).toBeLessThan(tol);
      // v (third segment) is untouched.
      for (let r = 0; r < rows; r++) for (let i = 2 * D; i < 3 * D; i++) expect(got[r * 3 * D + i]).toBe(x[r * 3 * D + i]);
    }
  });
});
