/**
 * The benchmark models: one shape, four mixers (LaCT, TTT-E2E, sliding window only, full attention),
 * random weights. The TTT-E2E model has the same width, depth, heads, MLP width, window and chunk as the
 * LaCT one; its top block is a TTT block (S = 1: a dynamic MLP of the same width that learns every chunk).
 */
import { writeSafetensors, type TensorToWrite } from '../src/model/safetensors-writer.ts';
import { randomModel } from '../test/helpers/random-model.ts';
import { randomE2EModel } from '../test/helpers/random-e2e-model.ts';

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

export const BENCH_E2E = {
  model_type: 'ttt_e2e',
  vocab_size: BENCH_BASE.vocab_size,
  hidden_size: BENCH_BASE.hidden_size,
  num_heads: BENCH_BASE.num_attn_heads,
  head_dim: BENCH_BASE.hidden_size / BENCH_BASE.num_attn_heads,
  intermediate_size_static_mlp: BENCH_BASE.intermediate_size,
  intermediate_size_dynamic_mlp: BENCH_BASE.intermediate_size,
  num_layers: BENCH_BASE.num_hidden_layers,
  num_ttt_layers: 1,
  mini_batch_size: BENCH_BASE.lact_chunk_size,
  sliding_window: BENCH_BASE.window_size,
  rope_theta: BENCH_BASE.rope_theta,
  rms_norm_eps: BENCH_BASE.norm_eps,
  bos_token_id: BENCH_BASE.bos_token_id,
  eos_token_id: BENCH_BASE.eos_token_id,
  inner_lr: 1,
  inner_clip_global_norm: 1,
  tie_word_embeddings: true,
  tokenizer: 'byte',
};

/** The raw config.json of each benchmark model (bench/model-folder.ts writes them to disk). */
export const BENCH_CONFIGS = {
  ttt: { ...BENCH_BASE },
  'ttt-e2e': BENCH_E2E,
  'sliding-window': { ...BENCH_BASE, use_fast_weights: false },
  'full-attention': { ...BENCH_BASE, use_fast_weights: false, window_size: null },
} as const;

/** The seed of every benchmark model: the three share their attention and MLP weights. */
export const BENCH_SEED = 11;

export type BenchMode = keyof typeof BENCH_CONFIGS;

export const BENCH_MODELS = {
  ttt: randomModel(BENCH_CONFIGS.ttt, BENCH_SEED),
  'ttt-e2e': randomE2EModel(BENCH_E2E, BENCH_SEED),
  'sliding-window': randomModel(BENCH_CONFIGS['sliding-window'], BENCH_SEED),
  'full-attention': randomModel(BENCH_CONFIGS['full-attention'], BENCH_SEED),
} as const;

export interface ModelFolderFiles {
  /** config.json text. */
  readonly config: string;
  /** model.safetensors bytes (every tensor F32). */
  readonly safetensors: Uint8Array<ArrayBuffer>;
}

/** The files of one benchmark model, in memory (ORT can take the weights as bytes without a disk). */
export function benchModelFiles(mode: BenchMode): ModelFolderFiles {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of BENCH_MODELS[mode].weights) tensors.set(name, { dtype: 'F32', shape: t.shape, data: t.data });
  return {
    config: `${JSON.stringify(BENCH_CONFIGS[mode], null, 2)}\n`,
    // The metadata says where the weights came from; it is part of the bytes, so keep it stable.
    safetensors: writeSafetensors(tensors, { metadata: { format: 'pt', source: `ttt-web bench/models.ts ${mode} seed ${BENCH_SEED}` } }),
  };
}
