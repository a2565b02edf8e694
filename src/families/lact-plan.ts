/**
 * The LaCT family's memory plan: every buffer LactModel (lact.ts) and its weights (lact-weights.ts)
 * allocate, computed from the config and layout alone with the same size helpers the allocating code
 * uses, so the engine can check it against the device before anything is allocated.
 */
import { planBuilder } from './plan-builder.ts';
import { attentionPartialsBytes } from '../gpu/ops/attention.ts';
import { fastWeightLayerFloats, fastWeightScratchBuffers, projectionRowWidth } from '../gpu/ops/fast-weights.ts';
import { kvGeometry } from '../gpu/ops/kv-cache.ts';
import { SampleOp } from '../gpu/ops/sample.ts';
import { pendingChunkBytes } from '../gpu/ops/e2e-keep.ts';
import { headLossBuffers } from '../gpu/ops/head-loss.ts';
import { resolveLearnWhileReading, topMlpLearnerBuffers } from './top-mlp-learning.ts';
import type { EngineLayout, EngineOptions } from '../engine/family.ts';
import type { PlannedBuffer } from '../engine/memory-plan.ts';
import type { LactConfig } from '../model/config.ts';

/**
 * Every buffer LactModel and its weights allocate, in the order they do (small per-op uniform buffers
 * aside). Keys say what sizes each: config.json keys, or the engine options `maxRows` and `maxContext`.
 */
export function lactPlan(c: LactConfig, layout: EngineLayout, opts: EngineOptions): PlannedBuffer[] {
  const D = c.hiddenSize, V = c.vocabSize, I = c.intermediateSize, R = layout.maxRows, f = c.useFastWeights;
  // A projection row: q|k|v, the branch's own q|k|v (fw_own_qkv), the gates.
  const S = projectionRowWidth(c);
  const { out, buf, matrix } = planBuilder(layout);
  // The checkpoint (lact-weights.ts).
  matrix('embeddings', V, D, 'vocab_size');
  if (!c.tieWordEmbeddings) matrix('lm_head', V, D, 'vocab_size');
  buf('final norm', 'weights', 4 * D, 'hidden_size');
  for (let l = 0; l < c.numLayers; l++) {
    const L = `layer ${l}`;
    buf(`${L} attn_norm`, 'weights', 4 * D, 'hidden_size');
    // With fast weights the branch's own q|k|v rows (if any) and the gates' follow q|k|v in one matrix (and one bias).
    matrix(f ? `${L} qkv|gates` : `${L} qkv`, S, D, 'hidden_size');
    if (c.qkvBias || f) buf(f ? `${L} qkv|gates bias` : `${L} qkv bias`, 'weights', 4 * S, 'hidden_size');
    if (c.attnQkNorm) buf(`${L} q/k norm`, 'weights', 8 * D, 'hidden_size');
    matrix(`${L} o_proj`, D, D, 'hidden_size');
    buf(`${L} mlp_norm`, 'weights', 4 * D, 'hidden_size');
    matrix(`${L} gate|up`, 2 * I, D, 'intermediate_size');
    matrix(`${L} down`, D, I, 'intermediate_size');
  }
  // Activations, the fast-weight scratch, then per layer its KV cache, fast-weight state, attention partials.
  buf('tokens', 'activations', 4 * R, 'maxRows');
  for (const [label, floats] of [['x', R * D], [f ? 'qkv|gates' : 'qkv', R * S], ['o', R * D]] as const) buf(label, 'activations', 4 * floats, 'maxRows');
  // No normed-input buffer: every pre-norm is fused into the projection after it (LinearSpec.norm).
  buf('gate|up', 'activations', 4 * R * 2 * I, 'intermediate_size');
  buf('swiglu', 'activations', 4 * R * I, 'intermediate_size');
  const logitBytes = 4 * (opts.allLogits ? R : 1) * V;
  buf('logits', 'activations', logitBytes, 'vocab_size');
  if (f) for (const b of fastWeightScratchBuffers(c, R)) buf(`fast weights: ${b.name}`, b.category, 4 * b.floats, b.category === 'activations' ? 'maxRows' : 'lact_chunk_size');
  const capacity = layout.capacity === Infinity ? 0 : layout.capacity;
  const spec = { D, heads: c.numAttnHeads, window: c.windowSize, maxRows: R, capacity };
  const kv = kvGeometry(spec, layout.maxBindingBytes);
  const kvKey = c.windowSize === null ? 'maxContext' : 'window_size';
  const fw = f ? fastWeightLayerFloats(c) : null;
  for (let l = 0; l < c.numLayers; l++) {
    const L = `layer ${l}`;
    for (const slots of kv.pageSlots) for (const which of ['K', 'V']) buf(`${L} ${which} cache`, 'kv', 4 * slots * D, kvKey);
    if (fw) {
      buf(`${L} fast weights`, 'fastWeights', 4 * fw.weights, 'hidden_size');
      if (fw.momentum) buf(`${L} momentum`, 'momentum', 4 * fw.momentum, 'hidden_size');
      buf(`${L} pending chunk`, 'pending', 4 * fw.pending, 'lact_chunk_size');
      for (const [label, floats] of fw.constants) buf(`${L} ${label}`, 'weights', 4 * floats, 'hidden_size');
    }
    // Layers without fast weights rope in their own launch (RopeOp), from a turn table of their own.
    else buf(`${L} rope turns`, 'weights', 4 * c.attnHeadDim, 'hidden_size');
    buf(`${L} attention partials`, 'scratch', attentionPartialsBytes(spec, kv), 'maxRows');
  }
  buf('block params', 'scratch', 16, 'maxRows', false);
  buf('sample params', 'scratch', SampleOp.PARAMS_BYTES, 'vocab_size', false);
  buf('sample result', 'scratch', 16, 'vocab_size');
  const learning = resolveLearnWhileReading(c, opts.learnWhileReading);
  if (learning) {
    // The top MLP learning while reading (top-mlp-learning.ts): θ, its pending chunk, its update's buffers.
    const C = learning.chunk;
    for (const b of topMlpLearnerBuffers(c, learning)) buf(`top MLP learning: ${b.name}`, b.category, 4 * b.floats, b.category === 'fastWeights' ? 'intermediate_size' : 'learnWhileReading.chunk');
    const p = pendingChunkBytes(D, C);
    buf('top MLP pending h', 'pending', p.hPre, 'learnWhileReading.chunk');
    buf('top MLP pending tokens', 'pending', p.tokens, 'learnWhileReading.chunk');
    buf('top MLP update block params', 'scratch', 16, 'learnWhileReading.chunk', false);
    for (const b of headLossBuffers({ rows: C, d: D, vocab: V, maxBindingBytes: layout.maxBindingBytes })) buf(`top MLP update: ${b.name}`, b.category, 4 * b.floats, 'learnWhileReading.chunk');
    const slots = Math.max(1, Math.min(1024, Math.ceil((3 * I * D) / (64 * 16))));
    buf('top MLP update clip partials', 'scratch', 4 * slots, 'intermediate_size');
    buf('top MLP update clip stats', 'scratch', 16, 'intermediate_size');
  }
  return out;
}
