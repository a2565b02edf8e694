/**
 * config.json → a validated, normalised `LactConfig`.
 *
 * Keys are those that LaCT's official `LaCTSWIGLUConfig` writes, so an official checkpoint's config loads
 * unchanged. Two ttt-web extensions describe the baselines with the same layer:
 *   - `window_size: null`     → no window (full causal attention), as in the official layer;
 *   - `use_fast_weights: false` → the fast-weight branch is off (sliding-window only, or full attention);
 *   - `fw_own_qkv: true`      → the fast-weight branch reads q, k, v from a projection of its own
 *                               (`attn.fw_qkv.weight` [3D, D], no bias, no q/k norm) instead of attention's.
 * And one names the tokenizer: `tokenizer: "byte"` (256 bytes + specials); otherwise `tokenizer.json`.
 */
import { ConfigError } from './errors.ts';

export interface LactConfig {
  /** Which model family's engine runs it (the engine's family registry is keyed by it). */
  readonly family: 'lact';
  readonly modelType: string;
  readonly vocabSize: number;
  /** D */
  readonly hiddenSize: number;
  readonly numLayers: number;
  /** Ha: attention heads. */
  readonly numAttnHeads: number;
  /** da = D / Ha. */
  readonly attnHeadDim: number;
  /** Hf: fast-weight heads. */
  readonly numFwHeads: number;
  /** df = D / Hf. */
  readonly fwHeadDim: number;
  /** dh = int(df * inter_multi): the fast-weight MLP's hidden size. */
  readonly fwHidden: number;
  /** I: the block MLP's intermediate size. */
  readonly intermediateSize: number;
  /** W: attention window in tokens; null = full causal attention. */
  readonly windowSize: number | null;
  /** C: fast-weight chunk size. */
  readonly chunkSize: number;
  readonly useFastWeights: boolean;
  /** The fast-weight branch's own q|k|v projection (train.py's --fw-own-qkv); false: it shares attention's. */
  readonly fwOwnQkv: boolean;
  readonly qkvBias: boolean;
  readonly attnQkNorm: boolean;
  readonly qkvSilu: boolean;
  readonly useMuon: boolean;
  readonly useMomentum: boolean;
  readonly learnableTttScale: boolean;
  /** r > 0: initial W0/W2 are low rank plus 0.5·I; otherwise full tensors. */
  readonly w0w2LowRank: number;
  readonly ropeTheta: number;
  readonly normEps: number;
  readonly tieWordEmbeddings: boolean;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** "byte" for the project's own byte-level models, "tokenizer.json" for a Hugging Face tokenizer. */
  readonly tokenizer: 'byte' | 'tokenizer.json';
}

type Json = Record<string, unknown>;

/**
 * A config value for a message: its JSON, shortened. Never throws: JSON.parse reads arrays nested deeper
 * than JSON.stringify's recursion can write, and a message must not turn a ConfigError into a RangeError.
 */
function show(v: unknown, max = 200): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    return 'a value nested too deeply to show';
  }
  if (s === undefined) return String(v);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

function intKey(cfg: Json, key: string, source: string | undefined, def?: number, min = 1, max = 1 << 24): number {
  const v = cfg[key] ?? def;
  if (v === undefined) throw new ConfigError(key, 'is required', source);
  if (!isInt(v)) throw new ConfigError(key, `must be an integer, got ${show(v)}`, source);
  if (v < min) throw new ConfigError(key, `must be at least ${min}, got ${v}`, source);
  if (v > max) throw new ConfigError(key, `is implausibly large (${v}; at most ${max})`, source);
  return v;
}

/**
 * The most blocks a config may have. Each implies about 20 tensors that the loader lists before it reads
 * the file (expectedTensors), so a huge count would stall the loader for seconds (100k layers) or end in
 * a RangeError from Map (a million), where a ConfigError belongs. Real models have a few hundred at most.
 */
const MAX_LAYERS = 1 << 12;

function boolKey(cfg: Json, key: string, def: boolean, source: string | undefined): boolean {
  const v = cfg[key] ?? def;
  if (typeof v !== 'boolean') throw new ConfigError(key, `must be true or false, got ${show(v)}`, source);
  return v;
}

function posNumKey(cfg: Json, key: string, def: number, source: string | undefined): number {
  const v = cfg[key] ?? def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(key, `must be a positive finite number, got ${show(v)}`, source);
  }
  return v;
}

