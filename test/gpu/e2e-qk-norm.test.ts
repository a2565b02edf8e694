/**
 * shaders/e2e-qk-norm.wgsl (src/gpu/ops/e2e-qk-norm.ts) against the f64 twins qkNorm and qkNormBackward
 * of src/reference/e2e: per-head RMSNorm over hd with one gain [hd] shared by the heads, q and k of a qkv
 * row in one launch (segment s with its own gain), heads of very different scales (every head is held to
 * its own magnitude).
 *
 * Bounds (u = 2^-24, first order; inputs are f32 and exact in the f64 twin):
 *  r = (Σx²/hd + eps)^(-1/2): the sum of hd positive squares (sequential) is within (hd - 1)u + u of itself
 *  relative, the division and the eps add 2u, inverseSqrt 2 ulp = 4u (WGSL): r within ε_r = (hd/2 + 5)u.
 *  forward    y = x r g: ε_r plus two products: rtol (hd/2 + 8)u, atol 0.
 *  dx         = r g dy - c x, c = r³ (Σ dy g x) / hd:
 *             |r g dy|·(ε_r + 2u) + |x|·(|c|(3ε_r + 5u) + r³/hd · (hd + 1)u · Σ|dy g x|) + u|dx|, per element
 *             (atol; rtol 0), the Σ|dy g x| term being the dot's rounding, which a cancelling dot does not shrink.
 *  dgain      = Σ over the n = rows·H vectors of dy x r: each term within ε_r + 2u, and the sum (each of 64
 *             invocations adds ceil(n/64) terms in turn, then a 6-level tree) within (ceil(n/64) + 6)u of
 *             Σ|dy x r|: atol (ε_r + 2u + (ceil(n/64) + 6)u)·Σ|dy x r|.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { E2EQkNormBackwardOp, E2EQkNormOp, type E2EQkNormSpec } from '../../src/gpu/ops/e2e-qk-norm.ts';
import { qkNorm, rope } from '../../src/reference/e2e/ops.ts';
import { qkNormBackward, ropeBackward } from '../../src/reference/e2e/backward.ts';
import { rmsNormRows } from '../../src/reference/linalg.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload, zeros } from '../helpers/gpu.ts';
import { expectClose, expectNotClose, type CloseTolerance } from '../helpers/close.ts';

const U = 2 ** -24;
const EPS = 1e-6;

function randn(n: number, seed: number): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => g());
}

/** [rows, stride] with head h of every segment scaled by scales[h] (heads of very different sizes). */
function scaledRows(rows: number, stride: number, segments: number, segStride: number, H: number, hd: number, seed: number, scales: readonly number[]): Float32Array {
  const a = randn(rows * stride, seed);
  for (let r = 0; r < rows; r++) for (let s = 0; s < segments; s++) for (let h = 0; h < H; h++) {
    for (let i = 0; i < hd; i++) a[r * stride + s * segStride + h * hd + i] *= scales[h % scales.length];
  }
  return a;
}

function cols(a: ArrayLike<number>, rows: number, stride: number, off: number, width: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) out[r * width + c] = a[r * stride + off + c];
  return out;
}

