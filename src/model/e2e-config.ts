/**
 * config.json → a validated `E2EConfig` for the TTT-E2E family (model_type "ttt_e2e"), the tensors a
 * config implies, and why each is (or is not) wanted: the family's `ConfigFormat`.
 *
 * The keys and the validation are exactly those of the PyTorch twin, `train/e2e/config.py`
 * (`E2EConfig.from_dict` + `validate`): every key has the twin's default when absent, `tied_head` (the
 * spec's hyperparameter-JSON name) is read as an alias of `tie_word_embeddings`, unknown keys are kept
 * (in `extra`) and not interpreted. Spec: `shared/spec/ttt-e2e-language-model.md`.
 *
 * Where JSON and Python differ the parser is stricter, never looser:
 *   - integer keys must be JSON integers (Python also refuses floats and booleans there; JSON cannot
 *     tell 16 from 16.0, so 16.0 is accepted here);
 *   - `num_ttt_layers` must be an integer (Python only range-checks it, then fails later on a float);
 *   - `bos_token_id` / `eos_token_id` must not be booleans (Python's bool is an int);
 *   - the float keys must be JSON numbers (Python's `float()` would also take a numeric string).
 *
 * Registered in `model-config.ts`; the engine's family is src/families/ttt-e2e.ts.
 */
import type { ConfigFormat } from './config-format.ts';
import { ConfigError } from './errors.ts';

export interface E2EConfig {
  /** Which model family's engine runs it (the engine's family registry is keyed by it). */
  readonly family: 'ttt-e2e';
  /** Always "ttt_e2e". */
  readonly modelType: string;
  /** V */
  readonly vocabSize: number;
  /** d */
  readonly hiddenSize: number;
  /** H: attention heads (plain multi-head, no GQA). */
  readonly numHeads: number;
  /** hd = d / H (checked), even (rotary pairs). */
  readonly headDim: number;
  /** f of the static SwiGLU MLP of every block. */
  readonly intermediateSizeStaticMlp: number;
  /** f of the dynamic SwiGLU MLP of the TTT blocks. */
  readonly intermediateSizeDynamicMlp: number;
  /** L */
  readonly numLayers: number;
  /** S: the last S blocks are TTT blocks, 0 ≤ S ≤ L. */
  readonly numTttLayers: number;
  /** L − S: the index of the first TTT block (= numLayers when S = 0). */
  readonly firstTttLayer: number;
  /** B: the inner-loop chunk. */
  readonly miniBatchSize: number;
  /** W: query p sees keys p − W < j ≤ p. */
  readonly slidingWindow: number;
  /** Base of the interleaved RoPE. */
  readonly ropeTheta: number;
  /** eps of every RMSNorm. */
  readonly rmsNormEps: number;
  /** Targets equal to BOS are skipped by the inner loss. */
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  /** η of the inner SGD step (≥ 0). */
  readonly innerLr: number;
  /** Max norm of the ONE global clip; ≤ 0: no clip. */
  readonly innerClipGlobalNorm: number;
  /** Always true: logits = norm(h) @ E^T. */
  readonly tieWordEmbeddings: true;
  /** "byte" (ids 0..255 are bytes) or "tokenizer.json". */
  readonly tokenizer: 'byte' | 'tokenizer.json';
  /** Keys the twin keeps but does not interpret (written back unchanged by the twin). */
  readonly extra: Readonly<Record<string, unknown>>;
}

type Json = Record<string, unknown>;

/** The twin's dataclass defaults (`train/e2e/config.py`): the official 125M shape with a byte vocabulary. */
export const E2E_DEFAULTS = {
  vocab_size: 256,
  hidden_size: 768,
  num_heads: 12,
  head_dim: 64,
  intermediate_size_static_mlp: 1664,
  intermediate_size_dynamic_mlp: 1664,
  num_layers: 12,
  num_ttt_layers: 3,
  mini_batch_size: 1024,
  sliding_window: 8192,
  rope_theta: 500000.0,
  rms_norm_eps: 1e-6,
  bos_token_id: 1,
  eos_token_id: 2,
  inner_lr: 1.0,
  inner_clip_global_norm: 1.0,
  tie_word_embeddings: true,
  tokenizer: 'byte',
  model_type: 'ttt_e2e',
} as const;

const KNOWN = new Set(Object.keys(E2E_DEFAULTS));