function optTokenId(cfg: Json, key: string, vocab: number, source: string | undefined): number | null {
  const v = cfg[key];
  if (v === undefined || v === null) return null;
  if (!isInt(v) || v < 0 || v >= vocab) {
    throw new ConfigError(key, `must be a token id in [0, ${vocab}), got ${show(v)}`, source);
  }
  return v;
}

function mustEqual(cfg: Json, key: string, allowed: readonly unknown[], source: string | undefined): void {
  if (!(key in cfg) || cfg[key] === null) return;
  if (!allowed.includes(cfg[key])) {
    throw new ConfigError(key, `${show(cfg[key])} is not supported (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`, source);
  }
}

/** The official GatedMLP width rule: 256 * ceil(int(D * hidden_ratio * 2/3) / 256). */
function defaultIntermediateSize(hiddenSize: number, hiddenRatio: number): number {
  const raw = Math.trunc((hiddenSize * hiddenRatio * 2) / 3);
  return 256 * Math.ceil(raw / 256);
}

/** Parses and validates a config.json object. `source` names the file in error messages. */
export function parseConfig(raw: unknown, source?: string): LactConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('(root)', 'config.json must hold a JSON object', source);
  }
  const cfg = raw as Json;

  const vocabSize = intKey(cfg, 'vocab_size', source);
  const hiddenSize = intKey(cfg, 'hidden_size', source);
  const numLayers = intKey(cfg, 'num_hidden_layers', source, undefined, 1, MAX_LAYERS);
  const numAttnHeads = intKey(cfg, 'num_attn_heads', source);
  const useFastWeights = boolKey(cfg, 'use_fast_weights', true, source);
  const numFwHeads = intKey(cfg, 'num_lact_heads', source, 4);
  const chunkSize = intKey(cfg, 'lact_chunk_size', source, 2048);

  if (hiddenSize % numAttnHeads !== 0) {
    throw new ConfigError('num_attn_heads', `${numAttnHeads} does not divide hidden_size ${hiddenSize}`, source);
  }
  const attnHeadDim = hiddenSize / numAttnHeads;
  if (attnHeadDim % 2 !== 0) {
    throw new ConfigError('num_attn_heads', `head dim ${attnHeadDim} must be even for rotary embeddings`, source);
  }
  if (hiddenSize % numFwHeads !== 0) {
    throw new ConfigError('num_lact_heads', `${numFwHeads} does not divide hidden_size ${hiddenSize}`, source);
  }
  const fwHeadDim = hiddenSize / numFwHeads;

  const interMulti = posNumKey(cfg, 'inter_multi', 1, source);
  const fwHidden = Math.trunc(fwHeadDim * interMulti);
  if (fwHidden < 1) throw new ConfigError('inter_multi', `gives a fast-weight hidden size of ${fwHidden}`, source);

  let intermediateSize: number;
  if (cfg.intermediate_size !== undefined && cfg.intermediate_size !== null) {
    intermediateSize = intKey(cfg, 'intermediate_size', source);
  } else {
    intermediateSize = defaultIntermediateSize(hiddenSize, posNumKey(cfg, 'hidden_ratio', 4, source));
  }

  let windowSize: number | null;
  if (cfg.window_size === null) windowSize = null;
  else windowSize = intKey(cfg, 'window_size', source, 2048);

  const w0w2LowRank = intKey(cfg, 'w0_w2_low_rank', source, -1, -1);
  if (w0w2LowRank === 0) throw new ConfigError('w0_w2_low_rank', 'must be -1 (full) or a positive rank, got 0', source);

  // Options the official layer accepts but implements only one way.
  mustEqual(cfg, 'lr_dim', [1], source);
  mustEqual(cfg, 'lr_parameterization', ['mamba'], source);
  mustEqual(cfg, 'ttt_loss_type', ['dot_product'], source);
  mustEqual(cfg, 'ttt_prenorm', [false], source);
  // Variants of the official layer that the spec (and so every engine here) does not implement:
  // refusing them beats silently computing a different model.
  mustEqual(cfg, 'no_v_silu', [false], source);
  mustEqual(cfg, 'ttt_nope', [false], source);
  mustEqual(cfg, 'hidden_act', ['swish', 'silu'], source);

  const tok = cfg.tokenizer ?? 'tokenizer.json';
  if (tok !== 'byte' && tok !== 'tokenizer.json') {
    throw new ConfigError('tokenizer', `must be "byte" or "tokenizer.json", got ${show(tok)}`, source);
  }
  if (tok === 'byte' && vocabSize < 256) {
    throw new ConfigError('vocab_size', `a byte-level model needs at least 256 tokens, got ${vocabSize}`, source);
  }

  const fwOwnQkv = boolKey(cfg, 'fw_own_qkv', false, source);
  if (fwOwnQkv && !useFastWeights) throw new ConfigError('fw_own_qkv', 'needs the fast-weight branch (use_fast_weights: true)', source);

  const modelType = cfg.model_type ?? 'lact_swiglu';
  if (typeof modelType !== 'string') throw new ConfigError('model_type', 'must be a string', source);

  return {
    family: 'lact',
    modelType,
    vocabSize,
    hiddenSize,
    numLayers,
    numAttnHeads,
    attnHeadDim,
    numFwHeads,
    fwHeadDim,
    fwHidden,
    intermediateSize,
    windowSize,
    chunkSize,
    useFastWeights,
    fwOwnQkv,
    qkvBias: boolKey(cfg, 'qkv_bias', false, source),
    attnQkNorm: boolKey(cfg, 'attn_qk_norm', false, source),
    qkvSilu: boolKey(cfg, 'qkv_silu', true, source),
    useMuon: boolKey(cfg, 'use_muon', false, source),
    useMomentum: boolKey(cfg, 'use_momentum', true, source),
    learnableTttScale: boolKey(cfg, 'learnable_ttt_scale', true, source),
    w0w2LowRank,
    ropeTheta: posNumKey(cfg, 'rope_theta', 10000, source),
    normEps: posNumKey(cfg, 'norm_eps', 1e-6, source),
    tieWordEmbeddings: boolKey(cfg, 'tie_word_embeddings', false, source),
    bosTokenId: optTokenId(cfg, 'bos_token_id', vocabSize, source),
    eosTokenId: optTokenId(cfg, 'eos_token_id', vocabSize, source),
    tokenizer: tok,
  };
}