/** The dx and dgain bounds above, for one segment: x, dy [rows·H, hd] in f64. */
function backwardBounds(x: Float64Array, dy: Float64Array, gain: Float64Array, n: number, hd: number): { dx: Float64Array; dgain: Float64Array } {
  const er = (hd / 2 + 5) * U;
  const dx = new Float64Array(n * hd), dgainAbs = new Float64Array(hd);
  for (let v = 0; v < n; v++) {
    const o = v * hd;
    let ss = 0, dot = 0, dotAbs = 0;
    for (let i = 0; i < hd; i++) {
      ss += x[o + i] ** 2;
      dot += dy[o + i] * gain[i] * x[o + i];
      dotAbs += Math.abs(dy[o + i] * gain[i] * x[o + i]);
    }
    const r = 1 / Math.sqrt(ss / hd + EPS), c = (r ** 3 * dot) / hd;
    for (let i = 0; i < hd; i++) {
      const t1 = r * gain[i] * dy[o + i], d = t1 - c * x[o + i];
      dx[o + i] = Math.abs(t1) * (er + 2 * U) + Math.abs(x[o + i]) * (Math.abs(c) * (3 * er + 5 * U) + ((r ** 3) / hd) * (hd + 1) * U * dotAbs) + U * Math.abs(d);
      dgainAbs[i] += Math.abs(dy[o + i] * x[o + i] * r);
    }
  }
  const k = er + 2 * U + (Math.ceil(n / 64) + 6) * U;
  return { dx, dgain: dgainAbs.map((s) => k * s) };
}

