/**
 * src/gpu/ops/swiglu-backward.ts (matmul.wgsl launches, the elementwise step in dm's epilogue) against
 * swigluBackward (src/reference/e2e/backward.ts), f64 on the same f32 inputs.
 *
 * Error bound: first-order propagation of each launch's own rounding through the chain, per element
 * (u = 2^-24). A matmul launch of depth K is within (K + 4)u·(Σ|a b| + |β c0|) of its exact result on
 * its actual inputs (the bound test/gpu/matmul.test.ts checks); an input error E reaches the output as
 * |other factor|·E. The gate (σ = 1/(1 + exp(−u)): exp within 3 + 2|u| ulp, the add, the division
 * 2.5 ulp) has relative error eps_σ = (12 + 4|u|)u; silu, silu' and the three products add theirs
 * (written out in `bounds`). Second-order terms (products of two errors, ~u²) are left out.
 * Measured errors sit well inside (CLOSE_LOG=1); the planted variants at the end exceed the bounds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { SwigluBackwardOp } from '../../src/gpu/ops/swiglu-backward.ts';
import { swigluBackward } from '../../src/reference/e2e/backward.ts';
import { linear, matmul, sigmoid, silu, transpose } from '../../src/reference/linalg.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { hasFeature, openTestGpu, readF32, roundToF16, runPass, toF16Bits, upload, zeros } from '../helpers/gpu.ts';
import { expectClose, expectNotClose } from '../helpers/close.ts';

const u = 2 ** -24;
const abs = (a: ArrayLike<number>) => Float64Array.from(a, Math.abs);
const add = (...xs: Float64Array[]) => xs[0].map((_, i) => xs.reduce((s, x) => s + x[i], 0));
const scale = (a: Float64Array, s: number) => a.map((v) => v * s);

function randn(n: number, seed: number, s = 1): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => s * g());
}

interface Inputs { x: Float64Array; dy: Float64Array; w1: Float64Array; w2: Float64Array; w3: Float64Array; rows: number; d: number; f: number }

/** Per-element bounds of dx, dW1, dW2, dW3 (see the header); dx0 / dW0: what the launch adds to (0 when not accumulating). */
function bounds(a: Inputs, dx0: Float64Array, dw0: { w1: Float64Array; w2: Float64Array; w3: Float64Array }) {
  const { x, dy, w1, w2, w3, rows, d, f } = a;
  const g = (K: number) => (K + 4) * u;
  const ax = abs(x), ady = abs(dy), aw1 = abs(w1), aw2 = abs(w2), aw3 = abs(w3);
  const U = linear(x, rows, d, w1, f), G = linear(x, rows, d, w3, f), DM = matmul(dy, w2, rows, d, f);
  const eU = scale(linear(ax, rows, d, aw1, f), g(d)), eG = scale(linear(ax, rows, d, aw3, f), g(d));
  const eDM = scale(matmul(ady, aw2, rows, d, f), g(d));
  const n = rows * f;
  const du = new Float64Array(n), dg = new Float64Array(n), m = new Float64Array(n);
  const eDu = new Float64Array(n), eDg = new Float64Array(n), eM = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const uu = U[i], gg = G[i], dm = DM[i];
    const s = sigmoid(uu), su = silu(uu), A = 1 + uu * (1 - s), ds = s * A;
    const d2 = s * (1 - s) * (2 + uu * (1 - 2 * s)); // silu''
    const epsS = (12 + 4 * Math.abs(uu)) * u;
    const eA = Math.abs(uu) * (s * epsS + u) + u * Math.abs(uu * (1 - s)) + u * Math.abs(A);
    const eDs = Math.abs(A) * s * epsS + s * eA + u * Math.abs(ds);
    du[i] = dm * gg * ds; dg[i] = dm * su; m[i] = su * gg;
    eDu[i] = Math.abs(gg * ds) * eDM[i] + Math.abs(dm * ds) * eG[i] + Math.abs(dm * gg * d2) * eU[i] + Math.abs(dm * gg) * eDs + 2 * u * Math.abs(du[i]);
    eDg[i] = Math.abs(su) * eDM[i] + Math.abs(dm * ds) * eU[i] + Math.abs(dm * su) * (epsS + u) + u * Math.abs(dg[i]);
    eM[i] = Math.abs(gg * ds) * eU[i] + Math.abs(su) * eG[i] + Math.abs(su * gg) * (epsS + u) + u * Math.abs(m[i]);
  }
  const adyT = transpose(ady, rows, d), aDuT = transpose(abs(du), rows, f), aDgT = transpose(abs(dg), rows, f);
  const dW2 = add(scale(matmul(adyT, abs(m), d, rows, f), g(rows)), matmul(adyT, eM, d, rows, f), scale(abs(dw0.w2), g(rows)));
  const dW1 = add(scale(matmul(aDuT, ax, f, rows, d), g(rows)), matmul(transpose(eDu, rows, f), ax, f, rows, d), scale(abs(dw0.w1), g(rows)));
  const dW3 = add(scale(matmul(aDgT, ax, f, rows, d), g(rows)), matmul(transpose(eDg, rows, f), ax, f, rows, d), scale(abs(dw0.w3), g(rows)));
  const first = add(matmul(abs(du), aw1, rows, f, d), abs(dx0));
  const dx = add(scale(first, 2 * g(f)), scale(matmul(abs(dg), aw3, rows, f, d), g(f)), matmul(eDu, aw1, rows, f, d), matmul(eDg, aw3, rows, f, d));
  return { dx, dW1, dW2, dW3 };
}