/** The positive-integer keys, in the twin's validation order. */
const POSITIVE_INT_KEYS = [
  'vocab_size', 'hidden_size', 'num_heads', 'head_dim', 'intermediate_size_static_mlp',
  'intermediate_size_dynamic_mlp', 'num_layers', 'mini_batch_size', 'sliding_window',
] as const;

const FLOAT_KEYS = ['rope_theta', 'rms_norm_eps', 'inner_lr', 'inner_clip_global_norm'] as const;

const show = (v: unknown): string => (v === undefined ? 'undefined' : JSON.stringify(v));
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** Index of the first TTT block, and whether block i is one. */
export function isE2ETttLayer(c: Pick<E2EConfig, 'firstTttLayer'>, i: number): boolean {
  return i >= c.firstTttLayer;
}

/** config.json (a parsed JSON object) → a validated E2EConfig; ConfigError naming the key otherwise. */
export function parseE2EConfig(raw: unknown, source?: string): E2EConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('(root)', 'config.json must hold a JSON object', source);
  }
  // from_dict: known keys (the `tied_head` alias too; in key order, so a later one wins, as in Python), the rest kept.
  const kw: Json = { ...E2E_DEFAULTS };
  const extra: Json = {};
  for (const [k, v] of Object.entries(raw as Json)) {
    if (k === 'tied_head') kw.tie_word_embeddings = v;
    else if (KNOWN.has(k)) kw[k] = v;
    else extra[k] = v;
  }
  for (const k of FLOAT_KEYS) {
    const v = kw[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(k, `must be a number, got ${show(v)}`, source);
  }

  // validate(), in the twin's order.
  if (kw.model_type !== 'ttt_e2e') throw new ConfigError('model_type', `must be "ttt_e2e", got ${show(kw.model_type)}`, source);
  for (const k of POSITIVE_INT_KEYS) {
    const v = kw[k];
    if (!isInt(v) || v < 1) throw new ConfigError(k, `must be a positive integer, got ${show(v)}`, source);
  }
  const n = (k: string) => kw[k] as number;
  const d = n('hidden_size'), H = n('num_heads'), hd = n('head_dim'), L = n('num_layers');
  if (H * hd !== d) {
    throw new ConfigError('head_dim', `num_heads * head_dim (${H} * ${hd}) must equal hidden_size ${d}`, source);
  }
  if (hd % 2 !== 0) throw new ConfigError('head_dim', `${hd} must be even for rotary embeddings`, source);
  const S = kw.num_ttt_layers;
  if (!isInt(S) || S < 0 || S > L) throw new ConfigError('num_ttt_layers', `must be an integer in 0..num_layers (${L}), got ${show(S)}`, source);
  if (kw.tie_word_embeddings !== true) {
    throw new ConfigError('tie_word_embeddings', `must be true (the TTT-E2E head is the embedding), got ${show(kw.tie_word_embeddings)}`, source);
  }
  const tok = kw.tokenizer;
  if (tok !== 'byte' && tok !== 'tokenizer.json') throw new ConfigError('tokenizer', `must be "byte" or "tokenizer.json", got ${show(tok)}`, source);
  const V = n('vocab_size');
  if (tok === 'byte' && V < 256) throw new ConfigError('vocab_size', `a byte-level model needs vocab_size >= 256, got ${V}`, source);
  for (const k of ['bos_token_id', 'eos_token_id']) {
    const v = kw[k];
    if (!isInt(v) || v < 0 || v >= V) throw new ConfigError(k, `must be an id inside the vocabulary [0, ${V}), got ${show(v)}`, source);
  }
  if (!(n('inner_lr') >= 0)) throw new ConfigError('inner_lr', `must be >= 0, got ${n('inner_lr')}`, source);
  if (!(n('rms_norm_eps') > 0)) throw new ConfigError('rms_norm_eps', `must be > 0, got ${n('rms_norm_eps')}`, source);
  if (!(n('rope_theta') > 0)) throw new ConfigError('rope_theta', `must be > 0, got ${n('rope_theta')}`, source);

  return {
    family: 'ttt-e2e',
    modelType: 'ttt_e2e',
    vocabSize: V,
    hiddenSize: d,
    numHeads: H,
    headDim: hd,
    intermediateSizeStaticMlp: n('intermediate_size_static_mlp'),
    intermediateSizeDynamicMlp: n('intermediate_size_dynamic_mlp'),
    numLayers: L,
    numTttLayers: S,
    firstTttLayer: L - S,
    miniBatchSize: n('mini_batch_size'),
    slidingWindow: n('sliding_window'),
    ropeTheta: n('rope_theta'),
    rmsNormEps: n('rms_norm_eps'),
    bosTokenId: n('bos_token_id'),
    eosTokenId: n('eos_token_id'),
    innerLr: n('inner_lr'),
    innerClipGlobalNorm: n('inner_clip_global_norm'),
    tieWordEmbeddings: true,
    tokenizer: tok,
    extra,
  };
}