/** A tensor already converted to f32, as the reference and the uploader consume it. */
export interface TensorF32 {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Tensors by their official checkpoint names. */
export type WeightMap = ReadonlyMap<string, TensorF32>;

/** The tensors (name → shape) a config requires, in the official state-dict naming. */
export function expectedTensors(c: LactConfig): Map<string, number[]> {
  const D = c.hiddenSize;
  const m = new Map<string, number[]>();
  m.set('model.embeddings.weight', [c.vocabSize, D]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(p + 'attn_norm.weight', [D]);
    m.set(p + 'attn.qkv.weight', [3 * D, D]);
    if (c.qkvBias) m.set(p + 'attn.qkv.bias', [3 * D]);
    if (c.attnQkNorm) {
      m.set(p + 'attn.q_norm.weight', [D]);
      m.set(p + 'attn.k_norm.weight', [D]);
    }
    if (c.useFastWeights) {
      const Hf = c.numFwHeads, df = c.fwHeadDim, dh = c.fwHidden, r = c.w0w2LowRank;
      if (c.fwOwnQkv) m.set(p + 'attn.fw_qkv.weight', [3 * D, D]);
      m.set(p + 'attn.qk_scale', [D, 2]);
      m.set(p + 'attn.qk_offset', [D, 2]);
      for (const w of ['w0', 'w2']) {
        if (r > 0) {
          m.set(p + `attn.${w}.w_left`, [Hf, dh, r]);
          m.set(p + `attn.${w}.w_right`, [Hf, r, df]);
        } else {
          m.set(p + `attn.${w}`, [Hf, dh, df]);
        }
      }
      m.set(p + 'attn.w1', [Hf, df, dh]);
      m.set(p + 'attn.lr_proj.weight', [3 * Hf, D]);
      m.set(p + 'attn.lr_proj.bias', [3 * Hf]);
      m.set(p + 'attn.ttt_norm.weight', [df]);
      if (c.learnableTttScale) {
        m.set(p + 'attn.ttt_scale_proj.weight', [Hf, D]);
        m.set(p + 'attn.ttt_scale_proj.bias', [Hf]);
      }
      if (c.useMomentum) {
        m.set(p + 'attn.momentum_proj.0.weight', [Hf, D]);
        m.set(p + 'attn.momentum_proj.0.bias', [Hf]);
      }
    }
    m.set(p + 'attn.o_proj.weight', [D, D]);
    m.set(p + 'mlp_norm.weight', [D]);
    m.set(p + 'mlp.gate_proj.weight', [c.intermediateSize, D]);
    m.set(p + 'mlp.up_proj.weight', [c.intermediateSize, D]);
    m.set(p + 'mlp.down_proj.weight', [D, c.intermediateSize]);
  }
  m.set('model.norm.weight', [D]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, D]);
  return m;
}
