export { ReferenceModel, ReferenceStream, type ForwardResult } from './model.ts';
export { FastWeightHead, renormRows, type ChunkRows } from './fast-weights.ts';
export { newtonSchulz5, NS5_COEFFS } from './newton-schulz.ts';
