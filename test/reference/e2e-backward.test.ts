/**
 * The hand-written backward of the TTT-E2E reference against central finite differences in f64:
 * each backward piece (src/reference/e2e/backward.ts) on small random inputs, then the whole chunk-loss
 * gradient dℓ/dθ (through the head, the final norm and the S TTT blocks, the chunk's attention included).
 *
 * Each check: a scalar L(x) (for a piece, L = Σ R ⊙ f(x) with a fixed random R, so dL/dy = R), the
 * analytic gradient g, and the central difference (L(x + h e) − L(x − h e)) / 2h, h = 1e-5. Its error is
 * O(h²)·L''' (~1e-10) plus rounding ~ε·|L|/h (~1e-10), so we require
 *   |fd − g| ≤ 1e-6 · max|g|   (over every entry of a piece; over the sampled entries of θ)
 * which a wrong term (a dropped product-rule term, a transposed weight, a wrong sign) misses by orders
 * of magnitude. Measured worst: pieces ≤ 1.8e-10, sampled θ entries ≤ 1.2e-9, unit directions ≤ 1e-8.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  crossEntropy, crossEntropyBackward, E2EReference, e2eModelFromFiles, linearBackward, qkNorm, qkNormBackward, rmsnormBackward, rope, ropeBackward,
  slidingWindowAttention, slidingWindowAttentionBackward, swiglu, swigluBackward, type ChunkInput, type DynamicWeights, type RopeLayout,
} from '../../src/reference/e2e/index.ts';
import { SafetensorsFile } from '../../src/model/safetensors.ts';
import { linear, rmsNormRows } from '../../src/reference/linalg.ts';
import { TINY_E2E, normalRng, randomE2EModel, uniformRng } from '../helpers/random-e2e-model.ts';

const H_STEP = 1e-5;
const TOL = 1e-6;

const randn = (n: number, seed: number, scale = 1, mean = 0) => {
  const r = normalRng(seed);
  return Float64Array.from({ length: n }, () => mean + scale * r());
};

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Worst |fd − g| / max|g| over the entries `idx` of x (all by default), perturbing x in place. */
function fdError(L: () => number, x: Float64Array, g: ArrayLike<number>, idx?: readonly number[]): number {
  let gmax = 0;
  for (let i = 0; i < g.length; i++) gmax = Math.max(gmax, Math.abs(g[i]));
  expect(gmax).toBeGreaterThan(0);
  let worst = 0;
  for (const i of idx ?? Array.from({ length: x.length }, (_, k) => k)) {
    const x0 = x[i];
    x[i] = x0 + H_STEP;
    const lp = L();
    x[i] = x0 - H_STEP;
    const lm = L();
    x[i] = x0;
    worst = Math.max(worst, Math.abs((lp - lm) / (2 * H_STEP) - g[i]) / gmax);
  }
  return worst;
}