// Both kernel variants: the matmuls (and the gate in dm's epilogue) in the CPU-emulator and the GPU shapes.
describe.each(['cpu', 'gpu'] as const)('swiglu-backward (%s shapes) against swigluBackward', (variant) => {
  let ctx: GpuContext;
  let block: BlockParams;
  beforeAll(async () => {
    const opened = (await openTestGpu()).ctx;
    ctx = variant === opened.kernelVariant ? opened : new GpuContext(opened.device, { kernels: variant });
    expect(ctx.kernelVariant).toBe(variant);
    block = new BlockParams(ctx);
  });
  afterAll(() => ctx?.device.destroy());

  /**
   * Two layers' weights packed in one θ buffer and their gradients in one grad buffer, like the S TTT
   * blocks' θ; layer `layer` is the one run (offsets), the other stays untouched. Per layer [W1 | W2 | W3]
   * (W1 and W3 apart: each of u|g, dW1|dW3 and dx is two launches), or with `adjacent` [W1 | W3 | W2],
   * as the TTT blocks store them (each pair one launch).
   */
  async function run(rows: number, d: number, f: number, opts: { layer?: number; accumulate?: boolean; adjacent?: boolean; ugFromForward?: boolean; seed: number }) {
    const L = 3 * d * f, layer = opts.layer ?? 0;
    // Slot of W1, W2, W3 in a layer's block.
    const at = opts.adjacent ? [0, 2, 1] : [0, 1, 2];
    const x = randn(rows * d, opts.seed), dy = randn(rows * d, opts.seed + 1);
    // |u| up to ~4: the gate's nonlinearity matters.
    const theta = randn(2 * L, opts.seed + 2, 1.5 / Math.sqrt(d));
    const grads0 = randn(2 * L, opts.seed + 3), dx0 = randn(rows * d, opts.seed + 4);
    const thetaBuf = upload(ctx, theta), gradBuf = upload(ctx, grads0), dxBuf = upload(ctx, dx0);
    const o = layer * L;
    // ugFromForward: the forward's [u | g] (x W1^T | x W3^T, here from f64 rounded once) handed in as scratch.
    let scratch: [GPUBuffer, GPUBuffer] | undefined;
    if (opts.ugFromForward) {
      const ug = new Float32Array(rows * 2 * f);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < f; j++) {
          let su = 0, sg = 0;
          for (let i = 0; i < d; i++) {
            su += x[r * d + i] * theta[o + at[0] * d * f + j * d + i];
            sg += x[r * d + i] * theta[o + at[2] * d * f + j * d + i];
          }
          ug[r * 2 * f + j] = su;
          ug[r * 2 * f + f + j] = sg;
        }
      }
      scratch = [upload(ctx, ug), zeros(ctx, rows * f)];
    }
    const op = new SwigluBackwardOp(ctx, 'swiglu bw', { rows, d, f, accumulateDx: opts.accumulate, accumulateGrads: opts.accumulate, ugFromForward: opts.ugFromForward }, {
      x: upload(ctx, x), dy: upload(ctx, dy),
      w1: { buffer: thetaBuf, off: o + at[0] * d * f }, w2: { buffer: thetaBuf, off: o + at[1] * d * f }, w3: { buffer: thetaBuf, off: o + at[2] * d * f },
      dx: dxBuf, dw1: { buffer: gradBuf, off: o + at[0] * d * f }, dw2: { buffer: gradBuf, off: o + at[1] * d * f }, dw3: { buffer: gradBuf, off: o + at[2] * d * f }, scratch,
    }, block);
    // u|g (one launch adjacent, else two; none when handed in), dm with the gate, dW2, dW1|dW3 (1 or 2), dx (1 or 2).
    expect(op.dispatches()).toBe((opts.adjacent ? 5 : 8) - (opts.ugFromForward ? (opts.adjacent ? 1 : 2) : 0));
    await runPass(ctx, (p) => op.encode(p));
    // Tensor s (0: W1, 1: W2, 2: W3) of this layer.
    const sl = (a: Float32Array, s: number) => Float64Array.from(a.subarray(o + at[s] * d * f, o + (at[s] + 1) * d * f));
    const inputs: Inputs = { x: Float64Array.from(x), dy: Float64Array.from(dy), w1: sl(theta, 0), w2: sl(theta, 1), w3: sl(theta, 2), rows, d, f };
    const ref = swigluBackward(inputs.x, rows, d, inputs.w1, inputs.w2, inputs.w3, f, inputs.dy);
    const acc = !!opts.accumulate;
    const zero = (n: number) => new Float64Array(n);
    const dw0 = acc ? { w1: sl(grads0, 0), w2: sl(grads0, 1), w3: sl(grads0, 2) } : { w1: zero(d * f), w2: zero(d * f), w3: zero(d * f) };
    const dxBase = acc ? Float64Array.from(dx0) : zero(rows * d);
    const want = { dx: add(ref.dx, dxBase), dw1: add(ref.dw1, dw0.w1), dw2: add(ref.dw2, dw0.w2), dw3: add(ref.dw3, dw0.w3) };
    const b = bounds(inputs, dxBase, dw0);
    // The whole gradient buffer: this layer's three tensors as computed, the other layer's exactly as it was.
    const wantGrads = Float64Array.from(grads0), atolGrads = new Float64Array(2 * L);
    [want.dw1, want.dw2, want.dw3].forEach((g, s) => wantGrads.set(g, o + at[s] * d * f));
    [b.dW1, b.dW2, b.dW3].forEach((g, s) => atolGrads.set(g, o + at[s] * d * f));
    const grads = await readF32(ctx, gradBuf);
    return { dx: await readF32(ctx, dxBuf), grads, want, wantGrads, b, atolGrads, inputs, ref, o, L, sl };
  }

  it('rows 12, d 24, f 40 (off the 4x4 tiles and 8x8 workgroups), layer 1 of a packed θ', async () => {
    const r = await run(12, 24, 40, { layer: 1, seed: 1 });
    expectClose(r.dx, r.want.dx, { atol: r.b.dx, rtol: 0, label: 'dx' });
    expectClose(r.grads, r.wantGrads, { atol: r.atolGrads, rtol: 0, label: 'dW1 | dW2 | dW3 (both layers)' });
  });

  it('W3 right after W1 (as in θ and the fused gate|up): u|g, dW1|dW3 and dx one launch each, the same gradients', async () => {
    for (const [rows, d, f, accumulate] of [[12, 24, 40, false], [33, 20, 52, true], [1, 16, 24, false]] as const) {
      const r = await run(rows, d, f, { layer: 1, accumulate, adjacent: true, seed: 41 + rows });
      expectClose(r.dx, r.want.dx, { atol: r.b.dx, rtol: 0, label: `adjacent ${rows}×${d}×${f}: dx` });
      expectClose(r.grads, r.wantGrads, { atol: r.atolGrads, rtol: 0, label: `adjacent ${rows}×${d}×${f}: dW1 | dW3 | dW2 (both layers)` });
    }
  });

  it('the forward\'s [u | g] handed in (ugFromForward): the same gradients without recomputing it, adjacent or apart', async () => {
    for (const [rows, d, f, adjacent] of [[12, 24, 40, true], [33, 20, 52, false], [1, 16, 24, true]] as const) {
      const r = await run(rows, d, f, { layer: 1, adjacent, ugFromForward: true, seed: 71 + rows });
      expectClose(r.dx, r.want.dx, { atol: r.b.dx, rtol: 0, label: `u|g handed in ${rows}×${d}×${f}: dx` });
      expectClose(r.grads, r.wantGrads, { atol: r.atolGrads, rtol: 0, label: `u|g handed in ${rows}×${d}×${f}: grads (both layers)` });
    }
    expect(() => new SwigluBackwardOp(ctx, 'no tape', { rows: 1, d: 4, f: 4, ugFromForward: true }, { x: upload(ctx, [0]), dy: upload(ctx, [0]), w1: upload(ctx, [0]), w2: upload(ctx, [0]), w3: upload(ctx, [0]), dx: upload(ctx, [0]), dw1: upload(ctx, [0]), dw2: upload(ctx, [0]), dw3: upload(ctx, [0]) }, block)).toThrow(/ugFromForward needs/);
  });

  it('one row (the narrow matmul tiles), and accumulating into dx and the gradients', async () => {
    const one = await run(1, 16, 24, { seed: 11 });
    expectClose(one.dx, one.want.dx, { atol: one.b.dx, rtol: 0, label: 'one row: dx' });
    expectClose(one.grads, one.wantGrads, { atol: one.atolGrads, rtol: 0, label: 'one row: grads' });
    const acc = await run(33, 20, 52, { accumulate: true, seed: 21 });
    expectClose(acc.dx, acc.want.dx, { atol: acc.b.dx, rtol: 0, label: 'accumulate: dx' });
    expectClose(acc.grads, acc.wantGrads, { atol: acc.atolGrads, rtol: 0, label: 'accumulate: grads' });
  });

  it('a frozen MLP in f16 (native and packed) the gradient only passes through: dx alone, no dW launches', async () => {
    const [rows, d, f] = [10, 24, 36];
    for (const storage of ['f16', 'f16-packed'] as const) {
      if (storage === 'f16' && !hasFeature(ctx, 'shaderF16', 'swiglu backward with native f16 weights')) continue;
      const x = randn(rows * d, 31), dy = randn(rows * d, 32);
      // [W1; W3] side by side (the checkpoint MLP's fused gate|up) and W2, rounded to f16 so the reference sees what the kernel reads.
      const w13 = roundToF16(randn(2 * f * d, 33, 1.5 / Math.sqrt(d))), w2 = roundToF16(randn(d * f, 34, 1.5 / Math.sqrt(d)));
      const w13Buf = ctx.allocator.upload('w13', 'weights', toF16Bits(w13)), w2Buf = ctx.allocator.upload('w2', 'weights', toF16Bits(w2));
      const dxBuf = upload(ctx, new Float32Array(rows * d).fill(7));
      const op = new SwigluBackwardOp(ctx, `frozen ${storage}`, { rows, d, f, weight: storage, weightGrads: false }, {
        x: upload(ctx, x), dy: upload(ctx, dy), w1: { buffer: w13Buf, off: 0 }, w3: { buffer: w13Buf, off: f * d }, w2: w2Buf, dx: dxBuf,
      }, block);
      expect(op.dispatches()).toBe(3);
      await runPass(ctx, (p) => op.encode(p));
      const inputs: Inputs = { x: Float64Array.from(x), dy: Float64Array.from(dy), w1: Float64Array.from(w13.subarray(0, f * d)), w2: Float64Array.from(w2), w3: Float64Array.from(w13.subarray(f * d)), rows, d, f };
      const ref = swigluBackward(inputs.x, rows, d, inputs.w1, inputs.w2, inputs.w3, f, inputs.dy);
      const zero = (n: number) => new Float64Array(n);
      const b = bounds(inputs, zero(rows * d), { w1: zero(d * f), w2: zero(d * f), w3: zero(d * f) });
      expectClose(await readF32(ctx, dxBuf), ref.dx, { atol: b.dx, rtol: 0, label: `${storage}: dx` });
      expect(op.flops()).toBe(10 * rows * d * f + 15 * rows * f);
      // As the inner step runs it: the forward's [u | g] handed in, no x at all; two launches, the same dx.
      const ug = new Float32Array(rows * 2 * f);
      for (let r = 0; r < rows; r++) for (let j = 0; j < 2 * f; j++) {
        let acc = 0;
        for (let i = 0; i < d; i++) acc += x[r * d + i] * w13[j * d + i];
        ug[r * 2 * f + j] = acc;
      }
      const dx2 = upload(ctx, new Float32Array(rows * d).fill(7));
      const tape = new SwigluBackwardOp(ctx, `frozen ${storage}, u|g handed in`, { rows, d, f, weight: storage, weightGrads: false, ugFromForward: true }, {
        dy: upload(ctx, dy), w1: { buffer: w13Buf, off: 0 }, w3: { buffer: w13Buf, off: f * d }, w2: w2Buf, dx: dx2, scratch: [upload(ctx, ug), upload(ctx, new Float32Array(rows * f))],
      }, block);
      expect(tape.dispatches()).toBe(2);
      await runPass(ctx, (p) => tape.encode(p));
      expectClose(await readF32(ctx, dx2), ref.dx, { atol: b.dx, rtol: 0, label: `${storage}: dx, u|g handed in` });
    }
    expect(() => new SwigluBackwardOp(ctx, 'no x', { rows, d, f, ugFromForward: true }, { dy: upload(ctx, [0]), w1: upload(ctx, [0]), w2: upload(ctx, [0]), w3: upload(ctx, [0]), dx: upload(ctx, [0]), dw1: upload(ctx, [0]), dw2: upload(ctx, [0]), dw3: upload(ctx, [0]), scratch: [zeros(ctx, rows * 2 * f), zeros(ctx, rows * f)] }, block)).toThrow(/x is needed/);
    expect(() => new SwigluBackwardOp(ctx, 'no grads given', { rows, d, f }, { x: upload(ctx, [0]), dy: upload(ctx, [0]), w1: upload(ctx, [0]), w2: upload(ctx, [0]), w3: upload(ctx, [0]), dx: upload(ctx, [0]) }, block)).toThrow(/need dw1/);
  });

  it('the bounds catch planted errors: silu\' taken as σ, dx without dg W3, dW1 and dW3 swapped, W2 read untransposed, gate and up swapped', async () => {
    const r = await run(12, 24, 40, { seed: 31 });
    const { x, dy, w1, w2, w3, rows, d, f } = r.inputs;
    const sl = r.sl;
    // 1. silu'(u) = σ(u) (a common slip): du and so dW1 and dx change.
    const U = linear(x, rows, d, w1, f), G = linear(x, rows, d, w3, f), DM = matmul(dy, w2, rows, d, f);
    const duWrong = U.map((uu, i) => DM[i] * G[i] * sigmoid(uu));
    const dW1Wrong = matmul(transpose(duWrong, rows, f), x, f, rows, d);
    expectNotClose(sl(r.grads, 0), dW1Wrong, { atol: r.b.dW1, rtol: 0, label: "planted: silu' = σ (dW1)" });
    // 2. dx without the up projection's term.
    const dg = U.map((uu, i) => DM[i] * silu(uu));
    const dxNoUp = r.ref.dx.map((v, i) => v - matmul(dg, w3, rows, f, d)[i]);
    expectNotClose(r.dx, dxNoUp, { atol: r.b.dx, rtol: 0, label: 'planted: dx without dg W3' });
    // 3. dW1 and dW3 swapped.
    expectNotClose(sl(r.grads, 0), r.ref.dw3, { atol: r.b.dW1, rtol: 0, label: 'planted: dW1 <-> dW3' });
    // 4. W2 read as if [f, d] (its transpose): dm = dy (W2 as [f, d])^T.
    const dmWrong = linear(dy, rows, d, w2, f);
    const dW3Wrong = matmul(transpose(U.map((uu, i) => dmWrong[i] * silu(uu)), rows, f), x, f, rows, d);
    expectNotClose(sl(r.grads, 2), dW3Wrong, { atol: r.b.dW3, rtol: 0, label: 'planted: W2 untransposed (dW3)' });
    // 5. Gate and up swapped in the recomputed forward: m = silu(g) ⊙ u.
    const mSwapped = U.map((uu, i) => silu(G[i]) * uu);
    expectNotClose(sl(r.grads, 1), matmul(transpose(dy, rows, d), mSwapped, d, rows, f), { atol: r.b.dW2, rtol: 0, label: 'planted: gate <-> up (dW2)' });
  });
});
