/**
 * Seeded random TTT-E2E models for tests, at the scales of the golden fixtures
 * (train/make_e2e_fixtures.py): norm gains 1 + 0.2·N(0, 1), linear weights N(0, 1/fan_in), embedding
 * N(0, 0.3²). Every path matters numerically at these scales.
 */
import type { TensorF32 } from '../../src/model/config.ts';
import { e2eExpectedTensors, parseE2EConfig, type E2EConfig } from '../../src/model/e2e-config.ts';
import { gaussian, rng } from './random-model.ts';

/** mulberry32 → uniform [0, 1). */
export const uniformRng = rng;

/** Standard normal samples (Box–Muller) from a seeded uniform source. */
export function normalRng(seed: number): () => number {
  return gaussian(rng(seed));
}


/** The fixtures' tiny shape (tiny-e2e-s2) as config.json keys, for tests to override. */
export const TINY_E2E = {
  model_type: 'ttt_e2e',
  vocab_size: 256,
  hidden_size: 32,
  num_heads: 2,
  head_dim: 16,
  intermediate_size_static_mlp: 64,
  intermediate_size_dynamic_mlp: 64,
  num_layers: 4,
  num_ttt_layers: 2,
  mini_batch_size: 16,
  sliding_window: 24,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  bos_token_id: 1,
  eos_token_id: 2,
  inner_lr: 1,
  inner_clip_global_norm: 2,
  tie_word_embeddings: true,
  tokenizer: 'byte',
} as const;

/** Every tensor `rawConfig` implies, random (f32-representable values, as a checkpoint holds). */
export function randomE2EModel(rawConfig: Record<string, unknown>, seed = 1): { config: E2EConfig; weights: Map<string, TensorF32> } {
  const config = parseE2EConfig(rawConfig, 'random-e2e-model');
  const n = normalRng(seed);
  const weights = new Map<string, TensorF32>();
  for (const [name, shape] of e2eExpectedTensors(config)) {
    const numel = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(numel);
    const norm = name.endsWith('norm.weight');
    const std = name === 'model.embed.weight' ? 0.3 : 1 / Math.sqrt(shape[shape.length - 1]);
    for (let i = 0; i < numel; i++) data[i] = norm ? 1 + 0.2 * n() : std * n();
    weights.set(name, { shape, data });
  }
  return { config, weights };
}