/** name → shape of every tensor of a project-form checkpoint (linear weights [out, in]), in the twin's order. */
export function e2eExpectedTensors(c: E2EConfig): Map<string, number[]> {
  const d = c.hiddenSize, hd = c.headDim, f = c.intermediateSizeStaticMlp, fd = c.intermediateSizeDynamicMlp, V = c.vocabSize;
  const m = new Map<string, number[]>();
  m.set('model.embed.weight', [V, d]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(p + 'attn_norm.weight', [d]);
    m.set(p + 'attn.q_proj.weight', [d, d]);
    m.set(p + 'attn.k_proj.weight', [d, d]);
    m.set(p + 'attn.v_proj.weight', [d, d]);
    m.set(p + 'attn.o_proj.weight', [d, d]);
    m.set(p + 'attn.q_norm.weight', [hd]);
    m.set(p + 'attn.k_norm.weight', [hd]);
    m.set(p + 'attn_post_norm.weight', [d]);
    if (isE2ETttLayer(c, i)) {
      m.set(p + 'dyn_norm.weight', [d]);
      m.set(p + 'dyn_mlp.w1.weight', [fd, d]);
      m.set(p + 'dyn_mlp.w3.weight', [fd, d]);
      m.set(p + 'dyn_mlp.w2.weight', [d, fd]);
      m.set(p + 'dyn_post_norm.weight', [d]);
    }
    m.set(p + 'mlp_norm.weight', [d]);
    m.set(p + 'mlp.w1.weight', [f, d]);
    m.set(p + 'mlp.w3.weight', [f, d]);
    m.set(p + 'mlp.w2.weight', [d, f]);
    m.set(p + 'mlp_post_norm.weight', [d]);
  }
  m.set('model.norm.weight', [d]);
  return m;
}

const LAYER = /^model\.layers\.(\d+)\.(.+)$/;
const DYN = /^dyn_(norm|post_norm|mlp\.w[123])\.weight$/;

function tttRange(c: E2EConfig): string {
  return c.numTttLayers === 0 ? 'no block is a TTT block' : `blocks ${c.firstTttLayer}..${c.numLayers - 1} are the TTT blocks`;
}

/** Why the config requires `name`, for MissingTensorError. */
export function e2eTensorRequirement(c: E2EConfig, name: string): string {
  const m = LAYER.exec(name);
  if (m) {
    const layer = `layer ${m[1]} of num_layers=${c.numLayers}`;
    if (DYN.test(m[2])) {
      return `required by num_ttt_layers=${c.numTttLayers} (${tttRange(c)}: the dynamic MLP${m[2].startsWith('dyn_mlp') ? "'s initial weights" : "'s norm"}), in ${layer}`;
    }
    return `required by every block, in ${layer}`;
  }
  if (name === 'model.embed.weight') return 'the token embedding table (also the tied output head), required by every model';
  if (name === 'model.norm.weight') return 'the final RMSNorm, required by every model';
  return 'required by the config';
}

/** Why a tensor the file holds is not wanted, when a config key (or the file's naming) explains it. */
export function e2eUnexpectedHint(c: E2EConfig, name: string): string | null {
  const m = LAYER.exec(name);
  if (m) {
    if (Number(m[1]) >= c.numLayers) return `layer ${m[1]}, but num_layers=${c.numLayers}`;
    if (DYN.test(m[2])) return `the config has num_ttt_layers=${c.numTttLayers}: ${tttRange(c)}`;
    return null;
  }
  if (name === 'lm_head.weight') return 'the TTT-E2E head is tied to model.embed.weight (tie_word_embeddings=true)';
  if (name.startsWith('language_model.')) return 'an official JAX tree name: convert the checkpoint with train/convert_e2e.py first';
  return null;
}

/** The TTT-E2E config format (registered in src/model/model-config.ts). */
export const E2E_CONFIG: ConfigFormat<E2EConfig> = {
  family: 'ttt-e2e',
  claims: (raw) => raw.model_type === 'ttt_e2e',
  parse: parseE2EConfig,
  expectedTensors: e2eExpectedTensors,
  tensorRequirement: e2eTensorRequirement,
  unexpectedHint: e2eUnexpectedHint,
};
