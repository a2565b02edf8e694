/**
 * Sampling parameters: the type the engine's feed/step/generate take and the one check they all go
 * through (the host before queueing, the engine, the GPU sampler, and the CPU twin
 * src/reference/sampling.ts, whose module comment gives the exact semantics). No imports: shipped code
 * and the reference both use it.
 */

export interface SamplingParams {
  /** 0 = greedy argmax; otherwise the softmax temperature. */
  temperature: number;
  /** Keep the k largest logits (ties at the k-th kept); 0 = off. */
  topK?: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  topP?: number;
  /** u32 seed of the counter-based draw; with the step it fixes the draw. */
  seed?: number;
}

/** Defaults filled in and every field checked; RangeError names the offending parameter. */
export function validateSamplingParams(p: SamplingParams): Required<SamplingParams> {
  if (p === null || typeof p !== 'object') throw new TypeError('sampling params must be an object');
  const { temperature, topK = 0, topP = 1, seed = 0 } = p;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new RangeError(`sampling temperature must be a finite number >= 0 (0 = greedy), got ${temperature}`);
  }
  if (typeof topK !== 'number' || !Number.isSafeInteger(topK) || topK < 0) {
    throw new RangeError(`sampling topK must be a non-negative integer (0 = off), got ${topK}`);
  }
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
    throw new RangeError(`sampling topP must be in (0, 1] (1 = off), got ${topP}`);
  }
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`sampling seed must be an integer in [0, 2^32 - 1], got ${seed}`);
  }
  return { temperature, topK, topP, seed };
}

/** The draw's step (with the seed it fixes the draw): an integer in [0, 2^32 - 1]. */
export function validateStep(step: number): number {
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0 || step > 0xffffffff) {
    throw new RangeError(`sampling step must be an integer in [0, 2^32 - 1], got ${step}`);
  }
  return step;
}
