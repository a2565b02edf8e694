/** Seeded random models for tests: every tensor the config requires, at scales where every path matters. */
import { expectedTensors, parseConfig, type LactConfig, type TensorF32 } from '../../src/model/config.ts';

/** mulberry32: small, fast, deterministic. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(r: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

export const TINY_BASE = {
  vocab_size: 258,
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attn_heads: 2,
  num_lact_heads: 2,
  lact_chunk_size: 16,
  window_size: 16,
  rope_theta: 10000,
  norm_eps: 1e-6,
  bos_token_id: 256,
  eos_token_id: 257,
  tokenizer: 'byte',
  intermediate_size: 96,
} as const;

export const ALL_ON = {
  ...TINY_BASE, use_momentum: true, use_muon: true, w0_w2_low_rank: 4, learnable_ttt_scale: true, qkv_silu: true,
  attn_qk_norm: true, qkv_bias: true, inter_multi: 2, window_size: 24,
};
export const ALL_OFF = {
  ...TINY_BASE, use_momentum: false, use_muon: false, w0_w2_low_rank: -1, learnable_ttt_scale: false, qkv_silu: false,
  attn_qk_norm: false, qkv_bias: false, tie_word_embeddings: true,
};
export const SWA_ONLY = { ...TINY_BASE, use_fast_weights: false };
export const FULL_ATTN = { ...TINY_BASE, use_fast_weights: false, window_size: null };

function scaleFor(name: string): { mean: number; std: number } {
  if (/norm\.weight$/.test(name) || name.endsWith('ttt_norm.weight')) return { mean: 1, std: 0.2 };
  if (name.endsWith('qk_scale')) return { mean: 1, std: 0.2 };
  if (name.endsWith('qk_offset')) return { mean: 0, std: 0.1 };
  if (name.endsWith('lr_proj.bias')) return { mean: 5, std: 0.5 };
  if (name.endsWith('lr_proj.weight')) return { mean: 0, std: 0.02 };
  if (name.endsWith('momentum_proj.0.bias')) return { mean: 1, std: 0.3 };
  if (name.endsWith('ttt_scale_proj.bias')) return { mean: 1, std: 0.2 };
  if (/attn\.w[012]/.test(name)) return { mean: 0, std: 0.2 };
  return { mean: 0, std: 0.15 };
}

export function randomModel(rawConfig: Record<string, unknown>, seed = 1): { config: LactConfig; weights: Map<string, TensorF32> } {
  const config = parseConfig(rawConfig, 'random-model');
  const g = gaussian(rng(seed));
  const weights = new Map<string, TensorF32>();
  for (const [name, shape] of expectedTensors(config)) {
    const { mean, std } = scaleFor(name);
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = mean + std * g();
    weights.set(name, { shape, data });
  }
  return { config, weights };
}
