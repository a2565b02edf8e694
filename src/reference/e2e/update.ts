/** The inner update of TTT-E2E: one global-norm clip over all S blocks' W1, W2, W3, then plain SGD. */
import type { DynamicWeights, Theta } from './weights.ts';

export interface StepResult {
  readonly theta: Theta;
  /** ||g|| over all S blocks' W1, W2, W3, before the clip. */
  readonly gradNorm: number;
  /** clip / ||g|| when clip > 0 and ||g|| ≥ clip, else 1. */
  readonly clipScale: number;
}

/** UPDATE: ONE global L2 norm over every tensor of g; scale clip/||g|| iff clip > 0 and ||g|| ≥ clip; θ − η·g. */
export function clipAndStep(theta: readonly DynamicWeights[], grads: readonly DynamicWeights[], lr: number, clip: number): StepResult {
  let ss = 0;
  for (const g of grads) for (const w of [g.w1, g.w2, g.w3]) for (let i = 0; i < w.length; i++) ss += w[i] * w[i];
  const gradNorm = Math.sqrt(ss);
  const clipScale = clip > 0 && gradNorm >= clip ? clip / gradNorm : 1;
  const step = (w: Float64Array, g: Float64Array) => w.map((x, i) => x - lr * (g[i] * clipScale));
  return {
    theta: theta.map((t, j) => ({ w1: step(t.w1, grads[j].w1), w2: step(t.w2, grads[j].w2), w3: step(t.w3, grads[j].w3) })),
    gradNorm,
    clipScale,
  };
}
