/**
 * The row-wise parts of one LaCT layer, shared by the whole-sequence and the streaming forms: projections,
 * RoPE, the fast-weight inputs (q, k, v, learning rates, momentum gate) and the fast-weight output's
 * norm and scale. What differs between the two forms (how attention finds its keys, when a chunk learns)
 * lives in model.ts.
 */
import type { LactConfig } from '../model/config.ts';
import { invSoftplus, linear, rmsNormRows, sigmoid, silu, softplus } from './linalg.ts';
import { ropeInPlace } from './rope.ts';
import type { LayerWeights } from './weights.ts';

/** eps of q_norm, k_norm and ttt_norm (the library RMSNorm default); block norms use config.normEps. */
export const INNER_NORM_EPS = 1e-5;
export const BASE_LR = 0.001;

export interface ProjectedRows {
  rows: number;
  /** Attention q and k after RoPE, and v: [rows, D]. */
  qa: Float64Array;
  ka: Float64Array;
  v: Float64Array;
  /** Fast-weight q, k (scaled, silu'd, per-head L2-normalised, RoPE'd) and v: [rows, D]; null when the branch is off. */
  fq: Float64Array | null;
  fk: Float64Array | null;
  fv: Float64Array | null;
  /** Learning rates [rows, 3Hf] (head h: columns 3h, 3h+1, 3h+2 for W0, W1, W2). */
  lr: Float64Array | null;
  /** Momentum gate [rows, Hf]. */
  beta: Float64Array | null;
  /** silu(ttt_scale_proj(a)) [rows, Hf], or null when learnable_ttt_scale is off. */
  tttScale: Float64Array | null;
}

/** Rows of q | k | v [rows, 3D] as three [rows, D] arrays. */
function splitQkv(qkv: Float64Array, rows: number, D: number): [Float64Array, Float64Array, Float64Array] {
  const out: [Float64Array, Float64Array, Float64Array] = [new Float64Array(rows * D), new Float64Array(rows * D), new Float64Array(rows * D)];
  for (let t = 0; t < rows; t++) out.forEach((x, j) => x.set(qkv.subarray(t * 3 * D + j * D, t * 3 * D + (j + 1) * D), t * D));
  return out;
}

/** a: the attn-normed input rows [rows, D] at absolute positions `positions`. */
export function projectRows(c: LactConfig, lw: LayerWeights, a: Float64Array, positions: readonly number[]): ProjectedRows {
  const D = c.hiddenSize, rows = positions.length;
  let [q, k, v] = splitQkv(linear(a, rows, D, lw.qkvW, 3 * D, lw.qkvB ?? undefined), rows, D);
  if (lw.qNorm && lw.kNorm) {
    q = rmsNormRows(q, rows, D, lw.qNorm, INNER_NORM_EPS);
    k = rmsNormRows(k, rows, D, lw.kNorm, INNER_NORM_EPS);
  }
  const qa = Float64Array.from(q), ka = Float64Array.from(k);
  for (let t = 0; t < rows; t++) {
    ropeInPlace(qa, t * D, D, c.attnHeadDim, positions[t], c.ropeTheta);
    ropeInPlace(ka, t * D, D, c.attnHeadDim, positions[t], c.ropeTheta);
  }
  const out: ProjectedRows = { rows, qa, ka, v, fq: null, fk: null, fv: null, lr: null, beta: null, tttScale: null };
  const f = lw.fast;
  if (!f) return out;

  const Hf = c.numFwHeads, df = c.fwHeadDim;
  // The branch's inputs: attention's q, k (after its q/k norm, before RoPE) and v, or its own projection's.
  const [bq, bk, bv] = f.qkvW ? splitQkv(linear(a, rows, D, f.qkvW, 3 * D), rows, D) : [q, k, v];
  const fq = new Float64Array(rows * D), fk = new Float64Array(rows * D), fv = Float64Array.from(bv);
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < D; i++) {
      fq[t * D + i] = bq[t * D + i] * f.qkScale[2 * i] + f.qkOffset[2 * i];
      fk[t * D + i] = bk[t * D + i] * f.qkScale[2 * i + 1] + f.qkOffset[2 * i + 1];
    }
  }
  if (c.qkvSilu) {
    for (const x of [fq, fk, fv]) for (let i = 0; i < x.length; i++) x[i] = silu(x[i]);
  }
  for (const x of [fq, fk]) {
    for (let t = 0; t < rows; t++) {
      for (let h = 0; h < Hf; h++) {
        const o = t * D + h * df;
        let ss = 0;
        for (let i = 0; i < df; i++) ss += x[o + i] ** 2;
        const inv = 1 / (Math.sqrt(ss) + 1e-5);
        for (let i = 0; i < df; i++) x[o + i] *= inv;
      }
      ropeInPlace(x, t * D, D, c.attnHeadDim, positions[t], c.ropeTheta);
    }
  }
  const lr = linear(a, rows, D, f.lrW, 3 * Hf, f.lrB);
  const shift = invSoftplus(BASE_LR);
  for (let i = 0; i < lr.length; i++) lr[i] = softplus(lr[i] + shift);
  let beta: Float64Array | null = null;
  if (f.momW && f.momB) {
    beta = linear(a, rows, D, f.momW, Hf, f.momB);
    for (let i = 0; i < beta.length; i++) beta[i] = sigmoid(beta[i]);
  }
  let tttScale: Float64Array | null = null;
  if (f.scaleW && f.scaleB) {
    tttScale = linear(a, rows, D, f.scaleW, Hf, f.scaleB);
    for (let i = 0; i < tttScale.length; i++) tttScale[i] = silu(tttScale[i]);
  }
  return { ...out, fq, fk, fv, lr, beta, tttScale };
}

