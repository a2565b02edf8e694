/**
 * Checks that a checkpoint's tensors are exactly those its config calls for, with the right shapes and
 * float dtypes, and that the values are finite. Works from the safetensors header alone (names, dtypes,
 * shapes), so a streaming loader can reject a wrong file before downloading its data.
 * Messages say why a tensor is needed (or not), in terms of config.json keys.
 */
import { expectedTensors, type LactConfig } from './config.ts';
import { MissingTensorError, NonFiniteWeightError, ShapeMismatchError, UnexpectedTensorError, UnsupportedDtypeError } from './errors.ts';
import { FLOAT_DTYPES, isFloatDtype } from './safetensors.ts';

/** What the validator needs to know about a stored tensor. */
export interface StoredTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
}

const LAYER = /^model\.layers\.(\d+)\.(.+)$/;

/** The config option (key=value as config.json spells it) a per-layer tensor exists for, if any. */
function layerOption(c: LactConfig, rest: string): string | null {
  if (rest === 'attn.qkv.bias') return `qkv_bias=${c.qkvBias}`;
  if (rest === 'attn.q_norm.weight' || rest === 'attn.k_norm.weight') return `attn_qk_norm=${c.attnQkNorm}`;
  if (/^attn\.w[02]\.w_(left|right)$/.test(rest)) return `use_fast_weights=${c.useFastWeights} and w0_w2_low_rank=${c.w0w2LowRank}`;
  if (rest === 'attn.w0' || rest === 'attn.w2') return `use_fast_weights=${c.useFastWeights} and w0_w2_low_rank=${c.w0w2LowRank} (full-rank initial fast weights)`;
  if (rest.startsWith('attn.ttt_scale_proj.')) return `use_fast_weights=${c.useFastWeights} and learnable_ttt_scale=${c.learnableTttScale}`;
  if (rest.startsWith('attn.momentum_proj.')) return `use_fast_weights=${c.useFastWeights} and use_momentum=${c.useMomentum}`;
  if (/^attn\.(qk_scale|qk_offset|w1|lr_proj\.(weight|bias)|ttt_norm\.weight)$/.test(rest)) return `use_fast_weights=${c.useFastWeights}`;
  return null;
}

/** Why the config requires `name`, for MissingTensorError (e.g. "required by use_momentum=true, in layer 3 of num_hidden_layers=4"). */
export function tensorRequirement(c: LactConfig, name: string): string {
  const m = LAYER.exec(name);
  if (m) {
    const layer = `layer ${m[1]} of num_hidden_layers=${c.numLayers}`;
    const option = layerOption(c, m[2]);
    return option ? `required by ${option}, in ${layer}` : `required by every block, in ${layer}`;
  }
  if (name === 'lm_head.weight') return 'required by tie_word_embeddings=false: the output projection is its own tensor';
  if (name === 'model.embeddings.weight') return 'the token embedding table, required by every model';
  if (name === 'model.norm.weight') return 'the final RMSNorm, required by every model';
  return 'required by the config';
}

/** Why a tensor the file holds is not wanted, when a config key explains it. */
function unexpectedHint(c: LactConfig, name: string): string | null {
  const m = LAYER.exec(name);
  if (m) {
    if (Number(m[1]) >= c.numLayers) return `layer ${m[1]}, but num_hidden_layers=${c.numLayers}`;
    const option = layerOption(c, m[2]);
    return option ? `the config has ${option}` : null;
  }
  if (name === 'lm_head.weight') return 'the config has tie_word_embeddings=true';
  return null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Throws MissingTensorError, UnsupportedDtypeError (a non-float weight), ShapeMismatchError or
 * UnexpectedTensorError, in that order of priority, for the first problem found.
 */
export function checkTensorSet(c: LactConfig, stored: ReadonlyMap<string, StoredTensor>, source?: string): void {
  const expected = expectedTensors(c);
  const missing = [...expected.keys()].filter((n) => !stored.has(n));
  const extra = [...stored.keys()].filter((n) => !expected.has(n));
  if (missing.length > 0) {
    let why = tensorRequirement(c, missing[0]);
    if (missing.length > 1) why += `; ${missing.length - 1} more missing`;
    if (extra.length > 0) {
      const shown = extra.slice(0, 3).map((n) => `"${n}"`).join(', ');
      why += `; the file has ${extra.length} tensor(s) the config does not use: ${shown}${extra.length > 3 ? ', …' : ''}`;
    }
    throw new MissingTensorError(missing[0], why, source);
  }
  for (const [name, shape] of expected) {
    const t = stored.get(name)!;
    if (!isFloatDtype(t.dtype)) throw new UnsupportedDtypeError(name, t.dtype, FLOAT_DTYPES, source);
    if (!sameShape(shape, t.shape)) throw new ShapeMismatchError(name, shape, t.shape, source);
  }
  if (extra.length > 0) {
    throw new UnexpectedTensorError(extra[0], source, unexpectedHint(c, extra[0]) ?? undefined);
  }
}

/** Index of the first NaN or ±Inf in `data`, or -1. */
export function findNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    // x - x is 0 for every finite x and NaN for NaN and ±Inf: one comparison per element.
    if (x - x !== 0) return i;
  }
  return -1;
}

/** Throws NonFiniteWeightError naming the tensor and the first bad index. */
export function assertFinite(name: string, data: Float32Array, source?: string): void {
  const i = findNonFinite(data);
  if (i >= 0) throw new NonFiniteWeightError(name, i, data[i], source);
}
