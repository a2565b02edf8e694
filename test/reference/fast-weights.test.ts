import { describe, expect, it } from 'vitest';
import { FastWeightHead, newtonSchulz5, type ChunkRows } from '../../src/reference/index.ts';
import { matmul, transpose, rowNorms } from '../../src/reference/linalg.ts';
import { gaussian, rng } from '../helpers/random-model.ts';

const df = 6, dh = 10, n = 5;
const g = gaussian(rng(42));
const rand = (len: number, std = 0.4) => Float64Array.from({ length: len }, () => std * g());
const chunk = (): ChunkRows => ({
  n, k: rand(n * df), v: rand(n * df),
  lr0: Float64Array.from({ length: n }, (_, i) => 0.1 + 0.05 * i),
  lr1: Float64Array.from({ length: n }, (_, i) => 0.3 - 0.02 * i),
  lr2: Float64Array.from({ length: n }, (_, i) => 0.2 + 0.01 * i),
  beta: Float64Array.from({ length: n }, (_, i) => 0.5 + 0.1 * i),
});

/** L_j = -Σ_i lr_j,i <f(k_i), v_i>, evaluated directly from the weights. */
function loss(head: FastWeightHead, c: ChunkRows, lr: Float64Array): number {
  const f = head.apply(c.k, c.n);
  let s = 0;
  for (let i = 0; i < c.n; i++) for (let a = 0; a < df; a++) s -= lr[i] * f[i * df + a] * c.v[i * df + a];
  return s;
}

describe('fast-weight head', () => {
  it('its hand-derived update is the negative gradient (central finite differences, 1e-6)', () => {
    const head = new FastWeightHead(df, dh, rand(dh * df), rand(df * dh), rand(dh * df), { useMomentum: false, useMuon: false });
    const c = chunk();
    const grads = head.gradients(c);
    const cases = [
      { w: 'w0', d: grads.dw0, lr: c.lr0 },
      { w: 'w1', d: grads.dw1, lr: c.lr1 },
      { w: 'w2', d: grads.dw2, lr: c.lr2 },
    ] as const;
    const eps = 1e-6;
    for (const { w, d, lr } of cases) {
      for (let i = 0; i < d.length; i++) {
        const orig = head[w][i];
        head[w][i] = orig + eps;
        const up = loss(head, c, lr);
        head[w][i] = orig - eps;
        const down = loss(head, c, lr);
        head[w][i] = orig;
        const numeric = -(up - down) / (2 * eps);
        expect(Math.abs(numeric - d[i])).toBeLessThan(1e-6 * Math.max(1, Math.abs(d[i])));
      }
    }
  });

  it('after every update the rows keep their initial norms', () => {
    const head = new FastWeightHead(df, dh, rand(dh * df), rand(df * dh), rand(dh * df), { useMomentum: true, useMuon: true });
    for (let step = 0; step < 4; step++) {
      head.learn(chunk());
      const pairs = [[head.w0, head.n0, dh, df], [head.w1, head.n1, df, dh], [head.w2, head.n2, dh, df]] as const;
      for (const [w, target, rows, cols] of pairs) {
        const norms = rowNorms(w, rows, cols);
        for (let r = 0; r < rows; r++) expect(Math.abs(norms[r] - target[r])).toBeLessThan(1e-4 * target[r]);
      }
    }
  });

  it('momentum carries the previous update: M = dW (+ mean(beta)·M_prev)', () => {
    const head = new FastWeightHead(df, dh, rand(dh * df), rand(df * dh), rand(dh * df), { useMomentum: true, useMuon: false });
    const c1 = chunk();
    const first = head.gradients(c1).dw1;
    head.learn(c1);
    expect(Array.from(head.m1)).toEqual(Array.from(first));
    const c2 = chunk();
    const second = head.gradients(c2).dw1;
    head.learn(c2);
    const meanBeta = c2.beta.reduce((a, b) => a + b, 0) / n;
    for (let i = 0; i < second.length; i++) expect(head.m1[i]).toBeCloseTo(second[i] + meanBeta * first[i], 12);
  });
});

describe('Newton–Schulz (5 steps)', () => {
  for (const [rows, cols] of [[8, 20], [20, 8], [12, 12]] as const) {
    it(`pushes the singular values of a ${rows}x${cols} matrix towards 1`, () => {
      const x = newtonSchulz5(rand(rows * cols, 1), rows, cols);
      const m = Math.min(rows, cols);
      // Gram matrix of the short side; its eigenvalues are the squared singular values.
      const gram = rows <= cols ? matmul(x, transpose(x, rows, cols), rows, cols, rows) : matmul(transpose(x, rows, cols), x, cols, rows, cols);
      // Power iteration for the largest, trace for the mean: the quintic lands them in roughly [0.7, 1.2].
      let trace = 0;
      for (let i = 0; i < m; i++) trace += gram[i * m + i];
      const meanSq = trace / m;
      expect(meanSq).toBeGreaterThan(0.5);
      expect(meanSq).toBeLessThan(1.44);
      let vec = Float64Array.from({ length: m }, () => 1);
      let lambda = 0;
      for (let it = 0; it < 200; it++) {
        const next = matmul(gram, vec, m, m, 1);
        lambda = Math.hypot(...next);
        vec = next.map((v) => v / lambda);
      }
      expect(Math.sqrt(lambda)).toBeLessThan(1.25);
      expect(Math.sqrt(lambda)).toBeGreaterThan(0.7);
    });
  }
});