/**
 * One query row against a set of key/value rows (all heads): softmax(q·k/√da) v per attention head.
 * keys/values: arrays of D-vectors, in position order; the caller has already applied the window.
 */
export function attendRow(c: LactConfig, qa: Float64Array, qOff: number, keys: readonly Float64Array[], values: readonly Float64Array[], out: Float64Array, outOff: number): void {
  const da = c.attnHeadDim, scale = 1 / Math.sqrt(da);
  const scores = new Float64Array(keys.length);
  for (let h = 0; h < c.numAttnHeads; h++) {
    const ho = h * da;
    let max = -Infinity;
    for (let j = 0; j < keys.length; j++) {
      let s = 0;
      for (let i = 0; i < da; i++) s += qa[qOff + ho + i] * keys[j][ho + i];
      scores[j] = s * scale;
      if (scores[j] > max) max = scores[j];
    }
    let sum = 0;
    for (let j = 0; j < keys.length; j++) {
      scores[j] = Math.exp(scores[j] - max);
      sum += scores[j];
    }
    for (let i = 0; i < da; i++) {
      let acc = 0;
      for (let j = 0; j < keys.length; j++) acc += scores[j] * values[j][ho + i];
      out[outOff + ho + i] = acc / sum;
    }
  }
}

/** The fast-weight output of one head for one row, normed by ttt_norm and scaled: written into o. */
export function addFastOutput(c: LactConfig, lw: LayerWeights, y: Float64Array, row: number, head: number, tttScale: Float64Array | null, o: Float64Array, oOff: number): void {
  const f = lw.fast!;
  const df = c.fwHeadDim;
  const normed = rmsNormRows(y, 1, df, f.tttNorm, INNER_NORM_EPS);
  const s = tttScale ? tttScale[row * c.numFwHeads + head] : 1;
  for (let i = 0; i < df; i++) o[oOff + head * df + i] += normed[i] * s;
}

/** x += MLP(RMSNorm_mlp(x)) and x += o @ Wo^T are the block's two residual adds. */
export function mlpResidual(c: LactConfig, lw: LayerWeights, x: Float64Array, rows: number): void {
  const D = c.hiddenSize, I = c.intermediateSize;
  const h = rmsNormRows(x, rows, D, lw.mlpNorm, c.normEps);
  const g = linear(h, rows, D, lw.gateW, I);
  const u = linear(h, rows, D, lw.upW, I);
  for (let i = 0; i < g.length; i++) g[i] = silu(g[i]) * u[i];
  const y = linear(g, rows, I, lw.downW, D);
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}
