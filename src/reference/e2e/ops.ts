/**
 * The row-wise forward pieces of a TTT-E2E block (shared/spec/ttt-e2e-language-model.md), f64, on
 * row-major Float64Arrays with explicit sizes. Each has a backward twin of the same name in
 * backward.ts; GPU kernels are checked against exactly these pairs.
 *
 * Layouts: activations [rows, width]; linear weights [out, in] (y = x W^T, as stored in the checkpoint);
 * attention rows [rows, H·hd] with head h in columns [h·hd, (h+1)·hd).
 */
import { linear, rmsNormRows, silu } from '../linalg.ts';

export { linear, rmsNormRows };

/** Which RoPE pairing. The model uses 'interleaved'; 'rotate-half' (LaCT's) exists only to plant an error in tests. */
export type RopeLayout = 'interleaved' | 'rotate-half';

/** SwiGLU(x) = (silu(x W1^T) ⊙ (x W3^T)) W2^T; x [rows, d], w1, w3 [f, d], w2 [d, f] → [rows, d]. */
export function swiglu(x: Float64Array, rows: number, d: number, w1: Float64Array, w2: Float64Array, w3: Float64Array, f: number): Float64Array {
  const u = linear(x, rows, d, w1, f);
  const g = linear(x, rows, d, w3, f);
  for (let i = 0; i < u.length; i++) u[i] = silu(u[i]) * g[i];
  return linear(u, rows, f, w2, d);
}

/** RoPE angle of pair i at position p: p · theta^(-2i/hd). */
export function ropeAngle(position: number, i: number, headDim: number, theta: number): number {
  return position * Math.pow(theta, (-2 * i) / headDim);
}

/**
 * RoPE of x [rows, H·hd] (every head alike), row t at absolute position positions[t]; a new array.
 * 'interleaved': pairs (2i, 2i+1) rotate as complex numbers (Meta-Llama layout, the model's);
 * 'rotate-half': pairs (i, i + hd/2). `sign = -1` rotates by minus the angle (the inverse = the transpose).
 */
export function rope(
  x: Float64Array, rows: number, numHeads: number, headDim: number, positions: readonly number[], theta: number,
  layout: RopeLayout = 'interleaved', sign: 1 | -1 = 1,
): Float64Array {
  const y = Float64Array.from(x);
  const half = headDim / 2, width = numHeads * headDim;
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < half; i++) {
      const a = sign * ropeAngle(positions[t], i, headDim, theta);
      const c = Math.cos(a), s = Math.sin(a);
      for (let h = 0; h < numHeads; h++) {
        const base = t * width + h * headDim;
        const i0 = layout === 'interleaved' ? base + 2 * i : base + i;
        const i1 = layout === 'interleaved' ? base + 2 * i + 1 : base + i + half;
        const x0 = x[i0], x1 = x[i1];
        y[i0] = x0 * c - x1 * s;
        y[i1] = x0 * s + x1 * c;
      }
    }
  }
  return y;
}

/** Per-head RMSNorm of q or k [rows, H·hd] over hd with ONE gain [hd] shared by the heads. */
export function qkNorm(x: Float64Array, rows: number, numHeads: number, headDim: number, gain: Float64Array, eps: number): Float64Array {
  return rmsNormRows(x, rows * numHeads, headDim, gain, eps);
}

/** Query at position p sees key j iff p − W < j ≤ p. */
export function visible(qPos: number, kPos: number, window: number): boolean {
  return kPos <= qPos && kPos > qPos - window;
}

/**
 * Sliding-window softmax attention, every head: o_p = Σ_j softmax_j(q_p·k_j/√hd) v_j over the visible j.
 * q [nq, H·hd] at positions qPos, k and v [nk, H·hd] at positions kPos (roped q and k). Every query must
 * see at least one key (its own). → o [nq, H·hd] (before o_proj).
 */
export function slidingWindowAttention(
  q: Float64Array, qPos: readonly number[], k: Float64Array, v: Float64Array, kPos: readonly number[],
  numHeads: number, headDim: number, window: number,
): Float64Array {
  const nq = qPos.length, nk = kPos.length, width = numHeads * headDim, scale = 1 / Math.sqrt(headDim);
  const o = new Float64Array(nq * width);
  const p = new Float64Array(nk);
  for (let t = 0; t < nq; t++) {
    for (let h = 0; h < numHeads; h++) {
      const qo = t * width + h * headDim;
      attentionProbs(q, qo, k, kPos, qPos[t], h * headDim, width, headDim, window, scale, p);
      for (let j = 0; j < nk; j++) {
        if (p[j] === 0) continue;
        const vo = j * width + h * headDim;
        for (let i = 0; i < headDim; i++) o[qo + i] += p[j] * v[vo + i];
      }
    }
  }
  return o;
}

/** @internal softmax probabilities of one query row and head over the keys (0 where not visible), into p. */
export function attentionProbs(
  q: Float64Array, qo: number, k: Float64Array, kPos: readonly number[], qPos: number, col: number, width: number,
  headDim: number, window: number, scale: number, p: Float64Array,
): void {
  let max = -Infinity;
  for (let j = 0; j < kPos.length; j++) {
    if (!visible(qPos, kPos[j], window)) {
      p[j] = -Infinity;
      continue;
    }
    let s = 0;
    for (let i = 0; i < headDim; i++) s += q[qo + i] * k[j * width + col + i];
    p[j] = s * scale;
    if (p[j] > max) max = p[j];
  }
  if (max === -Infinity) throw new Error(`attention: the query at position ${qPos} sees no key`);
  let sum = 0;
  for (let j = 0; j < kPos.length; j++) {
    p[j] = p[j] === -Infinity ? 0 : Math.exp(p[j] - max);
    sum += p[j];
  }
  for (let j = 0; j < kPos.length; j++) p[j] /= sum;
}

/** log Σ exp of one row. */
export function logSumExp(x: Float64Array, off: number, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, x[off + i]);
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[off + i] - max);
  return max + Math.log(s);
}

export interface CrossEntropy {
  /** Σ over valid targets of NLL / max(#valid, 1e-10): an all-BOS chunk has loss 0. */
  loss: number;
  /** NLL of every target [n], BOS ones included. */
  nll: Float64Array;
  /** 1 where the target counts (≠ BOS), else 0 [n]. */
  valid: Float64Array;
}

/**
 * The inner loss of a chunk: logits [n, V], targets [n] (the next tokens). Targets equal to `bosTokenId`
 * are skipped (pass null to count every target).
 */
export function crossEntropy(logits: Float64Array, n: number, vocab: number, targets: readonly number[], bosTokenId: number | null): CrossEntropy {
  const nll = new Float64Array(n), valid = new Float64Array(n);
  let sum = 0, count = 0;
  for (let t = 0; t < n; t++) {
    nll[t] = logSumExp(logits, t * vocab, vocab) - logits[t * vocab + targets[t]];
    valid[t] = targets[t] === bosTokenId ? 0 : 1;
    sum += nll[t] * valid[t];
    count += valid[t];
  }
  return { loss: sum / Math.max(count, 1e-10), nll, valid };
}
