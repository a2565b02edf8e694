/**
 * The update log of a family that learns by gradient steps on chunks of B tokens (TTT-E2E; a
 * sliding-window model learning with its top MLP): f32 [LEARNING_LOG_SLOTS, LEARNING_LOG_FLOATS] on the
 * GPU, written by ClipSgdOp.recorder, read by the engine after a feed (src/engine/family.ts: LearningLog).
 * A record: (loss before the step, #valid targets, ||g||, clip scale, loss after the step or NaN).
 */
import type { LearningLog } from '../engine/family.ts';

/** Updates kept on the GPU (chunk c in slot c mod this). */
export const LEARNING_LOG_SLOTS = 256;
/** f32 values per update. */
export const LEARNING_LOG_FLOATS = 5;

/** The log of `buffer` for chunks of `chunk` tokens: after P tokens, floor((P − 1) / B) updates. */
export function chunkLearningLog(buffer: GPUBuffer, chunk: number): LearningLog {
  return { buffer, slots: LEARNING_LOG_SLOTS, floats: LEARNING_LOG_FLOATS, updatesAfter: (position) => (position < 1 ? 0 : Math.floor((position - 1) / chunk)) };
}
