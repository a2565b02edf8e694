/**
 * One fast-weight head: a SwiGLU MLP f(x) = W1 (silu(W0 x) ⊙ (W2 x)) whose weights learn at test time.
 *
 * apply(): uses the weights as they are (after the last completed chunk).
 * learn(): one gradient step on a completed chunk with loss L = -Σ_i lr_i <f(k_i), v_i>, momentum,
 * optional Muon, then every row renormalised to its initial norm (the official post-norm).
 */
import { matmul, rowNorms, sigmoid, silu, transpose } from './linalg.ts';
import { newtonSchulz5 } from './newton-schulz.ts';

export interface FastWeightOptions {
  readonly useMomentum: boolean;
  readonly useMuon: boolean;
}

/** A completed chunk's rows for one head: keys and values [n, df], learning rates and momentum [n]. */
export interface ChunkRows {
  readonly n: number;
  readonly k: Float64Array;
  readonly v: Float64Array;
  readonly lr0: Float64Array;
  readonly lr1: Float64Array;
  readonly lr2: Float64Array;
  /** Per-token momentum gate beta (only read when momentum is on). */
  readonly beta: Float64Array;
}

export class FastWeightHead {
  /** W0, W2: [dh, df]; W1: [df, dh]. */
  w0: Float64Array;
  w1: Float64Array;
  w2: Float64Array;
  m0: Float64Array;
  m1: Float64Array;
  m2: Float64Array;
  /** Row norms of the initial weights: the renormalisation targets. */
  readonly n0: Float64Array;
  readonly n1: Float64Array;
  readonly n2: Float64Array;

  constructor(
    readonly df: number,
    readonly dh: number,
    w0: Float64Array,
    w1: Float64Array,
    w2: Float64Array,
    readonly opts: FastWeightOptions,
  ) {
    this.w0 = Float64Array.from(w0);
    this.w1 = Float64Array.from(w1);
    this.w2 = Float64Array.from(w2);
    this.m0 = new Float64Array(w0.length);
    this.m1 = new Float64Array(w1.length);
    this.m2 = new Float64Array(w2.length);
    this.n0 = rowNorms(w0, dh, df);
    this.n1 = rowNorms(w1, df, dh);
    this.n2 = rowNorms(w2, dh, df);
  }

  /** f(x) for rows x [n, df] → [n, df]. */
  apply(x: Float64Array, n: number): Float64Array {
    const { df, dh } = this;
    const g = matmul(x, transpose(this.w0, dh, df), n, df, dh);
    const u = matmul(x, transpose(this.w2, dh, df), n, df, dh);
    for (let i = 0; i < g.length; i++) g[i] = silu(g[i]) * u[i];
    return matmul(g, transpose(this.w1, df, dh), n, dh, df);
  }

  /**
   * The negative gradient of L_j = -Σ_i lr_j,i <f(k_i), v_i> with respect to each W_j (what one step adds,
   * before momentum and Muon). Derived by hand; test/reference checks it against finite differences.
   */
  gradients(c: ChunkRows): { dw0: Float64Array; dw1: Float64Array; dw2: Float64Array } {
    const { df, dh } = this;
    const { n, k, v } = c;
    const G = matmul(k, transpose(this.w0, dh, df), n, df, dh); // [n, dh]
    const U = matmul(k, transpose(this.w2, dh, df), n, df, dh);
    const P = matmul(v, this.w1, n, df, dh); // V @ W1: [n, dh]

    const hl1 = new Float64Array(n * dh); // silu(G) ⊙ U, scaled by lr1
    const dGl0 = new Float64Array(n * dh); // dL/dG, scaled by lr0
    const dUl2 = new Float64Array(n * dh); // dL/dU, scaled by lr2
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < dh; j++) {
        const idx = i * dh + j;
        const g = G[idx], s = sigmoid(g), sg = g * s;
        hl1[idx] = sg * U[idx] * c.lr1[i];
        dGl0[idx] = P[idx] * U[idx] * s * (1 + g * (1 - s)) * c.lr0[i];
        dUl2[idx] = P[idx] * sg * c.lr2[i];
      }
    }
    // dW1 = V^T (H ⊙ lr1) : [df, dh];  dW0 = (dG)^T K : [dh, df];  dW2 = (P ⊙ silu G)^T K.
    return {
      dw0: matmul(transpose(dGl0, n, dh), k, dh, n, df),
      dw1: matmul(transpose(v, n, df), hl1, df, n, dh),
      dw2: matmul(transpose(dUl2, n, dh), k, dh, n, df),
    };
  }

  learn(c: ChunkRows): void {
    const { df, dh, opts } = this;
    const n = c.n;
    let { dw0, dw1, dw2 } = this.gradients(c);

    if (opts.useMomentum) {
      let m = 0;
      for (let i = 0; i < n; i++) m += c.beta[i];
      m /= n;
      for (let i = 0; i < dw0.length; i++) dw0[i] += m * this.m0[i];
      for (let i = 0; i < dw1.length; i++) dw1[i] += m * this.m1[i];
      for (let i = 0; i < dw2.length; i++) dw2[i] += m * this.m2[i];
      this.m0 = Float64Array.from(dw0);
      this.m1 = Float64Array.from(dw1);
      this.m2 = Float64Array.from(dw2);
    }
    if (opts.useMuon) {
      dw0 = newtonSchulz5(dw0, dh, df);
      dw1 = newtonSchulz5(dw1, df, dh);
      dw2 = newtonSchulz5(dw2, dh, df);
    }
    this.w0 = renormRows(add(this.w0, dw0), dh, df, this.n0);
    this.w1 = renormRows(add(this.w1, dw1), df, dh, this.n1);
    this.w2 = renormRows(add(this.w2, dw2), dh, df, this.n2);
  }
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const c = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) c[i] = a[i] + b[i];
  return c;
}

/** Each row scaled to its target norm: w / (||w|| + 1e-5) * target. */
export function renormRows(w: Float64Array, rows: number, cols: number, target: Float64Array): Float64Array {
  const norms = rowNorms(w, rows, cols);
  for (let r = 0; r < rows; r++) {
    const s = target[r] / (norms[r] + 1e-5);
    for (let i = 0; i < cols; i++) w[r * cols + i] *= s;
  }
  return w;
}
