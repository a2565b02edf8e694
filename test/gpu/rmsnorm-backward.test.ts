/**
 * shaders/rmsnorm-backward.wgsl (src/gpu/ops/rmsnorm-backward.ts) against rmsnormBackward
 * (src/reference/e2e/backward.ts), f64 on the same f32 inputs.
 *
 * Error bound per row (u = 2^-24; Vulkan: inverseSqrt within 2 ulp = 4u, division 2.5 ulp = 5u). The
 * kernel forms Σx² and Σ dy·g·x as 64 lane sums of ceil(n/64) fma terms, then a 6-level tree:
 * L = ceil(n/64) + 6 roundings.
 *  - Σx² has positive terms: relative (L + 1)u; the mean and + eps two more; so
 *    eps_r = (L + 3)u/2 + 4u (the square root halves the argument's error).
 *  - dot = Σ dy g x: E_dot = (L + 2)u·Σ|dy g x|.
 *  - c = r³·dot/n: relative 3·eps_r + 8u, plus r³/n·E_dot.
 *  - dx = r g dy − c x (+ dx0): |r g dy|(eps_r + 2u) + |c x|(3 eps_r + 9u) + |x| r³/n E_dot + 2u|dx|.
 *  - dg_i = Σ_rows dy x r (rows in order, one fma each): Σ_t |dy x r|(eps_r,t + (rows + 2)u) (+ u|dg|).
 * Measured errors are far below (CLOSE_LOG=1); the planted variants at the end exceed the bounds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { RmsNormBackwardOp, type RmsNormBackwardSpec } from '../../src/gpu/ops/rmsnorm-backward.ts';
import { rmsnormBackward } from '../../src/reference/e2e/backward.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { openTestGpu, readF32, runPass, upload } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';

const u = 2 ** -24;

function randn(n: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => scale * g());
}

/** Contiguous [rows, n] copy of a strided view. */
function gather(buf: Float32Array, rows: number, n: number, stride: number, off: number): Float64Array {
  const out = new Float64Array(rows * n);
  for (let t = 0; t < rows; t++) for (let i = 0; i < n; i++) out[t * n + i] = buf[t * stride + off + i];
  return out;
}

interface Inputs { x: Float64Array; gain: Float64Array; dy: Float64Array; rows: number; n: number; eps: number }

function bounds(a: Inputs, dx: Float64Array, dg: Float64Array): { dx: Float64Array; dg: Float64Array } {
  const { x, gain, dy, rows, n, eps } = a;
  const L = Math.ceil(n / 64) + 6;
  const bdx = new Float64Array(rows * n), bdg = new Float64Array(n);
  for (let t = 0; t < rows; t++) {
    const o = t * n;
    let ss = 0, dot = 0, dotAbs = 0;
    for (let i = 0; i < n; i++) {
      ss += x[o + i] ** 2;
      dot += dy[o + i] * gain[i] * x[o + i];
      dotAbs += Math.abs(dy[o + i] * gain[i] * x[o + i]);
    }
    const r = 1 / Math.sqrt(ss / n + eps);
    const epsR = ((L + 3) * u) / 2 + 4 * u;
    const eDot = (L + 2) * u * dotAbs;
    const c = (r ** 3 * dot) / n;
    for (let i = 0; i < n; i++) {
      bdx[o + i] = Math.abs(r * gain[i] * dy[o + i]) * (epsR + 2 * u) + Math.abs(c * x[o + i]) * (3 * epsR + 9 * u) +
        (Math.abs(x[o + i]) * r ** 3 * eDot) / n + 2 * u * Math.abs(dx[o + i]);
      bdg[i] += Math.abs(dy[o + i] * x[o + i] * r) * (epsR + (rows + 2) * u);
    }
  }
  for (let i = 0; i < n; i++) bdg[i] += u * Math.abs(dg[i]);
  return { dx: bdx, dg: bdg };
}

