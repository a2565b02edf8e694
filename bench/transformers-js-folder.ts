/**
 * The benchmark's full-attention model as a model folder transformers.js loads offline: the same weights
 * our engine and the ORT contenders run, under a Llama-architecture config.json, with a byte-level
 * tokenizer.json and the `shared` KV-cache graph of train/export_onnx.py (onnxruntime-genai's and
 * transformers.js's input/output names; GroupQueryAttention; last-row logits) whose external data is
 * `onnx/model.onnx_data`, which transformers.js fetches beside the graph (`use_external_data_format`).
 * model.onnx_data is byte for byte the model.safetensors our engine loads: the graph's references point
 * at offsets inside it.
 *
 * Only the weights are written at run time; the graph and its export record are the fixture in
 * test/fixtures/transformers-js-llama/ (checked against the weights here by sha256).
 *
 * Differences from a Llama that a reader should know: the model has q/k RMSNorm over the full width
 * before RoPE (the ONNX graph computes it; transformers.js never looks inside the graph), one fused qkv
 * projection, and vocabulary 258 (bytes, BOS, EOS).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bytesToUnicode } from '../test/model/model-files.ts';
import { sha256 } from './model-folder.ts';
import { BENCH_CONFIGS, benchModelFiles } from './models.ts';
import { TRANSFORMERS_JS_MODEL_NAME } from './transformers-js-core.ts';

export const TRANSFORMERS_JS_FIXTURE = fileURLToPath(new URL('../test/fixtures/transformers-js-llama/', import.meta.url));

/** config.json as transformers.js reads it for a decoder: the cache shape comes from here. */
export function llamaConfig(maxPositions: number): Record<string, unknown> {
  const c = BENCH_CONFIGS['full-attention'];
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attn_heads,
    num_key_value_heads: c.num_attn_heads,
    head_dim: c.hidden_size / c.num_attn_heads,
    vocab_size: c.vocab_size,
    max_position_embeddings: maxPositions,
    rope_theta: c.rope_theta,
    rms_norm_eps: c.norm_eps,
    hidden_act: 'silu',
    bos_token_id: c.bos_token_id,
    eos_token_id: c.eos_token_id,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    'transformers.js_config': { dtype: 'fp32', use_external_data_format: 1 },
  };
}

/** A byte-level tokenizer.json: ids 0..255 are the bytes (no merges), 256 BOS, 257 EOS. */
export function byteTokenizerJson(): Record<string, unknown> {
  const c = BENCH_CONFIGS['full-attention'];
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[b2u[b]] = b;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(c.bos_token_id, '<s>'), special(c.eos_token_id, '</s>')],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

interface ExportRecord {
  readonly safetensors_sha256: string;
  readonly max_positions: number;
  readonly inputs: readonly string[];
}

/** Writes `<dir>/bench-llama/` (config, generation config, tokenizer, onnx/model.onnx + model.onnx_data). */
export async function writeTransformersJsFolder(dir: string): Promise<{ folder: string; maxPositions: number }> {
  const files = benchModelFiles('full-attention');
  const record = JSON.parse(await readFile(join(TRANSFORMERS_JS_FIXTURE, 'onnx/model.onnx.json'), 'utf8')) as ExportRecord;
  if (record.safetensors_sha256 !== sha256(files.safetensors)) {
    throw new Error('test/fixtures/transformers-js-llama/onnx/model.onnx was exported from other weights than bench/models.ts gives now: re-export it (see its README.md)');
  }
  const folder = join(dir, TRANSFORMERS_JS_MODEL_NAME);
  await mkdir(join(folder, 'onnx'), { recursive: true });
  const c = BENCH_CONFIGS['full-attention'];
  const json = (v: unknown) => `${JSON.stringify(v, null, 1)}\n`;
  await writeFile(join(folder, 'config.json'), json(llamaConfig(record.max_positions)));
  await writeFile(join(folder, 'generation_config.json'), json({ bos_token_id: c.bos_token_id, eos_token_id: c.eos_token_id, do_sample: false }));
  await writeFile(join(folder, 'tokenizer.json'), json(byteTokenizerJson()));
  await writeFile(join(folder, 'tokenizer_config.json'), json({ tokenizer_class: 'PreTrainedTokenizerFast', bos_token: '<s>', eos_token: '</s>', model_max_length: record.max_positions, clean_up_tokenization_spaces: false }));
  await writeFile(join(folder, 'onnx/model.onnx'), await readFile(join(TRANSFORMERS_JS_FIXTURE, 'onnx/model.onnx')));
  await writeFile(join(folder, 'onnx/model.onnx_data'), files.safetensors);
  return { folder, maxPositions: record.max_positions };
}
