/**
 * shaders/e2e-rope.wgsl (src/gpu/ops/e2e-rope.ts) against the f64 twin: rope and ropeBackward of
 * src/reference/e2e (interleaved pairs, freq_i = theta^(-2i/hd)), at positions up to 1.3e5 and past 2^24.
 *
 * Bound per element (u = 2^-24), for the pair (x0, x1) it belongs to, |pair| = hypot(x0, x1):
 *  - angle: the kernel reduces pos·freq exactly in 64-bit fixed-point turns (shaders/common/rope-turns.wgsl);
 *    what is left is the table F (<= 2^-55 turns per unit of position: 2π·pos·2^-55 rad), and the f32
 *    remainder x = (rem + lo·2^-32)·(2π·2^-32), |x| <= π/4: the sum, the rounded constant and the product,
 *    3u·π/4 rad. The f64 twin's own angle is within ~2 ulp of pos·freq (the product and Math.pow):
 *    4·2^-53·pos·freq rad. ε_a = the sum of these.
 *  - cos/sin of x by f32 Horner polynomials (|x| <= π/4; the Taylor remainders are < 0.05u): within 3u each.
 *  - y0 = x0·c - x1·s (and y1 alike): the errors of c and s weigh |x0| + |x1| <= √2·|pair|, the two products
 *    and the sum round to u·(|x0 c| + |x1 s|) + u·|y0| <= 2u·|pair|.
 *  bound = |pair|·(√2·(3u + ε_a) + 2u) ≈ 9.6u·|pair| at any position (rtol 0: the bound is absolute per
 *  pair, a component near zero is still held to its pair's norm).
 * A kernel that formed the angle as an f32 product pos·freq (as LaCT's rope.wgsl once did) would be off by
 * ~u·pos·freq, 8e-3 rad at 1.3e5: the check below shows such angles fail this bound by orders of magnitude.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { E2ERopeOp, type E2ERopeSpec } from '../../src/gpu/ops/e2e-rope.ts';
import { ropeTurnTable } from '../../src/gpu/ops/rope-turn-table.ts';
import { rope, type RopeLayout } from '../../src/reference/e2e/ops.ts';
import { ropeBackward } from '../../src/reference/e2e/backward.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';

const U = 2 ** -24;

/** The per-element bound above, for vectors [rows, width] (width = H·hd), rows at pos0 + r. */
function ropeBound(x: ArrayLike<number>, rows: number, width: number, hd: number, theta: number, pos0: number): Float64Array {
  const b = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const pos = pos0 + r;
    for (let c = 0; c < width; c += 2) {
      const i = (c % hd) / 2;
      const angle = pos * Math.pow(theta, (-2 * i) / hd);
      const ea = 2 * Math.PI * pos * 2 ** -55 + 3 * U * (Math.PI / 4) + 4 * 2 ** -53 * angle;
      const norm = Math.hypot(x[r * width + c], x[r * width + c + 1]);
      b[r * width + c] = b[r * width + c + 1] = norm * (Math.SQRT2 * (3 * U + ea) + 2 * U);
    }
  }
  return b;
}

function randn(n: number, seed: number): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => g());
}

/** Columns [off, off + width) of each row of a [rows, stride] array. */
function cols(a: ArrayLike<number>, rows: number, stride: number, off: number, width: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) out[r * width + c] = a[r * stride + off + c];
  return out;
}

const positions = (pos0: number, rows: number) => Array.from({ length: rows }, (_, r) => pos0 + r);