describe('e2e-qk-norm.wgsl against the f64 twins (qkNorm / qkNormBackward)', () => {
  let ctx: GpuContext;
  let block: BlockParams;
  const measured: Record<string, number> = {};
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
    block = new BlockParams(ctx);
  });
  afterAll(() => {
    console.info('e2e-qk-norm: worst element in units of its bound (< 1 passes):', measured);
    ctx?.device.destroy();
  });

  const shapes = [
    { H: 3, hd: 12, rows: 7 }, // hd not a power of two
    { H: 2, hd: 64, rows: 50 }, // the official head dim; 100 vectors: the dgain reduction loops
  ];

  it('forward: q and k of a qkv row, two gains, out of place and in place (rtol (hd/2 + 8)u)', async () => {
    for (const { H, hd, rows } of shapes) {
      const D = H * hd;
      for (const inPlace of [false, true]) {
        const x = scaledRows(rows, 3 * D, 3, D, H, hd, hd + rows, [1, 1e-3, 40]);
        const gain = randn(2 * hd, 2).map((v) => 1 + 0.3 * v);
        const spec: E2EQkNormSpec = inPlace
          ? { heads: H, headDim: hd, eps: EPS, maxRows: rows, segments: 2, segStride: D, xStride: 3 * D }
          : { heads: H, headDim: hd, eps: EPS, maxRows: rows, segments: 2, segStride: D, xStride: 3 * D, yStride: 2 * D + 1, yOff: 1 };
        const xb = upload(ctx, x), yb = inPlace ? xb : upload(ctx, new Float32Array(rows * (2 * D + 1)).fill(5));
        const op = new E2EQkNormOp(ctx, 'qk', spec, { gain: upload(ctx, gain), x: xb, y: yb }, block);
        block.write(rows, 0);
        await runPass(ctx, (pass) => op.encode(pass, rows));
        const got = await readF32(ctx, yb);
        const [stride, off] = inPlace ? [3 * D, 0] : [2 * D + 1, 1];
        for (let s = 0; s < 2; s++) {
          const want = qkNorm(cols(x, rows, 3 * D, s * D, D), rows, H, hd, Float64Array.from(gain.subarray(s * hd, (s + 1) * hd)), EPS);
          const c = expectClose(cols(got, rows, stride, off + s * D, D), want, { atol: 0, rtol: (hd / 2 + 8) * U, label: `hd ${hd} in place ${inPlace} seg ${s}` });
          measured[`forward hd ${hd}`] = Math.max(measured[`forward hd ${hd}`] ?? 0, c.ratio);
        }
        if (inPlace) for (let r = 0; r < rows; r++) for (let c = 2 * D; c < 3 * D; c++) expect(got[r * 3 * D + c]).toBe(x[r * 3 * D + c]);
        else for (let r = 0; r < rows; r++) expect(got[r * (2 * D + 1)]).toBe(5);
      }
    }
  });

  it('forward with RoPE in the same launch: RoPE(qkNorm(x)) at positions 0 and 129,995, out of place and in place', async () => {
    // Bound per element of a pair (n0, n1) of the exact normed vector: the norm's error, (hd/2 + 8)u of each
    // component, carried through the rotation (|c|, |s| <= 1), plus e2e-rope.test.ts's rotation bound:
    // |pair|·(√2·(3u + ε_a) + 2u), ε_a the angle's error at that position.
    const theta = 10000;
    const bound = (n: Float64Array, rows: number, D: number, hd: number, pos0: number) => {
      const b = new Float64Array(n.length);
      for (let r = 0; r < rows; r++) for (let c = 0; c < D; c += 2) {
        const angle = (pos0 + r) * Math.pow(theta, (-2 * ((c % hd) / 2)) / hd);
        const ea = 2 * Math.PI * (pos0 + r) * 2 ** -55 + 3 * U * (Math.PI / 4) + 4 * 2 ** -53 * angle;
        const n0 = n[r * D + c], n1 = n[r * D + c + 1];
        b[r * D + c] = b[r * D + c + 1] = Math.hypot(n0, n1) * (Math.SQRT2 * (3 * U + ea) + 2 * U) + (hd / 2 + 8) * U * (Math.abs(n0) + Math.abs(n1));
      }
      return b;
    };
    for (const { H, hd, rows } of shapes) {
      const D = H * hd;
      for (const pos0 of [0, 129_995]) {
        for (const inPlace of [false, true]) {
          const x = scaledRows(rows, 3 * D, 3, D, H, hd, hd + rows + pos0, [1, 1e-3, 40]);
          const gain = randn(2 * hd, 3).map((v) => 1 + 0.3 * v);
          const base: E2EQkNormSpec = { heads: H, headDim: hd, eps: EPS, maxRows: rows, segments: 2, segStride: D, xStride: 3 * D, ropeTheta: theta };
          const spec: E2EQkNormSpec = inPlace ? base : { ...base, yStride: 2 * D + 1, yOff: 1 };
          const xb = upload(ctx, x), yb = inPlace ? xb : upload(ctx, new Float32Array(rows * (2 * D + 1)).fill(5));
          const op = new E2EQkNormOp(ctx, 'qk+rope', spec, { gain: upload(ctx, gain), x: xb, y: yb }, block);
          block.write(rows, pos0);
          await runPass(ctx, (pass) => op.encode(pass, rows));
          const got = await readF32(ctx, yb);
          const [stride, off] = inPlace ? [3 * D, 0] : [2 * D + 1, 1];
          const at = Array.from({ length: rows }, (_, r) => pos0 + r);
          for (let s = 0; s < 2; s++) {
            const n = qkNorm(cols(x, rows, 3 * D, s * D, D), rows, H, hd, Float64Array.from(gain.subarray(s * hd, (s + 1) * hd)), EPS);
            const gotS = cols(got, rows, stride, off + s * D, D);
            const label = `hd ${hd} pos0 ${pos0} in place ${inPlace} seg ${s}`;
            const c = expectClose(gotS, rope(n, rows, H, hd, at, theta), { atol: bound(n, rows, D, hd, pos0), rtol: 0, label });
            measured[`forward+rope hd ${hd}`] = Math.max(measured[`forward+rope hd ${hd}`] ?? 0, c.ratio);
            // Not vacuous: away from position 0 the rotation moves the normed vector well past the bound.
            if (pos0 > 0) expectNotClose(gotS, n, { atol: bound(n, rows, D, hd, pos0), rtol: 0, label: `${label}, against the un-roped norm` });
          }
          if (inPlace) for (let r = 0; r < rows; r++) for (let c = 2 * D; c < 3 * D; c++) expect(got[r * 3 * D + c]).toBe(x[r * 3 * D + c]);
          else for (let r = 0; r < rows; r++) expect(got[r * (2 * D + 1)]).toBe(5);
        }
      }
    }
  });

  async function backward(H: number, hd: number, rows: number, seed: number) {
    const D = H * hd;
    // x: q and k of a qkv row; dy: [rows, 2D] of its own; dx: [rows, 2D + 2] from column 2.
    const x = scaledRows(rows, 3 * D, 3, D, H, hd, seed, [1, 1e-3, 40]);
    const dy = scaledRows(rows, 2 * D, 2, D, H, hd, seed + 1, [1, 30, 1e-2]);
    const gain = randn(2 * hd, seed + 2).map((v) => 1 + 0.3 * v);
    const spec: E2EQkNormSpec = { heads: H, headDim: hd, eps: EPS, maxRows: rows + 3, segments: 2, segStride: D, xStride: 3 * D, yStride: 2 * D, yOff: 0, dxStride: 2 * D + 2, dxOff: 2 };
    const dxb = upload(ctx, new Float32Array(rows * (2 * D + 2)).fill(5));
    const dgb = zeros(ctx, 2 * hd);
    ctx.device.queue.writeBuffer(dgb, 0, new Float32Array(2 * hd).fill(1e3)); // overwritten, not added to
    const op = new E2EQkNormBackwardOp(ctx, 'qk back', spec, { gain: upload(ctx, gain), x: upload(ctx, x), dy: upload(ctx, dy), dx: dxb, dgain: dgb }, block);
    block.write(rows, 0);
    await runPass(ctx, (pass) => op.encode(pass, rows));
    const gotDx = await readF32(ctx, dxb), gotDg = await readF32(ctx, dgb);
    const segs = [0, 1].map((s) => {
      const xs = cols(x, rows, 3 * D, s * D, D), dys = cols(dy, rows, 2 * D, s * D, D), g = Float64Array.from(gain.subarray(s * hd, (s + 1) * hd));
      return { xs, dys, g, want: qkNormBackward(xs, rows, H, hd, g, EPS, dys), bound: backwardBounds(xs, dys, g, rows * H, hd), gotDx: cols(gotDx, rows, 2 * D + 2, 2 + s * D, D), gotDg: gotDg.subarray(s * hd, (s + 1) * hd) };
    });
    for (let r = 0; r < rows; r++) for (const c of [0, 1]) expect(gotDx[r * (2 * D + 2) + c]).toBe(5);
    return segs;
  }

  it('backward: dx and dgain (summed over rows and heads) of q and k, per-element bounds from the error model', async () => {
    for (const { H, hd, rows } of shapes) {
      for (const [s, seg] of (await backward(H, hd, rows, 10 + hd)).entries()) {
        const cdx = expectClose(seg.gotDx, seg.want.dx, { atol: seg.bound.dx, rtol: 0, label: `dx hd ${hd} seg ${s}` });
        const cdg = expectClose(seg.gotDg, seg.want.dgain, { atol: seg.bound.dgain, rtol: 0, label: `dgain hd ${hd} seg ${s}` });
        measured[`dx hd ${hd}`] = Math.max(measured[`dx hd ${hd}`] ?? 0, cdx.ratio);
        measured[`dgain hd ${hd}`] = Math.max(measured[`dgain hd ${hd}`] ?? 0, cdg.ratio);
      }
    }
  });

  it('backward through the RoPE in the same launch (dy of the roped output, turned back on load) at positions 0 and 129,995', async () => {
    const theta = 10000;
    for (const { H, hd, rows } of shapes) {
      const D = H * hd;
      for (const pos0 of [0, 129_995]) {
        const x = scaledRows(rows, 3 * D, 3, D, H, hd, 70 + hd, [1, 1e-3, 40]);
        const dy = scaledRows(rows, 2 * D, 2, D, H, hd, 71 + hd, [1, 30, 1e-2]);
        const gain = randn(2 * hd, 72 + hd).map((v) => 1 + 0.3 * v);
        const spec: E2EQkNormSpec = { heads: H, headDim: hd, eps: EPS, maxRows: rows, segments: 2, segStride: D, xStride: 3 * D, yStride: 2 * D, dxStride: 2 * D, ropeTheta: theta };
        const dxb = upload(ctx, new Float32Array(rows * 2 * D).fill(5));
        const op = new E2EQkNormBackwardOp(ctx, 'qk back + rope', spec, { gain: upload(ctx, gain), x: upload(ctx, x), dy: upload(ctx, dy), dx: dxb }, block);
        block.write(rows, pos0);
        await runPass(ctx, (pass) => op.encode(pass, rows));
        const got = await readF32(ctx, dxb);
        const at = Array.from({ length: rows }, (_, r) => pos0 + r);
        for (let sg = 0; sg < 2; sg++) {
          const xs = cols(x, rows, 3 * D, sg * D, D), g = Float64Array.from(gain.subarray(sg * hd, (sg + 1) * hd));
          const du = ropeBackward(cols(dy, rows, 2 * D, sg * D, D), rows, H, hd, at, theta);
          const want = qkNormBackward(xs, rows, H, hd, g, EPS, du).dx;
          // The norm backward's bound on the turned-back dy, plus the rotation's error δ of each turned
          // component (as the forward's RoPE bound) carried through dx = r g dy - c x linearly.
          const b = backwardBounds(xs, du, g, rows * H, hd).dx;
          for (let v = 0; v < rows * H; v++) {
            const o = v * hd, row = Math.floor(v / H);
            let ss = 0;
            for (let i = 0; i < hd; i++) ss += xs[o + i] ** 2;
            const r = 1 / Math.sqrt(ss / hd + EPS);
            const delta = new Float64Array(hd);
            let spread = 0;
            for (let i = 0; i < hd; i += 2) {
              const angle = (pos0 + row) * Math.pow(theta, -i / hd);
              const ea = 2 * Math.PI * (pos0 + row) * 2 ** -55 + 3 * U * (Math.PI / 4) + 4 * 2 ** -53 * angle;
              delta[i] = delta[i + 1] = Math.hypot(du[o + i], du[o + i + 1]) * (Math.SQRT2 * (3 * U + ea) + 2 * U);
            }
            for (let i = 0; i < hd; i++) spread += Math.abs(g[i] * xs[o + i]) * delta[i];
            for (let i = 0; i < hd; i++) b[o + i] += r * Math.abs(g[i]) * delta[i] + (Math.abs(xs[o + i]) * r ** 3 * spread) / hd;
          }
          const gotS = cols(got, rows, 2 * D, sg * D, D);
          const label = `rope backward hd ${hd} pos0 ${pos0} seg ${sg}`;
          const c = expectClose(gotS, want, { atol: b, rtol: 0, label });
          measured[`dx+rope hd ${hd}`] = Math.max(measured[`dx+rope hd ${hd}`] ?? 0, c.ratio);
          // Not vacuous: dy read without turning it back is far outside.
          if (pos0 > 0) expectNotClose(gotS, qkNormBackward(xs, rows, H, hd, g, EPS, cols(dy, rows, 2 * D, sg * D, D)).dx, { atol: b, rtol: 0, label: `${label}, dy not turned back` });
        }
      }
    }
    const spec: E2EQkNormSpec = { heads: 2, headDim: 4, eps: EPS, maxRows: 1, ropeTheta: theta };
    expect(() => new E2EQkNormBackwardOp(ctx, 'rope + dgain', spec, { gain: upload(ctx, [1, 1, 1, 1]), x: upload(ctx, new Float32Array(8)), dy: upload(ctx, new Float32Array(8)), dx: zeros(ctx, 8), dgain: zeros(ctx, 4) }, block)).toThrow(/not computed through the RoPE/);
  });

  it('the checks fail on planted errors: a norm over the whole row, the other segment\'s gain, a dropped projection term, dgain of one head', async () => {
    const [H, hd, rows] = [3, 12, 7];
    const D = H * hd;
    const planted: Record<string, number> = {};
    const segs = await backward(H, hd, rows, 77);
    const s0 = segs[0], s1 = segs[1];
    const dxTol = (b: Float64Array): CloseTolerance => ({ atol: b, rtol: 0 });
    // dx without the - c x term: the backward of y = x r g with r held constant.
    const noProj = new Float64Array(rows * D);
    for (let v = 0; v < rows * H; v++) {
      let ss = 0;
      for (let i = 0; i < hd; i++) ss += s0.xs[v * hd + i] ** 2;
      const r = 1 / Math.sqrt(ss / hd + EPS);
      for (let i = 0; i < hd; i++) noProj[v * hd + i] = r * s0.g[i] * s0.dys[v * hd + i];
    }
    planted['dx without the projection'] = expectNotClose(s0.gotDx, noProj, { ...dxTol(s0.bound.dx), label: 'no projection' }).ratio;
    planted['dx with the k gain'] = expectNotClose(s0.gotDx, qkNormBackward(s0.xs, rows, H, hd, s1.g, EPS, s0.dys).dx, dxTol(s0.bound.dx)).ratio;
    // dgain over the vectors of head 0 only.
    const oneHead = new Float64Array(hd);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      const o = r * D;
      for (let i = 0; i < hd; i++) ss += s0.xs[o + i] ** 2;
      const rr = 1 / Math.sqrt(ss / hd + EPS);
      for (let i = 0; i < hd; i++) oneHead[i] += s0.dys[o + i] * s0.xs[o + i] * rr;
    }
    planted['dgain of head 0 only'] = expectNotClose(s0.gotDg, oneHead, { atol: s0.bound.dgain, rtol: 0 }).ratio;
    // The forward against a norm over each whole segment (H·hd), as LaCT's q/k norm is.
    const x = scaledRows(rows, D, 1, D, H, hd, 3, [1, 1e-3, 40]);
    const gain = randn(hd, 4).map((v) => 1 + 0.3 * v);
    const yb = zeros(ctx, rows * D);
    const op = new E2EQkNormOp(ctx, 'qk', { heads: H, headDim: hd, eps: EPS, maxRows: rows }, { gain: upload(ctx, gain), x: upload(ctx, x), y: yb }, block);
    block.write(rows, 0);
    await runPass(ctx, (pass) => op.encode(pass, rows));
    const got = await readF32(ctx, yb);
    const tol = { atol: 0, rtol: (hd / 2 + 8) * U };
    expectClose(got, qkNorm(Float64Array.from(x), rows, H, hd, Float64Array.from(gain), EPS), tol);
    const wideGain = new Float64Array(D);
    for (let c = 0; c < D; c++) wideGain[c] = gain[c % hd];
    planted['norm over the whole row'] = expectNotClose(got, rmsNormRows(Float64Array.from(x), rows, D, wideGain, EPS), tol).ratio;
    planted['eps 1e-5'] = expectNotClose(got, qkNorm(Float64Array.from(x), rows, H, hd, Float64Array.from(gain), 1e-5), tol).ratio;
    console.info('e2e-qk-norm: planted errors, worst element in units of the bound:', planted);
  });

  it('without a dgain buffer only dx is recorded; dx may not alias its inputs', () => {
    const spec: E2EQkNormSpec = { heads: 2, headDim: 4, eps: EPS, maxRows: 4 };
    const x = zeros(ctx, 32), dy = zeros(ctx, 32), gain = zeros(ctx, 4);
    const op = new E2EQkNormBackwardOp(ctx, 'qk', spec, { gain, x, dy, dx: zeros(ctx, 32) }, block);
    expect(op.flops(4)).toBe(9 * 4 * 2 * 4);
    expect(() => new E2EQkNormBackwardOp(ctx, 'qk', spec, { gain, x, dy, dx: dy }, block)).toThrow(RangeError);
  });
});
