/** The benchmark models: one shape, three mixers (TTT, sliding window only, full attention), random weights. */
import { randomModel } from '../test/helpers/random-model.ts';

export const BENCH_BASE = {
  vocab_size: 258,
  hidden_size: 128,
  num_hidden_layers: 2,
  num_attn_heads: 4,
  num_lact_heads: 2,
  inter_multi: 1,
  lact_chunk_size: 256,
  window_size: 256,
  use_momentum: true,
  use_muon: true,
  w0_w2_low_rank: 8,
  learnable_ttt_scale: true,
  qkv_silu: true,
  attn_qk_norm: true,
  qkv_bias: false,
  intermediate_size: 256,
  rope_theta: 10000,
  norm_eps: 1e-6,
  bos_token_id: 256,
  eos_token_id: 257,
  tokenizer: 'byte',
};

export const BENCH_MODELS = {
  ttt: randomModel({ ...BENCH_BASE }, 11),
  'sliding-window': randomModel({ ...BENCH_BASE, use_fast_weights: false }, 11),
  'full-attention': randomModel({ ...BENCH_BASE, use_fast_weights: false, window_size: null }, 11),
} as const;