describe('rmsnorm-backward.wgsl against rmsnormBackward', () => {
  let ctx: GpuContext;
  let block: BlockParams;
  beforeAll(async () => {
    ctx = (await openTestGpu()).ctx;
    block = new BlockParams(ctx);
  });
  afterAll(() => ctx?.device.destroy());

  interface Layout { rows: number; n: number; stride: number; off: number; eps: number; capacity?: number; accumulate?: boolean; seed: number }

  /** x, dy and dx rows live in wider buffers (stride, offset); dx and dgain start from dx0, dg0 (added to when accumulating). */
  async function run(l: Layout) {
    const { rows, n, stride, off, eps } = l;
    const capacity = l.capacity ?? rows;
    const size = capacity * stride + off;
    const xBuf = randn(size, l.seed, 1.5), dyBuf = randn(size, l.seed + 1), dx0 = randn(size, l.seed + 2);
    // One row of small values: there eps is not negligible next to mean(x²).
    for (let i = 0; i < n; i++) xBuf[1 * stride + off + i] *= 2e-3;
    const gain = randn(n, l.seed + 3, 0.7), dg0 = randn(n, l.seed + 4);
    const spec: RmsNormBackwardSpec = {
      n, eps, rows: capacity, blockRows: capacity !== rows, xStride: stride, xOff: off, dyStride: stride, dyOff: off, dxStride: stride, dxOff: off,
      accumulateDx: l.accumulate, accumulateDgain: l.accumulate,
    };
    const dxBuf = upload(ctx, dx0), dgBuf = upload(ctx, dg0);
    const op = new RmsNormBackwardOp(ctx, 'rmsnorm bw', spec, { x: upload(ctx, xBuf), gain: upload(ctx, gain), dy: upload(ctx, dyBuf), dx: dxBuf, dgain: dgBuf }, block);
    block.write(rows, 0);
    await runPass(ctx, (p) => op.encode(p, rows));
    const dxAll = await readF32(ctx, dxBuf);
    const inputs: Inputs = { x: gather(xBuf, rows, n, stride, off), gain: Float64Array.from(gain), dy: gather(dyBuf, rows, n, stride, off), rows, n, eps };
    const ref = rmsnormBackward(inputs.x, rows, n, inputs.gain, eps, inputs.dy);
    // Expected over the whole dx buffer: the rows' columns get the gradient (plus dx0 when accumulating), all else stays dx0.
    const wantDx = Float64Array.from(dx0);
    const refDg = Float64Array.from(ref.dgain, (v, i) => v + (l.accumulate ? dg0[i] : 0));
    for (let t = 0; t < rows; t++) for (let i = 0; i < n; i++) wantDx[t * stride + off + i] = ref.dx[t * n + i] + (l.accumulate ? dx0[t * stride + off + i] : 0);
    const b = bounds(inputs, gather(Float32Array.from(wantDx), rows, n, stride, off), refDg);
    const atolDx = new Float64Array(size);
    for (let t = 0; t < rows; t++) for (let i = 0; i < n; i++) atolDx[t * stride + off + i] = b.dx[t * n + i];
    return { dx: dxAll, dg: await readF32(ctx, dgBuf), wantDx, wantDg: refDg, atolDx, atolDg: b.dg, inputs, ref };
  }

  it('n = 100 (not a multiple of 64), rows inside wider buffers, dx and dgain written', async () => {
    const r = await run({ rows: 7, n: 100, stride: 130, off: 9, eps: 1e-5, seed: 1 });
    expectClose(r.dx, r.wantDx, { atol: r.atolDx, rtol: 0, label: 'dx' });
    expectClose(r.dg, r.wantDg, { atol: r.atolDg, rtol: 0, label: 'dgain' });
  });

  it('n = 1000, accumulating into dx and dgain, rows from the block uniform (6 of 9)', async () => {
    const r = await run({ rows: 6, n: 1000, stride: 1000, off: 0, eps: 1e-6, capacity: 9, accumulate: true, seed: 11 });
    expectClose(r.dx, r.wantDx, { atol: r.atolDx, rtol: 0, label: 'dx accumulated' });
    expectClose(r.dg, r.wantDg, { atol: r.atolDg, rtol: 0, label: 'dgain accumulated' });
  });

  it('two norms down the stream in one launch (then): dx += the first backward, dx2 = the second\'s with dy = that dx', async () => {
    const [rows, n, eps] = [6, 100, 1e-6];
    const x = randn(rows * n, 51, 1.5), dy = randn(rows * n, 52), dx0 = randn(rows * n, 53), gain = randn(n, 54, 0.7);
    const x2 = randn(rows * n, 55, 1.5), gain2 = randn(n, 56, 0.7);
    const dxBuf = upload(ctx, dx0), dx2Buf = upload(ctx, new Float32Array(rows * n).fill(9));
    const op = new RmsNormBackwardOp(ctx, 'chained', { n, eps, rows, accumulateDx: true }, {
      x: upload(ctx, x), gain: upload(ctx, gain), dy: upload(ctx, dy), dx: dxBuf, then: { x: upload(ctx, x2), gain: upload(ctx, gain2), dx: dx2Buf },
    }, block);
    await runPass(ctx, (p) => op.encode(p));
    const got = await readF32(ctx, dxBuf), got2 = await readF32(ctx, dx2Buf);
    const first: Inputs = { x: Float64Array.from(x), gain: Float64Array.from(gain), dy: Float64Array.from(dy), rows, n, eps };
    const want = Float64Array.from(rmsnormBackward(first.x, rows, n, first.gain, eps, first.dy).dx, (v, i) => v + dx0[i]);
    expectClose(got, want, { atol: bounds(first, want, new Float64Array(n)).dx, rtol: 0, label: 'dx (accumulated)' });
    // The second from the dx the kernel stored, as a launch of its own would read it.
    const second: Inputs = { x: Float64Array.from(x2), gain: Float64Array.from(gain2), dy: Float64Array.from(got), rows, n, eps };
    const want2 = rmsnormBackward(second.x, rows, n, second.gain, eps, second.dy).dx;
    const atol2 = bounds(second, want2, new Float64Array(n)).dx;
    expectClose(got2, want2, { atol: atol2, rtol: 0, label: 'dx2' });
    // Planted: the second's dy taken before the accumulation (dx0 left out) is far outside.
    const early = rmsnormBackward(second.x, rows, n, second.gain, eps, Float64Array.from(got, (v, i) => v - dx0[i])).dx;
    expectNotClose(got2, early, { atol: atol2, rtol: 0, label: 'planted: dy2 before the add' });
    const b = upload(ctx, [0]);
    expect(() => new RmsNormBackwardOp(ctx, 'bad', { n: 1, eps, rows: 1 }, { x: b, gain: b, dy: upload(ctx, [0]), dx: dxBuf, then: { x: b, gain: b, dx: dxBuf } }, block)).toThrow(/buffer of its own/);
  });

  it('one row of one element, and a launch without dgain', async () => {
    const r = await run({ rows: 1, n: 1, stride: 1, off: 0, eps: 1e-5, seed: 21 });
    expectClose(r.dx, r.wantDx, { atol: r.atolDx, rtol: 0, label: 'n 1 dx' });
    expectClose(r.dg, r.wantDg, { atol: r.atolDg, rtol: 0, label: 'n 1 dgain' });
    const [rows, n] = [3, 40];
    const x = randn(rows * n, 31), dy = randn(rows * n, 32), g = randn(n, 33), dx = upload(ctx, new Float32Array(rows * n));
    const op = new RmsNormBackwardOp(ctx, 'no dgain', { n, eps: 1e-5, rows }, { x: upload(ctx, x), gain: upload(ctx, g), dy: upload(ctx, dy), dx }, block);
    await runPass(ctx, (p) => op.encode(p));
    const inputs: Inputs = { x: Float64Array.from(x), gain: Float64Array.from(g), dy: Float64Array.from(dy), rows, n, eps: 1e-5 };
    const ref = rmsnormBackward(inputs.x, rows, n, inputs.gain, 1e-5, inputs.dy);
    expectClose(await readF32(ctx, dx), ref.dx, { atol: bounds(inputs, ref.dx, ref.dgain).dx, rtol: 0, label: 'no dgain: dx' });
    expect(() => new RmsNormBackwardOp(ctx, 'aliased', { n, eps: 1e-5, rows }, { x: dx, gain: dx, dy: dx, dx }, block)).toThrow(/different buffers/);
  });

  it('the bounds catch planted errors: eps left out, the −c·x term dropped, dgain without r', async () => {
    const r = await run({ rows: 7, n: 100, stride: 100, off: 0, eps: 1e-5, seed: 41 });
    const { x, gain, dy, rows, n } = r.inputs;
    const noEps = rmsnormBackward(x, rows, n, gain, 0, dy);
    expectNotClose(r.dx, noEps.dx, { atol: r.atolDx, rtol: 0, label: 'planted: eps 0 (dx)' });
    expectNotClose(r.dg, noEps.dgain, { atol: r.atolDg, rtol: 0, label: 'planted: eps 0 (dgain)' });
    const noC = new Float64Array(rows * n);
    for (let t = 0; t < rows; t++) {
      let ss = 0;
      for (let i = 0; i < n; i++) ss += x[t * n + i] ** 2;
      const rr = 1 / Math.sqrt(ss / n + 1e-5);
      for (let i = 0; i < n; i++) noC[t * n + i] = rr * gain[i] * dy[t * n + i];
    }
    expectNotClose(r.dx, noC, { atol: r.atolDx, rtol: 0, label: 'planted: no -c x' });
    const noR = new Float64Array(n);
    for (let t = 0; t < rows; t++) for (let i = 0; i < n; i++) noR[i] += dy[t * n + i] * x[t * n + i];
    expectNotClose(r.dg, noR, { atol: r.atolDg, rtol: 0, label: 'planted: dgain without r' });
  });
});
