/**
 * The TTT-E2E family's memory plan: every buffer E2EModel (ttt-e2e.ts), its weights and its inner step
 * allocate, from the config and layout alone, with the size helpers the allocating code uses.
 */
import { planBuilder } from './plan-builder.ts';
import { attentionPartialsBytes } from '../gpu/ops/attention.ts';
import { pendingChunkBytes } from '../gpu/ops/e2e-keep.ts';
import { headLossBuffers } from '../gpu/ops/head-loss.ts';
import { kvGeometry, type AttentionSpec } from '../gpu/ops/kv-cache.ts';
import { SampleOp } from '../gpu/ops/sample.ts';
import type { EngineLayout, EngineOptions } from '../engine/family.ts';
import type { PlannedBuffer } from '../engine/memory-plan.ts';
import type { E2EConfig } from '../model/e2e-config.ts';
import { innerStepBuffers } from './ttt-e2e-inner-step.ts';
import { thetaBlockFloats } from './ttt-e2e-weights.ts';

/** Keys: config.json keys, or the engine option `maxRows`. */
export function e2ePlan(c: E2EConfig, layout: EngineLayout, opts: EngineOptions): PlannedBuffer[] {
  const d = c.hiddenSize, V = c.vocabSize, R = layout.maxRows, B = c.miniBatchSize, S = c.numTttLayers, H = c.numHeads;
  const f = c.intermediateSizeStaticMlp, fd = c.intermediateSizeDynamicMlp, F = Math.max(f, fd);
  const { out, buf, matrix } = planBuilder(layout);
  // The checkpoint (ttt-e2e-weights.ts).
  matrix('embeddings (tied head)', V, d, 'vocab_size');
  buf('final norm', 'weights', 4 * d, 'hidden_size');
  for (let i = 0; i < c.numLayers; i++) {
    const L = `layer ${i}`, ttt = i >= c.firstTttLayer;
    buf(`${L} attn_norm`, 'weights', 4 * d, 'hidden_size');
    matrix(`${L} q|k|v`, 3 * d, d, 'hidden_size');
    buf(`${L} q/k norm`, 'weights', 8 * c.headDim, 'head_dim');
    matrix(`${L} o_proj`, d, d, 'hidden_size');
    buf(`${L} attn_post_norm`, 'weights', 4 * d, 'hidden_size');
    if (ttt) for (const n of ['dyn_norm', 'dyn_post_norm']) buf(`${L} ${n}`, 'weights', 4 * d, 'hidden_size');
    buf(`${L} mlp_norm`, 'weights', 4 * d, 'hidden_size');
    matrix(`${L} mlp w1|w3`, 2 * f, d, 'intermediate_size_static_mlp');
    matrix(`${L} mlp w2`, d, f, 'intermediate_size_static_mlp');
    buf(`${L} mlp_post_norm`, 'weights', 4 * d, 'hidden_size');
  }
  // The data path (ttt-e2e.ts).
  buf('block params', 'scratch', 16, 'maxRows', false);
  buf('tokens', 'activations', 4 * R, 'maxRows');
  for (const [label, floats] of [['x', R * d], ["x'", R * d], ['qkv', R * 3 * d], ['o', R * d], ['sublayer output', R * d]] as const) buf(label, 'activations', 4 * floats, 'maxRows');
  buf('gate|up', 'activations', 4 * R * 2 * F, 'maxRows');
  buf('swiglu', 'activations', 4 * R * F, 'maxRows');
  buf('logits', 'activations', 4 * (opts.allLogits ? R : 1) * V, 'vocab_size');
  if (S > 0) {
    buf('θ: dynamic MLPs', 'fastWeights', 4 * S * thetaBlockFloats(c), 'intermediate_size_dynamic_mlp');
    const p = pendingChunkBytes(d, B);
    buf('pending chunk h_pre', 'pending', p.hPre, 'mini_batch_size');
    buf('pending chunk tokens', 'pending', p.tokens, 'mini_batch_size');
  }
  const ropeTable = 4 * c.headDim; // the RoPE turn table (ropeTurnTable): hd/2 pairs of u32 words
  for (let i = 0; i < c.numLayers; i++) {
    const L = `layer ${i}`, ttt = i >= c.firstTttLayer;
    const spec: AttentionSpec = { D: d, heads: H, window: c.slidingWindow, maxRows: R, capacity: 0, keepChunk: ttt ? B : undefined };
    const kv = kvGeometry(spec, layout.maxBindingBytes);
    for (const slots of kv.pageSlots) for (const which of ['K', 'V']) buf(`${L} ${which} cache`, 'kv', 4 * slots * d, ttt ? 'mini_batch_size' : 'sliding_window');
    buf(`${L} q/k norm + rope turns`, 'weights', ropeTable, 'head_dim');
    buf(`${L} attention partials`, 'scratch', attentionPartialsBytes(spec, kv), 'maxRows');
  }
  buf('sample params', 'scratch', SampleOp.PARAMS_BYTES, 'vocab_size', false);
  buf('sample result', 'scratch', 16, 'vocab_size');
  if (S > 0 && opts.learn !== false) {
    // The inner step (ttt-e2e-inner-step.ts): its chunk uniform, its buffers, and what its ops make for themselves.
    buf('inner step block params', 'scratch', 16, 'mini_batch_size', false);
    for (const b of innerStepBuffers(c)) buf(`inner step: ${b.name}`, 'innerStep', 4 * b.floats, b.name === 'dθ' ? 'intermediate_size_dynamic_mlp' : 'mini_batch_size');
    for (const b of headLossBuffers({ rows: B, d, vocab: V, maxBindingBytes: layout.maxBindingBytes })) buf(`inner step: ${b.name}`, b.category, 4 * b.floats, b.name === 'logits tile' ? 'vocab_size' : 'mini_batch_size');
    for (let j = 0; j < S; j++) {
      const L = `inner step block ${c.firstTttLayer + j}`;
      // The attention's forward and backward rope from turn tables of their own, uniforms of vec4 words.
      for (const r of ['q/k norm + rope + attention', 'attention + rope + q/k norm backward']) buf(`${L} ${r} rope turns`, 'weights', 16 * Math.ceil(c.headDim / 4), 'head_dim');
      // The RMSNorm backward launches of the block, each with its r [B]: mlp_norm + dyn_post_norm,
      // dyn_norm + attn_post_norm, attn_norm above the lowest block, and mlp_post_norm below the top
      // block (the top one's runs in the head's last launch, whose r headLossBuffers counts).
      const norms = 2 + (j > 0 ? 1 : 0) + (j < S - 1 ? 1 : 0);
      for (let n = 0; n < norms; n++) buf(`${L} norm backward r`, 'scratch', 4 * B, 'mini_batch_size');
    }
    const slots = Math.max(1, Math.min(1024, Math.ceil((S * thetaBlockFloats(c)) / (64 * 16))));
    buf('inner step clip partials', 'scratch', 4 * slots, 'intermediate_size_dynamic_mlp');
    buf('inner step clip stats', 'scratch', 16, 'intermediate_size_dynamic_mlp');
  }
  return out;
}
