/**
 * The LaCT family's config format for the loader: config.json → LactConfig (config.ts), the tensors a
 * config implies, and why each is (or is not) wanted, in terms of config.json keys.
 */
import type { ConfigFormat } from './config-format.ts';
import { expectedTensors, parseConfig, type LactConfig } from './config.ts';

const LAYER = /^model\.layers\.(\d+)\.(.+)$/;

/** The config option (key=value as config.json spells it) a per-layer tensor exists for, if any. */
function layerOption(c: LactConfig, rest: string): string | null {
  if (rest === 'attn.qkv.bias') return `qkv_bias=${c.qkvBias}`;
  if (rest === 'attn.q_norm.weight' || rest === 'attn.k_norm.weight') return `attn_qk_norm=${c.attnQkNorm}`;
  if (/^attn\.w[02]\.w_(left|right)$/.test(rest)) return `use_fast_weights=${c.useFastWeights} and w0_w2_low_rank=${c.w0w2LowRank}`;
  if (rest === 'attn.w0' || rest === 'attn.w2') return `use_fast_weights=${c.useFastWeights} and w0_w2_low_rank=${c.w0w2LowRank} (full-rank initial fast weights)`;
  if (rest.startsWith('attn.ttt_scale_proj.')) return `use_fast_weights=${c.useFastWeights} and learnable_ttt_scale=${c.learnableTttScale}`;
  if (rest === 'attn.fw_qkv.weight') return `use_fast_weights=${c.useFastWeights} and fw_own_qkv=${c.fwOwnQkv}`;
  if (rest.startsWith('attn.momentum_proj.')) return `use_fast_weights=${c.useFastWeights} and use_momentum=${c.useMomentum}`;
  if (/^attn\.(qk_scale|qk_offset|w1|lr_proj\.(weight|bias)|ttt_norm\.weight)$/.test(rest)) return `use_fast_weights=${c.useFastWeights}`;
  return null;
}

/** Why the config requires `name`, for MissingTensorError (e.g. "required by use_momentum=true, in layer 3 of num_hidden_layers=4"). */
function tensorRequirement(c: LactConfig, name: string): string {
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

export const LACT_CONFIG: ConfigFormat<LactConfig> = {
  family: 'lact',
  // The official configs say "lact_swiglu"; configs without model_type are LaCT too (the project's first family).
  claims: (raw) => raw.model_type === undefined || (typeof raw.model_type === 'string' && raw.model_type.startsWith('lact')),
  parse: parseConfig,
  expectedTensors,
  tensorRequirement,
  unexpectedHint,
};
