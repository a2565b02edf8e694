/**
 * A checkpoint's tensors arranged the way the kernels want them, still on the CPU: projections that read
 * the same input concatenated into one matrix (one launch instead of three), low-rank initial fast
 * weights expanded, q/k norm weights side by side.
 */
import type { LactConfig, WeightMap } from '../model/config.ts';
import { concat } from '../gpu/weights.ts';
import type { FastWeightInit } from '../gpu/ops/fast-weights.ts';

export interface LayerTensors {
  attnNorm: Float32Array;
  qkv: Float32Array; // [3D, D]
  qkvBias: Float32Array | null;
  qkNorm: Float32Array | null; // [2D]: q_norm then k_norm
  /** lr_proj, momentum_proj.0, ttt_scale_proj rows stacked: [G, D], with their biases [G]. */
  gates: Float32Array | null;
  gatesBias: Float32Array | null;
  fast: FastWeightInit | null;
  oProj: Float32Array; // [D, D]
  mlpNorm: Float32Array;
  gateUp: Float32Array; // [2I, D]: gate_proj then up_proj
  down: Float32Array; // [D, I]
}

export interface ModelTensors {
  embeddings: Float32Array;
  layers: LayerTensors[];
  finalNorm: Float32Array;
  lmHead: Float32Array;
}

export function arrangeWeights(c: LactConfig, w: WeightMap): ModelTensors {
  const get = (name: string): Float32Array => {
    const t = w.get(name);
    if (!t) throw new Error(`tensor ${name} is missing (load the model through loadModel, which validates it)`);
    return t.data;
  };
  const layers: LayerTensors[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    const f = c.useFastWeights;
    const gateNames = f ? ['attn.lr_proj', ...(c.useMomentum ? ['attn.momentum_proj.0'] : []), ...(c.learnableTttScale ? ['attn.ttt_scale_proj'] : [])] : [];
    layers.push({
      attnNorm: get(p + 'attn_norm.weight'),
      qkv: get(p + 'attn.qkv.weight'),
      qkvBias: c.qkvBias ? get(p + 'attn.qkv.bias') : null,
      qkNorm: c.attnQkNorm ? concat([get(p + 'attn.q_norm.weight'), get(p + 'attn.k_norm.weight')]) : null,
      gates: f ? concat(gateNames.map((n) => get(p + n + '.weight'))) : null,
      gatesBias: f ? concat(gateNames.map((n) => get(p + n + '.bias'))) : null,
      fast: f ? {
        w0: initialFastWeight(c, get, p + 'attn.w0'),
        w1: get(p + 'attn.w1'),
        w2: initialFastWeight(c, get, p + 'attn.w2'),
        qkScale: get(p + 'attn.qk_scale'),
        qkOffset: get(p + 'attn.qk_offset'),
        tttNorm: get(p + 'attn.ttt_norm.weight'),
      } : null,
      oProj: get(p + 'attn.o_proj.weight'),
      mlpNorm: get(p + 'mlp_norm.weight'),
      gateUp: concat([get(p + 'mlp.gate_proj.weight'), get(p + 'mlp.up_proj.weight')]),
      down: get(p + 'mlp.down_proj.weight'),
    });
  }
  const embeddings = get('model.embeddings.weight');
  return { embeddings, layers, finalNorm: get('model.norm.weight'), lmHead: c.tieWordEmbeddings ? embeddings : get('lm_head.weight') };
}

/** W0 or W2 [Hf, dh, df]: stored whole, or low rank as w_left @ w_right + 0.5·I (accumulated in f64). */
function initialFastWeight(c: LactConfig, get: (n: string) => Float32Array, name: string): Float32Array {
  const { numFwHeads: Hf, fwHeadDim: df, fwHidden: dh, w0w2LowRank: r } = c;
  if (r <= 0) return get(name);
  const left = get(name + '.w_left'), right = get(name + '.w_right');
  const out = new Float32Array(Hf * dh * df);
  for (let h = 0; h < Hf; h++) {
    for (let i = 0; i < dh; i++) {
      for (let j = 0; j < df; j++) {
        let s = i === j ? 0.5 : 0;
        for (let k = 0; k < r; k++) s += left[h * dh * r + i * r + k] * right[h * r * df + k * df + j];
        out[h * dh * df + i * df + j] = s;
      }
    }
  }
  return out;
}
