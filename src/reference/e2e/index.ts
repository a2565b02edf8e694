/** The TTT-E2E CPU reference (f64): whole-chunk and streaming forms, the chunk step and its backward pieces. */
export {
  E2EReference, type BlockTape, type ChunkForward, type ChunkGradient, type ChunkInput, type ChunkRecord,
  type E2EForwardResult, type E2EOptions, type KvRows,
} from './model.ts';
export { E2EStream } from './stream.ts';
export { clipAndStep, type StepResult } from './update.ts';
export { cloneTheta, e2eModelFromFiles, e2eReferenceWeights, type DynamicWeights, type E2EBlockWeights, type E2EWeights, type Theta } from './weights.ts';
export { crossEntropy, logSumExp, qkNorm, rope, ropeAngle, slidingWindowAttention, swiglu, visible, type CrossEntropy, type RopeLayout } from './ops.ts';
export {
  crossEntropyBackward, linearBackward, qkNormBackward, rmsnormBackward, ropeBackward, siluGrad, slidingWindowAttentionBackward, swigluBackward,
} from './backward.ts';
