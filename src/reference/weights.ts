/**
 * The reference's view of a checkpoint: per-layer tensors in f64, fetched by their official names, with
 * the low-rank initial fast weights expanded once (W = w_left @ w_right + 0.5·I).
 */
import type { LactConfig, WeightMap } from '../model/config.ts';
import { matmul, toF64 } from './linalg.ts';

export interface FastBranchWeights {
  /** fw_own_qkv: the branch's own q|k|v projection [3D, D] (no bias); null: it reads attention's q, k, v. */
  qkvW: Float64Array | null;
  qkScale: Float64Array; // [D, 2]
  qkOffset: Float64Array; // [D, 2]
  /** Initial W0, W2 [Hf, dh, df] and W1 [Hf, df, dh]. */
  w0: Float64Array;
  w1: Float64Array;
  w2: Float64Array;
  lrW: Float64Array; // [3Hf, D]
  lrB: Float64Array;
  tttNorm: Float64Array; // [df]
  scaleW: Float64Array | null; // [Hf, D]
  scaleB: Float64Array | null;
  momW: Float64Array | null; // [Hf, D]
  momB: Float64Array | null;
}

export interface LayerWeights {
  attnNorm: Float64Array;
  qkvW: Float64Array;
  qkvB: Float64Array | null;
  qNorm: Float64Array | null;
  kNorm: Float64Array | null;
  fast: FastBranchWeights | null;
  oW: Float64Array;
  mlpNorm: Float64Array;
  gateW: Float64Array;
  upW: Float64Array;
  downW: Float64Array;
}

export interface ReferenceWeights {
  embeddings: Float64Array; // [V, D]
  layers: LayerWeights[];
  finalNorm: Float64Array;
  lmHead: Float64Array; // [V, D]
}

export function referenceWeights(c: LactConfig, w: WeightMap): ReferenceWeights {
  const get = (name: string): Float64Array => {
    const t = w.get(name);
    if (!t) throw new Error(`reference: tensor ${name} is missing (load through loadModel, which validates names)`);
    return toF64(t.data);
  };
  const opt = (name: string, present: boolean): Float64Array | null => (present ? get(name) : null);

  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      attnNorm: get(p + 'attn_norm.weight'),
      qkvW: get(p + 'attn.qkv.weight'),
      qkvB: opt(p + 'attn.qkv.bias', c.qkvBias),
      qNorm: opt(p + 'attn.q_norm.weight', c.attnQkNorm),
      kNorm: opt(p + 'attn.k_norm.weight', c.attnQkNorm),
      fast: c.useFastWeights ? fastBranch(c, p, get) : null,
      oW: get(p + 'attn.o_proj.weight'),
      mlpNorm: get(p + 'mlp_norm.weight'),
      gateW: get(p + 'mlp.gate_proj.weight'),
      upW: get(p + 'mlp.up_proj.weight'),
      downW: get(p + 'mlp.down_proj.weight'),
    });
  }
  const embeddings = get('model.embeddings.weight');
  return {
    embeddings,
    layers,
    finalNorm: get('model.norm.weight'),
    lmHead: c.tieWordEmbeddings ? embeddings : get('lm_head.weight'),
  };
}

function fastBranch(c: LactConfig, p: string, get: (n: string) => Float64Array): FastBranchWeights {
  const { numFwHeads: Hf, fwHeadDim: df, fwHidden: dh, w0w2LowRank: r } = c;
  const initial = (name: 'w0' | 'w2'): Float64Array => {
    if (r <= 0) return get(p + `attn.${name}`);
    const left = get(p + `attn.${name}.w_left`); // [Hf, dh, r]
    const right = get(p + `attn.${name}.w_right`); // [Hf, r, df]
    const out = new Float64Array(Hf * dh * df);
    for (let h = 0; h < Hf; h++) {
      const prod = matmul(left.subarray(h * dh * r, (h + 1) * dh * r), right.subarray(h * r * df, (h + 1) * r * df), dh, r, df);
      for (let j = 0; j < Math.min(dh, df); j++) prod[j * df + j] += 0.5;
      out.set(prod, h * dh * df);
    }
    return out;
  };
  return {
    qkvW: c.fwOwnQkv ? get(p + 'attn.fw_qkv.weight') : null,
    qkScale: get(p + 'attn.qk_scale'),
    qkOffset: get(p + 'attn.qk_offset'),
    w0: initial('w0'),
    w1: get(p + 'attn.w1'),
    w2: initial('w2'),
    lrW: get(p + 'attn.lr_proj.weight'),
    lrB: get(p + 'attn.lr_proj.bias'),
    tttNorm: get(p + 'attn.ttt_norm.weight'),
    scaleW: c.learnableTttScale ? get(p + 'attn.ttt_scale_proj.weight') : null,
    scaleB: c.learnableTttScale ? get(p + 'attn.ttt_scale_proj.bias') : null,
    momW: c.useMomentum ? get(p + 'attn.momentum_proj.0.weight') : null,
    momB: c.useMomentum ? get(p + 'attn.momentum_proj.0.bias') : null,
  };
}