describe('e2e-rope.wgsl against the f64 twin (rope / ropeBackward)', () => {
  let ctx: GpuContext;
  let block: BlockParams;
  const measured: Record<string, number> = {};
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
    block = new BlockParams(ctx);
  });
  afterAll(() => {
    console.info('e2e-rope: worst element in units of its bound (< 1 passes):', measured);
    ctx?.device.destroy();
  });

  async function runRope(spec: E2ERopeSpec, x: Float32Array, rows: number, pos0: number, inPlace: boolean): Promise<Float32Array> {
    const xb = upload(ctx, x);
    const yb = inPlace ? xb : upload(ctx, new Float32Array(rows * (spec.outStride ?? spec.inStride ?? spec.heads * spec.headDim)).fill(7));
    const op = new E2ERopeOp(ctx, 'rope', spec, { x: xb, y: yb }, block);
    block.write(rows, pos0);
    await runPass(ctx, (pass) => op.encode(pass, rows));
    return readF32(ctx, yb);
  }

  it('the turn table holds frac(freq_i / 2π)·2^64', () => {
    const t = ropeTurnTable(8, 10000);
    // freq_0 = 1: 1/2π = 0.15915494309189535 turns.
    expect((t[0] * 2 ** 32 + t[1]) / 2 ** 64).toBeCloseTo(1 / (2 * Math.PI), 15);
    expect((t[6] * 2 ** 32 + t[7]) / 2 ** 64).toBeCloseTo(Math.pow(10000, -6 / 8) / (2 * Math.PI), 15);
  });

  it('q and k segments of a qkv row, out of place and in place, forward and backward, positions 0 .. 2^24 + 5', async () => {
    for (const [H, hd, theta] of [[3, 8, 10000], [2, 64, 500000]] as const) {
      const D = H * hd, rows = 6;
      for (const pos0 of [0, 1021, 129_995, 16_777_210]) {
        for (const inverse of [false, true]) {
          for (const inPlace of [false, true]) {
            const x = randn(rows * 3 * D, 1 + pos0 + hd);
            const spec: E2ERopeSpec = inPlace
              ? { heads: H, headDim: hd, theta, segments: 2, segStride: D, inStride: 3 * D, inverse }
              : { heads: H, headDim: hd, theta, segments: 2, segStride: D, inStride: 3 * D, outStride: 2 * D + 3, outOff: 1, inverse };
            const got = await runRope(spec, x, rows, pos0, inPlace);
            const outStride = inPlace ? 3 * D : 2 * D + 3, outOff = inPlace ? 0 : 1;
            const twin = inverse
              ? (v: Float64Array) => ropeBackward(v, rows, H, hd, positions(pos0, rows), theta)
              : (v: Float64Array) => rope(v, rows, H, hd, positions(pos0, rows), theta);
            let worst = 0;
            for (let seg = 0; seg < 2; seg++) {
              const xin = cols(x, rows, 3 * D, seg * D, D);
              const label = `hd ${hd} pos0 ${pos0} ${inverse ? 'backward' : 'forward'} ${inPlace ? 'in place' : 'out of place'} seg ${seg}`;
              const c = expectClose(cols(got, rows, outStride, outOff + seg * D, D), twin(xin), { atol: ropeBound(xin, rows, D, hd, theta, pos0), rtol: 0, label });
              worst = Math.max(worst, c.ratio);
            }
            const key = `hd ${hd} pos0 ${pos0}`;
            measured[key] = Math.max(measured[key] ?? 0, worst);
            if (inPlace) {
              // v (the third segment) is untouched.
              for (let r = 0; r < rows; r++) for (let c = 2 * D; c < 3 * D; c++) expect(got[r * 3 * D + c]).toBe(x[r * 3 * D + c]);
            } else {
              // Nothing outside the two output vectors is written.
              for (let r = 0; r < rows; r++) for (const c of [0, 2 * D + 1, 2 * D + 2]) expect(got[r * (2 * D + 3) + c]).toBe(7);
            }
          }
        }
      }
    }
  });

  it('the check fails on planted errors: rotate-half pairs, a position off by one, the other sign, f32 angles', async () => {
    const [H, hd, theta, rows] = [3, 8, 500000, 6];
    const D = H * hd;
    const planted: Record<string, number> = {};
    for (const pos0 of [17, 129_995]) {
      const x = randn(rows * D, 40 + pos0);
      const xin = Float64Array.from(x);
      const tol = { atol: ropeBound(xin, rows, D, hd, theta, pos0), rtol: 0 };
      const got = await runRope({ heads: H, headDim: hd, theta }, x, rows, pos0, false);
      expectClose(got, rope(xin, rows, H, hd, positions(pos0, rows), theta), { ...tol, label: `pos0 ${pos0}` });
      const wrong: Record<string, Float64Array> = {
        'rotate-half': rope(xin, rows, H, hd, positions(pos0, rows), theta, 'rotate-half' as RopeLayout),
        'position + 1': rope(xin, rows, H, hd, positions(pos0 + 1, rows), theta),
        'minus the angle': ropeBackward(xin, rows, H, hd, positions(pos0, rows), theta),
      };
      if (pos0 > 1000) {
        // What an f32 angle pos·freq (freq rounded to f32, the product rounded) gives, turned exactly in f64:
        // LaCT's rope.wgsl's angle. The bound must tell it apart at large positions.
        const f32Angle = new Float64Array(rows * D);
        for (let r = 0; r < rows; r++) {
          for (let h = 0; h < H; h++) {
            for (let i = 0; i < hd / 2; i++) {
              const a = Math.fround(Math.fround(pos0 + r) * Math.fround(Math.pow(theta, (-2 * i) / hd)));
              const o = r * D + h * hd + 2 * i, c = Math.cos(a), s = Math.sin(a);
              f32Angle[o] = xin[o] * c - xin[o + 1] * s;
              f32Angle[o + 1] = xin[o] * s + xin[o + 1] * c;
            }
          }
        }
        wrong['f32 angle'] = f32Angle;
      }
      for (const [name, want] of Object.entries(wrong)) {
        const c = expectNotClose(got, want, { ...tol, label: `${name} @${pos0}` });
        planted[`${name} @${pos0}`] = c.ratio;
      }
    }
    console.info('e2e-rope: planted errors, worst element in units of the bound:', planted);
    // The f32 angle at 1.3e5 is off by ~1e-2 rad: far outside a bound of ~1e-6 of the pair.
    expect(planted['f32 angle @129995']).toBeGreaterThan(100);
  });

  it('backward after forward gives the input back (R^T R = I) within twice the bound', async () => {
    const [H, hd, theta, rows, pos0] = [2, 16, 500000, 5, 131_000];
    const D = H * hd;
    const x = randn(rows * D, 9);
    const y = await runRope({ heads: H, headDim: hd, theta }, x, rows, pos0, false);
    const back = await runRope({ heads: H, headDim: hd, theta, inverse: true }, y, rows, pos0, true);
    const b = ropeBound(x, rows, D, hd, theta, pos0).map((v) => 2 * v);
    const c = expectClose(back, x, { atol: b, rtol: 0, label: 'roundtrip' });
    measured.roundtrip = c.ratio;
  });

  it('rejects an odd head dim', () => {
    expect(() => new E2ERopeOp(ctx, 'rope', { heads: 2, headDim: 7, theta: 1e4 }, { x: upload(ctx, [0]), y: upload(ctx, [0]) }, block)).toThrow(RangeError);
  });
});
