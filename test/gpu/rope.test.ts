/**
 * shaders/rope.wgsl (src/gpu/ops/rope.ts) against the f64 twin (src/reference/rope.ts, rotate-half pairs
 * i and i + hd/2, freq_i = theta^(-2i/hd)), at positions from 0 past 2^24.
 *
 * Bound per element (u = 2^-24), for the pair (x1, x2) it belongs to, |pair| = hypot(x1, x2): the kernel
 * takes its angle from the turn table (shaders/common/rope-turns.wgsl, as e2e-rope.wgsl does; the terms are
 * derived in test/gpu/e2e-rope.test.ts): the table, 2π·pos·2^-55 rad; the f32 remainder, 3u·π/4; the twin's
 * own f64 angle, 4·2^-53·angle. cos/sin of the remainder by the f32 polynomials: 3u each; the rotation's
 * products and sum: 2u·|pair|. bound = |pair|·(√2·(3u + ε_a) + 2u), about 9.6u·|pair| at any position.
 * The f32-angle kernel this replaced (cos/sin of the f32 product pos·freq) fails it by orders of magnitude
 * at large positions: the planted check below keeps that visible.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { RopeOp } from '../../src/gpu/ops/rope.ts';
import { ropeInPlace } from '../../src/reference/rope.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';

const U = 2 ** -24;

/** The bound above for a [rows, 3D] q | k | v block: q and k roped, v exact (bound 0). */
function ropeBound(x: Float32Array, rows: number, D: number, hd: number, theta: number, pos0: number): Float64Array {
  const half = hd / 2;
  const bound = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const pos = pos0 + r;
    for (let seg = 0; seg < 2; seg++) {
      for (let h = 0; h < D / hd; h++) {
        for (let i = 0; i < half; i++) {
          const b = r * 3 * D + seg * D + h * hd + i;
          const angle = pos * Math.pow(theta, (-2 * i) / hd);
          const ea = 2 * Math.PI * pos * 2 ** -55 + 3 * U * (Math.PI / 4) + 4 * 2 ** -53 * angle;
          bound[b] = bound[b + half] = Math.hypot(x[b], x[b + half]) * (Math.SQRT2 * (3 * U + ea) + 2 * U);
        }
      }
    }
  }
  return bound;
}

/** The twin over q and k of every row, at positions pos0 + r (`f32Angle`: the angle rounded to f32 first, as the old kernel formed it). */
function twin(x: Float32Array, rows: number, D: number, hd: number, theta: number, pos0: number, f32Angle = false): Float64Array {
  const want = Float64Array.from(x);
  for (let r = 0; r < rows; r++) {
    for (const seg of [0, 1]) {
      const off = r * 3 * D + seg * D;
      if (!f32Angle) { ropeInPlace(want, off, D, hd, pos0 + r, theta); continue; }
      for (let h = 0; h < D / hd; h++) {
        for (let i = 0; i < hd / 2; i++) {
          const a = Math.fround(Math.fround(pos0 + r) * Math.fround(Math.pow(theta, (-2 * i) / hd)));
          const [c, s] = [Math.cos(a), Math.sin(a)];
          const b = off + h * hd + i, x1 = want[b], x2 = want[b + hd / 2];
          want[b] = x1 * c - x2 * s;
          want[b + hd / 2] = x2 * c + x1 * s;
        }
      }
    }
  }
  return want;
}

describe('rope.wgsl against the reference RoPE', () => {
  let ctx: GpuContext;
  const measured: Record<string, number> = {};
  beforeAll(async () => { ctx = (await openTestGpu()).ctx; });
  afterAll(() => {
    console.info('rope: worst element in units of its bound (< 1 passes):', measured);
    ctx?.device.destroy();
  });

  async function runRope(x: Float32Array, rows: number, D: number, hd: number, theta: number, pos0: number): Promise<Float32Array> {
    const buf = upload(ctx, x);
    const block = new BlockParams(ctx);
    const op = new RopeOp(ctx, 'rope', { dim: D, headDim: hd, theta, rowStride: 3 * D, segments: 2, segStride: D }, buf, block);
    block.write(rows, pos0);
    await runPass(ctx, (pass) => op.encode(pass, rows));
    return readF32(ctx, buf);
  }

  it('ropes q and k segments of a qkv block at absolute positions 0 .. 2^24 + 6 (the exact-angle bound per pair)', async () => {
    const g = gaussian(rng(5));
    for (const [rows, D, hd, theta] of [[7, 24, 8, 10000], [5, 64, 32, 10000], [3, 128, 64, 500000]] as const) {
      for (const pos0 of [0, 93, 20_000, 129_995, 16_777_210]) {
        const x = Float32Array.from({ length: rows * 3 * D }, () => g());
        const got = await runRope(x, rows, D, hd, theta, pos0);
        const c = expectClose(got, twin(x, rows, D, hd, theta, pos0), { atol: ropeBound(x, rows, D, hd, theta, pos0), rtol: 0, label: `hd ${hd} pos0 ${pos0}` });
        measured[`hd ${hd} pos0 ${pos0}`] = c.ratio;
        // v (third segment) is untouched.
        for (let r = 0; r < rows; r++) for (let i = 2 * D; i < 3 * D; i++) expect(got[r * 3 * D + i]).toBe(x[r * 3 * D + i]);
      }
    }
  });

  it('the bound tells planted errors apart: f32 angles at large positions, a position off by one, the other sign', async () => {
    const [rows, D, hd, theta] = [6, 32, 32, 10000];
    const g = gaussian(rng(11));
    for (const pos0 of [129_995, 1_000_003]) {
      const x = Float32Array.from({ length: rows * 3 * D }, () => g());
      const got = await runRope(x, rows, D, hd, theta, pos0);
      const tol = { atol: ropeBound(x, rows, D, hd, theta, pos0), rtol: 0 };
      expectClose(got, twin(x, rows, D, hd, theta, pos0), { ...tol, label: `pos0 ${pos0}` });
      expectNotClose(twin(x, rows, D, hd, theta, pos0, true), twin(x, rows, D, hd, theta, pos0), { ...tol, label: `f32 angles, pos0 ${pos0}` });
      expectNotClose(got, twin(x, rows, D, hd, theta, pos0 + 1), { ...tol, label: `position + 1, pos0 ${pos0}` });
      const minus = Float64Array.from(x);
      for (let r = 0; r < rows; r++) for (const seg of [0, 1]) ropeInPlace(minus, r * 3 * D + seg * D, D, hd, -(pos0 + r), theta);
      expectNotClose(got, minus, { ...tol, label: `the other sign, pos0 ${pos0}` });
    }
  });
});
