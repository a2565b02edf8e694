/**
 * Hand-written backward passes of the TTT-E2E forward pieces (ops.ts), f64. Each takes the forward's
 * inputs and the gradient of the loss w.r.t. the forward's output (`dy`), recomputes what it needs, and
 * returns the gradients w.r.t. its inputs (and weights). No autograd: these small functions are the CPU
 * twins GPU kernels are checked against; test/reference/e2e-backward.test.ts checks each one against
 * central finite differences.
 */
import { linear, matmul, sigmoid, silu, transpose } from '../linalg.ts';
import { attentionProbs, crossEntropy, rope, type RopeLayout } from './ops.ts';

/**
 * y = x · r · g per row, r = (mean(x²) + eps)^(-1/2); x [rows, n], g [n].
 * dx_i = r g_i dy_i − (r³ / n) x_i Σ_j dy_j g_j x_j;  dg_i = Σ_rows dy_i x_i r.
 */
export function rmsnormBackward(x: Float64Array, rows: number, n: number, gain: Float64Array, eps: number, dy: Float64Array): { dx: Float64Array; dgain: Float64Array } {
  const dx = new Float64Array(rows * n), dgain = new Float64Array(n);
  for (let t = 0; t < rows; t++) {
    const o = t * n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[o + i] ** 2;
    const r = 1 / Math.sqrt(ss / n + eps);
    let dot = 0;
    for (let i = 0; i < n; i++) dot += dy[o + i] * gain[i] * x[o + i];
    const c = (r * r * r * dot) / n;
    for (let i = 0; i < n; i++) {
      dx[o + i] = r * gain[i] * dy[o + i] - c * x[o + i];
      dgain[i] += dy[o + i] * x[o + i] * r;
    }
  }
  return { dx, dgain };
}

/** y = x W^T with W [out, in]: dx = dy W [rows, in], dW = dy^T x [out, in]. */
export function linearBackward(x: Float64Array, rows: number, inDim: number, w: Float64Array, outDim: number, dy: Float64Array): { dx: Float64Array; dw: Float64Array } {
  return {
    dx: matmul(dy, w, rows, outDim, inDim),
    dw: matmul(transpose(dy, rows, outDim), x, outDim, rows, inDim),
  };
}

/** silu'(u) = σ(u) (1 + u (1 − σ(u))). */
export function siluGrad(u: number): number {
  const s = sigmoid(u);
  return s * (1 + u * (1 - s));
}

/**
 * y = (silu(x W1^T) ⊙ (x W3^T)) W2^T; x [rows, d], w1, w3 [f, d], w2 [d, f].
 * With u = x W1^T, g = x W3^T, m = silu(u) ⊙ g: dm = dy W2, dW2 = dy^T m, du = dm ⊙ g ⊙ silu'(u),
 * dg = dm ⊙ silu(u), dW1 = du^T x, dW3 = dg^T x, dx = du W1 + dg W3.
 */
export function swigluBackward(
  x: Float64Array, rows: number, d: number, w1: Float64Array, w2: Float64Array, w3: Float64Array, f: number, dy: Float64Array,
): { dx: Float64Array; dw1: Float64Array; dw2: Float64Array; dw3: Float64Array } {
  const u = linear(x, rows, d, w1, f);
  const g = linear(x, rows, d, w3, f);
  const m = new Float64Array(rows * f);
  for (let i = 0; i < m.length; i++) m[i] = silu(u[i]) * g[i];
  const down = linearBackward(m, rows, f, w2, d, dy);
  const du = new Float64Array(rows * f), dg = new Float64Array(rows * f);
  for (let i = 0; i < m.length; i++) {
    du[i] = down.dx[i] * g[i] * siluGrad(u[i]);
    dg[i] = down.dx[i] * silu(u[i]);
  }
  const gate = linearBackward(x, rows, d, w1, f, du);
  const up = linearBackward(x, rows, d, w3, f, dg);
  const dx = gate.dx;
  for (let i = 0; i < dx.length; i++) dx[i] += up.dx[i];
  return { dx, dw1: gate.dw, dw2: down.dw, dw3: up.dw };
}