describe('each backward piece equals central finite differences (f64)', () => {
  it('rmsnormBackward: dx and dgain', () => {
    const rows = 3, n = 8, eps = 1e-6;
    const x = randn(rows * n, 1), g = randn(n, 2, 0.2, 1), R = randn(rows * n, 3);
    const L = () => dot(R, rmsNormRows(x, rows, n, g, eps));
    const b = rmsnormBackward(x, rows, n, g, eps, R);
    expect(fdError(L, x, b.dx)).toBeLessThan(TOL);
    expect(fdError(L, g, b.dgain)).toBeLessThan(TOL);
  });

  it('linearBackward: dx and dW ([out, in])', () => {
    const rows = 3, inDim = 5, outDim = 4;
    const x = randn(rows * inDim, 4), w = randn(outDim * inDim, 5), R = randn(rows * outDim, 6);
    const L = () => dot(R, linear(x, rows, inDim, w, outDim));
    const b = linearBackward(x, rows, inDim, w, outDim, R);
    expect(fdError(L, x, b.dx)).toBeLessThan(TOL);
    expect(fdError(L, w, b.dw)).toBeLessThan(TOL);
  });

  it('swigluBackward: dx, dW1, dW2, dW3', () => {
    const rows = 3, d = 6, f = 7;
    const x = randn(rows * d, 7), w1 = randn(f * d, 8, 0.5), w2 = randn(d * f, 9, 0.5), w3 = randn(f * d, 10, 0.5), R = randn(rows * d, 11);
    const L = () => dot(R, swiglu(x, rows, d, w1, w2, w3, f));
    const b = swigluBackward(x, rows, d, w1, w2, w3, f, R);
    expect(fdError(L, x, b.dx)).toBeLessThan(TOL);
    expect(fdError(L, w1, b.dw1)).toBeLessThan(TOL);
    expect(fdError(L, w2, b.dw2)).toBeLessThan(TOL);
    expect(fdError(L, w3, b.dw3)).toBeLessThan(TOL);
  });

  for (const layout of ['interleaved', 'rotate-half'] as RopeLayout[]) {
    it(`ropeBackward (${layout}), theta 1e4 and 5e5, positions up to 9000`, () => {
      for (const theta of [1e4, 5e5]) {
        const rows = 3, H = 2, hd = 8, pos = [0, 5, 9000];
        const x = randn(rows * H * hd, 12), R = randn(rows * H * hd, 13);
        const L = () => dot(R, rope(x, rows, H, hd, pos, theta, layout));
        expect(fdError(L, x, ropeBackward(R, rows, H, hd, pos, theta, layout))).toBeLessThan(TOL);
      }
    });
  }

  it('interleaved RoPE rotates the pairs (2i, 2i+1) and keeps norms; rotate-half pairs (i, i + hd/2)', () => {
    const hd = 8, x = new Float64Array(hd);
    x[2] = 1; // pair 1 of the interleaved layout, first component
    const y = rope(x, 1, 1, hd, [3], 100, 'interleaved');
    const a = 3 * Math.pow(100, -2 / hd);
    expect([y[2], y[3]].map((v) => v.toFixed(12))).toEqual([Math.cos(a), Math.sin(a)].map((v) => v.toFixed(12)));
    expect(y.filter((_, i) => i !== 2 && i !== 3).every((v) => v === 0)).toBe(true);
    const z = rope(x, 1, 1, hd, [3], 100, 'rotate-half'); // channel 2 pairs with 6 and rotates by pair 2's angle
    expect(z[6]).toBeCloseTo(Math.sin(3 * Math.pow(100, -4 / hd)), 12);
  });

  it('qkNormBackward: one [hd] gain shared by the heads (dgain sums over heads)', () => {
    const rows = 3, H = 2, hd = 4, eps = 1e-6;
    const x = randn(rows * H * hd, 14), g = randn(hd, 15, 0.2, 1), R = randn(rows * H * hd, 16);
    const L = () => dot(R, qkNorm(x, rows, H, hd, g, eps));
    const b = qkNormBackward(x, rows, H, hd, g, eps, R);
    expect(fdError(L, x, b.dx)).toBeLessThan(TOL);
    expect(fdError(L, g, b.dgain)).toBeLessThan(TOL);
  });

  it('slidingWindowAttentionBackward: past keys, a window shorter than the chunk, dq, dk, dv', () => {
    const H = 2, hd = 4, W = 4, width = H * hd;
    const kPos = [3, 4, 5, 6, 7, 8, 9, 10, 11]; // 4 past positions, then the 5 queries' own
    const qPos = [7, 8, 9, 10, 11];
    const q = randn(qPos.length * width, 17), k = randn(kPos.length * width, 18), v = randn(kPos.length * width, 19);
    const R = randn(qPos.length * width, 20);
    const L = () => dot(R, slidingWindowAttention(q, qPos, k, v, kPos, H, hd, W));
    const b = slidingWindowAttentionBackward(q, qPos, k, v, kPos, H, hd, W, R);
    expect(fdError(L, q, b.dq)).toBeLessThan(TOL);
    expect(fdError(L, k, b.dk)).toBeLessThan(TOL);
    expect(fdError(L, v, b.dv)).toBeLessThan(TOL);
    // position 3 is outside every query's window (7 − 4 < j): no gradient at all
    expect(b.dk.subarray(0, width).every((x) => x === 0) && b.dv.subarray(0, width).every((x) => x === 0)).toBe(true);
  });

  it('crossEntropyBackward: mean over targets ≠ BOS; an all-BOS chunk has loss 0 and gradient 0', () => {
    const n = 4, V = 10, bos = 1, targets = [3, 1, 7, 0];
    const logits = randn(n * V, 21, 2);
    const L = () => crossEntropy(logits, n, V, targets, bos).loss;
    const b = crossEntropyBackward(logits, n, V, targets, bos);
    expect(fdError(L, logits, b.dlogits)).toBeLessThan(TOL);
    expect(b.dlogits.subarray(V, 2 * V).every((x) => x === 0)).toBe(true); // the BOS target's row
    expect(b.loss).toBeCloseTo((b.nll[0] + b.nll[2] + b.nll[3]) / 3, 14);
    const all = crossEntropyBackward(logits, n, V, [1, 1, 1, 1], bos);
    expect(all.loss).toBe(0);
    expect(all.dlogits.every((x) => x === 0)).toBe(true);
  });
});

function fixture(name: string) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const { config, weights } = e2eModelFromFiles(JSON.parse(readFileSync(`${dir}config.json`, 'utf8')), readFileSync(`${dir}model.safetensors`));
  const golden = readFileSync(`${dir}golden.safetensors`);
  const raw = SafetensorsFile.parse(golden).rawBytes('tokens');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return { reference: new E2EReference(config, weights), tokens: Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getInt32(4 * i, true)) };
}

/**
 * dℓ/dθ of one chunk against finite differences: `perTensor` random entries of every tensor of every
 * TTT block, and random directions u over all of θ at once ((ℓ(θ + hu) − ℓ(θ − hu))/2h vs <g, u>).
 */
