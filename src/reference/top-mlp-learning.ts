/**
 * The CPU twin (f64) of a sliding-window model learning while reading with its top block's MLP
 * (src/families/top-mlp-learning.ts; PyTorch: train/dynamic_eval.py): chunks of C aligned to position 0,
 * each applied with the current top-MLP weights, then (complete, and its last target known) one step:
 * mean next-token cross-entropy over targets ≠ BOS, gradient w.r.t. the top MLP's gate, up and down
 * matrices, one global-norm clip, SGD. The stream entering the top MLP does not depend on those weights,
 * so it is computed once, by the reference forward of the same model with the top MLP's down matrix
 * zeroed (then the top block's output is exactly that stream).
 */
import type { LactConfig, WeightMap } from '../model/config.ts';
import { crossEntropyBackward, linearBackward, rmsnormBackward, swigluBackward } from './e2e/backward.ts';
import { linear, rmsNormRows, silu } from './linalg.ts';
import { ReferenceModel } from './model.ts';

export interface TopMlpLearningResult {
  /** [T, V]: each chunk with the weights before its own update. */
  readonly logits: Float64Array;
  readonly chunkLosses: readonly number[];
  readonly gradNorms: readonly number[];
  readonly clipScales: readonly number[];
  /** [gate | up | down] after the last update. */
  readonly theta: Float64Array;
}

export function topMlpLearning(config: LactConfig, weights: WeightMap, tokens: readonly number[], s: { chunk: number; lr: number; clip: number }): TopMlpLearningResult {
  const c = config, D = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, T = tokens.length, C = s.chunk, L = c.numLayers;
  const downName = `model.layers.${L - 1}.mlp.down_proj.weight`;
  const zeroed = new Map(weights);
  const down0 = weights.get(downName)!;
  zeroed.set(downName, { shape: down0.shape, data: new Float32Array(down0.data.length) });
  const h = new ReferenceModel(c, zeroed).forward(tokens).hidden[L];
  const ref = new ReferenceModel(c, weights);
  const lw = ref.weights.layers[L - 1];
  let gate = Float64Array.from(lw.gateW), up = Float64Array.from(lw.upW), down = Float64Array.from(lw.downW);
  const logits = new Float64Array(T * V);
  const chunkLosses: number[] = [], gradNorms: number[] = [], clipScales: number[] = [];
  for (let s0 = 0; s0 < T; s0 += C) {
    const n = Math.min(C, T - s0);
    const hs = h.subarray(s0 * D, (s0 + n) * D);
    const m = rmsNormRows(hs, n, D, lw.mlpNorm, c.normEps);
    const g = linear(m, n, D, gate, I), u = linear(m, n, D, up, I);
    for (let i = 0; i < g.length; i++) g[i] = silu(g[i]) * u[i];
    const y = linear(g, n, I, down, D);
    const x = Float64Array.from(hs, (v, i) => v + y[i]);
    const lg = ref.head(x, n);
    logits.set(lg, s0 * V);
    if (n < C || s0 + C >= T) continue;
    const ce = crossEntropyBackward(lg, n, V, tokens.slice(s0 + 1, s0 + C + 1), c.bosTokenId);
    const xn = rmsNormRows(x, n, D, ref.weights.finalNorm, c.normEps);
    const dxn = linearBackward(xn, n, D, ref.weights.lmHead, V, ce.dlogits).dx;
    const dx = rmsnormBackward(x, n, D, ref.weights.finalNorm, c.normEps, dxn).dx;
    const sw = swigluBackward(m, n, D, gate, down, up, I, dx);
    let ss = 0;
    for (const t of [sw.dw1, sw.dw2, sw.dw3]) for (const v of t) ss += v * v;
    const norm = Math.sqrt(ss);
    const scale = s.clip > 0 && norm >= s.clip ? s.clip / norm : 1;
    gate = gate.map((v, i) => v - s.lr * scale * sw.dw1[i]);
    up = up.map((v, i) => v - s.lr * scale * sw.dw3[i]);
    down = down.map((v, i) => v - s.lr * scale * sw.dw2[i]);
    chunkLosses.push(ce.loss);
    gradNorms.push(norm);
    clipScales.push(scale);
  }
  const theta = new Float64Array(3 * I * D);
  theta.set(gate, 0);
  theta.set(up, I * D);
  theta.set(down, 2 * I * D);
  return { logits, chunkLosses, gradNorms, clipScales, theta };
}