/** RoPE is a rotation per pair: its backward rotates dy by minus the angle (R^T = R(−θ)). */
export function ropeBackward(
  dy: Float64Array, rows: number, numHeads: number, headDim: number, positions: readonly number[], theta: number,
  layout: RopeLayout = 'interleaved',
): Float64Array {
  return rope(dy, rows, numHeads, headDim, positions, theta, layout, -1);
}

/** The per-head q/k RMSNorm (one gain [hd] shared by the heads): rmsnormBackward over rows·H rows of hd. */
export function qkNormBackward(
  x: Float64Array, rows: number, numHeads: number, headDim: number, gain: Float64Array, eps: number, dy: Float64Array,
): { dx: Float64Array; dgain: Float64Array } {
  return rmsnormBackward(x, rows * numHeads, headDim, gain, eps, dy);
}

/**
 * Backward of slidingWindowAttention (ops.ts): per head, with P the softmax probabilities,
 * dv_j = Σ_p P_pj do_p, dP_pj = do_p·v_j, ds_pj = P_pj (dP_pj − Σ_l P_pl dP_pl),
 * dq_p = Σ_j ds_pj k_j / √hd, dk_j = Σ_p ds_pj q_p / √hd. Returns gradients for every key and value;
 * a caller whose earlier keys are constants ignores their rows.
 */
export function slidingWindowAttentionBackward(
  q: Float64Array, qPos: readonly number[], k: Float64Array, v: Float64Array, kPos: readonly number[],
  numHeads: number, headDim: number, window: number, dout: Float64Array,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const nq = qPos.length, nk = kPos.length, width = numHeads * headDim, scale = 1 / Math.sqrt(headDim);
  const dq = new Float64Array(nq * width), dk = new Float64Array(nk * width), dv = new Float64Array(nk * width);
  const p = new Float64Array(nk), dp = new Float64Array(nk);
  for (let t = 0; t < nq; t++) {
    for (let h = 0; h < numHeads; h++) {
      const col = h * headDim, qo = t * width + col;
      attentionProbs(q, qo, k, kPos, qPos[t], col, width, headDim, window, scale, p);
      let pdp = 0;
      for (let j = 0; j < nk; j++) {
        if (p[j] === 0) {
          dp[j] = 0;
          continue;
        }
        const vo = j * width + col;
        let s = 0;
        for (let i = 0; i < headDim; i++) {
          s += dout[qo + i] * v[vo + i];
          dv[vo + i] += p[j] * dout[qo + i];
        }
        dp[j] = s;
        pdp += p[j] * s;
      }
      for (let j = 0; j < nk; j++) {
        if (p[j] === 0) continue;
        const ds = p[j] * (dp[j] - pdp) * scale;
        const ko = j * width + col;
        for (let i = 0; i < headDim; i++) {
          dq[qo + i] += ds * k[ko + i];
          dk[ko + i] += ds * q[qo + i];
        }
      }
    }
  }
  return { dq, dk, dv };
}

/**
 * The chunk loss (crossEntropy in ops.ts) and its gradient w.r.t. the logits [n, V]:
 * dlogits_t = valid_t / max(#valid, 1e-10) · (softmax(logits_t) − onehot(target_t)).
 */
export function crossEntropyBackward(
  logits: Float64Array, n: number, vocab: number, targets: readonly number[], bosTokenId: number | null,
): { loss: number; nll: Float64Array; valid: Float64Array; dlogits: Float64Array } {
  const ce = crossEntropy(logits, n, vocab, targets, bosTokenId);
  let count = 0;
  for (let t = 0; t < n; t++) count += ce.valid[t];
  const denom = Math.max(count, 1e-10);
  const dlogits = new Float64Array(n * vocab);
  for (let t = 0; t < n; t++) {
    if (ce.valid[t] === 0) continue;
    const o = t * vocab;
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) max = Math.max(max, logits[o + i]);
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(logits[o + i] - max);
    for (let i = 0; i < vocab; i++) dlogits[o + i] = Math.exp(logits[o + i] - max) / sum / denom;
    dlogits[o + targets[t]] -= 1 / denom;
  }
  return { ...ce, dlogits };
}