function checkChunkGradient(reference: E2EReference, input: ChunkInput, theta: DynamicWeights[], targets: readonly number[], perTensor: number, seed: number) {
  const fwd = reference.chunkForward(input, theta);
  const g = reference.chunkGradient(fwd, targets);
  expect(g.loss).toBeCloseTo(reference.chunkLoss(input, theta, targets), 14);
  const L = () => reference.chunkLoss(input, theta, targets);
  const r = uniformRng(seed);
  let worstEntry = 0;
  theta.forEach((t, j) => {
    for (const w of ['w1', 'w2', 'w3'] as const) {
      const idx = Array.from({ length: perTensor }, () => Math.floor(r() * t[w].length));
      const e = fdError(L, t[w], g.grads[j][w], idx);
      worstEntry = Math.max(worstEntry, e);
    }
  });
  // directions over all of θ at once: a random one, and the gradient itself
  let worstDir = 0;
  const all = theta.flatMap((t) => [t.w1, t.w2, t.w3]);
  const grads = g.grads.flatMap((t) => [t.w1, t.w2, t.w3]);
  const dirs = [all.map((a, k) => randn(a.length, seed + 100 + k)), grads.map((gr) => Float64Array.from(gr))];
  for (const raw of dirs) {
    const norm = Math.sqrt(raw.reduce((s, uk) => s + dot(uk, uk), 0));
    const u = raw.map((uk) => uk.map((x) => x / norm)); // unit length: the step is h in θ-space
    const shift = (s: number) => all.forEach((a, k) => { for (let i = 0; i < a.length; i++) a[i] += s * u[k][i]; });
    const base = all.map((a) => Float64Array.from(a));
    shift(H_STEP);
    const lp = L();
    all.forEach((a, k) => a.set(base[k]));
    shift(-H_STEP);
    const lm = L();
    all.forEach((a, k) => a.set(base[k]));
    const an = grads.reduce((s, gr, k) => s + dot(gr, u[k]), 0);
    // relative to ||g||·||u|| (the largest <g, u> can be), so a direction nearly orthogonal to g is not over-weighted
    const scale = Math.sqrt(grads.reduce((s, gr) => s + dot(gr, gr), 0) * u.reduce((s, uk) => s + dot(uk, uk), 0));
    worstDir = Math.max(worstDir, Math.abs((lp - lm) / (2 * H_STEP) - an) / scale);
  }
  return { worstEntry, worstDir, loss: g.loss };
}

describe('the chunk-loss gradient dℓ/dθ equals central finite differences (f64)', () => {
  it('tiny-e2e-s2 (S = 2), chunk 1: the K/V of chunk 0 constant, the gradient of block 2 flowing through block 3\'s attention', () => {
    const { reference, tokens } = fixture('tiny-e2e-s2');
    const run = reference.forward(tokens.slice(0, 2 * 16 + 1));
    const ch = run.chunks[1];
    expect(ch.input.past[0].positions.length).toBe(16);
    const r = checkChunkGradient(reference, ch.input, ch.thetaBefore, ch.targets!, 12, 1);
    expect(r.loss).toBeCloseTo(run.chunkLosses[1], 12);
    expect(r.worstEntry).toBeLessThan(TOL);
    expect(r.worstDir).toBeLessThan(TOL);
  });

  it('tiny-e2e-s1 (S = 1), chunk 2: a BOS target skipped', () => {
    const { reference, tokens } = fixture('tiny-e2e-s1');
    const run = reference.forward(tokens.slice(0, 3 * 16 + 1));
    const ch = run.chunks[2];
    expect(ch.targets!.includes(reference.config.bosTokenId)).toBe(true);
    const r = checkChunkGradient(reference, ch.input, ch.thetaBefore, ch.targets!, 12, 2);
    expect(r.worstEntry).toBeLessThan(TOL);
    expect(r.worstDir).toBeLessThan(TOL);
    // The check can fail: the gradient of the loss that counts the BOS target misses the true one.
    const wrong = reference.chunkGradient(reference.chunkForward(ch.input, ch.thetaBefore), ch.targets!, { skipBosTargets: false });
    const L = () => reference.chunkLoss(ch.input, ch.thetaBefore, ch.targets!);
    expect(fdError(L, ch.thetaBefore[0].w2, wrong.grads[0].w2, [0, 17, 300, 1000, 2047])).toBeGreaterThan(1e-3);
  });

  it('every block a TTT block (S = L = 3), window 5 shorter than the chunk 8', () => {
    const { config, weights } = randomE2EModel({ ...TINY_E2E, hidden_size: 16, head_dim: 8, num_layers: 3, num_ttt_layers: 3, mini_batch_size: 8, sliding_window: 5 }, 3);
    const reference = new E2EReference(config, weights);
    const r0 = uniformRng(9);
    const tokens = Array.from({ length: 17 }, () => 3 + Math.floor(r0() * 250));
    const run = reference.forward(tokens);
    const ch = run.chunks[1];
    expect(ch.input.past[0].positions).toEqual([4, 5, 6, 7]);
    const r = checkChunkGradient(reference, ch.input, ch.thetaBefore, ch.targets!, 10, 3);
    expect(r.worstEntry).toBeLessThan(TOL);
    expect(r.worstDir).toBeLessThan(TOL);
  });
});
