/**
 * Token sampling, the CPU twin of `shaders/sample.wgsl` (f64 arithmetic, same decisions).
 *
 * Semantics, over f32 logits x[0..V) (the reference rounds its input to f32 first, as the GPU stores it):
 *
 *  0. Ordering. Values are compared as numbers after two canonicalisations that the GPU's u32 order key
 *     also applies: NaN ranks as -Infinity, and -0 equals +0. -Infinity logits (masked tokens) have
 *     weight 0 and are never drawn.
 *  1. Greedy: when temperature is 0, when 1/temperature overflows f32 (the GPU scales by an f32 1/T),
 *     or when the largest logit is not finite (+Inf, or every logit -Inf/NaN), the result is the argmax,
 *     the lowest index among ties.
 *  2. Top-k (topK = 0 or topK >= V: off): keep x_i >= t_k, t_k the k-th largest logit. Ties at t_k are
 *     all kept, so more than k tokens may survive.
 *  3. Weights w_i = exp((x_i - max) / T) = exp(z_i - z_max) with z = x / T, for kept finite x_i.
 *  4. Top-p (topP = 1: off): with total = sum of w over the top-k set, keep x_i >= tau, tau the largest
 *     kept value with mass{x >= tau} >= topP * total. A value threshold, so tokens with equal logits are
 *     kept or dropped together; it equals "the smallest descending prefix reaching topP" up to ties.
 *  5. Draw: u = samplingUniform(seed, step) in [0, 1), target = u * keptMass (sum of w over the kept set);
 *     the result is the first kept token in INDEX order with w > 0 whose cumulative weight exceeds
 *     target, or, when rounding leaves none, the last kept token with w > 0. Index order (not
 *     descending-probability order) is what a GPU can scan with one prefix sum.
 *
 * The GPU computes weights and sums in f32 (WGSL's exp is within a few ulp, not correctly rounded), so it
 * can disagree with this twin only where an f64 decision is within ~1e-6 relative of flipping: the top-p
 * mass comparison, or the draw's target against a cumulative boundary. `sampleReferenceTrace` reports
 * both margins so tests can tell such boundary cases from bugs. Thresholds of top-k are exact on both.
 */

import { validateSamplingParams, validateStep, type SamplingParams } from '../engine/sampling-params.ts';

/** PCG's RXS-M-XS output permutation as a hash (Jarzynski & Olano 2020): a bijection on u32. */
function pcgHash(v: number): number {
  const s = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const w = Math.imul((s >>> ((s >>> 28) + 4)) ^ s, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/**
 * The 32-bit draw for (seed, step): pcg(pcg(seed) + step mod 2^32). For a fixed seed, distinct steps
 * give distinct hashes (both stages are bijections), and no state is carried between draws.
 */
export function samplingHash(seed: number, step: number): number {
  return pcgHash((pcgHash(seed >>> 0) + (step >>> 0)) >>> 0);
}

/** u in [0, 1): the hash's top 24 bits over 2^24, exact in f32, so GPU and CPU draw the same u. */
export function samplingUniform(seed: number, step: number): number {
  return (samplingHash(seed, step) >>> 8) / 16777216;
}

const f32view = new Float32Array(1);
const u32view = new Uint32Array(f32view.buffer);

/**
 * The GPU's u32 order key of an f32 (after canonicalising NaN to -Inf and -0 to +0): unsigned order of
 * keys equals numeric order of values. Tests compare the GPU's thresholds with it.
 */
export function orderKey(x: number): number {
  f32view[0] = Number.isNaN(x) ? -Infinity : x === 0 ? 0 : x;
  const b = u32view[0];
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

export interface SamplingTrace {
  readonly id: number;
  readonly greedy: boolean;
  /** The top-k threshold value (-Infinity when top-k is off) and the final kept threshold (>= it). */
  readonly kThreshold: number;
  readonly threshold: number;
  readonly keptMass: number;
  readonly u: number;
  readonly target: number;
  /** Relative distance of the top-p decision from flipping (Infinity when top-p is off). */
  readonly topPMargin: number;
  /** Relative distance of target from the chosen token's cumulative-weight interval ends. */
  readonly drawMargin: number;
}

/** The sampled token id (see the module comment for the exact semantics). */
export function sampleReference(logits: ArrayLike<number>, params: SamplingParams, step: number): number {
  return sampleReferenceTrace(logits, params, step).id;
}

/** sampleReference with its intermediate decisions, for tests. */
export function sampleReferenceTrace(logits: ArrayLike<number>, params: SamplingParams, step: number): SamplingTrace {
  const { temperature: T, topK, topP, seed } = validateSamplingParams(params);
  validateStep(step);
  const V = logits.length;
  if (V === 0) throw new RangeError('sampling needs at least one logit');
  const x = new Float64Array(V);
  let arg = 0;
  for (let i = 0; i < V; i++) {
    const v = Math.fround(logits[i]);
    x[i] = Number.isNaN(v) ? -Infinity : v;
    if (x[i] > x[arg]) arg = i;
  }
  const max = x[arg];
  const u = samplingUniform(seed, step);
  if (T === 0 || !Number.isFinite(Math.fround(1 / T)) || !Number.isFinite(max)) {
    return { id: arg, greedy: true, kThreshold: max, threshold: max, keptMass: 1, u, target: u, topPMargin: Infinity, drawMargin: Infinity };
  }

  let kThreshold = -Infinity;
  if (topK > 0 && topK < V) kThreshold = Float64Array.from(x).sort()[V - topK];

  const w = new Float64Array(V);
  for (let i = 0; i < V; i++) w[i] = x[i] >= kThreshold && x[i] !== -Infinity ? Math.exp((x[i] - max) / T) : 0;

  let threshold = kThreshold;
  let topPMargin = Infinity;
  if (topP < 1) {
    let total = 0;
    for (let i = 0; i < V; i++) total += w[i];
    const goal = topP * total;
    // Mass at or above each distinct kept value, walking values downwards.
    const order = Array.from({ length: V }, (_, i) => i).filter((i) => x[i] >= kThreshold).sort((a, b) => x[b] - x[a]);
    let mass = 0;
    let prevMass = -Infinity; // mass above the previous (larger) distinct value
    for (let j = 0; j < order.length; ) {
      const v = x[order[j]];
      while (j < order.length && x[order[j]] === v) mass += w[order[j++]];
      if (mass >= goal) {
        threshold = v;
        topPMargin = Math.min(mass - goal, goal - prevMass) / total;
        break;
      }
      prevMass = mass;
    }
  }

  let keptMass = 0;
  for (let i = 0; i < V; i++) if (x[i] >= threshold) keptMass += w[i];
  const target = u * keptMass;
  let cum = 0;
  let id = -1;
  let last = -1;
  let drawMargin = Infinity;
  for (let i = 0; i < V; i++) {
    if (!(x[i] >= threshold && w[i] > 0)) continue;
    const before = cum;
    cum += w[i];
    last = i;
    if (cum > target) {
      id = i;
      drawMargin = Math.min(cum - target, target - before) / keptMass;
      break;
    }
  }
  if (id < 0) { id = last; drawMargin = 0; }
  return { id, greedy: false, kThreshold, threshold, keptMass, u, target, topPMargin, drawMargin };
}
